"""The command line: ``check`` (plain and --json), its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import POLICY_DIR, write_stub_policy


def _check(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-I", "-m", "diag_wrapper", "check", *args], capture_output=True, text=True, timeout=60
    )
    return proc.returncode, proc.stdout, proc.stderr


def test_check_json_answers_as_documented(tmp_path):
    p = write_stub_policy(tmp_path, "web-02.toml", tmp_path / "bin")
    rc, out, _ = _check("--policy", str(p), "--json", "--", "journalctl -u n8n -n 100")
    assert rc == 0
    got = json.loads(out)
    assert got["decision"] == "allow" and got["argv"] == ["journalctl", "-u", "n8n", "-n", "100"]
    assert got["executable"] == str(tmp_path / "bin" / "journalctl") and got["rule"] == "journalctl"
    assert set(got) >= {"decision", "argv", "executable", "reason", "rule"}
    rc, out, _ = _check("--policy", str(p), "--json", "--", "cat /var/lib/n8n/x")
    got = json.loads(out)
    assert rc == 1 and got["decision"] == "deny" and got["rule"] == "deny:/var/lib/n8n"
    assert got["code"] == "path.denied" and "n8n" in got["reason"] and got["executable"] is None


def test_check_exit_codes_for_usage_and_policy_errors(tmp_path):
    assert _check("--policy", str(POLICY_DIR / "web-02.toml"))[0] == 2  # no command
    bad = tmp_path / "bad.toml"
    bad.write_text("[bogus]\n")
    rc, _, err = _check("--policy", str(bad), "--", "uptime")
    assert rc == 2 and "unknown key" in err
    assert _check("--frobnicate", "--", "uptime")[0] == 2


def test_check_on_the_shipped_nixos_policy_denies_when_the_program_is_absent():
    # check gives exactly this host's decision: here, NixOS' search path does not exist.
    if os.path.isdir("/run/current-system/sw/bin"):
        pytest.skip("this is a NixOS host")
    rc, out, _ = _check("--policy", str(POLICY_DIR / "web-02.toml"), "--json", "--", "uptime")
    assert rc == 1 and json.loads(out)["code"] == "exec.not-found"




def test_check_prints_words_quoted_so_a_pipe_word_is_not_a_pipe(tmp_path):
    p = write_stub_policy(tmp_path, "web-02.toml", tmp_path / "bin")
    rc, out, _ = _check("--policy", str(p), "--", "df -h '|' grep", "df -h | grep x")
    assert rc == 0
    out = out.splitlines()
    assert out[0].startswith("allow: df -h '|' grep [rule df]")
    assert out[1].startswith("allow: df -h | grep x [rule df]")
