"""The kernel wall: run the command where the deny entries are not there to read.

Just before ``execve`` the wrapper moves itself into a new user namespace
(unprivileged on NixOS and Debian) and a new mount namespace owned by it, and
covers what the plan lists (``Plan.wall``, computed by ``deny.DenyList.covers``
from the same compiled deny list the path checks use): an empty, read-only,
mode-000 tmpfs over directories, ``/dev/null`` bound over files. A gap in parsing or typing then
still cannot read them, because the kernel shows the command nothing there.
The mounts are private to the command; nothing changes for the host.

User and group ids map to themselves, so file access is what it was, and the
supplementary groups (``systemd-journal``) keep working for permission checks
(``setgroups`` is denied, as an unprivileged user namespace requires; the
groups are kept, only not changeable). Capabilities in the new namespace are
dropped by ``execve`` because the command runs as the same non-zero uid.

Entries under ``/proc`` and ``/dev`` (``/proc/*/environ``, ``/dev/fd``,
``/dev/stdin``) are per process or magic links to devices and are not covered
this way; the path checks refuse them. Python 3.11 has no ``os.unshare``,
so libc's ``unshare``/``mount`` are called through ctypes.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_BIND, MS_REC, MS_PRIVATE = 4096, 1 << 14, 1 << 18
MNT_DETACH = 2


class SandboxError(OSError):
    """The namespaces or a cover could not be set up.

    ``partial`` is true when some covers were mounted and could not all be taken down
    again: then the command must not run at all, whatever the policy's sandbox mode.
    """

    partial = False


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    libc.unshare.argtypes = [ctypes.c_int]
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(err, f"{what}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def enter(cover: list[str]) -> None:
    """Unshare user + mount namespaces and cover each path; raise SandboxError on any failure."""
    uid, gid = os.getuid(), os.getgid()
    libc = _libc()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare(CLONE_NEWUSER|CLONE_NEWNS)")
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError as exc:
        raise SandboxError(exc.errno or 0, f"id maps: {exc.strerror or exc}") from None
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make mounts private")
    done: list[bytes] = []
    try:
        for path in cover:
            target = os.fsencode(path)
            if os.path.isdir(path):
                flags = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
                _check(libc.mount(b"diag-deny", target, b"tmpfs", flags, b"size=4k,mode=000"), f"cover {path}")
            else:
                _check(libc.mount(b"/dev/null", target, None, MS_BIND, None), f"cover {path}")
            done.append(target)
    except SandboxError as exc:
        # All covers or none: take down the ones already up, so that a fallback runs with
        # the path checks alone (and says so), never with a wall that is half there.
        for target in reversed(done):
            if libc.umount2(target, MNT_DETACH) != 0:
                exc.partial = True
        raise


def pid_namespace() -> bool:
    """Have the next child be PID 1 of a new PID namespace (possible inside the wall's user
    namespace, where this process holds CAP_SYS_ADMIN: it has exec'd nothing since)."""
    return _libc().unshare(CLONE_NEWPID) == 0
