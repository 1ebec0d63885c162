"""The home-manager stand-in (nix/tests/hm-ssh.nix) against the real programs.ssh.

HOME_MANAGER names one or more home-manager checkouts (':'-separated; release-25.11,
release-26.05 or later). For each, nix/client.nix is evaluated with the real module for
every case in tests/nix/client-cases.nix, and the ~/.ssh/config text, the refusals and
whether any warning is raised must be the stand-in's, so the harness's verdicts hold for
the real home-manager too. Skipped where HOME_MANAGER is unset (CI has no checkout; a
NixOS machine can point it at `nix eval --raw --impure --expr '<home-manager>'` or a
clone of nix-community/home-manager).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from nix_harness import NIX_INSTANTIATE, REPO, harness, nixpkgs_lib  # noqa: F401  (harness: the fixture)

CHECKOUTS = [p for p in os.environ.get("HOME_MANAGER", "").split(":") if p]


@pytest.mark.skipif(not CHECKOUTS, reason="HOME_MANAGER is not set (a home-manager checkout)")
@pytest.mark.parametrize("checkout", CHECKOUTS)
def test_the_stand_in_renders_and_refuses_as_home_manager_does(harness: dict, checkout: str) -> None:
    assert Path(checkout, "modules/programs/ssh.nix").is_file(), checkout
    r = subprocess.run(
        [NIX_INSTANTIATE, "--eval", "--strict", "--json", str(REPO / "tests/nix/hm-upstream.nix"),
         "--argstr", "nixpkgsLib", nixpkgs_lib(), "--argstr", "homeManager", checkout],
        capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr
    real = json.loads(r.stdout)
    stand_in = harness["scenarios"]["clientResults"][real["release"]]
    assert set(real["cases"]) == set(stand_in)
    for name, got in real["cases"].items():
        want = stand_in[name]
        assert got["text"] == want["text"], name
        assert got["failed"] == want["failed"], name
        assert bool(got["warnings"]) == bool(want["warnings"]), (name, got["warnings"], want["warnings"])
