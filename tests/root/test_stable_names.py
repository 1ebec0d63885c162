"""Stable names (``path.unstable``) and hard links with owners other than root (root: chown, setuid).

The property test at the end takes the kernel as its oracle: an unprivileged process
tries to swap every name the check looked at; whatever ``check_stable`` accepts, that
attempt must fail everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from diag_wrapper.deny import DenyList, RealHost
from diag_wrapper.model import Deny, PathCheck
from diag_wrapper.policy import DenyEntry
from hypothesis import strategies as st
from test_links_stable import NOBODY, LinksUnprotected, _dir, _dl, _outcome, _stable, base  # noqa: F401

@pytest.mark.parametrize(("owner", "mode", "protected", "expect"), [
    (0, 0o644, True, "allow"),              # only root can have made the other name
    (0, 0o444, True, "allow"),              # a store file, deduplicated by hard links
    (0, 0o644, False, "path.hardlinked"),   # protected_hardlinks off: anyone could have
    (0, 0o664, True, "path.hardlinked"),    # group-writable: a group member could have
    (0, 0o646, True, "path.hardlinked"),    # world-writable
    (NOBODY, 0o644, True, "path.hardlinked"),  # its owner could have
    (NOBODY, 0o600, True, "path.hardlinked"),
])
def test_a_file_with_more_names_is_read_only_when_only_root_can_have_made_them(
        base: Path, owner: int, mode: int, protected: bool, expect: str) -> None:
    (base / "denied" / "state.db").write_text("SECRET")
    os.chown(base / "denied" / "state.db", owner, owner)
    (base / "denied" / "state.db").chmod(mode)
    os.link(base / "denied" / "state.db", base / "pub" / "copy")
    d = _dl(base, None if protected else LinksUnprotected())
    assert _outcome(d.check, str(base / "pub" / "copy"), "file") == expect
    # the same rule whatever the value's kind: a "tree" that is one file is that file
    assert _outcome(d.check, str(base / "pub" / "copy"), "tree") == expect


@pytest.mark.parametrize(("dir_owner", "dir_mode", "entry_owner", "expect"), [
    (0, 0o755, 0, "allow"),
    (0, 0o755, NOBODY, "allow"),             # the entry's own owner cannot rename it out of a root dir
    (0, 0o775, 0, "path.unstable"),          # group-writable directory
    (0, 0o757, 0, "path.unstable"),          # world-writable directory
    (NOBODY, 0o755, 0, "path.unstable"),     # the directory's owner may replace anything in it
    (0, 0o1777, 0, "allow"),                 # sticky (/tmp): only the entry's owner or root
    (0, 0o1777, NOBODY, "path.unstable"),
    (NOBODY, 0o1777, 0, "path.unstable"),    # a sticky directory's owner may still replace entries
])
def test_stable_table(base: Path, dir_owner: int, dir_mode: int, entry_owner: int, expect: str) -> None:
    d = _dir(base / "pub" / "d", dir_owner, dir_mode)
    (d / "f").write_text("x")
    os.chown(d / "f", entry_owner, entry_owner)
    assert _stable(_dl(base), str(d / "f")) == expect


def test_a_missing_name_in_a_sticky_directory_is_unstable(base: Path) -> None:
    d = _dir(base / "pub" / "tmp", 0, 0o1777)
    assert _stable(_dl(base), str(d / "not-yet")) == "path.unstable"  # anyone may create it first


def test_every_name_on_the_walk_counts_symlinks_included(base: Path) -> None:
    safe = _dir(base / "pub" / "safe", 0, 0o755)
    (safe / "f").write_text("x")
    loose = _dir(base / "pub" / "loose", NOBODY, 0o755)
    os.symlink(safe / "f", loose / "to-safe")            # the link sits where nobody can swap it
    os.symlink(loose / "to-safe", safe / "via-loose")    # a safe link through a loose one
    os.symlink(base / "pub" / "loose", safe / "dir-link")
    d = _dl(base)
    assert _stable(d, str(safe / "f")) == "allow"
    assert _stable(d, str(loose / "to-safe")) == "path.unstable"
    assert _stable(d, str(safe / "via-loose")) == "path.unstable"
    assert _stable(d, str(safe / "dir-link") + "/to-safe") == "path.unstable"


def test_relative_values_walk_from_the_working_directory(base: Path) -> None:
    safe = _dir(base / "pub" / "safe", 0, 0o755)
    (safe / "f").write_text("x")
    loose = _dir(base / "pub" / "loose", NOBODY, 0o755)
    d = DenyList([DenyEntry(str(base / "denied"), "state")], RealHost(cwd=str(safe)))
    assert _outcome(d.check_stable, PathCheck("f", str(safe / "f"), "file")) == "allow"
    (loose / "g").write_text("x")
    d = DenyList([DenyEntry(str(base / "denied"), "state")], RealHost(cwd=str(loose)))
    assert _outcome(d.check_stable, PathCheck("g", str(loose / "g"), "file")) == "path.unstable"
    # '..' is the parent, which the loose directory's owner cannot change
    assert _outcome(d.check_stable, PathCheck("../safe/f", str(safe / "f"), "file")) == "allow"


def test_names_the_kernel_makes_are_stable(base: Path) -> None:
    # /proc/PID belongs to the process's user, who still cannot rename anything in it
    def become_nobody() -> None:
        os.setgid(NOBODY)
        os.setuid(NOBODY)

    proc = subprocess.Popen(["sleep", "30"], preexec_fn=become_nobody)
    try:
        assert os.stat(f"/proc/{proc.pid}").st_uid == NOBODY
        d = _dl(base)
        assert _stable(d, f"/proc/{proc.pid}/status") == "allow"
        assert _stable(d, "/proc/self/status") == "allow"
        assert _stable(d, "/sys/kernel") == "allow"
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- property: the kernel as oracle

MODES = [0o755, 0o775, 0o757, 0o777, 0o1777, 0o711]
OWNERS = [0, NOBODY]
level = st.tuples(st.sampled_from(OWNERS), st.sampled_from(MODES))
shape = st.tuples(st.lists(level, min_size=1, max_size=4), st.sampled_from(OWNERS + [None]),
                  st.sampled_from(["file", "link-up", "link-abs"]))


def _swap_as_nobody(names: list[str]) -> bool:
    """Can uid/gid 65534 (no supplementary groups) replace or create any of these names?"""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            swapped = False
            for name in names:
                tmp = os.path.join(os.path.dirname(name), ".swap")
                try:
                    os.symlink("/", tmp)
                    os.rename(tmp, name)
                    swapped = True
                    break
                except OSError:
                    try:
                        os.unlink(tmp)
                    except OSError:
                        pass
            os.write(w, b"1" if swapped else b"0")
        finally:
            os._exit(0)
    os.close(w)
    answer = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    return answer == b"1"


def _loose(directory: Path) -> bool:
    st_ = directory.lstat()
    return st_.st_uid != 0 or bool(st_.st_mode & 0o022)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape)
def test_what_check_stable_accepts_nobody_else_can_swap(example) -> None:
    levels, leaf_owner, how = example
    root = Path(tempfile.mkdtemp(prefix="diag-stable-"))
    try:
        root.chmod(0o755)
        d = root
        for owner, mode in levels:
            d = d / f"d{len(d.parts)}"
            d.mkdir()
            os.chown(d, owner, owner)
            d.chmod(mode)
        target = root / "target"
        target.write_text("x")
        leaf = d / "leaf"
        if leaf_owner is not None:
            if how == "file":
                leaf.write_text("x")
            else:
                os.symlink("../" * (len(levels)) + "target" if how == "link-up" else str(target), leaf)
            os.lchown(leaf, leaf_owner, leaf_owner)
        dl = DenyList([DenyEntry(str(root / "denied"), "state")], RealHost())
        accepted = True
        try:
            dl.check_stable(PathCheck(str(leaf), os.path.realpath(leaf), "file"))
        except Deny:
            accepted = False
        # the names the kernel looks up below /tmp for this value, the link's target included
        names = [str(p) for p in reversed(leaf.parents) if len(p.parts) >= len(root.parts)] + [str(leaf)]
        if leaf_owner is not None and how != "file":
            names.append(str(target))
        swappable = _swap_as_nobody(names)
        if accepted:
            assert not swappable, (levels, leaf_owner, how)
        # refusals stay honest too: a refused walk has a directory that is not root's alone
        else:
            assert any(_loose(Path(n).parent) for n in names), (levels, leaf_owner, how)
    finally:
        shutil.rmtree(root, ignore_errors=True)
