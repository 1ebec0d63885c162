"""Shared fixtures: the repo's policies with a search path of stub programs.

The shipped policies look for programs in /run/current-system/sw/bin (NixOS).
Tests include them unchanged and only point ``search_path`` at a directory
holding an executable stub for every allowed command, so every decision is
the one the shipped policy makes, on any machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diag_wrapper.policy import Policy, load

REPO = Path(__file__).resolve().parent.parent
POLICY_DIR = REPO / "policy"


def write_stub_policy(dest: Path, base: str, bindir: Path, extra: str = "") -> Path:
    bindir.mkdir(parents=True, exist_ok=True)
    for name in load(str(POLICY_DIR / base)).commands:
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
