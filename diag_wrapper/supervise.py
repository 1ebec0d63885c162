"""The supervisor: run the planned command as a child and stay its parent, as sudo does.

The child gets its own process group, ``PR_SET_PDEATHSIG`` SIGKILL (if the supervisor is
killed, so is the command), standard input ``/dev/null``, its standard output and error as
pipes to the supervisor, default signal dispositions, only the descriptors the plan passes
(closefrom) and the plan's environment. Inside the kernel wall it is also PID 1 of a new PID
namespace: when it dies, the kernel kills every process it started, whatever they did to get
away (``setsid``, a double fork). Without the wall the supervisor is a child subreaper:
orphaned descendants become its children, and before it exits it kills the process group
and every child it has left, until none is left.

The supervisor copies both streams to its own, counting the bytes (``splice``: the data
never passes through Python), and stops the whole tree

* at ``max_output_bytes`` (what reaches the client, both streams): the output ends at the
  last complete UTF-8 character before the cap, one line on stderr says it was cut, exit 141;
* at the time limit: SIGTERM to the process group, SIGKILL after :data:`GRACE` seconds,
  one line on stderr, exit 124 (as ``timeout(1)``);
* when the client goes away (EPIPE, or an error or hang-up on standard output or error,
  SIGHUP): SIGKILL at once, and the supervisor dies of SIGPIPE as a shell's command would.

Otherwise the exit status is the command's, and a death by signal N is 128 + N, as a shell
reports it. The :class:`Outcome` goes into the closing journal record (audit.py).
"""

import ctypes
import errno
import os
import resource
import select
import signal
import time
from types import MappingProxyType
from typing import Mapping, NamedTuple

from .execute import CHILD_RLIMITS, close_others
from .model import Plan
from .redact import Redactor

GRACE = 2.0  # seconds between SIGTERM and SIGKILL
PIPE_DELAY = 0.2  # seconds a stage before a finished last one has to end before SIGPIPE
EXIT_TIMEOUT = 124
EXIT_CUT = 141
EXIT_NOT_STARTED = 126  # a fork failed: nothing of the command (or pipeline) ran to its end
_NOT_STARTED = 127 << 8  # the wait status reported for a stage that never started
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 1, 4, 36
_CHUNK = 1 << 16
_TURN = 0.05  # seconds one stream is copied before the loop looks at the clock and the rest
_RESET = ("SIGPIPE", "SIGXFSZ", "SIGALRM", "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGCHLD")


class Outcome(NamedTuple):
    status: int  # the wrapper's exit status
    exit_code: int | None  # the command's own, when it exited (of the stage pipefail picks)
    signal: int | None  # the signal that ended it, when one did
    duration_ms: int
    bytes_out: int
    cut: bool = False
    timed_out: bool = False
    disconnected: bool = False
    tree: str = "pgroup"  # "pidns": the command was PID 1 of its own PID namespace
    stages: tuple[int, ...] = ()  # each stage's status as a shell shows it (128+N for signal N)
    redactions: Mapping[str, int] = MappingProxyType({})  # masked by the net, by pattern name
    error: str | None = None  # why the command (a stage of it) could not be started


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def _exec(p: Plan, k: int) -> None:
    """Become stage ``k`` (0: the command, then its filters)."""
    for name in _RESET:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    for name, value in p.rlimits:  # the supervisor's own time is bounded by its clock, not these
        if name in CHILD_RLIMITS:
            resource.setrlimit(getattr(resource, name), (value, value))
    if k == 0:
        close_others(p.fds)
        os.execve(p.executable, list(p.exec_argv), dict(p.env))
    f = p.filters[k - 1]
    close_others(())  # a filter gets none of the command's files
    os.execve(f.executable, list(f.exec_argv), dict(p.env))


def _guard(life_r: int, life_w: int, libc: ctypes.CDLL) -> None:
    """In a child of the supervisor: die with it (and not run at all if it is gone already:
    ``life_w`` is only the supervisor's once the child closed its copy; getppid() cannot tell,
    it is 0 in a new PID namespace)."""
    signal.set_wakeup_fd(-1)  # the supervisor's: a signal to this process is not one to it
    os.close(life_w)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    alive = select.poll()
    alive.register(life_r, select.POLLIN)
    if alive.poll(0):  # hung up: the supervisor died before the prctl took, nobody to run for
        os._exit(127)


