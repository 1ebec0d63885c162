"""Deny list: table tests against real files, directories and symlinks under tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from diag_wrapper.model import PathCheck
from diag_wrapper.deny import DenyList, RealHost
from diag_wrapper.policy import DenyEntry, validate_entry
from diag_wrapper.model import Deny

PROC_ENTRIES = [
    "/proc/*/environ",
    "/proc/*/task/*/environ",
    "/proc/*/root",
    "/proc/*/cwd",
    "/proc/*/fd",
    "/dev/fd",
]


def _file(p: Path, text: str = "x") -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def _link(p: Path, target: str | Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(str(target), p)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A small host: impermanence symlinks, DynamicUser state, secrets, hostile links."""
    t = tmp_path
    _file(t / "run/secrets/db", "SECRET")
    _file(t / "run/secretsX/ok")
    _file(t / "persist/etc/ssh/ssh_host_ed25519_key", "PRIVATE")
    _file(t / "persist/etc/ssh/ssh_host_ed25519_key.pub")
    _file(t / "persist/etc/ssh/ssh_host_rsa_key", "PRIVATE")
    _file(t / "persist/etc/ssh/sshd_config")
    _link(t / "etc/ssh", t / "persist/etc/ssh")  # impermanence: /etc/ssh -> /persist/etc/ssh
    _file(t / "persist/vault/token", "SECRET")
    _link(t / "srv/vault", t / "persist/vault")  # a denied dir that is itself a symlink
    _file(t / "var/lib/mautrix-whatsapp/db", "SECRET")
    _file(t / "var/lib/private/mautrix-signal/db", "SECRET")
    _link(t / "var/lib/mautrix-signal", "private/mautrix-signal")  # DynamicUser=
    _file(t / "var/lib/private/n8n/db", "SECRET")
    _link(t / "var/lib/n8n", "private/n8n")
    _file(t / "var/lib/private/other/db")
    _file(t / "var/lib/nginx/cache")
    _file(t / "var/log/nginx/error.log")
    _file(t / "home/alice/.ssh/id_ed25519", "PRIVATE")
    _file(t / "home/alice/notes")
    _link(t / "links/secret_file", t / "run/secrets/db")
    _link(t / "links/secret_dir", "../run/secrets")
    _link(t / "links/dangling", t / "nowhere")
    _link(t / "links/dangling_secret", t / "run/secrets/missing")
    _link(t / "links/loop", "loop")
    _link(t / "links/loop_a", "loop_b")
    _link(t / "links/loop_b", "loop_a")
    _link(t / "links/proc_root", "/proc/self/root")
    _link(t / "links/log", "../var/log")
    return t


def _entries(t: Path, proc: bool = True) -> list[DenyEntry]:
    paths = [
        f"{t}/run/secrets",
        f"{t}/etc/ssh/ssh_host_*_key",
        f"{t}/srv/vault",
        f"{t}/var/lib/mautrix-*",
        f"{t}/var/lib/n8n",
        f"{t}/home/*/.ssh",
    ]
    if proc:
        paths += PROC_ENTRIES
    return [DenyEntry(p, f"why {i}") for i, p in enumerate(paths)]


def _decide(dl: DenyList, value: str, kind: str) -> str:
    try:
        result = dl.check(value, kind)
    except Deny as d:
        return d.code
    assert isinstance(result, PathCheck)
    return "allow"


ALLOW = "allow"
DENIED = "path.denied"
TREE_DENIED = "path.tree-contains-denied"
BAD = "match.bad-value"

