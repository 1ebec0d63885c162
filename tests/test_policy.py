"""The policy loader refuses anything it does not understand, and the CLI then denies everything."""

from __future__ import annotations


import json
import os
from types import MappingProxyType

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
    ("output cap too small", "[settings]\nmax_output_bytes = 10\n", "outside"),
    ("output cap not an int", "[settings]\nmax_output_bytes = '8M'\n", "expected an integer"),
    ("command output cap too big", "[commands.cat]\nmax_output_bytes = 2147483648\n", "outside"),
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
    for banned in ["find", "wget", "nc", "podman", "docker", "bash", "sh", "python3", "less", "more", "vi", "env", "sudo"]:
        assert banned not in fleet.commands
    assert not fleet.services  # curl is in the fleet policy; only a host policy's probes make it ask anything
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


# --------------------------------------------------------------------------- JSON and render


@pytest.mark.parametrize("name", ["fleet.toml", "web-02.toml", "demo.toml"])
def test_render_is_one_json_document_that_loads_to_the_same_policy(tmp_path, name):
    from diag_wrapper.policy import render

    src = POLICY_DIR / name
    out = tmp_path / "policy.json"
    out.write_text(render(str(src)))
    assert "include" not in json.loads(out.read_text())
    assert load(str(out))._replace(sources=()) == load(str(src))._replace(sources=())


def test_render_refuses_a_policy_that_would_load_differently(tmp_path):
    from diag_wrapper.policy import render

    # b.toml redefines a type after a.toml's use of it: merged, the new definition would
    # take the old one's place, before the type it refers to, and fail to load
    (tmp_path / "a.toml").write_text('[types]\nfields = { type = "list", values = ["A"] }\n'
                                     'm = { type = "field_match", fields = "fields" }\n')
    (tmp_path / "b.toml").write_text('include = ["a.toml"]\n[types]\nf2 = { type = "list", values = ["B"] }\n'
                                     'fields = { type = "list", values = ["C"] }\n'
                                     'm = { type = "field_match", fields = "f2" }\n')
    assert load(str(tmp_path / "b.toml")).settings is not None  # as files, it loads
    with pytest.raises(PolicyError) as info:
        render(str(tmp_path / "b.toml"))
    assert "render refused" in str(info.value)


@pytest.mark.parametrize("text,problem", [
    ('{"settings": {"timeout": 5}, "settings": {"timeout": 6}}', "duplicate key"),
    ('{"settings": {"timeout": NaN}}', "NaN is not a policy value"),
    ('{"settings": {"timeout": Infinity}}', "Infinity is not a policy value"),
    ('[1, 2]', "must be an object"),
    ('{"settings": ', "not valid JSON"),
    ('{"settings": {"timeout": 5.0}}', "expected an integer"),
    ('{"settings": {"timeout": true}}', "got a boolean"),
    ('{"bogus": {}}', "unknown key"),
])
def test_a_json_policy_is_as_strict_as_toml(tmp_path, text, problem):
    p = tmp_path / "p.json"
    p.write_text(text)
    with pytest.raises(PolicyError) as info:
        load(str(p))
    assert problem in str(info.value)


def test_a_json_policy_is_checked_for_its_owner_like_toml(tmp_path):
    p = tmp_path / "p.json"
    p.write_text("{}")
    p.chmod(0o666)
    with pytest.raises(PolicyError) as info:
        load(str(p), root_only=True)
    assert "writable by group or others" in str(info.value) or "owned by uid" in str(info.value)


def test_render_on_the_command_line(tmp_path, capsys):
    from diag_wrapper.cli import main

    assert main(["render", "--policy", str(POLICY_DIR / "web-02.toml")]) == 0
    assert json.loads(capsys.readouterr().out)["deny"]
    assert main(["render", "--policy", str(tmp_path / "missing.toml")]) == 2
    assert main(["render", "--bogus"]) == 2


# --------------------------------------------------------------------------- sealed JSON


def _render_to(tmp_path, base="web-02.toml"):
    from diag_wrapper.policy import render

    path = tmp_path / "policy.json"
    path.write_text(render(str(POLICY_DIR / base)))
    os.chmod(path, 0o644)
    return path


