"""Fixtures of the root tests: a real journald in a private mount namespace, and ForceCommand
mode run against it with a recording program (``fc``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from e2e import harness


@pytest.fixture(scope="module")
def journald(tmp_path_factory):
    """systemd-journald, alone in a private mount namespace (``journald.ns``)."""
    missing = harness.missing_programs()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    with harness.private_journald(tmp_path_factory.mktemp("journald")) as j:
        yield j


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
    """ForceCommand mode with the recorder as every program, a real journald, web-02's policy."""
    if not shutil.which("gcc"):
        pytest.skip("needs gcc to build the recording program (scripts/setup installs it)")
    root = tmp_path_factory.mktemp("fc")
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
    with harness.private_journald(root) as journald:
        env.ns, env.journald = journald.ns, journald
        yield env
