"""The supervisor through the real sshd and ssh: the output cap, the time limit and a
client that goes away stop the whole tree, and every executed command gets a closing
record with its exit status (root harness; processes are looked for from outside)."""

from __future__ import annotations

import signal
import subprocess
import time

from .harness import procs_with


def _ends(e2e, cursor, expect=2):
    recs = e2e.journald.records_since(cursor, expect=expect, ends=True)
    return [r for r in recs if r["DIAG_DECISION"] == "end"]


def test_the_closing_record_carries_the_exit_status(e2e):
    cursor = e2e.journald.cursor()
    res = e2e.ssh.run("ls /nonexistent-diag-e2e")
    assert res.returncode == 2
    (end,) = _ends(e2e, cursor)
    start = [r for r in e2e.journald.records_since(cursor) if r["DIAG_DECISION"] == "allow"][0]
    assert end["DIAG_EXIT_STATUS"] == "2" and end["DIAG_INVOCATION"] == start["DIAG_INVOCATION"]
    assert end["DIAG_TREE"] == "pidns" and end["DIAG_USER"] == e2e.user.name
    assert int(end["DIAG_BYTES_OUT"]) == len(res.stdout) + len(res.stderr)


def test_output_is_cut_at_8_mib_with_a_line_that_says_how_to_narrow_it(e2e):
    big = e2e.data_file.parent / "big.log"
    line = b"2026-12-01T10:00:00 web-02 n8n[123]: request took 30001 ms \xe2\x80\x94 timeout\n"
    with open(big, "wb") as fh:
        for _ in range((20 << 20) // len(line)):
            fh.write(line)
    big.chmod(0o644)
    cursor = e2e.journald.cursor()
    res = e2e.ssh.run(f"cat {big}", timeout=60)
    assert res.returncode == 141
    assert len(res.stdout) <= 8 << 20 and len(res.stdout) > (8 << 20) - 4
    res.stdout.decode("utf-8")  # ends on a whole character
    assert res.stderr.decode().strip() == (
        "diag-wrapper: output cut at 8 MiB; narrow it with -n, --since, -g or a filter (exit 141)")
    (end,) = _ends(e2e, cursor)
    assert end["DIAG_CUT"] == "1" and end["DIAG_EXIT_STATUS"] == "141"


def test_tail_f_is_stopped_at_its_time_limit_and_nothing_is_left(e2e):
    log = e2e.data_file.parent / "follow-limit.log"
    log.write_text("one line\n")
    log.chmod(0o644)
    cursor = e2e.journald.cursor()
    start = time.monotonic()
    res = e2e.ssh.run(f"tail -f {log}", timeout=120)
    took = time.monotonic() - start
    assert res.returncode == 124 and 59 < took < 75, (res.returncode, took)
    assert res.stdout == b"one line\n"
    assert b"time limit of 60 s reached" in res.stderr
    assert not procs_with(str(log))
    (end,) = _ends(e2e, cursor)
    assert end["DIAG_TIMED_OUT"] == "1"


def test_a_client_that_disconnects_takes_the_command_with_it(e2e):
    log = e2e.data_file.parent / "follow-disconnect.log"
    log.write_text("one line\n")
    log.chmod(0o644)
    cursor = e2e.journald.cursor()
    argv = [*e2e.ssh.argv(), f"tail -f {log}"]
    client = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert client.stdout.readline() == b"one line\n"
        assert procs_with(str(log))  # the command runs (as the test user, in its own PID namespace)
    finally:
        client.send_signal(signal.SIGKILL)  # the client is gone: no goodbye, the TCP connection drops
        client.wait(timeout=10)
    deadline = time.monotonic() + 10
    while procs_with(str(log)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not procs_with(str(log)), "the command outlived its client"
    (end,) = _ends(e2e, cursor)
    assert end["DIAG_DISCONNECTED"] == "1"


# --------------------------------------------------------------------------- pipelines, the net

LOG_LINES = r"""
import sys
from systemd import journal
for i in range(40):
    journal.send(f"request {i} took {1000 * i} ms" + (" timeout" if i % 3 == 0 else ""),
                 SYSLOG_IDENTIFIER=sys.argv[1])
"""


def test_a_pipeline_prints_what_a_local_shell_prints(e2e):
    tag = f"diag-e2e-pipe-{e2e.user.name}"
    res = e2e.ns.run([str(e2e.python), "-c", LOG_LINES, tag])
    assert res.returncode == 0, res.stderr
    e2e.journald.sync()
    command = f"journalctl -t {tag} -o cat | grep timeout | tail -n 5"
    local = e2e.ns.run(["runuser", "-u", e2e.user.name, "--", "/bin/bash", "-c",
                        command.replace("journalctl", "journalctl --no-pager", 1)])
    assert local.returncode == 0 and local.stdout.count(b"\n") == 5, local
    cursor = e2e.journald.cursor()
    res = e2e.ssh.run(command)
    assert (res.returncode, res.stdout, res.stderr) == (0, local.stdout, b"")
    (end,) = _ends(e2e, cursor)
    assert end["DIAG_STAGES"] == "0 0 0" and end["DIAG_EXIT_STATUS"] == "0"
    start = [r for r in e2e.journald.records_since(cursor) if r["DIAG_DECISION"] == "allow"][0]
    assert start["DIAG_FILTERS"] == '[["grep", "timeout"], ["tail", "-n", "5"]]'


def test_a_pipeline_with_a_denied_stage_runs_nothing(e2e):
    cursor = e2e.journald.cursor()
    res = e2e.ssh.run(f"cat {e2e.data_file} | tee {e2e.marker_dir}/tee")
    assert res.returncode == 77 and b"(match.not-a-filter)" in res.stderr
    assert not list(e2e.marker_dir.iterdir())
    assert _ends(e2e, cursor, expect=1) == []


def test_the_net_masks_a_canary_key_in_an_allowed_file(e2e):
    canary = e2e.data_file.parent / "app.env"
    canary.write_text("DATABASE_URL=postgres://n8n:CANARYpw@127.0.0.1/n8n\n"
                      "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARYkeyCANARYkey\n-----END OPENSSH PRIVATE KEY-----\n"
                      "AGE-SECRET-KEY-1CANARYCANARYCANARYCANARYCANARYCANARYCANARYCANARYCANARY\n")
    canary.chmod(0o644)
    cursor = e2e.journald.cursor()
    res = e2e.ssh.run(f"cat {canary}")
    assert res.returncode == 0 and b"CANARY" not in res.stdout + res.stderr
    assert res.stdout == (b"DATABASE_URL=postgres://n8n:[redacted:url-credentials]@127.0.0.1/n8n\n"
                          b"[redacted:openssh-private-key]\n[redacted:age-secret-key]\n")
    (end,) = _ends(e2e, cursor)
    assert end["DIAG_REDACTED"] == "age-secret-key=1 openssh-private-key=1 url-credentials=1"


def test_the_net_masks_every_shipped_pattern_in_real_output(e2e):
    # one canary for each pattern of the shipped net (tests/test_redact.py CANARIES), in a
    # file the policy lets cat read: none comes out, each is counted by its name
    from test_redact import CANARIES

    canary = e2e.data_file.parent / "every-secret.txt"
    canary.write_bytes(b"".join(text if text.endswith(b"\n") else text + b"\n" for _, text, _ in CANARIES))
    canary.chmod(0o644)
    cursor = e2e.journald.cursor()
    res = e2e.ssh.run(f"cat {canary}")
    assert res.returncode == 0, res.stderr
    for name, _, secret in CANARIES:
        assert secret not in res.stdout, name
        assert f"[redacted:{name}]".encode() in res.stdout, name
    (end,) = _ends(e2e, cursor)
    counted = dict(kv.split("=") for kv in end["DIAG_REDACTED"].split())
    assert set(counted) == {name for name, _, _ in CANARIES}
