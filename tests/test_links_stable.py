"""Hard links (``path.hardlinked``) and stable names (``path.unstable``), on real files.

What needs chown (owners other than root) is in tests/root/test_stable_names.py,
with the property test that takes the kernel as its oracle.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from diag_wrapper import execute
from diag_wrapper.model import PathCheck, Plan as Decision
from diag_wrapper.deny import DenyList, RealHost

sys.path.insert(0, os.path.dirname(__file__))
from conftest import RootAbove  # noqa: E402
from diag_wrapper.policy import DenyEntry
from diag_wrapper.model import Deny

NOBODY = 65534


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
    return DenyList(entries, fs or RootAbove(str(base)))


# --------------------------------------------------------------------------- hard links


def test_a_file_with_one_name_is_read(base: Path) -> None:
    (base / "pub" / "one").write_text("x")
    assert _outcome(_dl(base).check, str(base / "pub" / "one"), "file") == "allow"


def test_a_hard_link_of_an_entry_file_is_that_entry(base: Path) -> None:
    os.link(base / "key", base / "pub" / "innocent")
    d = _dl(base)
    assert _outcome(d.check, str(base / "pub" / "innocent"), "file") == "path.denied"


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
    os.chown(p, owner, os.getegid() if owner == os.geteuid() else owner)
    p.chmod(mode)
    return p


class HiddenParent(RootAbove):
    """A directory on the way that cannot be examined (lstat fails)."""

    def __init__(self, hidden: str) -> None:
        super().__init__(hidden)
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
