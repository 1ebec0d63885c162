"""limits.py on its own: slots and the rate window (the e2e suite runs them for real)."""

from __future__ import annotations

import fcntl
import os

import pytest

from diag_wrapper import limits
from diag_wrapper.model import Deny


def test_slots_are_taken_until_all_are_held(tmp_path):
    fds = [limits.take_slot(str(tmp_path), 3) for _ in range(3)]
    assert len(set(fds)) == 3 and all(os.get_inheritable(fd) for fd in fds)
    with pytest.raises(Deny) as e:
        limits.take_slot(str(tmp_path), 3)
    assert e.value.code == "limit.busy"
    os.close(fds[1])  # a command that ended frees its slot
    again = limits.take_slot(str(tmp_path), 3)
    assert os.path.samestat(os.fstat(again), os.stat(tmp_path / "slot.1"))
    for fd in (fds[0], fds[2], again):
        os.close(fd)


def test_a_slot_descriptor_is_read_only(tmp_path):
    fd = limits.take_slot(str(tmp_path), 1)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    finally:
        os.close(fd)


def test_rate_window_counts_per_key_and_reports_the_first_refusal_once(tmp_path):
    d = str(tmp_path)
    got = [limits.count(d, "SHA256:key-a", 3, now=600.0) for _ in range(6)]
    assert got == [(True, False)] * 3 + [(False, True), (False, False), (False, False)]
    assert limits.count(d, "SHA256:key-b", 3, now=600.0) == (True, False)  # another key, its own count
    assert limits.count(d, "SHA256:key-a", 3, now=660.0) == (True, False)  # the next minute starts anew


def test_a_key_with_any_bytes_gets_its_own_file(tmp_path):
    for who in ("SHA256:ab/cd+ef", "../../etc/passwd", "user\udcff"):
        assert limits.count(str(tmp_path), who, 5, now=1.0) == (True, False)
    assert all(p.name.startswith("rate.") and "/" not in p.name for p in tmp_path.iterdir())
    assert len(list(tmp_path.iterdir())) == 3


def test_a_missing_or_unusable_state_directory_is_a_refusal(tmp_path):
    for d in (str(tmp_path / "absent"), "/proc/1"):
        with pytest.raises(Deny) as e:
            limits.take_slot(d, 2)
        assert e.value.code == "limit.unavailable"
        with pytest.raises(Deny) as e:
            limits.count(d, "k", 2)
        assert e.value.code == "limit.unavailable"


def test_a_planted_symlink_is_not_followed(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep\n")
    state = tmp_path / "state"
    state.mkdir()
    (state / "slot.0").symlink_to(target)
    with pytest.raises(Deny) as e:
        limits.take_slot(str(state), 1)
    assert e.value.code == "limit.unavailable"
    assert target.read_text() == "keep\n"