def _spawn(p: Plan, k: int, stdin: int, stdout: int, err_w: int, pgid: int | None,
           guard: "tuple[int, int, ctypes.CDLL] | None") -> int:
    """Fork stage ``k`` with its standard streams; ``pgid`` 0: a group of its own, None: ours
    (with no guard either: the PID namespace's init, which spawns, see :func:`_spawn_direct`)."""
    if guard is None and pgid is None:
        return _spawn_direct(p, k, stdin, stdout, err_w)
    pid = os.fork()
    if pid == 0:
        try:
            if guard is not None:
                _guard(*guard)
            if pgid is not None:
                os.setpgid(0, pgid)
            os.dup2(stdin, 0)
            os.dup2(stdout, 1)
            os.dup2(err_w, 2)
            _exec(p, k)
        except BaseException:
            pass
        os._exit(127)
    if pgid is not None:
        try:  # as a shell does, from both sides: the group exists before the next stage joins it
            os.setpgid(pid, pgid or pid)
        except OSError:
            pass
    return pid


def _spawn_direct(p: Plan, k: int, stdin: int, stdout: int, err_w: int) -> int:
    """Stage ``k`` from the PID namespace's init, by posix_spawn (glibc's vfork: no copy of
    this process, ~1.3 ms less a stage than fork and exec). The stage starts as :func:`_exec`
    would leave it, because the init prepared itself (:func:`_child`): it holds no
    descriptor but the command's files (inheritable) and its own (close-on-exec), and it
    carries the command's CHILD_RLIMITS. Here: the streams on 0-2, the command's files closed
    for a filter, default dispositions for the signals Python ignores or handles, an empty
    mask. A failure (no such program, RLIMIT_NPROC) raises, as a failed fork does."""
    exe, argv = (p.executable, p.exec_argv) if k == 0 else (p.filters[k - 1].executable, p.filters[k - 1].exec_argv)
    assert exe is not None
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, stdout, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    if k:
        actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in p.fds]
    return os.posix_spawn(exe, list(argv), dict(p.env), file_actions=actions, setsigmask=(),
                          setsigdef=[getattr(signal, name) for name in _RESET])


def _spawn_all(p: Plan, null: int, out_w: int, err_w: int, pgid: int | None,
               guard: "tuple[int, int, ctypes.CDLL] | None") -> tuple[list[int], str | None]:
    """Every stage, stdin of each the stdout of the one before; the pipes closed here after.
    A fork that fails (the diag user at RLIMIT_NPROC, no memory) stops there: the stages
    started so far and why the next one could not be."""
    pids: list[int] = []
    stdin = null
    for k in range(1 + len(p.filters)):
        last = k == len(p.filters)
        r = w = -1
        try:
            r, w = (-1, out_w) if last else os.pipe2(os.O_CLOEXEC)
            pids.append(_spawn(p, k, stdin, w, err_w, pgid, guard))
        except OSError as exc:
            for fd in {stdin, r, w} - {null, out_w, -1}:
                os.close(fd)
            return pids, f"stage {k + 1} could not be started ({exc.strerror or exc})"
        if pgid == 0:
            pgid = pids[0]
        if stdin != null:
            os.close(stdin)
        if not last:
            os.close(w)
            stdin = r
    return pids, None


