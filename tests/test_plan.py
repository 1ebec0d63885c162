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


# --------------------------------------------------------------------------- the host view: wall and stable names

import os  # noqa: E402
import stat as _stat  # noqa: E402
import sys  # noqa: E402

from diag_wrapper.deny import DenyList, RealHost  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from conftest import RootAbove  # noqa: E402


class Host(RootAbove):
    """This host, but ``loose`` looks owned by another user and user namespaces may be off."""

    def __init__(self, loose: str, userns: str | None = None) -> None:
        super().__init__(loose)
        self.loose, self._userns = loose, userns

    def lstat(self, p: str) -> os.stat_result:
        st = super().lstat(p)
        if p == self.loose:
            fields = list(st)
            fields[_stat.ST_UID] = 65534
            return os.stat_result(fields)
        return st

    def userns(self) -> str | None:
        return self._userns


def _mode(policy, mode):
    return policy._replace(settings=policy.settings._replace(sandbox=mode))


@pytest.fixture
def loose(tmp_path):
    d = tmp_path / "loose"
    d.mkdir()
    (d / "f").write_text("x")
    return d


@pytest.mark.parametrize("mode,userns,ls,cat", [
    ("off", None, "path.unstable", "allow"),
    ("auto", None, "allow", "allow"),  # the wall will stand between the check and the lookup
    ("auto", "user.max_user_namespaces is 0", "path.unstable", "allow"),
    ("required", None, "allow", "allow"),
    ("required", "user.max_user_namespaces is 0", "sandbox.unavailable", "sandbox.unavailable"),
])
def test_the_plan_decides_the_stable_name_rule_for_the_wall_it_will_have(web02, loose, mode, userns, ls, cat):
    host = Host(str(loose), userns)
    got = plan(f"ls -l {loose}/f".encode(), _mode(web02, mode), host)
    assert got.code == ls, got.reason
    got = plan(f"cat {loose}/f".encode(), _mode(web02, mode), host)  # a descriptor: no name to swap
    assert got.code == cat, got.reason


def test_an_allow_with_the_wall_planned_carries_the_verdict_for_when_it_fails(web02, loose):
    p = plan(f"ls -l {loose}/f".encode(), _mode(web02, "auto"), Host(str(loose)))
    assert p.allowed and p.layers[-1] == "sandbox" and "could be swapped" in p.unstable
    p = plan(f"ls -l {loose.parent}".encode(), _mode(web02, "auto"), Host(str(loose)))
    assert p.allowed and p.unstable is None


def test_without_the_wall_the_layers_say_so(web02, loose):
    p = plan(f"ls -l {loose.parent}".encode(), _mode(web02, "auto"), Host(str(loose), "kernel.x is 0"))
    assert p.layers[-2:] == ("sandbox-unavailable", "stable-names") and "kernel.x is 0" in p.reason
    assert p.wall == ()
    p = plan(b"uptime", _mode(web02, "off"), Host(str(loose)))
    assert p.layers == ("allowlist",) and p.wall == ()


def test_the_wall_covers_what_the_deny_list_compiled_for_this_command(web02, tmp_path):
    host = RealHost()
    dl = DenyList(web02.deny, host, web02.settings.kernel_readable)
    for command in ("uptime", "journalctl -n 1", "cat /etc/hostname"):
        p = plan(command.encode(), web02, host)
        assert "sandbox" in p.layers and p.wall == dl.covers(command.split()[0])


@pytest.mark.parametrize("command,passed", [
    ("cat /etc/hostname /etc/hosts", (1, 2)),
    ("head -n 3 /etc/hostname", (3,)),
    ("grep hostname /etc/hostname", (2,)),
    ("grep -r x /etc/nginx", ()),  # a tree: the name is handed over
    ("ls /etc/hostname", ()),  # not a reader of content
])
def test_the_fd_plan_names_exec_argv_indices(web02, command, passed):
    p = plan(command.encode(), web02)
    assert p.pass_fds == passed and ("fd-passing" in p.layers) == bool(passed)
    assert all(p.exec_argv[i] == c.value for c in p.paths for i in [c.index] if i in passed)
