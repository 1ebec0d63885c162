"""What the kernel wall covers (the namespaces themselves are exercised end to end in tests/e2e).

The wall's list comes from the compiled deny list (``DenyList.covers``), the same one the
path checks use."""

from __future__ import annotations

import os

from diag_wrapper.deny import DenyList, Mount, RealHost
from diag_wrapper.policy import DenyEntry


def _covers(paths, host=None, command="cat"):
    return list(DenyList([DenyEntry(p, "test") for p in paths], host or RealHost()).covers(command))


def test_cover_list_expands_globs_resolves_links_and_prunes_nested(tmp_path):
    (tmp_path / "secrets" / "sub").mkdir(parents=True)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "host_rsa_key").write_text("k")
    (tmp_path / "keys" / "host_rsa_key.pub").write_text("p")
    (tmp_path / "persist").mkdir()
    (tmp_path / "persist" / "n8n").mkdir()
    (tmp_path / "n8n").symlink_to(tmp_path / "persist" / "n8n")
    got = _covers([
        f"{tmp_path}/secrets", f"{tmp_path}/secrets/sub", f"{tmp_path}/keys/host_*_key",
        f"{tmp_path}/n8n", f"{tmp_path}/absent",
    ])
    assert f"{tmp_path}/secrets" in got and f"{tmp_path}/secrets/sub" not in got
    assert f"{tmp_path}/keys/host_rsa_key" in got and f"{tmp_path}/keys/host_rsa_key.pub" not in got
    assert f"{tmp_path}/persist/n8n" in got  # the real place behind the link
    assert not any(p.endswith("absent") for p in got)
    assert got == sorted(got, key=lambda p: (p.count("/"), p))


def test_cover_list_leaves_proc_and_dev_to_the_path_checks():
    got = _covers(["/proc/*/environ", "/proc/kcore", "/dev/fd", "/dev/stdin", "/proc/self/fd"])
    assert got == []
    assert all(not p.startswith(("/proc", "/dev")) for p in _covers(["/etc/hostname", "/dev/fd"]))
    assert os.path.exists("/dev/fd")


def test_wall_except_leaves_an_entry_to_the_commands_that_read_it_themselves(tmp_path):
    (tmp_path / "journal").mkdir()
    dl = DenyList([DenyEntry(str(tmp_path / "journal"), "j", ("journalctl",))], RealHost())
    assert dl.covers("cat") == (str(tmp_path / "journal"),) and dl.covers("journalctl") == ()


def test_wall_paths_add_the_names_bind_mounts_give_an_entry(tmp_path):
    secret = tmp_path / "parent" / "secret"
    secret.mkdir(parents=True)
    (tmp_path / "b1").mkdir()
    (tmp_path / "b2" / "secret").mkdir(parents=True)  # what the bind of the parent would show
    comps = lambda p: tuple(c for c in str(p).split("/") if c)  # noqa: E731
    mounts = [
        Mount(root=(), point=()),  # the file system itself, at /
        Mount(root=comps(secret), point=comps(tmp_path / "b1")),  # a bind of the secret
        Mount(root=comps(tmp_path / "parent"), point=comps(tmp_path / "b2")),  # a bind of its parent
    ]

    class Binds(RealHost):
        def mounts(self):
            return mounts

    got = _covers([str(secret)], Binds())
    assert set(got) == {str(secret), str(tmp_path / "b1"), str(tmp_path / "b2" / "secret")}


def test_mountinfo_is_parsed_with_its_escapes():
    from diag_wrapper.deny import parse_mountinfo

    line = r"36 35 98:0 /mnt\040dir /srv/with\040space rw,noatime master:1 - ext3 /dev/root rw"
    (m,) = parse_mountinfo(line)
    assert m.root == ("mnt dir",) and m.point == ("srv", "with space")


def test_a_wall_that_could_not_be_taken_down_refuses_in_every_mode(web02, monkeypatch):
    # sandbox.enter takes down the covers it made when one fails; if that fails too the
    # command must not run, whatever the mode (auto would otherwise go on without the wall)
    from diag_wrapper import run, sandbox
    from diag_wrapper.plan import plan

    def half_built(cover):
        exc = sandbox.SandboxError(16, "cover /x: Device or resource busy")
        exc.partial = True
        raise exc

    monkeypatch.setattr(sandbox, "enter", half_built)
    for mode in ("auto", "required"):
        policy = web02._replace(settings=web02.settings._replace(sandbox=mode))
        d = run._wall(plan(b"uptime", policy), mode)
        assert (d.decision, d.code) == ("deny", "sandbox.partial") and "nothing was executed" in d.reason


def test_every_name_of_an_entry_is_covered_hard_links_and_shared_files_too(tmp_path):
    # two entries that are one file (a hard link) are two names the command could open
    (tmp_path / "a").write_text("k")
    os.link(tmp_path / "a", tmp_path / "b")
    assert set(_covers([str(tmp_path / "a"), str(tmp_path / "b")])) == {str(tmp_path / "a"), str(tmp_path / "b")}
    # an entry left to journalctl (wall_except) and another naming the same place without it
    (tmp_path / "journal").mkdir()
    (tmp_path / "other").symlink_to(tmp_path / "journal")
    dl = DenyList([DenyEntry(str(tmp_path / "journal"), "j", ("journalctl",)),
                   DenyEntry(str(tmp_path / "other"), "o")], RealHost())
    assert dl.covers("journalctl") == (str(tmp_path / "journal"),)


def test_a_bind_of_something_inside_an_entry_is_covered_at_its_mount_point(tmp_path):
    secret = tmp_path / "lib" / "private"
    (secret / "n8n").mkdir(parents=True)
    (tmp_path / "srv").mkdir()
    comps = lambda p: tuple(c for c in str(p).split("/") if c)  # noqa: E731
    mounts = [Mount(root=(), point=()), Mount(root=comps(secret / "n8n"), point=comps(tmp_path / "srv"))]

    class Binds(RealHost):
        def mounts(self):
            return mounts

    assert set(_covers([str(secret)], Binds())) == {str(secret), str(tmp_path / "srv")}
