"""execute.py: the effects that run a plan (descriptors, limits, closefrom), in child processes."""

from __future__ import annotations

import os
import resource

from diag_wrapper import execute
from diag_wrapper.deny import for_policy
from diag_wrapper.plan import plan


def _in_child(fn) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(fn())
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_open_fds_replaces_exactly_the_planned_words(web02, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").write_text("x\n")
    p = plan(b"grep x x", web02)  # the pattern is spelled like the file
    assert p.pass_fds == (2,)
    done = execute.open_fds(p, for_policy(web02))
    try:
        assert done.exec_argv[:2] == ("grep", "x") and done.exec_argv[2] == f"/dev/fd/{done.fds[0]}"
        assert os.readlink(f"/proc/self/fd/{done.fds[0]}") == str(tmp_path / "x")
        assert os.get_inheritable(done.fds[0])
    finally:
        for fd in done.fds:
            os.close(fd)


def test_one_file_named_twice_is_opened_once(web02):
    p = plan(b"cat /etc/hostname /etc/hostname", web02)
    done = execute.open_fds(p, for_policy(web02))
    try:
        assert len(done.fds) == 1 and done.exec_argv[1] == done.exec_argv[2]
    finally:
        os.close(done.fds[0])


def test_close_others_keeps_only_0_to_2_and_the_listed_descriptors(tmp_path):
    def child() -> int:
        fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(5)]
        high = os.dup2(fds[0], 70)
        execute.close_others((fds[2], high))
        extra = {int(n) for n in os.listdir("/proc/self/fd")} - {0, 1, 2}
        # besides the two kept, listdir's own descriptor is the one entry left
        return 0 if {fds[2], high} <= extra and len(extra) == 3 else 1

    assert _in_child(child) == 0


def test_apply_limits_sets_soft_and_hard_alike(web02):
    p = plan(b"uptime", web02)

    def child() -> int:
        before = resource.getrlimit(resource.RLIMIT_CPU)
        execute.apply_limits(p)
        ok = all(resource.getrlimit(getattr(resource, n)) == (v, v) for n, v in p.rlimits
                 if n not in execute.CHILD_RLIMITS)
        # the CPU limit is the command's, set in its own process (supervise._exec): the
        # supervisor's time is bounded by its clock, and it must live to write the record
        untouched = resource.getrlimit(resource.RLIMIT_CPU) == before
        return 0 if ok and untouched and resource.getrlimit(resource.RLIMIT_FSIZE) == (0, 0) else 1

    assert "RLIMIT_CPU" in dict(p.rlimits) and execute.CHILD_RLIMITS == {"RLIMIT_CPU"}
    assert _in_child(child) == 0
