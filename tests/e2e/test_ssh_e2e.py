"""End to end through the real programs: ssh -> sshd (ForceCommand) -> wrapper -> journald.

Runs as root only (see conftest.py). Each attempt is one real ssh connection as the
unprivileged test user; its audit records are read back with ``journalctl -o json``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import pytest

from diag_wrapper import audit

from .conftest import DATA_TEXT, E2E, sshd_log
from .harness import free_port


DENIED = 77
USAGE = 64


def assert_record(e2e: E2E, rec: dict, decision: str, command: bytes, code: str | None = None,
                  client_gone: bool = False) -> None:
    """The fields issue 3 asks for, on one record."""
    assert rec["SYSLOG_IDENTIFIER"] == "diag-wrapper"
    assert rec["PRIORITY"] == ("4" if decision == "deny" else "6")
    assert rec["MESSAGE_ID"] == audit.MESSAGE_IDS[decision]
    assert rec["DIAG_DECISION"] == decision
    assert rec["DIAG_CODE"] == (code or decision)
    cmd = rec["DIAG_COMMAND"]
    assert (bytes(cmd) if isinstance(cmd, list) else cmd.encode()) == command
    assert "\n" not in rec["MESSAGE"]
    assert rec["DIAG_REASON"]
    assert "DIAG_ARGV" not in rec  # the command is stored once (DIAG_COMMAND)
    assert isinstance(json.loads(rec.get("DIAG_PATHS", "[]")), list)
    assert "DIAG_LAYERS" in rec
    # Who and from where: the wrapper ran as the test user, over our connection.
    assert rec["DIAG_USER"] == e2e.user.name
    assert rec["_UID"] == str(e2e.user.pw.pw_uid)  # trusted field, set by journald itself
    conn = rec["DIAG_SSH_CONNECTION"].split()
    assert conn[0] == "127.0.0.1" and conn[2] == "127.0.0.1" and conn[3] == str(e2e.sshd.port)
    assert rec["DIAG_SSH_CLIENT"].split()[0] == "127.0.0.1"
    # The key that logged in (ExposeAuthInfo yes -> SSH_USER_AUTH), as ssh-keygen -lf says.
    if client_gone and "DIAG_KEY_FINGERPRINT" not in rec:
        # sshd deletes the SSH_USER_AUTH file when the session closes; a client that
        # already hung up can win that race. The record says so instead.
        assert "DIAG_AUTH_INFO_ERROR" in rec
        return
    assert rec["DIAG_KEY_FINGERPRINT"] == e2e.fingerprint
    assert rec["DIAG_AUTH_METHOD"] == "publickey"


def one_record(records: list[dict]) -> dict:
    assert len(records) == 1, [r.get("MESSAGE") for r in records]
    return records[0]


# --------------------------------------------------------------------------- allowed

def test_uptime_runs(e2e):
    res, recs = e2e.attempt("uptime")
    assert res.returncode == 0, res.stderr
    assert b"load average" in res.stdout
    rec = one_record(recs)
    assert_record(e2e, rec, "allow", b"uptime")
    assert rec["DIAG_RULE"] == "uptime"
    assert rec["DIAG_EXECUTABLE"] == "/usr/bin/uptime"
    assert rec["DIAG_COMMAND"] == "uptime"


def test_cat_returns_the_real_file(e2e):
    res, recs = e2e.attempt(f"cat {e2e.data_file}")
    assert res.returncode == 0, res.stderr
    assert res.stdout == DATA_TEXT.encode()
    rec = one_record(recs)
    assert_record(e2e, rec, "allow", f"cat {e2e.data_file}".encode())
    assert rec["DIAG_EXECUTABLE"] in ("/usr/bin/cat", "/bin/cat")
    assert json.loads(rec["DIAG_PATHS"]) == [
        {"value": str(e2e.data_file), "resolved": str(e2e.data_file), "kind": "file"}]


def test_quoted_argument_reaches_the_program(e2e):
    res, recs = e2e.attempt(f"grep -c 'from the' {e2e.data_file}")
    assert res.returncode == 0, res.stderr
    assert res.stdout == b"1\n"
    rec = one_record(recs)
    assert rec["DIAG_COMMAND"] == f"grep -c 'from the' {e2e.data_file}"
    assert json.loads(rec["DIAG_PATHS"]) == [
        {"value": str(e2e.data_file), "resolved": str(e2e.data_file), "kind": "file"}]  # the words as read


def test_journalctl_reads_the_journal(e2e):
    # The test user is in systemd-journal; it reads the namespace's own journal.
    res, recs = e2e.attempt("journalctl -n 5")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) >= 1
    assert b"diag-wrapper" in res.stdout or b"systemd-journald" in res.stdout
    rec = one_record(recs)
    assert_record(e2e, rec, "allow", b"journalctl -n 5")
    assert rec["DIAG_RULE"] == "journalctl"


def test_nonzero_exit_status_is_passed_through(e2e):
    res, recs = e2e.attempt("ls /nonexistent")
    assert res.returncode == 2
    assert b"No such file" in res.stderr
    assert b"denied" not in res.stderr
    assert_record(e2e, one_record(recs), "allow", b"ls /nonexistent")


def test_help(e2e):
    res, recs = e2e.attempt("help")
    assert res.returncode == 0, res.stderr
    assert b"journalctl" in res.stdout and b"systemctl" in res.stdout
    assert b"/etc/shadow" in res.stdout  # the denied locations are listed too
    assert_record(e2e, one_record(recs), "help", b"help")


# --------------------------------------------------------------------------- denied

# (command, deny code). {m} is a world-writable directory: anything that ran could leave a file there.
DENIED_COMMANDS = [
    ("cat /etc/shadow", "path.denied"),
    ("systemctl stop sshd", "match.unknown-subcommand"),
    ("ls; id", "parse.list"),
    ("cat $(echo /etc/shadow)", "parse.command-substitution"),
    ("journalctl --file=/run/secrets/x", "match.unknown-option"),
    ("journalctl --fil=/run/secrets/x", "match.unknown-option"),  # --file abbreviated; not allowlisted at all
    ("ls; touch {m}/list", "parse.list"),
    ("ls && touch {m}/and", "parse.list"),
    ("ls || touch {m}/or", "parse.list"),
    ("ls & touch {m}/bg", "parse.background"),
    ("ls | tee {m}/pipe", "match.not-a-filter"),
    ("ls > {m}/redirect", "parse.redirect"),
    ("cat $(touch {m}/subst)", "parse.command-substitution"),
    ("cat `touch {m}/backtick`", "parse.command-substitution"),
    ("cat <(touch {m}/procsubst)", "parse.process-substitution"),
    ("A=1 touch {m}/assign", "parse.assignment"),
    ("touch {m}/touch", "match.unknown-command"),
    ("/usr/bin/touch {m}/abs", "match.path-command"),
    ("bash -c 'touch {m}/bash'", "match.unknown-command"),
    ("cat $HOME/.bashrc", "parse.parameter"),
    ("cat /home/*/.ssh/authorized_keys", "parse.glob"),
    ("ls -R /run", None),  # a tree that contains denied locations (/run/secrets): refused
]


@pytest.mark.parametrize("template, code", DENIED_COMMANDS, ids=[c for c, _ in DENIED_COMMANDS])
def test_denied_commands_execute_nothing(e2e, template, code):
    command = template.format(m=e2e.marker_dir)
    res, recs = e2e.attempt(command)
    assert res.returncode == DENIED, (res.stdout, res.stderr)
    assert res.stderr.startswith(b"diag-wrapper: denied:"), res.stderr
    assert res.stdout == b""
    assert e2e.markers() == []
    rec = one_record(recs)
    assert_record(e2e, rec, "deny", command.encode(), code or rec["DIAG_CODE"])
    assert rec["DIAG_CODE"] != "allow"


def test_binary_and_multiline_commands_are_recorded_exactly(e2e):
    command = f"ls\ntouch {e2e.marker_dir}/newline".encode()
    res, recs = e2e.attempt(command)
    assert res.returncode == DENIED
    assert res.stderr.startswith(b"diag-wrapper: denied:")
    assert e2e.markers() == []
    rec = one_record(recs)
    assert_record(e2e, rec, "deny", command, rec["DIAG_CODE"])
    assert rec["DIAG_CODE"].startswith("input.")
    assert "\\x0a" in rec["MESSAGE"]  # escaped: the record cannot look like two


def test_denied_systemctl_changes_nothing(e2e):
    res, _ = e2e.attempt("systemctl stop sshd")
    assert res.returncode == DENIED
    assert e2e.sshd.running
    again, recs = e2e.attempt("uptime")  # sshd still serves
    assert again.returncode == 0


def test_interactive_login_is_refused(e2e):
    res, recs = e2e.attempt(None)
    assert res.returncode == USAGE, res.stderr
    assert res.stderr.startswith(b"diag-wrapper: denied:"), res.stderr
    assert res.stdout == b""
    rec = one_record(recs)
    assert_record(e2e, rec, "deny", b"", "input.empty")


def test_pty_request_is_refused(e2e):
    # sshd refuses the pty (PermitTTY no, restrict). With -tt the client treats that as
    # fatal and hangs up; the wrapper may still see the pipelined request, and refuses it.
    for command, code in ((None, "input.empty"), (f"ls; touch {e2e.marker_dir}/tty", "parse.list")):
        res, recs = e2e.attempt(command, "-tt", stdin_open=True, expect_records=1)
        assert b"PTY allocation request failed" in res.stderr
        assert res.returncode in (255, USAGE, DENIED), res
        assert res.stdout == b""
        assert e2e.markers() == []
        assert len(recs) <= 1
        for rec in recs:
            assert_record(e2e, rec, "deny", (command or "").encode(), code, client_gone=True)


def _listener() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    s.settimeout(1.5)
    return s


def test_local_port_forwarding_is_refused(e2e):
    target = _listener()
    target_port = target.getsockname()[1]
    local_port = free_port()
    proc = subprocess.Popen(
        e2e.ssh.argv("-N", "-L", f"127.0.0.1:{local_port}:127.0.0.1:{target.getsockname()[1]}"),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        client = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                client = socket.create_connection(("127.0.0.1", local_port), timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        assert client is not None, "ssh -L never listened"
        client.settimeout(5)
        client.sendall(b"hello\n")
        try:
            assert client.recv(100) == b""  # closed: the channel was refused
        except ConnectionResetError:
            pass  # reset: refused too
        client.close()
        with pytest.raises(socket.timeout):
            target.accept()  # nothing ever reached the target through sshd
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
        target.close()
    assert f"refused local port forward: originator 127.0.0.1 port" in sshd_log(e2e)
    assert f"target 127.0.0.1 port {target_port}" in sshd_log(e2e)


def test_remote_port_forwarding_is_refused(e2e):
    res, recs = e2e.attempt("uptime", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:9",
                            expect_records=0)
    assert res.returncode == 255
    assert b"forwarding failed" in res.stderr
    assert recs == []  # refused before any session: the wrapper never ran


# --------------------------------------------------------------------------- fail closed

def test_journald_down_fails_closed(journald_down):
    e2e = journald_down
    # journald dead, its socket still there: the send is refused.
    res = e2e.ssh.run(f"cat {e2e.data_file}")
    assert res.returncode == DENIED, res.stderr
    assert res.stdout == b""  # cat did not run
    assert res.stderr.startswith(b"diag-wrapper: denied:")
    assert b"audit" in res.stderr and b"nothing was executed" in res.stderr
    # socket gone too (libsystemd would drop records silently): still refused.
    e2e.ns.path(e2e.journald.SOCKET).unlink()
    res = e2e.ssh.run(f"cat {e2e.data_file}")
    assert res.returncode == DENIED
    assert res.stdout == b""
    assert b"nothing was executed" in res.stderr
    res = e2e.ssh.run(f"ls; touch {e2e.marker_dir}/down")
    assert res.returncode == DENIED
    assert e2e.markers() == []


def test_journald_back_up_allows_again(e2e):
    res, recs = e2e.attempt("uptime")
    assert res.returncode == 0
    assert_record(e2e, one_record(recs), "allow", b"uptime")


def test_client_environment_cannot_spoof_the_audit(e2e, tmp_path):
    # sshd accepts no client environment (no AcceptEnv): SSH_USER_AUTH, USER and
    # PYTHON* sent by the client never reach the wrapper.
    fake = e2e.marker_dir.parent / "data" / "fake-auth"
    res, recs = e2e.attempt(
        "uptime", "-o", f"SetEnv=SSH_USER_AUTH={fake} USER=root PYTHONPATH={e2e.marker_dir}",
    )
    assert res.returncode == 0, res.stderr
    rec = one_record(recs)
    assert_record(e2e, rec, "allow", b"uptime")
    assert rec["DIAG_USER"] == e2e.user.name