class _Stages:
    """Which stages are still running, and each one's wait status. When the last stage is
    done, the ones before it that are still running :data:`PIPE_DELAY` later get SIGPIPE
    (what their next write would bring them; a stage that is just exiting is left to it),
    and SIGKILL after :data:`GRACE`; either counts as SIGPIPE (README "Pipelines")."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.status: dict[int, int] = {}
        self.piped_at: float | None = None  # when the last stage was found done, the others not
        self.sent: int | None = None  # the last signal sent to the stages still running

    def poll(self, block: bool = False) -> bool:
        """Reap what has ended; True when every stage has."""
        for pid in self.pids:
            if pid not in self.status:
                done, st = os.waitpid(pid, 0 if block else os.WNOHANG)
                if done:
                    self.status[pid] = st
        if 0 in self.status:  # some stage never started: the others are being killed
            return all(pid in self.status for pid in self.pids)
        if self.pids[-1] in self.status and len(self.status) < len(self.pids):
            now = time.monotonic()
            if self.piped_at is None:
                self.piped_at = now
            elif now >= self.piped_at + GRACE and self.sent != signal.SIGKILL:
                self._signal(signal.SIGKILL)
            elif now >= self.piped_at + PIPE_DELAY and self.sent is None:
                self._signal(signal.SIGPIPE)
        return len(self.status) == len(self.pids)

    def due(self) -> float | None:
        """When poll() has something to do next, if it does."""
        if self.piped_at is None or self.sent == signal.SIGKILL:
            return None
        return self.piped_at + (PIPE_DELAY if self.sent is None else GRACE)

    def _signal(self, sig: int, mark: bool = True) -> None:
        if mark:
            self.sent = sig
        for pid in self.pids:
            if pid not in self.status:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def statuses(self) -> list[int]:
        if 0 in self.status:  # never started, or killed because a later stage never started
            return [self.status[pid] if pid else _NOT_STARTED for pid in self.pids]
        sigpipe = signal.SIGPIPE  # a raw wait status: terminated by SIGPIPE
        return [sigpipe if self.piped_at is not None and i < len(self.pids) - 1
                and os.WIFSIGNALED(self.status[pid]) and os.WTERMSIG(self.status[pid]) == signal.SIGKILL
                else self.status[pid] for i, pid in enumerate(self.pids)]


def _child(p: Plan, out_w: int, err_w: int, status_w: int, guard: "tuple[int, int, ctypes.CDLL]") -> None:
    """In a PID namespace: the forked child is its PID 1 and runs the stages as its children
    (an init the kernel would ignore default-action signals for, so each stage keeps a
    shell's signal semantics), reaps whatever is left to it, and reports the stages' wait
    statuses on ``status_w``; it exits when they are done (the kernel then kills everything
    else in the namespace). Never returns."""
    try:
        _guard(*guard)
        os.setpgid(0, 0)
        null = os.open(os.devnull, os.O_RDWR)
        # What the stages get from us (_spawn_direct): the command's files, nothing else of the
        # supervisor's or sshd's (ours stay close-on-exec), and its limits, set here, where
        # they bound nothing but a process that waits.
        close_others((*p.fds, null, out_w, err_w, status_w))
        for fd in (null, out_w, err_w, status_w):
            os.set_inheritable(fd, False)
        for fd in p.fds:
            os.set_inheritable(fd, True)
        for name, value in p.rlimits:
            if name in CHILD_RLIMITS:
                resource.setrlimit(getattr(resource, name), (value, value))
        pids, failed = _spawn_all(p, null, out_w, err_w, None, None)
        stages = _Stages(pids + [0] * (1 + len(p.filters) - len(pids)))
        if failed:  # what did start is stopped: a pipeline runs whole or not at all
            stages.status.update({0: _NOT_STARTED})
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        for fd in (0, 1, 2):
            os.dup2(null, fd)  # the client's channels are the command's, not init's
        close_others((status_w,))  # nothing of the supervisor's, nor the command's files

        def relay(sig: int, _frame: object) -> None:  # the supervisor's SIGTERM at the time limit
            stages._signal(sig, mark=False)  # the rest of the group got it from the supervisor already

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, relay)
        while not stages.poll():
            piped = stages.piped_at is not None  # then poll again soon: SIGKILL after the grace
            try:  # a stage, or what was left to init
                done, st = os.waitpid(-1, os.WNOHANG if piped else 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if done in stages.pids:
                stages.status[done] = st
            elif piped and not done:
                time.sleep(0.005)
        os.write(status_w, b"".join(st.to_bytes(4, "little") for st in stages.statuses()) + (b"F" if failed else b"."))
    except BaseException:
        pass
    os._exit(0)


class _Stream:
    """One of the child's streams, copied to one of ours (through the net, when it is on)."""

    def __init__(self, src: int, dst: int, redactor: Redactor | None) -> None:
        self.src, self.dst = src, dst
        self.open = True
        self.splice = redactor is None
        self.redactor = redactor
        self.carry = b""  # the start of a character a read ended in, written with the next one
        self.capped = False  # a byte beyond the cap arrived on this stream


def run(p: Plan, max_output: int, pidns: bool = False) -> Outcome:
    """Start the command (and its filters), copy the output, stop it at its limits; return how it ended."""
    libc = _libc()
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the command (same uid) may not ptrace us; execve resets it for it
    if not pidns:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    life_r, life_w = os.pipe2(os.O_CLOEXEC)
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    start = time.monotonic()
    pids: list[int] = []
    try:
        if pidns:
            try:
                pid = os.fork()
            except OSError as exc:
                return _not_started(p, start, f"the PID namespace's init could not be started ({exc.strerror or exc})")
            if pid == 0:
                _child(p, out_w, err_w, status_w, (life_r, life_w, libc))
            pids = [pid]
        else:
            pids, failed = _spawn_all(p, null, out_w, err_w, 0, (life_r, life_w, libc))
            if failed:
                _stop(pids)
                return _not_started(p, start, failed, len(pids))
        for fd in (out_w, err_w, status_w, null, life_r):  # the children's ends
            os.close(fd)
        out_w = err_w = status_w = null = life_r = -1
        return _supervise(p, _Stages(pids), pidns, max_output, start, out_r, err_r, status_r, wake_r)
    except BaseException:  # a bug in the supervisor: the command does not run on unwatched
        _stop(pids)
        raise
    finally:
        signal.set_wakeup_fd(-1)
        for fd in (out_r, err_r, wake_r, wake_w, status_r, out_w, err_w, status_w, null, life_r, life_w):
            if fd >= 0:
                os.close(fd)


def _supervise(p: Plan, stages: _Stages, pidns: bool, max_output: int, start: float, out_r: int, err_r: int,
               status_r: int, wake_r: int) -> Outcome:
    for fd in (out_r, err_r, 1, 2):
        try:
            os.set_blocking(fd, False)
        except OSError:  # a client channel that is not there: writes to it fail as a disconnect
            pass
    streams = [_Stream(fd, dst, Redactor(p.redact, p.redact_max_line) if p.redact else None)
               for fd, dst in ((out_r, 1), (err_r, 2))]
    leader = stages.pids[0]  # its process group holds every stage
    deadline = start + (p.timeout or 60)
    bytes_out = 0
    cut = timed_out = disconnected = False
    kill_at: float | None = None
    poller = select.poll()
    poller.register(wake_r, select.POLLIN)
    for s in streams:
        poller.register(s.src, select.POLLIN)
    for fd in (1, 2):  # the client's end: an error or hang-up there means it went away
        poller.register(fd, 0)
    while not stages.poll():
        now = time.monotonic()
        if not timed_out and now >= deadline:
            timed_out = True
            _kill_tree(leader, signal.SIGTERM)
            kill_at = now + GRACE
        if kill_at is not None and now >= kill_at:
            _kill_tree(leader, signal.SIGKILL)
            kill_at = now + 1.0
        until = kill_at if timed_out else deadline
        due = stages.due()
        if due is not None:
            until = min(until, due)
        try:
            events = poller.poll(max(1, int((until - now) * 1000) + 1))
        except InterruptedError:
            events = []
        for fd, ev in events:
            if fd == wake_r:
                try:
                    woke = os.read(wake_r, 64)
                except BlockingIOError:
                    woke = b""
                if any(sig in woke for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)):
                    disconnected = True
            elif fd in (1, 2) and ev & (select.POLLERR | select.POLLHUP):
                disconnected = True
            elif ev and not disconnected and not cut:
                s = streams[0] if fd == out_r else streams[1]
                try:
                    bytes_out += _copy(s, max_output - bytes_out, deadline + GRACE)
                except BrokenPipeError:
                    disconnected = True
                except _Stalled:
                    timed_out = True
                if not s.open:
                    poller.unregister(fd)
                if s.capped:
                    cut = True
        if cut or disconnected or (timed_out and time.monotonic() >= deadline + GRACE):
            _kill_tree(leader, signal.SIGKILL)
            stages.poll(block=True)
            break
    if not cut and not disconnected:  # what it wrote before it ended (nothing waits for more)
        now = time.monotonic()  # a stalled client: no second grace, but what is there goes out
        until = max(min(now, deadline) + GRACE, now + 0.5)
        for s in streams:
            try:
                while s.open and not s.capped:  # (a grandchild may still write: until bounds it)
                    moved = _copy(s, max_output - bytes_out, until)
                    bytes_out += moved
                    if not moved and s.open and not _wait_readable(s.src, until):
                        break
            except BrokenPipeError:
                disconnected = True
                break
            except _Stalled:
                pass
            try:
                if s.open and s.redactor is not None and not s.capped:  # what the net holds back
                    bytes_out += _release(s, max_output - bytes_out, until)
            except BrokenPipeError:
                disconnected = True
                break
            except _Stalled:
                pass
        cut = cut or any(s.capped for s in streams)
    _reap_all(leader)
    statuses = stages.statuses()
    error = None
    if pidns:  # the stages' statuses as init saw them; none: init was killed, and so were they
        n = 1 + len(p.filters)
        reported = os.read(status_r, 4 * n + 1)
        statuses = ([int.from_bytes(reported[i:i + 4], "little") for i in range(0, 4 * n, 4)]
                    if len(reported) == 4 * n + 1 else [signal.SIGKILL] * n)
        if reported[-1:] == b"F":
            error = "a stage could not be started inside the PID namespace (fork failed)"
    duration = int((time.monotonic() - start) * 1000)
    codes = [os.waitstatus_to_exitcode(st) for st in statuses]
    code = _pipefail(codes)
    exit_code, sig = (None, None) if error else (code, None) if code >= 0 else (None, -code)
    final = (EXIT_NOT_STARTED if error else EXIT_CUT if cut else EXIT_TIMEOUT if timed_out
             else (code if code >= 0 else 128 - code))
    counts: dict[str, int] = {}
    for s in streams:
        for name, c in (s.redactor.counts.items() if s.redactor else ()):
            counts[name] = counts.get(name, 0) + c
    return Outcome(final, exit_code, sig, duration, bytes_out, cut, timed_out, disconnected,
                   "pidns" if pidns else "pgroup", tuple(c if c >= 0 else 128 - c for c in codes),
                   MappingProxyType(counts), error)


