"""What the kernel wall covers (the namespaces themselves are exercised end to end in tests/e2e)."""

from __future__ import annotations

import os

from diag_wrapper.sandbox import cover_list


def test_cover_list_expands_globs_resolves_links_and_prunes_nested(tmp_path):
    (tmp_path / "secrets" / "sub").mkdir(parents=True)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "host_rsa_key").write_text("k")
    (tmp_path / "keys" / "host_rsa_key.pub").write_text("p")
    (tmp_path / "persist").mkdir()
    (tmp_path / "persist" / "n8n").mkdir()
    (tmp_path / "n8n").symlink_to(tmp_path / "persist" / "n8n")
    got = cover_list([
        f"{tmp_path}/secrets", f"{tmp_path}/secrets/sub", f"{tmp_path}/keys/host_*_key",
        f"{tmp_path}/n8n", f"{tmp_path}/absent",
    ])
    assert f"{tmp_path}/secrets" in got and f"{tmp_path}/secrets/sub" not in got
    assert f"{tmp_path}/keys/host_rsa_key" in got and f"{tmp_path}/keys/host_rsa_key.pub" not in got
    assert f"{tmp_path}/persist/n8n" in got  # the real place behind the link
    assert not any(p.endswith("absent") for p in got)
    assert got == sorted(got, key=lambda p: (p.count("/"), p))


def test_cover_list_leaves_proc_and_dev_to_the_path_checks():
    got = cover_list(["/proc/*/environ", "/proc/kcore", "/dev/fd", "/dev/stdin", "/proc/self/fd"])
    assert got == []
    assert all(not p.startswith(("/proc", "/dev")) for p in cover_list(["/etc/hostname", "/dev/fd"]))
    assert os.path.exists("/dev/fd")