# (value with {t} for the tmp root, kind, expected outcome)
TABLE = [
    # exact, beneath, sibling sharing a prefix
    ("{t}/run/secrets", "file", DENIED),
    ("{t}/run/secrets/db", "file", DENIED),
    ("{t}/run/secrets/missing/deeper", "file", DENIED),
    ("{t}/run/secretsX/ok", "file", ALLOW),
    ("{t}/run/secretsX", "tree", ALLOW),
    ("{t}/run/secret", "file", ALLOW),
    # spelling tricks
    ("{t}/var/log/../../run/secrets/db", "file", DENIED),
    ("{t}//run//secrets//db", "file", DENIED),
    ("{t}/./run/./secrets/./db", "file", DENIED),
    ("{t}/run/secrets/", "file", DENIED),
    ("{t}/run/secrets/db/", "file", DENIED),
    ("{t}/run/secrets/..", "file", DENIED),  # looks the denied dir up on the way
    ("{t}/run/secretsX/../secretsX/ok", "file", ALLOW),
    ("{t}/var/log/nginx/error.log", "file", ALLOW),
    ("{t}/var/log/nginx/../nginx/error.log", "file", ALLOW),
    # symlinks planted by anyone
    ("{t}/links/secret_file", "file", DENIED),
    ("{t}/links/secret_dir", "file", DENIED),
    ("{t}/links/secret_dir/db", "file", DENIED),
    ("{t}/links/secret_dir/../secretsX/ok", "file", DENIED),  # traverses run/secrets
    ("{t}/links/log/nginx/error.log", "file", ALLOW),
    ("{t}/links/log", "tree", ALLOW),
    # a denied dir that is itself a symlink: both names
    ("{t}/srv/vault/token", "file", DENIED),
    ("{t}/persist/vault/token", "file", DENIED),
    ("{t}/persist/vault", "file", DENIED),
    # glob entries, and their aliases via the symlinked prefix
    ("{t}/etc/ssh/ssh_host_ed25519_key", "file", DENIED),
    ("{t}/etc/ssh/ssh_host_rsa_key", "file", DENIED),
    ("{t}/etc/ssh/ssh_host_ed25519_key.pub", "file", ALLOW),
    ("{t}/etc/ssh/sshd_config", "file", ALLOW),
    ("{t}/persist/etc/ssh/ssh_host_ed25519_key", "file", DENIED),
    ("{t}/persist/etc/ssh/ssh_host_ed25519_key.pub", "file", ALLOW),
    ("{t}/etc/ssh/ssh_host_new_key", "file", DENIED),  # not there yet: still covered
    ("{t}/persist/etc/ssh/ssh_host_new_key", "file", DENIED),
    ("{t}/var/lib/mautrix-whatsapp/db", "file", DENIED),
    ("{t}/var/lib/mautrix-", "file", DENIED),  # '*' matches the empty string
    ("{t}/var/lib/mautrix-signal/db", "file", DENIED),
    ("{t}/var/lib/private/mautrix-signal/db", "file", DENIED),  # DynamicUser alias
    ("{t}/var/lib/private/n8n/db", "file", DENIED),  # literal entry's alias
    ("{t}/var/lib/n8n", "file", DENIED),
    ("{t}/var/lib/private/other/db", "file", ALLOW),
    ("{t}/var/lib/mautrix/db", "file", ALLOW),
    ("{t}/var/lib/nginx/cache", "file", ALLOW),
    ("{t}/home/alice/.ssh/id_ed25519", "file", DENIED),
    ("{t}/home/.hidden/.ssh/x", "file", DENIED),  # '*' matches dot-names too
    ("{t}/home/alice/notes", "file", ALLOW),
    # dangling symlinks and loops
    ("{t}/links/dangling", "file", ALLOW),
    ("{t}/links/dangling_secret", "file", DENIED),
    ("{t}/links/loop", "file", BAD),
    ("{t}/links/loop/x", "file", BAD),
    ("{t}/links/loop_a/../x", "tree", BAD),
    # trees that contain an entry or alias
    ("{t}", "tree", TREE_DENIED),
    ("{t}/run", "tree", TREE_DENIED),
    ("{t}/var/lib", "tree", TREE_DENIED),  # parent of the glob entry mautrix-*
    ("{t}/var/lib/private", "tree", TREE_DENIED),  # holds aliases
    ("{t}/var", "tree", TREE_DENIED),
    ("{t}/home", "tree", TREE_DENIED),
    ("{t}/home/alice", "tree", TREE_DENIED),
    ("{t}/persist", "tree", TREE_DENIED),
    ("{t}/etc", "tree", TREE_DENIED),
    ("{t}/etc/ssh", "tree", TREE_DENIED),
    ("{t}/var/log", "tree", ALLOW),
    ("{t}/var/lib/nginx", "tree", ALLOW),
    ("{t}/var/lib/private/other", "tree", ALLOW),
    ("{t}/home/alice/notes", "tree", ALLOW),
    ("/", "tree", TREE_DENIED),
    ("/proc", "tree", TREE_DENIED),
    ("/proc/1", "tree", TREE_DENIED),
    ("/proc/self", "tree", TREE_DENIED),
    ("/dev", "tree", TREE_DENIED),
    # /proc and /dev/fd
    ("/proc/self/environ", "file", DENIED),
    ("/proc/1/environ", "file", DENIED),
    ("/proc/{pid}/environ", "file", DENIED),
    ("/proc/thread-self/environ", "file", DENIED),
    ("/proc/self/task/{pid}/environ", "file", DENIED),
    ("/proc/self/root", "file", DENIED),
    ("/proc/self/root/etc/hostname", "file", DENIED),  # traverses the magic link
    ("/proc/1/root/etc/hostname", "file", DENIED),
    ("/proc/self/root{t}/run/secrets/db", "file", DENIED),
    ("/proc/self/cwd/x", "file", DENIED),
    ("/proc/self/fd/0", "file", DENIED),
    ("/proc/self/fd", "tree", DENIED),
    ("/dev/fd/0", "file", DENIED),
    ("/dev/fd", "file", DENIED),
    ("/dev/stdin", "file", DENIED),  # -> /proc/self/fd/0
    ("{t}/links/proc_root/etc/hostname", "file", DENIED),
    ("/proc/self/status", "file", ALLOW),
    ("/proc/meminfo", "file", ALLOW),
    ("/proc/self/environX", "file", ALLOW),
    # not a path
    ("", "file", BAD),
    ("-", "file", BAD),
    ("-", "tree", BAD),
    ("a\0b", "file", BAD),
]