def _not_started(p: Plan, start: float, error: str, started: int = 0) -> Outcome:
    """A pipeline that could not be started whole: the stages that had started were killed
    (137), the others never ran (127)."""
    n = 1 + len(p.filters)
    return Outcome(EXIT_NOT_STARTED, None, None, int((time.monotonic() - start) * 1000), 0,
                   stages=(128 + signal.SIGKILL,) * started + (127,) * (n - started), error=error)


def _pipefail(codes: list[int]) -> int:
    """The pipeline's status (as waitstatus_to_exitcode gives it): that of the last stage
    that failed, or 0; a stage before the last killed by SIGPIPE did not fail, a later stage
    stopped reading (``journalctl | head -n 5``)."""
    final = 0
    for i, c in enumerate(codes):
        if c == -signal.SIGPIPE and i < len(codes) - 1:
            continue
        if c != 0:
            final = c
    return final


class _Stalled(Exception):
    """The client has not read its output by the hard end of the time limit."""


def _copy(s: _Stream, room: int, until: float) -> int:
    """Move what is there now from the child's pipe to ours (at most ``room`` bytes).

    Returns the bytes written; closes the stream at EOF; sets ``s.capped`` when a byte
    beyond the cap arrived (output of exactly the cap is not cut). With the redaction net
    on, every chunk goes through it and the cap counts what comes out. Otherwise spliced
    while far from the cap; the last 128 KiB are read, and a read that ends inside a UTF-8 character keeps
    that character back for the next one, so the output at the cap ends on a whole
    character. A client that does not read, or a command that writes on and on, holds the
    copy up until ``until`` at most (then _Stalled); after :data:`_TURN` it returns what it
    moved so far, so the loop sees the time limit whatever the output (or the net) costs."""
    moved = 0
    turn = time.monotonic() + _TURN
    while s.open and not s.capped:
        now = time.monotonic()
        if now >= until:
            raise _Stalled
        if now >= turn:  # back to the loop: the time limit, the other stream, the client
            return moved
        left = room - moved
        try:
            if s.splice and left >= 2 * _CHUNK:
                n = os.splice(s.src, s.dst, _CHUNK, flags=os.SPLICE_F_NONBLOCK | os.SPLICE_F_MOVE)
                if n == 0:
                    s.open = False
                moved += n
                continue
            chunk = os.read(s.src, _CHUNK if s.redactor else max(1, min(_CHUNK, left - len(s.carry))))
        except BlockingIOError:
            if _src_empty(s):
                return moved
            _wait_writable(s.dst, until)
            continue
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise BrokenPipeError from None
            if exc.errno == errno.EINVAL and s.splice:  # this kind of descriptor cannot splice
                s.splice = False
                continue
            raise
        if not chunk:  # EOF: what the command wrote is what it wrote, a broken last character too
            s.open = False
            data, s.carry = s.carry + (s.redactor.flush() if s.redactor else b""), b""
        else:
            data, s.carry = _split_utf8(s.carry + (s.redactor.feed(chunk) if s.redactor else chunk))
        if len(data) + len(s.carry) > left:  # past the cap: end on the last whole character
            s.capped = True
            data, s.carry = _split_utf8(data[:left])[0], b""
        _write_all(s.dst, data, until)
        moved += len(data)
    return moved


