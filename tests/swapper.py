"""A symlink flipped between two targets as fast as one process can, for the race tests.

Each flip is atomic (a new link renamed over the old one), so whoever looks the
name up sees one target or the other, never nothing. ``user`` runs the flipper
as that uid/gid (no supplementary groups) with Debian's python, which an
unprivileged user can execute.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

FLIP = r"""
import os, sys
link, a, b = sys.argv[1:4]
tmp = link + ".tmp"
targets = (a, b)
i = 0
while True:
    i ^= 1
    try:
        os.symlink(targets[i], tmp)
    except FileExistsError:
        os.unlink(tmp)
        continue
    os.rename(tmp, link)
"""

SYSTEM_PYTHON = "/usr/bin/python3"


@contextmanager
def flipping(link: Path, a: Path, b: Path, user: int | None = None) -> Iterator[None]:
    """Keep ``link`` flipping between ``a`` and ``b`` for the duration of the block."""
    python = sys.executable
    preexec = None
    if user is not None:
        python = SYSTEM_PYTHON

        def preexec() -> None:
            os.setgroups([])
            os.setgid(user)
            os.setuid(user)

    if not link.is_symlink():
        os.symlink(a, link)
        if user is not None:
            os.lchown(link, user, user)
    proc = subprocess.Popen([python, "-c", FLIP, str(link), str(a), str(b)], preexec_fn=preexec,
                            stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
    try:
        _wait_for_a_flip(proc, link, str(a), str(b))
        yield
    finally:
        proc.kill()
        proc.wait()


def _wait_for_a_flip(proc: subprocess.Popen, link: Path, a: str, b: str, timeout: float = 10) -> None:
    """Fail loudly unless the flipper runs and the link has shown both targets."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and seen != {a, b}:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"the symlink flipper exited ({proc.returncode}): {err[-2000:]}")
        try:
            seen.add(os.readlink(link))
        except OSError:
            pass
    if seen != {a, b}:
        raise RuntimeError(f"{link} did not flip between {a} and {b} within {timeout}s")
