"""ForceCommand mode end to end in a subprocess, with a real journald (root only).

The "programs" are a compiled recorder that writes the argv and environment it
was exec'd with, so the test sees exactly what ``execve`` received. A denied
command must leave no record at all. Each run happens inside a private mount
namespace where a real systemd-journald takes the audit records.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import harness

pytestmark = pytest.mark.root

# The record goes to stderr between markers: commands run with RLIMIT_FSIZE 0, so a
# program that writes a file is killed by SIGXFSZ (test_limits shows it).
RECORDER_C = r"""
#include <stdio.h>
#include <dirent.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv) {
    FILE *f = stderr;
    fputs("\001REC", f);
    for (int i = 0; i < argc; i++) { fputs(argv[i], f); fputc(0, f); }
    fputc('\n', f);  /* argv never holds a newline: the parser refuses them */
    for (char **e = environ; *e; e++) { fputs(*e, f); fputc(0, f); }
    fputs("\001END\n", f);
    DIR *d = opendir("/proc/self/fd");  /* the descriptors it inherited, and where they lead */
    struct dirent *de;
    fputs("\001FDS", f);
    while (d && (de = readdir(d))) {
        char link[4096], path[300];
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/proc/self/fd/%s", de->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n < 0 ? 0 : n] = 0;
        fprintf(f, "%s=%s\t", de->d_name, link);
    }
    fputs("\001END\n", f);
    fflush(f);
    puts("recorded");
    return 7;
}
"""

EXTRA = """
[commands.sleep]
timeout = 1
args = [{ name = "SECONDS", type = { type = "int", min = 1, max = 100 }, min = 1 }]
[commands.yes]
"""


class Env:
    def __init__(self, root: Path, ns: harness.Namespace, journald: harness.Journald) -> None:
        self.root, self.ns, self.journald = root, ns, journald
        self.bin = root / "bin"
        self.record = root / "record"
        self.policy = root / "policy.toml"
        self.state = root / "state"
        self.python = Path(sys.executable)

    def run(self, command: str | bytes | None, *, env: dict[str, str] | None = None, isolated: bool = True,
            policy: Path | None = None, timeout: float = 30, pass_fds: tuple[int, ...] = ()
            ) -> subprocess.CompletedProcess:
        self.last = None
        argv = ["env", "-i"]
        for k, v in (env or {}).items():
            argv.append(f"{k}={v}")
        if command is not None:
            argv.append(b"SSH_ORIGINAL_COMMAND=" + (command if isinstance(command, bytes) else command.encode()))
        argv += [str(self.python)] + (["-I"] if isolated else []) + ["-m", "diag_wrapper", "--policy",
                                                                    str(policy or self.policy)]
        self.last = self.ns.run(argv, timeout=timeout, cwd=str(self.root), pass_fds=pass_fds)
        return self.last

    def inherited(self) -> dict[int, str]:
        """fd -> target of what the recorded program had open (its own directory fd included)."""
        err = self.last.stderr
        start = err.index(b"\x01FDS") + 4
        items = err[start:err.index(b"\x01END\n", start)].decode().split("\t")
        return {int(k): v for k, v in (i.split("=", 1) for i in items if i)}

    def recorded(self) -> tuple[list[str], dict[str, str]] | None:
        err = self.last.stderr if self.last is not None else b""
        start = err.find(b"\x01REC")
        if start < 0:
            return None
        head, _, tail = err[start + 4:err.index(b"\x01END\n", start)].partition(b"\n")
        argv = [a.decode() for a in head.split(b"\0")[:-1]]
        env = dict(e.decode().split("=", 1) for e in tail.split(b"\0")[:-1])
        return argv, env


@pytest.fixture(scope="module")
def fc(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: private mount namespace and a real systemd-journald")
    if not shutil.which("gcc"):
        pytest.skip("needs gcc to build the recording program (scripts/setup installs it)")
    root = tmp_path_factory.mktemp("fc")
    ns = journald = None
    try:
        env = Env(root, None, None)  # type: ignore[arg-type]
        env.bin.mkdir()
        src = root / "recorder.c"
        src.write_text(RECORDER_C)
        subprocess.run(["gcc", "-O", "-o", str(root / "recorder"), str(src)], check=True)
        from diag_wrapper.policy import load
        for name in load(str(harness.REPO / "policy" / "web-02.toml")).commands:
            os.link(root / "recorder", env.bin / name)
        (env.bin / "sleep").symlink_to(shutil.which("sleep"))
        (env.bin / "yes").symlink_to(shutil.which("yes"))
        env.policy.write_text(
            f'include = ["{harness.REPO / "policy" / "web-02.toml"}"]\n{EXTRA}\n'
            f'[settings]\nsearch_path = ["{env.bin}"]\nstate_dir = "{env.state}"\n'
            # as /run/diag-wrapper is in the fleet policy: the wall covers the state directory
            f'[[deny]]\npath = "{env.state}"\nwhy = "the wrapper\'s state"\n'
        )
        env.state.mkdir()
        ns = harness.Namespace(root).start()
        journald = harness.Journald(ns, root / "journald.log").start()
        env.ns, env.journald = ns, journald
        yield env
    finally:
        if journald is not None:
            journald.stop()
        if ns is not None:
            ns.stop()


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
    assert [r["DIAG_DECISION"] for r in rec] == ["allow"]
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


def test_time_limit_survives_exec(fc):
    start = time.monotonic()
    proc = fc.run("sleep 30")
    assert proc.returncode == -signal.SIGALRM or proc.returncode == 128 + signal.SIGALRM
    assert time.monotonic() - start < 10


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
