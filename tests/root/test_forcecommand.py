"""ForceCommand mode end to end in a subprocess, with a real journald (root only).

The ``fc`` fixture (tests/root/conftest.py): the "programs" are a compiled
recorder that writes the argv and environment it was exec'd with, so the test sees exactly what ``execve`` received. A denied
command must leave no record at all. Each run happens inside a private mount
namespace where a real systemd-journald takes the audit records.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest



EXPECTED_ENV_KEYS = {"PATH", "LANG", "SYSTEMD_PAGER", "PAGER", "SYSTEMD_COLORS", "LESSSECURE"}


def test_allowed_command_gets_exactly_the_decided_argv_and_a_clean_environment(fc):
    hostile_env = {
        "PATH": "/tmp/evil", "LD_PRELOAD": "/tmp/evil.so", "PAGER": "sh", "SYSTEMD_PAGER": "sh",
        "LESSOPEN": "|id", "SSH_CONNECTION": "127.0.0.1 1 127.0.0.1 22", "HOME": "/root", "BASH_ENV": "/tmp/x",
        "POSIXLY_CORRECT": "1", "TZ": ":/etc/shadow",
    }
    proc = fc.run("journalctl -u n8n -n 100 --since '1 hour ago'", env=hostile_env)
    assert proc.returncode == 7, proc.stderr  # the program's own status is the session's status
    assert proc.stdout == b"recorded\n"
    argv, env = fc.recorded()
    assert argv == ["journalctl", "--no-pager", "-u", "n8n", "-n", "100", "--since", "1 hour ago"]
    assert env == {
        "PATH": str(fc.bin), "LANG": "C.UTF-8", "SYSTEMD_PAGER": "cat", "PAGER": "cat",
        "SYSTEMD_COLORS": "0", "LESSSECURE": "1", "SYSTEMD_PAGERSECURE": "1",
    }


@pytest.mark.parametrize(
    "command,argv",
    [
        ("cat /etc/hostname", ["cat", "/dev/fd/3"]),  # the checked file, handed over open (no race)
        ("systemctl status 'podman-invidious.service'", ["systemctl", "--no-pager", "status", "podman-invidious.service"]),
        ("grep -rn 'a b;c' /etc/hostname", ["grep", "-rn", "a b;c", "/etc/hostname"]),
        ("ls ''", None),
    ],
)
def test_argv_table(fc, command, argv):
    proc = fc.run(command)
    if argv is None:
        assert proc.returncode == 77 and fc.recorded() is None
    else:
        assert proc.returncode == 7, proc.stderr
        assert fc.recorded()[0] == argv
        assert set(fc.recorded()[1]) == EXPECTED_ENV_KEYS | ({"SYSTEMD_PAGERSECURE"} if argv[0] == "systemctl" else set())


@pytest.mark.parametrize(
    "command,code",
    [
        ("cat /etc/shadow", "path.denied"),
        ("systemctl stop sshd", "match.unknown-subcommand"),
        ("ls; id", "parse.list"),
        ("cat $(echo /etc/shadow)", "parse.command-substitution"),
        ("journalctl --file=/run/secrets/x", "match.unknown-option"),
        (b"cat /etc/host\xffname", "input.encoding"),
        ("cat /etc/hostname\nid", "input.multiline"),
    ],
)
def test_denied_command_executes_nothing_and_says_why(fc, command, code):
    cursor = fc.journald.cursor()
    proc = fc.run(command)
    assert proc.returncode == 77
    assert fc.recorded() is None
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert lines[0].startswith("diag-wrapper: denied: ") and f"({code})" in lines[0]
    rec = fc.journald.records_since(cursor, expect=1)
    assert len(rec) == 1 and rec[0]["DIAG_DECISION"] == "deny" and rec[0]["DIAG_CODE"] == code


def test_deny_message_shows_the_allowed_forms_of_a_known_command(fc):
    proc = fc.run("journalctl --file=/x")
    err = proc.stderr.decode()
    assert "allowed forms:" in err and "--unit" in err


def test_allowed_command_is_audited_before_it_runs(fc):
    cursor = fc.journald.cursor()
    assert fc.run("uptime").returncode == 7
    rec = fc.journald.records_since(cursor, expect=1)
    assert [r["DIAG_DECISION"] for r in rec] == ["allow"]  # the closing record: test_supervise.py
    assert rec[0]["DIAG_EXECUTABLE"] == str(fc.bin / "uptime")
    assert rec[0]["DIAG_LAYERS"] == "allowlist,sandbox"  # the kernel wall went up before the exec


def test_no_command_is_a_usage_error_not_a_shell(fc):
    for command in (None, ""):
        proc = fc.run(command)
        assert proc.returncode == 64
        assert b"no command given" in proc.stderr and fc.recorded() is None


def test_help_prints_the_policy(fc):
    proc = fc.run("help")
    assert proc.returncode == 0
    out = proc.stdout.decode()
    assert "journalctl" in out and "/var/lib/n8n" in out and fc.recorded() is None


def test_python_environment_variables_have_no_effect(fc, tmp_path):
    evil = tmp_path / "evil"
    evil.mkdir()
    marker = tmp_path / "imported"
    for mod in ("structlog", "bashlex", "tomllib", "sitecustomize", "usercustomize"):
        (evil / f"{mod}.py").write_text(f"open({str(marker)!r}, 'a').write({mod!r})\n")
    (evil / "diag_wrapper").mkdir()
    (evil / "diag_wrapper" / "__init__.py").write_text(f"open({str(marker)!r}, 'a').write('pkg')\n")
    env = {"PYTHONPATH": str(evil), "PYTHONSTARTUP": str(evil / "structlog.py"), "PYTHONINSPECT": "1",
           "PYTHONUSERBASE": str(evil), "PYTHONWARNINGS": "error", "PYTHONSAFEPATH": "0"}
    proc = fc.run("cat /etc/hostname", env=env)
    assert proc.returncode == 7, proc.stderr
    assert not marker.exists()


def test_a_wrapper_not_run_isolated_refuses(fc):
    proc = fc.run("cat /etc/hostname", isolated=False)
    assert proc.returncode == 77 and b"setup.not-isolated" in proc.stderr
    assert fc.recorded() is None


def test_a_broken_policy_denies_everything(fc, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[deny]]\npath = "relative/x"\nwhy = "oops"\n')
    proc = fc.run("uptime", policy=bad)
    assert proc.returncode == 77 and b"policy.error" in proc.stderr and b"every command is denied" in proc.stderr
    assert fc.recorded() is None
    proc = fc.run("uptime", policy=tmp_path / "missing.toml")
    assert proc.returncode == 77 and b"cannot read the policy" in proc.stderr


def test_the_time_limit_stops_the_command_and_says_so(fc):
    start = time.monotonic()
    proc = fc.run("sleep 30")
    assert proc.returncode == 124, proc.stderr  # as timeout(1)
    assert time.monotonic() - start < 10
    assert b"time limit of 1 s reached" in proc.stderr


def test_sigpipe_is_restored_for_the_command(fc):
    # `yes` into a closed pipe must die of SIGPIPE, as under a shell, not loop on EPIPE.
    argv = fc.ns.nsenter(["env", "-i", "SSH_ORIGINAL_COMMAND=yes", str(fc.python), "-I", "-m", "diag_wrapper",
                          "--policy", str(fc.policy)])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    assert proc.wait(timeout=20) == -signal.SIGPIPE


def test_without_the_wall_only_stable_names_are_handed_over(fc, tmp_path):
    # sandbox = "off": a name the command looks up itself must be one only root can change.
    off = tmp_path / "off.toml"
    off.write_text(f'include = ["{fc.policy}"]\n[settings]\nsandbox = "off"\n')
    tmp_path.chmod(0o755)
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chown(loose, 65534, 65534)  # another user may rename anything in here
    (loose / "f").write_text("x")
    (tmp_path / "stable").write_text("x")

    cursor = fc.journald.cursor()
    proc = fc.run(f"ls -l {loose / 'f'}", policy=off)
    assert proc.returncode == 77 and b"path.unstable" in proc.stderr
    assert fc.recorded() is None
    rec = fc.journald.records_since(cursor, expect=1)[-1]
    assert rec["DIAG_DECISION"] == "deny" and rec["DIAG_CODE"] == "path.unstable"

    cursor = fc.journald.cursor()
    proc = fc.run(f"ls -l {tmp_path / 'stable'}", policy=off)
    assert proc.returncode == 7 and fc.recorded()[0][1:] == ["-l", str(tmp_path / "stable")]
    rec = fc.journald.records_since(cursor, expect=1)[-1]
    assert rec["DIAG_LAYERS"].split(",")[-1] == "stable-names"

    # cat gets the file as an open descriptor, so no stable name is needed
    proc = fc.run(f"cat {loose / 'f'}", policy=off)
    assert proc.returncode == 7 and fc.recorded()[0][1:] == ["/dev/fd/3"]
    # with the wall up (as here, by default) the same name is handed over as it is
    proc = fc.run(f"ls -l {loose / 'f'}")
    assert proc.returncode == 7 and fc.recorded()[0][1:] == ["-l", str(loose / "f")]


def test_nothing_inherited_reaches_the_command_but_its_files_and_its_slot(fc, tmp_path):
    # as doas's closefrom: descriptors from sshd (or anyone) never reach the command
    leaked = tmp_path / "inherited-secret"
    leaked.write_text("x")
    fd = os.open(leaked, os.O_RDONLY)
    os.set_inheritable(fd, True)
    try:
        proc = fc.run(f"cat {fc.root / 'policy.toml'}", pass_fds=(fd,))
        assert proc.returncode == 7, proc.stderr
        fds = fc.inherited()
    finally:
        os.close(fd)
    assert not any(str(leaked) in t for t in fds.values()), fds
    extra = {n: t for n, t in fds.items() if n > 2 and not t.startswith("/proc/")}  # its opendir
    assert sorted(Path(t).name for t in extra.values()) == ["policy.toml", "slot.0"], fds
    assert fc.recorded()[0][1:] == ["/dev/fd/3"] or fc.recorded()[0][1].startswith("/dev/fd/")


def test_a_policy_someone_besides_root_could_write_denies_everything(fc, tmp_path):
    cursor = fc.journald.cursor()
    loose = fc.root / "loose.toml"
    loose.write_text(f'include = ["{fc.policy}"]\n')
    loose.chmod(0o664)
    proc = fc.run("uptime", policy=loose)
    assert proc.returncode == 77 and b"policy.insecure" in proc.stderr and b"chmod go-w" in proc.stderr
    assert fc.recorded() is None
    rec = fc.journald.records_since(cursor, expect=1)[-1]
    assert rec["DIAG_CODE"] == "policy.insecure"
    loose.chmod(0o644)
    assert fc.run("uptime", policy=loose).returncode == 7  # fixed: it runs


def test_limits_that_cannot_be_set_are_a_recorded_refusal(fc):
    # a hard limit below the policy's, inherited from whoever started the wrapper
    cursor = fc.journald.cursor()
    argv = ["prlimit", "--cpu=5:5", "--", "env", "-i", "SSH_ORIGINAL_COMMAND=uptime", str(fc.python), "-I",
            "-m", "diag_wrapper", "--policy", str(fc.policy)]
    fc.last = proc = fc.ns.run(argv, timeout=30, cwd=str(fc.root))
    assert proc.returncode == 77 and b"limit.unavailable" in proc.stderr and fc.recorded() is None
    (rec,) = fc.journald.records_since(cursor, expect=1, ends=True)
    assert rec["DIAG_DECISION"] == "deny" and rec["DIAG_CODE"] == "limit.unavailable"
