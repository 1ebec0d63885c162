"""The Nix harness (tests/nix/harness.nix) as a fixture, and what the tests under tests/nix share; imported by each module (a conftest here would shadow tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "nix" / "harness.nix"
NIX_INSTANTIATE = shutil.which("nix-instantiate")


def nixpkgs_lib() -> str:
    """NIXPKGS_LIB (a checkout of nix-community/nixpkgs.lib), or skip."""
    lib = os.environ.get("NIXPKGS_LIB")
    if not lib:
        pytest.skip("NIXPKGS_LIB is not set (point it at a checkout of nix-community/nixpkgs.lib)")
    if NIX_INSTANTIATE is None:
        pytest.skip("needs nix-instantiate")
    return lib


@pytest.fixture(scope="module")
def harness() -> dict:
    r = subprocess.run(
        [NIX_INSTANTIATE, "--eval", "--strict", "--json", str(HARNESS), "--argstr", "nixpkgsLib", nixpkgs_lib()],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