def _release(s: _Stream, room: int, until: float) -> int:
    """The stream will not be read to its end (a grandchild holds it open): what the net
    still holds back goes out now, masked, within the cap."""
    assert s.redactor is not None
    data = s.carry + s.redactor.flush()
    s.carry = b""
    if len(data) > room:
        s.capped = True
        data = _split_utf8(data[:room])[0]
    _write_all(s.dst, data, until)
    return len(data)


def _split_utf8(data: bytes) -> tuple[bytes, bytes]:
    """(``data`` up to its last whole UTF-8 character, the incomplete one after it)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b < 0x80:
            return data, b""
        if b >= 0xC0:  # a lead byte: complete if its sequence fits
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return (data, b"") if back >= need else (data[:-back], data[-back:])
    return data, b""  # not UTF-8 there: passed on as it is


def _src_empty(s: _Stream) -> bool:
    """After EAGAIN: was it the child's pipe that had nothing (else ours is full)?"""
    poller = select.poll()
    poller.register(s.src, select.POLLIN)
    return not poller.poll(0)


def _wait_readable(fd: int, until: float) -> bool:
    """Wait (up to ``until``) for something to read, or the end, on ``fd``."""
    left = until - time.monotonic()
    if left <= 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(left * 1000) + 1))


def _wait_writable(fd: int, until: float) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    left = until - time.monotonic()
    if left <= 0:
        raise _Stalled
    for _, ev in poller.poll(min(int(left * 1000) + 1, 1000)):
        if ev & (select.POLLERR | select.POLLHUP):
            raise BrokenPipeError


