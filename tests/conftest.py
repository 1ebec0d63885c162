"""Shared fixtures: the repo's policies with a search path of stub programs.

The shipped policies look for programs in /run/current-system/sw/bin (NixOS).
Tests include them unchanged and only point ``search_path`` at a directory
holding an executable stub for every allowed command, so every decision is
the one the shipped policy makes, on any machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from diag_wrapper.deny import RealHost
from diag_wrapper.policy import Policy, load

# Who owns / as this process sees it: root on a host; the overflow uid (65534) in a build
# sandbox's user namespace, where root's directories are nobody's that is mapped.
ROOT_AS_SEEN = os.lstat("/").st_uid


class RootAbove(RealHost):
    """This host, with ``base`` and the directories above it reported as root's where they
    are the overflow uid's or this (non-root) user's: in a build sandbox the tests run as an
    unprivileged user in its own directories, below root's shown as nobody's, so without
    this every name would be unstable there (only root may be able to change what a name
    reaches), while the suite run as root sees these directories as root's anyway."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base.rstrip("/") + "/"

    def lstat(self, p: str) -> os.stat_result:
        st = super().lstat(p)
        if st.st_uid in {ROOT_AS_SEEN, os.geteuid()} - {0} and self.base.startswith(p.rstrip("/") + "/"):
            fields = list(st)
            fields[stat.ST_UID] = 0
            return os.stat_result(fields)
        return st

REPO = Path(__file__).resolve().parent.parent
POLICY_DIR = REPO / "policy"


def write_stub_policy(dest: Path, base: str, bindir: Path, extra: str = "") -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    shipped = load(str(POLICY_DIR / base))
    for name in (*shipped.commands, *shipped.filters):
        stub = bindir / name
        if not stub.exists():
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    path = dest / f"stub-{base}"
    path.write_text(
        f'include = ["{POLICY_DIR / base}"]\n{extra}\n[settings]\nsearch_path = ["{bindir}"]\n'
    )
    return path


@pytest.fixture(scope="session")
def stub_bin(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bin")


@pytest.fixture(scope="session")
def web02(tmp_path_factory, stub_bin) -> Policy:
    """policy/web-02.toml (which includes fleet.toml) with stub programs."""
    return load(str(write_stub_policy(tmp_path_factory.mktemp("pol"), "web-02.toml", stub_bin)))


@pytest.fixture(scope="session")
def fleet(tmp_path_factory, stub_bin) -> Policy:
    return load(str(write_stub_policy(tmp_path_factory.mktemp("pol"), "fleet.toml", stub_bin)))


def pytest_collection_modifyitems(config, items):
    """The one place root and e2e tests are marked and skipped: everything under tests/root
    is ``root``, under tests/e2e ``e2e``; without root both are skipped."""
    here = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.path)).resolve().relative_to(here).parts
        if rel[0] in ("root", "e2e"):
            item.add_marker(getattr(pytest.mark, rel[0]))
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, mounts, chown, journald, sshd)")
    for item in items:
        if item.get_closest_marker("root") or item.get_closest_marker("e2e"):
            item.add_marker(skip)
