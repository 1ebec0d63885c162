"""Host-wide limits that need shared state: concurrent commands and the decision rate.

Both live in ``settings.state_dir`` (``/run/diag-wrapper``: made by root, writable by
the diag user's group; only the wrapper runs as that user, and the commands it runs
cannot write files: RLIMIT_FSIZE is 0).

* **Slots.** A command runs only while it holds an exclusive ``flock`` on one of
  ``max_concurrent`` files ``slot.N``. The descriptor is inherited by the command
  (it is the command's, not the wrapper's, once ``execve`` replaces the wrapper), so
  the slot is free again exactly when the command and everything it started have
  exited. All taken: ``limit.busy``.
* **Rate.** Per login key (its fingerprint; the user name without one) a fixed
  one-minute window counts decisions in ``rate.<hex of the key>``. Over ``rate_per_minute``
  the command is refused (``limit.rate``) before it is parsed, and only the first
  refusal of a window is written to the journal, so no client can flood it.

Any failure to use the state directory is a refusal (``limit.unavailable``): without
it neither bound holds.
"""

from __future__ import annotations

import fcntl
import os
import time

from .model import Deny

_OPEN = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
_SLOT_FD = 64  # the lowest descriptor number a slot lock is moved to


def _open(state_dir: str, name: str, mode: int = os.O_RDWR) -> int:
    """Open (or make) one state file. Files are made 0666: the directory (0770 root:diag)
    is what keeps others out, and every uid the wrapper may run as must share them."""
    try:
        fd = os.open(os.path.join(state_dir, name), _OPEN | mode, 0o666)
        try:
            st = os.fstat(fd)
            if st.st_mode & 0o777 != 0o666 and st.st_uid == os.getuid():
                os.fchmod(fd, 0o666)  # past the session's umask, once: when the file was just made
        except OSError:
            pass
        return fd
    except OSError as exc:
        raise _unavailable(state_dir, exc) from None


def _unavailable(state_dir: str, exc: OSError) -> Deny:
    return Deny("limit.unavailable", f"the wrapper's state directory {state_dir} cannot be used"
                f" ({exc.strerror or exc}); nothing was executed. The host must provide it"
                " (the NixOS module does, through tmpfiles)")


def take_slot(state_dir: str, slots: int) -> int:
    """An inheritable descriptor holding one of ``slots`` locks, or Deny(limit.busy)."""
    for i in range(slots):
        fd = _open(state_dir, f"slot.{i}", os.O_RDONLY)  # the command inherits it: nothing to write
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        except OSError as exc:
            os.close(fd)
            raise _unavailable(state_dir, exc) from None
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, _SLOT_FD)  # out of the way: passed files stay /dev/fd/3...
        os.close(fd)
        os.set_inheritable(high, True)
        return high
    raise Deny("limit.busy", f"{slots} diag commands are already running on this host; wait for one to"
               " finish (a -f follow runs until its time limit) and try again")


def count(state_dir: str, who: str, per_minute: int, now: float | None = None) -> tuple[bool, bool]:
    """Count one decision for ``who``; returns (allowed, first refusal of this window)."""
    name = "rate." + who.encode("utf-8", "surrogateescape").hex()[:200]  # a file name for any key
    fd = _open(state_dir, name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        raw = os.pread(fd, 64, 0).decode("ascii", "replace").split()
        window = int((now if now is not None else time.time()) // 60)
        try:
            seen_window, n = int(raw[0]), int(raw[1])
        except (IndexError, ValueError):
            seen_window, n = window, 0
        if seen_window != window:
            n = 0
        n += 1
        data = f"{window} {n}\n".encode()
        os.pwrite(fd, data.ljust(32), 0)
        return n <= per_minute, n == per_minute + 1
    except OSError as exc:  # a full or read-only file system: no count, no command
        raise _unavailable(state_dir, exc) from None
    finally:
        os.close(fd)