def _write_all(fd: int, data: bytes, until: float) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            _wait_writable(fd, until)
            continue
        view = view[n:]


def _kill_tree(pid: int, sig: int) -> None:
    for target in (-pid, pid):
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap_all(pid: int) -> None:
    """Nothing the command started outlives it: kill its process group, then (as subreaper)
    every child that is left, until there is none. (``pid`` itself is reaped already.)"""
    try:
        os.kill(-pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(1000):
        try:
            with open(f"/proc/{os.getpid()}/task/{os.getpid()}/children") as fh:
                left = [int(c) for c in fh.read().split()]
        except OSError:
            left = []
        if not left:
            break
        _kill_and_wait(left)


def _kill_and_wait(pids: list[int]) -> None:
    for pid in pids:
        _kill_tree(pid, signal.SIGKILL)
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def _stop(pids: list[int]) -> None:
    """Kill the stages started, and everything they started, and reap them all."""
    _kill_and_wait(pids)
    if pids:
        _reap_all(pids[0])


def message(o: Outcome, max_output: int, timeout: int | None) -> str | None:
    """The one line the agent reads on stderr when the supervisor stopped the command."""
    if o.error and o.status == EXIT_NOT_STARTED:
        return (f"diag-wrapper: the command did not run: {o.error}; the diag user is at its process"
                f" limit or the host is short of memory, try again in a moment (exit {EXIT_NOT_STARTED})")
    if o.error:
        return f"diag-wrapper: {o.error}; the command was stopped, nothing else ran (exit {o.status})"
    if o.cut:
        return (f"diag-wrapper: output cut at {_size(max_output)}; narrow it with -n, --since, -g or a filter"
                f" (exit {EXIT_CUT})")
    if o.timed_out:
        return (f"diag-wrapper: time limit of {timeout} s reached, the command was stopped; narrow it"
                f" (-n, --since, a unit, a smaller path) or drop -f (exit {EXIT_TIMEOUT})")
    return None


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n % (1 << 20) == 0 else f"{n} bytes"


def say(line: str) -> None:
    """One line to the client's stderr, best effort: it is non-blocking here, and a client
    that does not read does not hold the wrapper (nor its slot) for it."""
    try:
        _write_all(2, (line + "\n").encode(), time.monotonic() + 0.5)
    except (_Stalled, OSError):
        pass
