"""The effects that prepare a plan's run: open the passed files, set the limits, closefrom.

The command itself is started by the supervisor (supervise.py): no shell, ``os.execve``
with the absolute path from the policy's search path, the argv as decided (forced
arguments included) and a fresh environment.

**fd passing** (:func:`open_fds`, called before the record is written): for the
words the plan lists in ``pass_fds`` (every path value of a single-file reader,
``plan.FD_COMMANDS``, each a whole word of argv), the command is not handed the
names that were checked, to look up again later, but the files themselves. Each
checked path is opened here, one component at a time from ``/`` with
``O_PATH|O_NOFOLLOW`` (so a symlink swapped into any component since the
check is refused, never followed; ``O_PATH`` opens nothing for reading, so a
FIFO or device has no side effect), the open file's real path must be the
checked one and pass the deny list again, its (st_dev, st_ino) must not be an
entry's, and its link count must pass the hard-link rule (deny.py). The word
in argv becomes ``/dev/fd/N`` (``/proc/self/fd/N`` where ``/dev/fd`` is
missing), the descriptor is inherited, and the command's own
``open()`` re-opens *that* inode through the magic link, with its own
permissions: a symlink flipped after the check changes nothing. Output that
names the file shows ``/dev/fd/N``: ``head``/``tail`` with several files
(``==> /dev/fd/3 <==``), ``grep`` with several files or ``-H``/``-l``/``-L``,
``wc`` (the name column), and error messages. ``tail -F`` follows the
descriptor, not the name (a rotated log is not re-opened). Not passed (the
name is handed over as before): trees (``grep -r``, ``ls -R``, ``du``),
commands that show names or metadata (``ls``, ``stat``, ``df``, ``findmnt``,
``lsblk``), and a value that is only part of a word (``--file=X``). There the
kernel wall covers the race; where the wall is not up, such a name must be
stable (``DenyList.check_stable``: only root can change what it reaches) or
the plan refuses it.
"""

from __future__ import annotations

import os
import stat
from .deny import DenyList, check_type
from .model import Deny, PathCheck, Plan

_O_WALK = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


def _fd_dir() -> str:
    try:
        return "/dev/fd" if os.readlink("/dev/fd") == "/proc/self/fd" else "/proc/self/fd"
    except OSError:
        return "/proc/self/fd"


def open_checked(check: PathCheck, denylist: DenyList) -> int:
    """An O_PATH descriptor of exactly the checked file, or Deny; see the module docstring."""
    value, resolved = check.value, check.resolved
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for comp in (c for c in resolved.split("/") if c):
            nfd = os.open(comp, _O_WALK, dir_fd=fd)
            os.close(fd)
            fd = nfd
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise Deny("path.changed", f"{value}: {resolved} became a symbolic link after it was checked;"
                           " nothing was executed, try again")
        st = os.fstat(fd)
        check_type(value, st)  # the opened object itself: a device or FIFO swapped in is refused
        real = os.readlink(f"/proc/self/fd/{fd}")
        if real != resolved:
            raise Deny("path.changed", f"{value}: the file opened is {real}, not the {resolved} that was"
                       " checked (it was moved or replaced); nothing was executed, try again")
        again = denylist.check(real, "file")  # raises Deny if the opened name is denied now
        denylist.check_links(value, st)  # the opened file's own link count, not the name's
        entry = denylist.entry_with_identity(st)
        if again.resolved != resolved or entry is not None:
            raise Deny("path.denied", f"{value}: the file opened is {entry.path if entry else real}"
                       f"{' (' + entry.why + ')' if entry else ''}; this location is never readable"
                       " through diag", rule=f"deny:{entry.path}" if entry else None)
        return fd
    except OSError as exc:
        os.close(fd)
        raise Deny("path.unopenable", f"{value} cannot be opened ({exc.strerror or exc}); nothing was"
                   " executed") from None
    except BaseException:
        os.close(fd)
        raise


def open_fds(p: Plan, denylist: DenyList) -> Plan:
    """Open the files of ``p.pass_fds`` and put their descriptors in argv (see above); Deny on any doubt."""
    if not p.pass_fds:
        return p
    argv = list(p.exec_argv)
    fds: dict[str, int] = {}
    fd_dir = _fd_dir()
    try:
        for check in (c for c in p.paths if c.index in p.pass_fds):
            if check.resolved not in fds:
                fds[check.resolved] = open_checked(check, denylist)
            argv[check.index] = f"{fd_dir}/{fds[check.resolved]}"
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    for fd in fds.values():
        os.set_inheritable(fd, True)  # O_PATH descriptors survive execve; the command re-opens them
    return p._replace(exec_argv=tuple(argv), fds=(*p.fds, *fds.values()))


# Set in each child just before execve (supervise.py), not on the supervisor: its CPU time
# (the redaction net) is bounded by its own clock, and a CPU limit on it would kill it before
# it could write the closing record.
CHILD_RLIMITS = frozenset({"RLIMIT_CPU"})


def apply_limits(p: Plan) -> None:
    """Set the decision's rlimits (soft = hard) on this process; they survive execve. (Those
    in :data:`CHILD_RLIMITS` are set in the command's own process.)

    Called before the kernel wall: RLIMIT_NPROC is counted per user namespace level, and the
    level of the diag user keeps the limit its creator had when the namespace was made, so set
    after unshare(CLONE_NEWUSER) it would bound only the command's own namespace.
    """
    import resource

    for name, value in p.rlimits:
        which = getattr(resource, name)
        if name not in CHILD_RLIMITS:
            resource.setrlimit(which, (value, value))
            continue
        hard = resource.getrlimit(which)[1]  # the child will set it: fail here, where it is recorded
        if hard != resource.RLIM_INFINITY and hard < value:
            raise ValueError(f"{name} hard limit {hard} is below the policy's {value}")


def close_others(keep: tuple[int, ...]) -> None:
    """Close every descriptor but 0-2 and ``keep`` (as doas's closefrom): nothing the wrapper
    inherited from sshd or opened itself (the journal socket, the policy) reaches the command."""
    low = 3
    for fd in sorted(k for k in set(keep) if k >= 3):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)
