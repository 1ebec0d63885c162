"""The policy loader refuses anything it does not understand, and the CLI then denies everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diag_wrapper import helptext
from diag_wrapper.cli import main
from diag_wrapper.model import PolicyError
from diag_wrapper.lint import lint_policy
from diag_wrapper.policy import load

from conftest import POLICY_DIR, write_stub_policy

GOOD = """
[settings]
search_path = ["/usr/bin"]
[[deny]]
path = "/run/secrets"
why = "secrets"
[commands.cat]
args = [{ name = "FILE", type = "file", min = 1, max = 4 }]
"""

BAD = [
    ("unknown top-level key", "[bogus]\n", "unknown key(s) bogus"),
    ("unknown settings key", "[settings]\npath = []\n", "unknown key(s) path"),
    ("unknown command key", "[commands.cat]\nsumary = 'x'\n", "unknown key(s) sumary"),
    ("unknown option key", "[commands.cat]\noptions = [{ names = ['-n'], vaule = 'int' }]\n", "unknown key(s) vaule"),
    ("relative deny entry", "[[deny]]\npath = 'run/secrets'\nwhy = 'x'\n", "deny entry"),
    ("deny entry with ..", "[[deny]]\npath = '/run/../etc'\nwhy = 'x'\n", "deny entry"),
    ("deny entry with ?", "[[deny]]\npath = '/run/secret?'\nwhy = 'x'\n", "deny entry"),
    ("deny entry without why", "[[deny]]\npath = '/run/x'\n", "missing key(s) why"),
    ("timeout not an int", "[settings]\ntimeout = '60'\n", "expected an integer"),
    ("timeout a boolean", "[settings]\ntimeout = true\n", "boolean"),
    ("timeout out of range", "[settings]\ntimeout = 0\n", "outside"),
    ("relative search path", "[settings]\nsearch_path = ['bin']\n", "absolute"),
    ("empty search path", "[settings]\nsearch_path = []\n", "at least one"),
    ("bad sandbox mode", "[settings]\nsandbox = 'maybe'\n", "sandbox"),
    ("unknown value type", "[commands.cat]\nargs = [{ name = 'F', type = 'filez' }]\n", "unknown value type"),
    ("int named without parameters", "[commands.head]\noptions = [{ names = ['-n'], value = 'int' }]\n", "needs parameters"),
    ("int without bounds", "[commands.head]\noptions = [{ names = ['-n'], value = { type = 'int' } }]\n", "min and max"),
    ("bad regex", "[types]\nx = { type = 'regex', pattern = '(' }\n", "does not compile"),
    ("type shadows builtin", "[types]\nfile = { type = 'pattern' }\n", "shadows"),
    ("command given as a path", "[commands.'/bin/cat']\n", "bare program name"),
    ("option name without dash", "[commands.cat]\noptions = [{ names = ['n'] }]\n", "not an option name"),
    ("single-dash long with clusters", "[commands.ip]\noptions = [{ names = ['-br'] }]\n", "short_clusters"),
    ("arity conflict", "[commands.s]\noptions = [{ names = ['-x'] }]\n[commands.s.subcommands.a]\noptions = [{ names = ['-x'], value = 'pattern' }]\n", "flag in one place"),
    ("min above max", "[commands.cat]\nargs = [{ name = 'F', type = 'file', min = 3, max = 2 }]\n", "greater than max"),
    ("args beside subcommands", "[commands.s]\nargs = [{ name = 'F', type = 'file' }]\n[commands.s.subcommands.a]\n", "per subcommand"),
    ("bad env name", "[commands.cat]\nenv = { 'LD-PRELOAD' = 'x' }\n", "environment variable"),
    ("recursive option with value", "[commands.ls]\noptions = [{ names = ['-R'], value = 'pattern', recursive = true }]\n", "recursive is for flags"),
    ("bad example decision", "[[examples]]\ncommand = 'ls'\ndecision = 'maybe'\n", "'allow' or 'deny'"),
    ("not TOML", "this is = = not toml\n", "not valid TOML"),
    ("deny not a list", "deny = 'x'\n", "expected a list"),
]


@pytest.mark.parametrize("name,text,message", BAD, ids=[b[0] for b in BAD])
def test_bad_policies_are_refused_with_a_clear_message(tmp_path, name, text, message):
    p = tmp_path / "policy.toml"
    p.write_text(text)
    with pytest.raises(PolicyError) as err:
        load(str(p))
    assert message in str(err.value)
    assert str(p) in str(err.value)


def test_a_good_policy_loads(tmp_path):
    p = tmp_path / "policy.toml"
    p.write_text(GOOD)
    policy = load(str(p))
    assert list(policy.commands) == ["cat"]
    assert policy.deny[0].path == "/run/secrets"
    assert policy.settings.search_path == ("/usr/bin",)


def test_missing_and_unreadable_policies(tmp_path):
    with pytest.raises(PolicyError, match="cannot read"):
        load(str(tmp_path / "absent.toml"))
    with pytest.raises(PolicyError, match="cannot read"):
        load(str(tmp_path))  # a directory
    with pytest.raises(PolicyError, match="not valid TOML"):
        (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
        load(str(tmp_path / "bin.toml"))


def test_includes_concatenate_deny_entries_and_override_settings(tmp_path):
    (tmp_path / "base.toml").write_text(GOOD)
    (tmp_path / "host.toml").write_text(
        'include = ["base.toml"]\n[settings]\ntimeout = 5\n[[deny]]\npath = "/var/lib/n8n"\nwhy = "n8n"\n'
    )
    policy = load(str(tmp_path / "host.toml"))
    assert [e.path for e in policy.deny] == ["/run/secrets", "/var/lib/n8n"]
    assert policy.settings.timeout == 5 and policy.settings.search_path == ("/usr/bin",)
    assert "cat" in policy.commands


def test_include_cycles_and_missing_includes(tmp_path):
    (tmp_path / "a.toml").write_text('include = ["b.toml"]\n')
    (tmp_path / "b.toml").write_text('include = ["a.toml"]\n')
    with pytest.raises(PolicyError, match="include cycle"):
        load(str(tmp_path / "a.toml"))
    (tmp_path / "c.toml").write_text('include = ["nope.toml"]\n')
    with pytest.raises(PolicyError, match="cannot read"):
        load(str(tmp_path / "c.toml"))


def test_shipped_policies_load_and_web02_extends_fleet():
    fleet = load(str(POLICY_DIR / "fleet.toml"))
    web02 = load(str(POLICY_DIR / "web-02.toml"))
    assert set(fleet.commands) == set(web02.commands)
    fleet_paths = [e.path for e in fleet.deny]
    web_paths = [e.path for e in web02.deny]
    assert web_paths[: len(fleet_paths)] == fleet_paths
    for required in [
        "/etc/ssh/ssh_host_*_key", "/persist/etc/ssh/ssh_host_*_key", "/run/secrets", "/run/secrets.d",
        "/run/agenix", "/root", "/etc/shadow", "/etc/gshadow", "/home/*/.ssh", "/proc/*/environ",
        "/proc/*/root", "/proc/*/cwd", "/proc/*/fd", "/dev/fd",
    ]:
        assert required in fleet_paths, required
    for service in ["matrix-synapse", "mautrix-*", "matrix-authentication-service", "n8n", "zammad"]:
        assert f"/var/lib/{service}" in web_paths and f"/persist/var/lib/{service}" in web_paths
    for name in ["systemctl", "journalctl", "cat", "head", "tail", "ls", "stat", "grep", "wc", "df", "du", "free",
                 "uptime", "ps", "ss", "ip", "findmnt", "lsblk", "uname", "hostname", "id", "date",
                 "networkctl", "resolvectl", "timedatectl", "hostnamectl"]:
        assert name in fleet.commands, name
    for banned in ["find", "curl", "podman", "docker", "bash", "sh", "python3", "less", "more", "vi", "env", "sudo"]:
        assert banned not in fleet.commands
    assert "/run/wrappers/bin" not in fleet.settings.search_path


@pytest.mark.parametrize("base", ["fleet.toml", "web-02.toml"])
def test_every_shipped_example_holds_and_lint_is_clean(tmp_path, base):
    policy = load(str(write_stub_policy(tmp_path, base, tmp_path / "bin")))
    assert len(policy.examples) >= 20
    assert lint_policy(policy) == []


def test_lint_reports_a_wrong_example_and_a_missing_persist_twin(tmp_path):
    p = write_stub_policy(
        tmp_path, "fleet.toml", tmp_path / "bin",
        extra='[[examples]]\ncommand = "cat /etc/shadow"\ndecision = "allow"\n'
              '[[deny]]\npath = "/var/lib/forgotten"\nwhy = "test"\n',
    )
    problems = lint_policy(load(str(p)))
    assert any("cat /etc/shadow" in x and "expected allow" in x for x in problems)
    assert any("/persist/var/lib/forgotten" in x for x in problems)
    assert main(["lint", "--policy", str(p)]) == 1


def test_help_is_generated_from_the_policy(web02):
    text = helptext.render(web02)
    for name in web02.commands:
        assert f"\n{name} " in "\n" + text or text.startswith(name)
    for entry in web02.deny:
        assert entry.path in text and entry.why in text
    assert "--unit" in text and "systemctl status" in text
    one = helptext.render(web02, "journalctl")
    assert "--since" in one and "systemctl" not in one
    assert "not an allowed command" in helptext.render(web02, "vim")


# ----------------------------------------------------------------------------- check CLI


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


# --------------------------------------------------------------------------- registry and ownership


def _readme_codes() -> set[str]:
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = text.split("### Deny codes", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            codes.update(re.findall(r"`([a-z]+\.[a-z-]+)`", line.split("|")[1]))
    return codes


def test_the_deny_code_registry_is_the_readme_table_both_ways():
    from diag_wrapper.model import CODES

    assert _readme_codes() == set(CODES)


def test_every_code_the_source_names_is_registered():
    import re

    from diag_wrapper.model import CODES

    src = Path(__file__).resolve().parents[1] / "diag_wrapper"
    named = set()
    for f in src.glob("*.py"):
        named.update(re.findall(r'"((?:input|parse|match|path|policy|audit|exec|setup|sandbox|limit|internal)'
                                r'\.[a-z-]+)"', f.read_text()))
    assert named and named <= set(CODES), named - set(CODES)


def test_an_unregistered_code_is_a_bug_not_a_new_kind_of_deny():
    from diag_wrapper.model import denied as deny
    from diag_wrapper.model import Deny

    with pytest.raises(ValueError):
        Deny("path.made-up", "x")
    assert deny(b"x", "path.made-up", "x").code == "internal.error"


@pytest.mark.parametrize("mode, owner, ok", [(0o644, 0, True), (0o444, 0, True), (0o664, 0, False),
                                             (0o646, 0, False), (0o644, 65534, False)])
def test_forcecommand_loads_only_root_owned_policies(tmp_path, mode, owner, ok):
    import os

    from diag_wrapper.model import InsecurePolicy
    from diag_wrapper.policy import load

    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    base = tmp_path / "base.toml"
    base.write_text("[commands.uptime]\n")
    top = tmp_path / "top.toml"
    top.write_text('include = ["base.toml"]\n')
    for f in (base, top):
        f.chmod(0o644)
    base.chmod(mode)  # the include, not the file named on the command line
    os.chown(base, owner, 0)
    load(str(top))  # check/lint/help: anyone's policy, nothing runs
    if ok:
        load(str(top), root_only=True)
    else:
        with pytest.raises(InsecurePolicy) as e:
            load(str(top), root_only=True)
        assert "base.toml" in str(e.value) and "chmod go-w" in str(e.value)
