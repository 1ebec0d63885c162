"""plan(): what a decision carries besides allow or deny (argv, environment, limits, paths),
and that it never raises."""

from __future__ import annotations

import pytest

from diag_wrapper.model import ALLOW, DENY, HELP
from diag_wrapper.plan import plan


def test_invalid_utf8_is_denied(web02):
    d = plan(b"cat /etc/\xff", web02)
    assert (d.decision, d.code) == (DENY, "input.encoding")


def test_help_is_its_own_decision(web02):
    assert plan(b"help", web02).decision == HELP
    assert plan(b"help journalctl", web02).decision == HELP
    assert plan(b"help a b", web02).code == "match.unknown-command"


@pytest.mark.parametrize(
    "command,argv",
    [
        ("systemctl status nginx", ("systemctl", "--no-pager", "status", "nginx")),
        ("journalctl -u n8n -n 100", ("journalctl", "--no-pager", "-u", "n8n", "-n", "100")),
        ("cat -- /etc/hostname", ("cat", "--", "/etc/hostname")),
        ("ip -br addr", ("ip", "-br", "addr")),
        ("grep 'a b' /etc/hosts", ("grep", "a b", "/etc/hosts")),
    ],
)
def test_exec_argv_has_forced_arguments_after_the_name(web02, command, argv):
    assert plan(command.encode(), web02).exec_argv == argv


def test_environment_is_fixed_and_per_command(web02):
    d = plan(b"journalctl -n 1", web02)
    assert d.env == {
        "PATH": ":".join(web02.settings.search_path),
        "LANG": "C.UTF-8",
        "SYSTEMD_PAGER": "cat",
        "PAGER": "cat",
        "SYSTEMD_COLORS": "0",
        "LESSSECURE": "1",
        "SYSTEMD_PAGERSECURE": "1",
    }
    assert "SYSTEMD_PAGERSECURE" not in plan(b"cat /etc/hostname", web02).env


def test_time_limits(web02):
    assert plan(b"journalctl -f", web02).timeout == 60
    assert plan(b"systemctl status", web02).timeout == 30
    assert plan(b"uptime", web02).timeout == web02.settings.timeout


def test_paths_are_reported_with_their_resolved_form(web02):
    d = plan(b"grep -r x /etc/nginx/../nginx", web02)
    assert [(p.value, p.resolved, p.kind) for p in d.paths] == [("/etc/nginx/../nginx", "/etc/nginx", "tree")]
    d = plan(b"du", web02)
    assert [(p.value, p.kind) for p in d.paths] == [(".", "tree")]


def test_recursion_over_a_denied_working_directory_is_denied(web02, monkeypatch, tmp_path):
    # `du` with no operand walks the working directory: it is checked like a named tree.
    monkeypatch.chdir("/etc")
    assert plan(b"du", web02).code == "path.tree-contains-denied"
    assert plan(b"ls -R", web02).code == "path.tree-contains-denied"
    assert plan(b"ls", web02).decision == ALLOW
    monkeypatch.chdir(tmp_path)
    assert plan(b"du", web02).decision == ALLOW


def test_relative_paths_resolve_from_the_working_directory(web02, monkeypatch):
    monkeypatch.chdir("/etc")
    assert plan(b"cat shadow", web02).code == "path.denied"
    assert plan(b"cat ./ssh/../shadow", web02).code == "path.denied"
    assert plan(b"cat hostname", web02).decision == ALLOW


def test_symlinks_into_denied_places(web02, tmp_path):
    (tmp_path / "to-shadow").symlink_to("/etc/shadow")
    (tmp_path / "to-secrets").symlink_to("/run/secrets")
    (tmp_path / "to-n8n").symlink_to("/var/lib/n8n/.n8n/config")
    (tmp_path / "chain").symlink_to(tmp_path / "to-shadow")
    (tmp_path / "to-etc").symlink_to("/etc")
    for value in ["to-shadow", "to-secrets/x", "to-n8n", "chain", "to-etc/shadow", "to-etc/ssh/ssh_host_ed25519_key"]:
        d = plan(f"cat {tmp_path}/{value}".encode(), web02)
        assert d.code == "path.denied", value
    assert plan(f"grep -r x {tmp_path}/to-etc".encode(), web02).code == "path.tree-contains-denied"
    assert plan(f"cat {tmp_path}/to-etc/hostname".encode(), web02).decision == ALLOW


def test_unknown_command_lists_what_is_allowed(web02):
    d = plan(b"vim /etc/hosts", web02)
    assert "journalctl" in d.reason and "help" in d.reason


def test_decide_never_raises_on_a_broken_policy_object(web02):
    class Broken:
        settings = web02.settings
        commands = None  # a bug elsewhere must still end in a deny

    d = plan(b"cat /etc/hostname", Broken())  # type: ignore[arg-type]
    assert (d.decision, d.code) == (DENY, "internal.error")