def test_a_rendered_policy_is_sealed_and_loads_lazily_in_forcecommand_mode_only(tmp_path):
    from diag_wrapper.policy import sealed

    path = _render_to(tmp_path)
    raw = path.read_bytes()
    assert raw.startswith(b'{"sealed": "') and sealed(raw)
    if os.geteuid() != 0:
        pytest.skip("root_only needs a root-owned file")
    lazy = load(str(path), root_only=True)
    full = load(str(path))
    assert type(lazy.commands).__name__ == "_Lazy" and isinstance(full.commands, MappingProxyType)
    assert lazy == full  # every command and filter built on demand is the one a full load builds


@pytest.mark.parametrize("tamper", [
    lambda raw: raw.replace(b'"timeout": 60', b'"timeout": 61', 1),
    lambda raw: raw[:13] + (b"0" if raw[13:14] != b"0" else b"1") + raw[14:],
    lambda raw: raw.replace(b'{"sealed": "', b'{"sealed":  "', 1),
])
def test_a_changed_sealed_file_is_validated_in_full(tmp_path, tamper):
    from diag_wrapper.policy import sealed

    path = _render_to(tmp_path)
    changed = tamper(path.read_bytes())
    assert not sealed(changed)
    path.write_bytes(changed)
    if os.geteuid() == 0:
        assert isinstance(load(str(path), root_only=True).commands, MappingProxyType)


def test_a_seal_of_another_validator_is_not_trusted(tmp_path, monkeypatch):
    from diag_wrapper import policy as P

    path = _render_to(tmp_path)
    monkeypatch.setattr(P, "_validator", lambda: b"another version of the checks")
    assert not P.sealed(path.read_bytes())


def _sealed_but_broken(tmp_path):
    """web-02's policy, rendered, with one command that fails the checks, sealed again."""
    import json

    from diag_wrapper import policy as P

    data = json.loads(_render_to(tmp_path).read_text())
    del data["sealed"]
    data["commands"]["uptime"]["options"] = [{"names": ["-p"], "bogus": 1}]
    path = tmp_path / "bad.json"
    path.write_text(P._seal(json.dumps(data, indent=1) + "\n"))
    os.chmod(path, 0o644)
    return path


def test_a_sealed_but_invalid_command_is_denied_when_used(tmp_path):
    """A seal vouches for what this validator passed; if it ever does not hold, the command
    that fails the checks on first use is refused with policy.error, never run."""
    from diag_wrapper import policy as P
    from diag_wrapper.plan import plan

    path = _sealed_but_broken(tmp_path)
    assert P.sealed(path.read_bytes())
    if os.geteuid() != 0:
        pytest.skip("root_only needs a root-owned file")
    pol = load(str(path), root_only=True)
    d = plan(b"uptime", pol)
    assert (d.decision, d.code) == ("deny", "policy.error") and "bogus" in d.reason
    with pytest.raises(PolicyError):
        load(str(path))  # check, lint and render validate in full


def test_toml_cannot_claim_to_be_sealed(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text("sealed = true\n")
    with pytest.raises(PolicyError, match="render"):
        load(str(path))


def test_help_and_denials_of_a_sealed_command_that_fails_are_still_answered(tmp_path, capsys, monkeypatch):
    """plan refuses such a command with policy.error; the denial line and help must not
    crash on building it (found by review)."""
    from diag_wrapper import run
    from diag_wrapper.model import HELP, Plan
    from diag_wrapper.plan import plan

    path = _sealed_but_broken(tmp_path)
    if os.geteuid() != 0:
        pytest.skip("root_only needs a root-owned file")
    pol = load(str(path), root_only=True)
    monkeypatch.setattr(run.audit, "record", lambda *a, **k: None)
    assert run._finish(plan(b"uptime -x", pol), pol, {}) == run.EX_NOPERM
    assert run._finish(Plan(HELP, "help", "help", b"help uptime", argv=("help", "uptime")), pol, {}) == run.EX_NOPERM
    err = capsys.readouterr().err
    assert "policy.error" in err and "Traceback" not in err