@pytest.mark.parametrize("value,kind,expected", TABLE, ids=[f"{k}:{v}" for v, k, _ in TABLE])
def test_table(host: Path, value: str, kind: str, expected: str) -> None:
    dl = DenyList(_entries(host), RealHost(cwd=str(host)))
    value = value.format(t=host, pid=os.getpid())
    assert _decide(dl, value, kind) == expected


# Relative values resolve from the working directory (given to RealHost).
RELATIVE = [
    ("run", "secrets/db", "file", DENIED),
    ("run", "./secrets", "file", DENIED),
    ("run", "secretsX/ok", "file", ALLOW),
    ("run", "../run/secrets/db", "file", DENIED),
    ("run/secrets", "db", "file", DENIED),
    ("run/secrets", ".", "tree", DENIED),
    ("run/secrets", "..", "file", DENIED),  # cwd itself is inside the entry
    ("var/log", "nginx/error.log", "file", ALLOW),
    ("var/log", "../../run/secrets/db", "file", DENIED),
    ("var/log", "../lib", "tree", TREE_DENIED),
    ("var/log", ".", "tree", ALLOW),
    ("links", "secret_file", "file", DENIED),
    ("links", "log/nginx", "tree", ALLOW),
    ("etc", "ssh/ssh_host_rsa_key", "file", DENIED),
    ("etc", "ssh/ssh_host_rsa_key.pub", "file", ALLOW),
]


@pytest.mark.parametrize("cwd,value,kind,expected", RELATIVE)
def test_relative(host: Path, cwd: str, value: str, kind: str, expected: str) -> None:
    dl = DenyList(_entries(host), RealHost(cwd=str(host / cwd)))
    assert _decide(dl, value, kind) == expected


