"""Hard links (``path.hardlinked``) and stable names (``path.unstable``), on real files.

Owners other than root need chown, so most rows run as root (as CI does). The
property test at the end takes the kernel as its oracle: an unprivileged process
tries to swap every name the check looked at; whatever ``check_stable`` accepts,
that attempt must fail everywhere.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diag_wrapper import execute
from diag_wrapper.model import PathCheck, Plan as Decision
from diag_wrapper.deny import DenyList, RealHost
from diag_wrapper.policy import DenyEntry
from diag_wrapper.model import Deny

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, setuid)")


class LinksUnprotected(RealHost):
    """A host with fs.protected_hardlinks = 0."""

    def protected_hardlinks(self) -> bool:
        return False


def _outcome(fn, *args) -> str:
    try:
        fn(*args)
    except Deny as d:
        return d.code
    return "allow"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """tmp_path opened up (0755) so an unprivileged process can reach what is inside."""
    tmp_path.chmod(0o755)
    (tmp_path / "denied").mkdir()
    (tmp_path / "denied" / "db").write_text("SECRET")
    (tmp_path / "key").write_text("PRIVATE")
    (tmp_path / "pub").mkdir()
    return tmp_path


def _dl(base: Path, fs: RealHost | None = None) -> DenyList:
    entries = [DenyEntry(str(base / "denied"), "state"), DenyEntry(str(base / "key"), "host key")]
    return DenyList(entries, fs or RealHost())


# --------------------------------------------------------------------------- hard links


def test_a_file_with_one_name_is_read(base: Path) -> None:
    (base / "pub" / "one").write_text("x")
    assert _outcome(_dl(base).check, str(base / "pub" / "one"), "file") == "allow"


def test_a_hard_link_of_an_entry_file_is_that_entry(base: Path) -> None:
    os.link(base / "key", base / "pub" / "innocent")
    d = _dl(base)
    assert _outcome(d.check, str(base / "pub" / "innocent"), "file") == "path.denied"


@needs_root
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


def test_directories_and_trees_are_not_link_counted(base: Path) -> None:
    (base / "pub" / "sub").mkdir()  # a directory's st_nlink counts its subdirectories
    os.link(base / "denied" / "db", base / "pub" / "sub" / "linked")
    d = _dl(base, LinksUnprotected())
    assert _outcome(d.check, str(base / "pub"), "tree") == "allow"
    assert _outcome(d.check, str(base / "pub" / "sub"), "file") == "allow"


def test_a_link_made_after_the_check_is_caught_when_the_file_is_opened(base: Path) -> None:
    target = base / "pub" / "log"
    target.write_text("x")
    d = _dl(base, LinksUnprotected())
    check = d.check(str(target), "file", index=1)
    os.link(target, base / "pub" / "log.1")  # a second name appears between check and open
    decision = Decision("allow", "allow", "", b"", rule="cat", argv=("cat", str(target)),
                        exec_argv=("cat", str(target)), executable="/usr/bin/cat", paths=(check,),
                        pass_fds=(1,))
    with pytest.raises(Deny) as exc:
        execute.open_fds(decision, d)
    assert exc.value.code == "path.hardlinked"


# --------------------------------------------------------------------------- stable names


def _stable(d: DenyList, value: str) -> str:
    return _outcome(d.check_stable, PathCheck(value=value, resolved=os.path.realpath(value), kind="file"))


def _dir(p: Path, owner: int, mode: int) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    os.chown(p, owner, owner)
    p.chmod(mode)
    return p


@needs_root
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


@needs_root
def test_a_missing_name_in_a_sticky_directory_is_unstable(base: Path) -> None:
    d = _dir(base / "pub" / "tmp", 0, 0o1777)
    assert _stable(_dl(base), str(d / "not-yet")) == "path.unstable"  # anyone may create it first


@needs_root
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


@needs_root
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


@needs_root
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


class HiddenParent(RealHost):
    """A directory on the way that cannot be examined (lstat fails)."""

    def __init__(self, hidden: str) -> None:
        super().__init__()
        self.hidden = hidden

    def lstat(self, p: str) -> os.stat_result:
        if p == self.hidden:
            raise PermissionError(13, "Permission denied", p)
        return super().lstat(p)


def test_a_directory_that_cannot_be_examined_is_refused(base: Path) -> None:
    (base / "pub" / "f").write_text("x")
    d = DenyList([DenyEntry(str(base / "denied"), "state")], HiddenParent(str(base / "pub")))
    with pytest.raises(Deny) as exc:
        d.check_stable(PathCheck(str(base / "pub" / "f"), str(base / "pub" / "f"), "file"))
    assert exc.value.code == "path.unstable" and "cannot be examined" in exc.value.message


def test_the_refusal_names_the_directory_and_what_to_do(base: Path) -> None:
    d = _dir(base / "pub" / "w", os.geteuid(), 0o777)
    (d / "f").write_text("x")
    with pytest.raises(Deny) as exc:
        _dl(base).check_stable(PathCheck(str(d / "f"), str(d / "f"), "file"))
    assert exc.value.code == "path.unstable"
    assert str(d) in exc.value.message and "open descriptor" in exc.value.message


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


@needs_root
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


def _loose(directory: Path) -> bool:
    st_ = directory.lstat()
    return st_.st_uid != 0 or bool(st_.st_mode & 0o022)
