"""The package's check phase, as the Nix build sandbox runs it (root only, to set it up).

In the sandbox the tests run as an unprivileged build user (uid 1000 in a user namespace)
in a build directory it owns, on a copy of the package's source fileset, while the
interpreter and its inputs are in the store, root's files that the namespace shows as
owned by 65534 (the overflow uid). Here: the files nix/package.nix's fileset lists (read
from it, so a file the tests need and the fileset leaves out fails here), copied into a
directory of an unprivileged user, and the unit suite run as that user inside
``unshare --user --map-user=1000 --map-group=100``, with the root-owned venv as the
interpreter, HOME and TMPDIR as the sandbox sets them. tests/e2e, tests/root and
tests/nix are left out as the package leaves them out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_UID = 65534  # the unprivileged user outside; 1000 inside, as nixbld's build user is


def fileset() -> list[str]:
    """The paths nix/package.nix puts in the source (fs.unions [ ../X (fs.maybeMissing ../Y) ])."""
    text = (REPO / "nix" / "package.nix").read_text()
    body = text[text.index("fileset = fs.unions ["):]
    body = body[:body.index("];")]
    return re.findall(r"\.\./([\w./-]+)", re.sub(r"#.*", "", body))


def test_the_fileset_holds_what_the_tests_read():
    paths = fileset()
    assert "diag_wrapper" in paths and "tests" in paths and "scripts/gen_bashlex_tables.py" in paths


def test_the_unit_suite_passes_as_an_unprivileged_build_user_in_a_user_namespace():
    if not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("needs unshare and setpriv (util-linux)")
    python = Path(sys.executable)
    if not os.access(python, os.X_OK) or str(python).startswith("/root"):
        pytest.skip("the interpreter must be one another user can run")
    top = Path(tempfile.mkdtemp(prefix="diag-nix-build-", dir="/tmp"))
    try:
        build = top / "source"
        build.mkdir()
        for rel in fileset():
            src = REPO / rel
            if not src.exists():
                continue  # fs.maybeMissing
            dst = build / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis"))
            else:
                shutil.copy2(src, dst)
        (top / "tmp").mkdir()
        for p in [top, *top.rglob("*")]:  # the build user's own copy, as unpackPhase makes it
            os.lchown(p, BUILD_UID, BUILD_UID)
        argv = ["setpriv", f"--reuid={BUILD_UID}", f"--regid={BUILD_UID}", "--clear-groups", "--",
                "unshare", "--user", "--map-user=1000", "--map-group=100", "--",
                "env", "-i", "HOME=/homeless-shelter", f"TMPDIR={top / 'tmp'}", "PATH=/usr/bin:/bin",
                "LANG=C.UTF-8", str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "--ignore=tests/e2e", "--ignore=tests/root", "--ignore=tests/nix", "tests"]
        res = subprocess.run(argv, cwd=build, capture_output=True, text=True, timeout=1800)
        tail = "\n".join(res.stdout.splitlines()[-30:])
        assert res.returncode == 0, f"{tail}\n{res.stderr[-2000:]}"
        assert " passed" in tail and "failed" not in tail
        # the premise: inside, the build directory is the build user's and the venv is 65534's
        probe = subprocess.run(argv[:argv.index("env")] + ["stat", "-c", "%u", str(build), str(python.parent)],
                               capture_output=True, text=True, timeout=60)
        assert probe.stdout.split() == ["1000", "65534"], probe
    finally:
        shutil.rmtree(top, ignore_errors=True)