def test_relative_uses_process_cwd(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(host / "run")
    dl = DenyList(_entries(host))
    assert _decide(dl, "secrets/db", "file") == DENIED
    assert dl.check("secretsX/ok", "file").resolved == f"{host}/run/secretsX/ok"


def test_allowed_result_is_the_realpath(host: Path) -> None:
    dl = DenyList(_entries(host), RealHost(cwd=str(host / "links")))
    for value in ("log/nginx/./error.log", f"{host}//var/log/../log/nginx", "dangling"):
        pc = dl.check(value, "file")
        assert pc == PathCheck(value, os.path.realpath(os.path.join(host / "links", value)), "file")


def test_deny_message_names_value_resolution_entry_and_why(host: Path) -> None:
    dl = DenyList(_entries(host), RealHost())
    with pytest.raises(Deny) as exc:
        dl.check(f"{host}/links/secret_file", "file")
    d = exc.value
    assert d.code == DENIED
    assert d.rule == f"deny:{host}/run/secrets"
    assert d.message == (
        f"{host}/links/secret_file resolves to {host}/run/secrets/db, which is at or under "
        f"{host}/run/secrets (why 0); this location is never readable through diag"
    )
    assert "\n" not in d.message


def test_alias_message_names_the_entry(host: Path) -> None:
    dl = DenyList(_entries(host), RealHost())
    with pytest.raises(Deny) as exc:
        dl.check(f"{host}/persist/etc/ssh/ssh_host_rsa_key", "file")
    assert exc.value.rule == f"deny:{host}/etc/ssh/ssh_host_*_key"
    assert f"alias of {host}/etc/ssh/ssh_host_*_key" in exc.value.message
    assert "(why 1)" in exc.value.message


def test_tree_message_suggests_narrower_path(host: Path) -> None:
    dl = DenyList(_entries(host), RealHost())
    with pytest.raises(Deny) as exc:
        dl.check(f"{host}/var/lib", "tree")
    assert exc.value.code == TREE_DENIED
    assert exc.value.rule == f"deny:{host}/var/lib/mautrix-*"
    assert f"{host}/var/lib/mautrix-*" in exc.value.message
    # the next request can name the clean parts: the entries that are clean trees themselves
    listed = exc.value.message.split("which may be named: ", 1)[1].split()
    assert listed and all(p.startswith(f"{host}/var/lib/") for p in listed)
    assert not any(p.startswith(f"{host}/var/lib/mautrix-") for p in listed)
    for p in listed:
        dl.check(p, "tree")


def test_proc_root_resolving_into_denied_dir_without_proc_entries(host: Path) -> None:
    dl = DenyList(_entries(host, proc=False), RealHost())
    assert _decide(dl, f"/proc/self/root{host}/run/secrets/db", "file") == DENIED
    assert _decide(dl, f"/proc/{os.getpid()}/root{host}/srv/vault/token", "file") == DENIED
    assert _decide(dl, f"/proc/self/root{host}/var/log", "tree") == ALLOW


def test_aliases_deny_the_real_locations_by_the_entry(host: Path) -> None:
    dl = DenyList(_entries(host), RealHost())
    for value, alias, entry in [
        (f"{host}/persist/etc/ssh/ssh_host_rsa_key", f"{host}/persist/etc/ssh/ssh_host_*_key",
         f"{host}/etc/ssh/ssh_host_*_key"),
        (f"{host}/persist/vault/token", f"{host}/persist/vault", f"{host}/srv/vault"),
        (f"{host}/var/lib/private/mautrix-signal/db", f"{host}/var/lib/private/mautrix-signal",
         f"{host}/var/lib/mautrix-*"),
        (f"{host}/var/lib/private/n8n/db", f"{host}/var/lib/private/n8n", f"{host}/var/lib/n8n"),
    ]:
        with pytest.raises(Deny) as exc:
            dl.check(value, "file")
        assert f"{alias} (alias of {entry})" in exc.value.message and exc.value.rule == f"deny:{entry}"
    # /proc entries get no aliases: /proc/1/root -> / would otherwise deny everything
    assert dl.check(f"{host}/var/lib/private/other/db", "file").resolved == f"{host}/var/lib/private/other/db"
    assert dl.check("/etc/hostname", "file").resolved == "/etc/hostname"


def test_symlink_chain_follows_kernel_limit(tmp_path: Path) -> None:
    _file(tmp_path / "f", "ok")
    prev = "f"
    for i in range(1, 42):
        _link(tmp_path / f"l{i}", prev)
        prev = f"l{i}"
    dl = DenyList([DenyEntry(f"{tmp_path}/secret", "s")], RealHost())
    assert (tmp_path / "l40").read_text() == "ok"  # the kernel follows 40 links
    assert dl.check(f"{tmp_path}/l40", "file").resolved == f"{tmp_path}/f"
    with pytest.raises(OSError):
        (tmp_path / "l41").read_text()
    assert _decide(dl, f"{tmp_path}/l41", "file") == BAD


class CountingFs(RealHost):
    def __init__(self) -> None:
        super().__init__()
        self.globbed: list[str] = []

    def glob(self, pattern: str) -> list[str]:
        self.globbed.append(pattern)
        return super().glob(pattern)


def test_compile_does_not_enumerate_proc(host: Path) -> None:
    fs = CountingFs()
    DenyList(_entries(host), fs)
    assert not any(p.startswith("/proc") for p in fs.globbed)
    assert f"{host}/var/lib/mautrix-*" in fs.globbed


def test_bad_entry_rejected_by_denylist() -> None:
    with pytest.raises(ValueError):
        DenyList([DenyEntry("run/secrets", "relative")], RealHost())


def test_unknown_kind_is_a_programming_error(host: Path) -> None:
    with pytest.raises(ValueError):
        DenyList(_entries(host), RealHost()).check("/etc/hostname", "dir")


def test_no_entries_allows_everything_resolvable(host: Path) -> None:
    dl = DenyList([], RealHost())
    assert dl.check("/", "tree").resolved == "/"
    assert _decide(dl, f"{host}/links/loop", "file") == BAD


GOOD_ENTRIES = [
    "/run/secrets",
    "/etc/ssh/ssh_host_*_key",
    "/home/*/.ssh",
    "/var/lib/mautrix-*",
    "/proc/*/task/*/environ",
    "/*",
    "/var/lib/with space",
    "/etc/systemd/system/dev-disk-by\\x2duuid.swap",
    "/.hidden",
]
BAD_ENTRIES = [
    "",
    "/",
    "run/secrets",
    "./run",
    "*/x",
    "/run/secrets/",
    "/run//secrets",
    "/run/./secrets",
    "/run/../secrets",
    "/run/..",
    "/run/.",
    "/var/lib/mautrix-?",
    "/var/lib/[ab]",
    "/var/lib/{a,b}",
    "/var/**/x",
    "/run/sec\nrets",
    "/run/sec\0rets",
    "/run/sec\trets",
]


@pytest.mark.parametrize("path", GOOD_ENTRIES)
def test_validate_entry_good(path: str) -> None:
    validate_entry(path)


@pytest.mark.parametrize("path", BAD_ENTRIES)
def test_validate_entry_bad(path: str) -> None:
    with pytest.raises(ValueError) as exc:
        validate_entry(path)
    assert "deny entry" in str(exc.value)


class UnreadableLinks(RealHost):
    """readlink and realpath fail as they do for another user's /proc/PID/root."""

    def readlink(self, p: str) -> str:
        raise PermissionError(13, "Permission denied", p)

    def realpath(self, p: str) -> str:
        raise PermissionError(13, "Permission denied", p)


def test_unreadable_link_is_denied_not_raised(host: Path) -> None:
    dl = DenyList(_entries(host, proc=False), UnreadableLinks())
    assert _decide(dl, f"{host}/links/log/nginx/error.log", "file") == BAD
    assert _decide(dl, f"{host}/links/secret_file", "file") == BAD
    assert _decide(dl, f"{host}/var/log/nginx/error.log", "file") == ALLOW
    assert _decide(dl, f"{host}/run/secrets/db", "file") == DENIED


class NoCwd(RealHost):
    def getcwd(self) -> str:
        raise FileNotFoundError(2, "No such file or directory")


def test_relative_value_without_cwd_is_denied(host: Path) -> None:
    dl = DenyList(_entries(host), NoCwd())
    assert _decide(dl, "notes", "file") == BAD
    assert _decide(dl, f"{host}/home/alice/notes", "file") == ALLOW


def test_mountinfo_keeps_the_file_system_type() -> None:
    from diag_wrapper.deny import kernel_mount, parse_mountinfo

    text = ("22 1 0:21 / /proc rw,nosuid shared:12 - proc proc rw\n"
            "98 1 0:21 / /srv/chroot/proc rw master:3 shared:9 - proc proc rw\n"
            "99 1 8:1 /persist/x /var/lib/x rw - ext4 /dev/sda1 rw\n")
    mounts = parse_mountinfo(text)
    assert [m.fstype for m in mounts] == ["proc", "proc", "ext4"]
    assert kernel_mount(mounts, ("proc", "1", "environ")) is None  # the /proc rules see it
    assert kernel_mount(mounts, ("srv", "chroot", "proc", "1", "environ")) == mounts[1]
    assert kernel_mount(mounts, ("var", "lib", "x", "y")) is None
