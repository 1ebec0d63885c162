"""The path denylist: locations that are never readable through diag, whatever allows them.

Why the checks look the way they do:

* **Resolve, then compare.**  A path string says little about what the kernel will open:
  ``/etc/../run/secrets/x``, ``//run/secrets/x``, ``x`` from cwd ``/run/secrets`` and
  a symlink planted anywhere all reach the same file.  So every value is resolved the
  way ``os.path.realpath`` does (symlinks expanded component by component, ``..``
  applied to the already-resolved prefix, relative values joined to ``fs.getcwd()``),
  and the *resolved* path is compared.  ``fs.realpath`` is consulted as well and its
  answer must pass too.

* **Every name on the way counts, not only the end.**  The walk records every name it
  looks up, including the symlinks it follows, and each must pass.  This is what stops
  the magic links of ``/proc``: ``/proc/1/root/etc/x`` "resolves" to ``/etc/x`` by
  readlink, but the kernel opens the file in process 1's root, so ``/proc/*/root`` has
  to be refused where it is *traversed*; likewise ``/dev/fd/N``, ``/proc/*/cwd``,
  ``/proc/*/fd/N``.  A walk that needs more than 40 symlinks (the kernel's limit; a
  loop) is refused rather than guessed at.

* **Aliases.**  An entry names a secret by one name; the same bytes may live under
  another (impermanence: ``/etc/ssh`` -> ``/persist/etc/ssh``; ``DynamicUser=``:
  ``/var/lib/n8n`` -> ``/var/lib/private/n8n``).  A value resolved to the real location
  would slip past the entry's own name, so each entry is compiled once more at its
  realpath: the realpath of its longest ``*``-free prefix plus the rest of the pattern,
  and for ``*`` entries the realpath of every existing match that differs.  Entries in
  ``/proc`` get no aliases: their symlinks are magic (``/proc/1/root`` -> ``/``,
  ``/proc/1/cwd`` -> wherever), the entry itself is what must be refused, and listing
  every process would make compiling slow.

* **Component-wise.**  "At or under" compares path components, never string prefixes,
  so ``/run/secretsX`` is not under ``/run/secrets``.  ``*`` matches any characters of
  one component (dot-files included), never a ``/``.

* **Trees.**  A recursive read (``ls -R``, ``grep -r``, ``du``) of a directory reaches
  everything beneath it, so a tree value is also refused when any entry or alias lies
  beneath it (``/``, ``/var/lib`` for ``/var/lib/mautrix-*``, ``/proc/1`` for
  ``/proc/*/environ``).  This assumes the recursive tools allowed do not follow
  symlinks found inside the tree (``grep -r``, ``ls -R``, ``du`` without ``-L``).

* **Identity.**  Bind mounts and hard links are invisible to path strings: impermanence
  bind-mounts ``/persist/...`` onto ``/etc/ssh/...`` and ``/var/lib/...``, and realpath
  cannot see it.  So when the list is compiled, every entry that exists (``*`` expanded,
  ``/proc`` excepted) is stat'ed and its (st_dev, st_ino) kept; a value is refused when
  it, or any name the walk passes through, *is* one of those objects, whatever it is
  called.  A tree is refused when a deny entry lies inside it as the kernel sees it: on
  the same file system (st_dev) at or below the tree's place in that file system
  (``/proc/self/mountinfo`` gives each mount's root), or inside any mount beneath the
  tree (a bind of a secret, or of a directory that holds one).

* **Hard links.**  A hard link of an entry that is a file is the same inode: identity
  finds it.  A hard link of a *file inside* a denied directory is not an entry's identity,
  and its other names cannot be listed without walking every denied tree.  So a regular
  file with more than one name (``st_nlink > 1``) is read only when nobody but root can
  have given it the other names: owned by root, writable by nobody else, and the kernel's
  ``fs.protected_hardlinks`` on (then linking needs ownership or read *and* write access).
  Otherwise it is refused (``path.hardlinked``).  Inside a tree the files are not walked:
  there, a second name can only have been made (``protected_hardlinks``) by someone who
  can already read the file, so it exposes nothing they could not copy.

* **Stable names** (:meth:`DenyList.check_stable`).  A name that the command will look up
  again itself can be changed between the check and that lookup by whoever may write a
  directory it passes through.  Where the kernel wall is not up, a name is handed over only
  when every directory the walk looks a name up in is owned by root and writable by
  nobody else (or is sticky and the entry in it is root's, like ``/tmp/x`` made by root):
  then only root can change what it reaches.  Otherwise ``path.unstable``.  (Files given as
  open descriptors, see execute.py, need no such rule.)

* **The wall's locations** (:meth:`DenyList.covers`).  The kernel wall (sandbox.py) covers
  exactly what this compiled list found: the real path of every existing entry, outermost
  first, and every other name the kernel shows it under through a bind mount of it or of
  a directory above it.  ``/proc`` and ``/dev`` entries are left to the checks above.

Decisions are pure functions of the inputs and the :class:`Host`.
"""

import functools
import os
import re
import stat
from typing import NamedTuple, Protocol, Sequence

from .model import Deny, PathCheck
from .policy import DenyEntry, Policy, validate_entry

FILE = "file"
TREE = "tree"
MAX_SYMLINKS = 40  # Linux MAXSYMLINKS: beyond this the kernel fails with ELOOP anyway

_Comp = str | re.Pattern[str]  # a literal component or a compiled one-component glob


class Host(Protocol):
    """The filesystem and kernel as the plan sees them (paths passed in are absolute).

    ``readlink`` is needed on top of realpath: the walk must see every link it follows
    (``/proc/*/root`` and friends are refused where traversed, not where they point).
    ``userns`` says why this process cannot have the user namespace the wall needs (None:
    it can); ``executable`` whether a program file may be run.
    """

    def realpath(self, p: str) -> str: ...
    def getcwd(self) -> str: ...
    def glob(self, pattern: str) -> list[str]: ...
    def listdir(self, p: str) -> list[str]: ...
    def lstat(self, p: str) -> os.stat_result: ...
    def readlink(self, p: str) -> str: ...
    def stat(self, p: str) -> os.stat_result: ...
    def mounts(self) -> list["Mount"]: ...
    def protected_hardlinks(self) -> bool: ...
    def userns(self) -> str | None: ...
    def executable(self, p: str) -> bool: ...


class Mount(NamedTuple):
    """One line of /proc/self/mountinfo: where a file system's ``root`` is mounted."""

    root: tuple[str, ...]  # the directory of its file system that is mounted
    point: tuple[str, ...]  # the mount point
    fstype: str = ""  # "proc", "sysfs", "ext4", ...


_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")


def parse_mountinfo(text: str) -> list[Mount]:
    """Mounts in the order the kernel lists them (a later one on the same point hides the earlier)."""
    out = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        root, point = (_MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), f) for f in fields[3:5])
        fstype = fields[fields.index("-", 6) + 1] if "-" in fields[6:-1] else ""
        out.append(Mount(_split(root), _split(point), fstype))
    return out


#: File systems that are the kernel's own state (process memory maps and environments,
#: keys, tracing): readable only where the /proc and /sys rules see them.
_KERNEL_FS = frozenset({"proc", "sysfs", "debugfs", "tracefs", "securityfs", "bpf", "configfs", "efivarfs",
                        "pstore", "binfmt_misc", "fusectl"})


def kernel_mount(mounts: Sequence[Mount], real: tuple[str, ...]) -> Mount | None:
    """The kernel file system ``real`` lies in, if it is mounted outside /proc and /sys (a
    chroot's or container's /proc): the name rules for /proc do not see it there."""
    best: Mount | None = None
    for m in mounts:
        if real[: len(m.point)] == m.point and (best is None or len(m.point) >= len(best.point)):
            best = m
    if best is None or best.fstype not in _KERNEL_FS or best.point[:1] in (("proc",), ("sys",)):
        return None
    return best


def place_in_fs(mounts: Sequence[Mount], real: tuple[str, ...]) -> tuple[str, ...]:
    """Where the resolved path ``real`` lies within its own file system."""
    best: Mount | None = None
    for m in mounts:  # the last mount on the deepest point is the one in effect
        if real[: len(m.point)] == m.point and (best is None or len(m.point) >= len(best.point)):
            best = m
    return real if best is None else best.root + real[len(best.point):]


class RealHost:
    """This host; ``cwd`` fixes the directory relative values start from."""

    def __init__(self, cwd: str | None = None) -> None:
        self._cwd = cwd

    def getcwd(self) -> str:
        return self._cwd if self._cwd is not None else os.getcwd()

    def realpath(self, p: str) -> str:
        return os.path.realpath(p if p.startswith("/") else os.path.join(self.getcwd(), p))

    def glob(self, pattern: str) -> list[str]:
        """``glob.glob(pattern, include_hidden=True)``, sorted, for an absolute deny entry
        ('*' within components), with the entry's own compiled components instead of the
        glob module's (~0.5 ms of every start-up: its import and a regex per entry)."""
        paths = [""]
        for comp in pattern.split("/")[1:]:
            if "*" not in comp:
                paths = [f"{base}/{comp}" for base in paths]
                continue
            rx = _compile_comp(comp)
            found = []
            for base in paths:
                try:
                    names = os.listdir(base or "/")
                except OSError:
                    continue
                found += [f"{base}/{n}" for n in names if rx.fullmatch(n)]  # type: ignore[union-attr]
            paths = found
        return sorted(p for p in paths if os.path.lexists(p))

    def listdir(self, p: str) -> list[str]:
        return os.listdir(p)

    def lstat(self, p: str) -> os.stat_result:
        return os.lstat(p)

    def readlink(self, p: str) -> str:
        return os.readlink(p)

    def stat(self, p: str) -> os.stat_result:
        return os.stat(p)

    def mounts(self) -> list[Mount]:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            return parse_mountinfo(fh.read())

    def protected_hardlinks(self) -> bool:
        """``fs.protected_hardlinks`` is 1; unreadable or anything else counts as off."""
        try:
            with open("/proc/sys/fs/protected_hardlinks", encoding="ascii") as fh:
                return fh.read().strip() == "1"
        except (OSError, ValueError):
            return False

    def executable(self, p: str) -> bool:
        return os.path.isfile(p) and os.access(p, os.X_OK)

    def userns(self) -> str | None:
        """The kernel's switches for unprivileged user namespaces, read, not tried (a probe
        costs a fork); only under a seccomp filter, which may refuse unshare, is it tried.
        Read once per process (a RealHost is made per plan)."""
        return _userns()


@functools.lru_cache(maxsize=None)
def _userns() -> str | None:
    switches = [("user/max_user_namespaces", "0"), ("user/max_mnt_namespaces", "0")]
    if os.geteuid() != 0:
        switches += [("kernel/unprivileged_userns_clone", "0"), ("kernel/apparmor_restrict_unprivileged_userns", "1")]
    for name, off in switches:
        try:
            with open(f"/proc/sys/{name}", "rb") as fh:
                if fh.read().strip() == off.encode():
                    return f"{name.replace('/', '.')} is {off}"
        except OSError:
            continue
    try:
        with open("/proc/self/status", "rb") as fh:
            filtered = any(line.split() == [b"Seccomp:", b"2"] for line in fh)
    except OSError:
        filtered = False
    return _probe_userns() if filtered else None


def _probe_userns() -> str | None:
    import ctypes

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only reports
        os._exit(0 if ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return None if status == 0 else "a seccomp filter refuses unshare(CLONE_NEWUSER)"


_KERNEL_TREES = ("proc", "sys")


def check_type(value: str, st: os.stat_result) -> None:
    """Content readers get regular files and directories only: reading a device (a disk,
    /dev/mem, /dev/kmsg, /dev/zero), a FIFO or a socket is never diagnostics, and opening
    one can block, hold a pty or have side effects (a watchdog, a tape rewind)."""
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return
    what = ("a character device" if stat.S_ISCHR(st.st_mode) else "a block device" if stat.S_ISBLK(st.st_mode)
            else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
            else "not a regular file")
    raise Deny("path.not-regular", f"{value} is {what}; only regular files and directories are read"
               " through diag (for disks use lsblk, df or findmnt; for the kernel log journalctl -k)")


def _writable_by_others(st: os.stat_result) -> bool:
    return st.st_uid != 0 or bool(st.st_mode & (stat.S_IWGRP | stat.S_IWOTH))


def _split(path: str) -> tuple[str, ...]:
    return tuple(filter(None, path.split("/")))


def _compile_comp(comp: str) -> _Comp:
    if "*" not in comp:
        return comp
    return re.compile("[^/]*".join(re.escape(part) for part in comp.split("*")))


def _comp_matches(pattern: _Comp, comp: str) -> bool:
    if isinstance(pattern, str):
        return pattern == comp
    return pattern.fullmatch(comp) is not None


class _Pattern(NamedTuple):
    comps: tuple[_Comp, ...]
    entry: DenyEntry
    shown: str  # how the message names it: the entry, or "ALIAS (alias of ENTRY)"

    def at_or_under(self, path: tuple[str, ...]) -> bool:
        n = len(self.comps)
        return len(path) >= n and all(_comp_matches(self.comps[i], path[i]) for i in range(n))

    def beneath(self, tree: tuple[str, ...]) -> bool:
        """True if some path this pattern covers is ``tree`` or lies beneath it."""
        m = len(tree)
        return m <= len(self.comps) and all(_comp_matches(self.comps[i], tree[i]) for i in range(m))


def _masked_by(pat: "_Pattern", wall: tuple[str, ...]) -> bool:
    """The wall shows everything ``pat`` names empty: a literal entry outside the kernel's
    file systems, at or under a path the wall covers."""
    if not all(isinstance(c, str) for c in pat.comps) or pat.comps[:1] in (("proc",), ("sys",), ("dev",)):
        return False
    path = "/" + "/".join(pat.comps)  # type: ignore[arg-type]
    return any(path == w or path.startswith(w.rstrip("/") + "/") for w in wall)


def _in_proc(comps: tuple[str, ...]) -> bool:
    return bool(comps) and comps[0] == "proc"


def _no_second_names(comps: tuple[str, ...]) -> bool:
    """Entries in /proc and /dev get no aliases or identities: their links are magic or
    per process (``/dev/stdin`` -> ``/proc/self/fd/0`` is whatever the *wrapper's* standard
    input is, and must not make that file a deny entry); the name itself is refused."""
    return bool(comps) and comps[0] in ("proc", "dev")


def _kernel_matches(pattern: tuple, comps: tuple[str, ...]) -> bool:
    """One ``kernel_readable`` pattern: ``*`` within a component, ``**`` any components."""
    if not pattern:
        return not comps
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_kernel_matches(rest, comps[i:]) for i in range(len(comps) + 1))
    return bool(comps) and _comp_matches(head, comps[0]) and _kernel_matches(rest, comps[1:])


class DenyList:
    """The compiled deny entries: their aliases, identities and places, and what the wall
    covers. :meth:`check` decides one path value; :meth:`covers` is the wall's list."""

    def __init__(self, entries: Sequence[DenyEntry], host: Host | None = None,
                 kernel_readable: Sequence[str] = ()) -> None:
        self._fs: Host = host if host is not None else RealHost()
        self._kernel_readable = tuple(kernel_readable)
        try:
            self._mounts = tuple(self._fs.mounts())
        except (OSError, ValueError):
            self._mounts = ()
        for entry in entries:
            validate_entry(entry.path)
        self._entries = tuple(entries)
        self._ids: dict[tuple[int, int], DenyEntry] = {}
        self._seen: list[tuple[int, tuple[str, ...], DenyEntry]] = []  # (st_dev, real path, entry)
        self._link_reals: list[tuple[tuple[str, ...], DenyEntry]] = []  # real paths of '*' matches
        for entry in self._entries:
            self._scan(entry)
        self._mounted_in: list[tuple[int, tuple[str, ...], DenyEntry, tuple[str, ...]]] = []
        self._scan_mounts()
        self.identity = bool(self._ids)
        self._found = [(real, dev, e) for dev, real, e in self._seen if not _no_second_names(real)]
        self._mount_devs: list[tuple["Mount", int]] | None = None
        self._covers: dict[str, tuple[str, ...]] = {}

    def _scan(self, entry: DenyEntry) -> None:
        """Where an entry exists now: each match's real path and (st_dev, st_ino)."""
        comps = _split(entry.path)
        if _no_second_names(comps):
            return
        glob = "*" in entry.path
        try:
            matches = self._fs.glob(entry.path) if glob else [entry.path]
        except (OSError, ValueError):
            matches = []
        for match in matches:
            try:
                if not glob:
                    self._fs.lstat(match)  # most entries name nothing on a given host: one syscall
                real = _split(self._fs.realpath(match))
            except (OSError, ValueError):
                continue
            if glob and real != _split(match) and not _in_proc(real):
                self._link_reals.append((real, entry))  # a dangling link too: what it names may appear
            try:
                st = self._fs.stat(match)
            except (OSError, ValueError):
                continue
            # every name counts for the wall (a hard link of an entry is an entry too, and so is
            # a second entry naming the same file without its wall_except); one identity each
            self._ids.setdefault((st.st_dev, st.st_ino), entry)
            self._seen.append((st.st_dev, real, entry))

    def _scan_mounts(self) -> None:
        """A mount at or under an existing entry shows a directory of some file system there
        (impermanence binds ``/persist/var/lib/private/x`` onto ``/var/lib/private/x``): that
        directory is the entry's content under every other name it has, so its place is a
        location of the entry too. (st_dev, its root in its file system, entry, mount point)."""
        reals = [(real, e) for _, real, e in self._seen if not _no_second_names(real)]
        for m in self._mounts:
            for real, e in reals:
                if m.point[: len(real)] == real:
                    dev = self._dev(m.point)
                    if dev is not None:
                        self._mounted_in.append((dev, m.root, e, m.point))
                    break

    # Compiled on first use: a command without path values (most) needs only the wall's covers.
    @functools.cached_property
    def _kernel(self) -> tuple[tuple[_Comp, ...], ...]:
        return tuple(tuple(_compile_comp(c) if c != "**" else c for c in _split(p)) for p in self._kernel_readable)

    @functools.cached_property
    def _patterns(self) -> tuple[_Pattern, ...]:
        """Each entry, then its aliases: the realpath of its longest '*'-free prefix plus the
        rest of the pattern, and the real path of every '*' match that is elsewhere."""
        names: dict[tuple[str, ...], tuple[DenyEntry, str | None]] = {}
        for entry in self._entries:
            names.setdefault(_split(entry.path), (entry, None))
        for entry in self._entries:
            comps = _split(entry.path)
            if _no_second_names(comps):
                continue
            k = next((i for i, c in enumerate(comps) if "*" in c), len(comps))
            try:
                real = _split(self._fs.realpath("/" + "/".join(comps[:k])))
            except (OSError, ValueError):
                continue
            if real != comps[:k] and not _in_proc(real):
                names.setdefault(real + comps[k:], (entry, "/" + "/".join(real + comps[k:])))
        for real, entry in self._link_reals:
            names.setdefault(real, (entry, "/" + "/".join(real)))
        return tuple(_Pattern(tuple(_compile_comp(c) for c in comps), entry,
                              entry.path if alias is None else f"{alias} (alias of {entry.path})")
                     for comps, (entry, alias) in names.items())

    @functools.cached_property
    def _located(self) -> list[tuple[int, tuple[str, ...], DenyEntry]]:
        """(st_dev, place in its file system, entry) of every existing entry, in the order of
        ``_seen``, then of every directory mounted into one (``_scan_mounts``)."""
        return ([(dev, place_in_fs(self._mounts, real), e) for dev, real, e in self._seen]
                + [(dev, root, e) for dev, root, e, _ in self._mounted_in])

    def _ident(self, p: str) -> tuple[int, int] | None:
        try:
            st = self._fs.stat(p)
        except (OSError, ValueError):
            return None
        return (st.st_dev, st.st_ino)

    # ----------------------------------------------------------------- the wall

    def covers(self, command: str) -> tuple[str, ...]:
        """What the wall covers for ``command``: every existing entry (but those that leave
        it to this command, ``wall_except``) at its real path, and the other names the kernel
        shows it under through mounts (a bind of it or of a directory above it), outermost
        first: a path beneath one covered is not there any more once the cover is up."""
        if command not in self._covers:
            self._covers[command] = self._compute_covers(command)
        return self._covers[command]

    def _compute_covers(self, command: str) -> tuple[str, ...]:
        cover = self._outermost(real for real, _, e in self._found if command not in e.wall_except)
        located = [(dev, place_in_fs(self._mounts, real), real) for real, dev, e in self._found
                   if command not in e.wall_except and real in cover]
        # the other names of what is mounted into a covered entry: its source directory
        located += [(dev, root, point) for dev, root, e, point in self._mounted_in
                    if command not in e.wall_except and any(point[: len(c)] == c for c in cover)]
        if self._mount_devs is None:
            self._mount_devs = [(m, d) for m in self._mounts if (d := self._dev(m.point)) is not None]
        exposed = []
        for m, dev in self._mount_devs:
            for edev, place, real in located:
                if edev != dev:
                    continue
                if place[: len(m.root)] == m.root:  # a bind of the entry or of a directory above it
                    if m.point + place[len(m.root):] != real:
                        exposed.append(m.point + place[len(m.root):])
                elif m.root[: len(place)] == place:  # a bind of something inside the entry
                    exposed.append(m.point)
        return tuple("/" + "/".join(c) for c in self._outermost([*cover, *exposed]))

    def _dev(self, comps: tuple[str, ...]) -> int | None:
        try:
            return self._fs.stat("/" + "/".join(comps)).st_dev
        except (OSError, ValueError):
            return None

    def _outermost(self, paths) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for p in sorted(set(paths), key=lambda c: (len(c), c)):
            if not any(p[: len(c)] == c for c in out) and (p in out or self._dev(p) is not None):
                out.append(p)
        return out

    def check_links(self, value: str, st: os.stat_result) -> None:
        """Refuse (``path.hardlinked``) a regular file with other names that someone besides
        root may have made; see "Hard links" above."""
        if not stat.S_ISREG(st.st_mode) or st.st_nlink <= 1:
            return  # the common case: no need to read the sysctl
        protected = self._fs.protected_hardlinks()
        if protected and st.st_uid == 0 and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return
        who = ("fs.protected_hardlinks is off, so anyone could have made them" if not protected else
               f"it is {'owned by uid ' + str(st.st_uid) if st.st_uid else 'writable by others'},"
               " so not only root could have made them")
        raise Deny("path.hardlinked", f"{value} is a file with {st.st_nlink} names and {who}; one of them"
                   " may be inside a denied directory, so it is not read through diag")

    def entry_with_identity(self, st: os.stat_result) -> DenyEntry | None:
        """The entry whose existing match *is* this object (by st_dev, st_ino), if any."""
        return self._ids.get((st.st_dev, st.st_ino))

    def _check_identity(self, value: str, name: tuple[str, ...], how: str) -> None:
        ident = self._ident("/" + "/".join(name)) if self._ids else None
        entry = self._ids.get(ident) if ident else None
        if entry is not None:
            raise Deny(
                "path.denied",
                f"{value} {how} {'/' + '/'.join(name)}, which is the same file as {entry.path}"
                f" ({entry.why}) under another name (a bind mount or hard link);"
                " this location is never readable through diag",
                rule=f"deny:{entry.path}",
            )
        self._check_place(value, name, how)

    def _check_place(self, value: str, name: tuple[str, ...], how: str) -> None:
        """Refuse a name that shows a denied place of its file system: a bind mount of a
        denied directory's subdirectory, or of a file inside it, has an identity of its own,
        but lies at or under the entry's place in the same file system (st_dev)."""
        if not self._located or _in_proc(name):
            return
        try:
            dev = self._fs.lstat("/" + "/".join(name)).st_dev
        except (OSError, ValueError):
            return
        place = place_in_fs(self._mounts, name)
        for edev, eplace, entry in self._located:
            if edev == dev and place[: len(eplace)] == eplace:
                raise Deny(
                    "path.denied",
                    f"{value} {how} {'/' + '/'.join(name)}, which shows {'/' + '/'.join(place)} of the file"
                    f" system that holds {entry.path} ({entry.why}): the same location through a bind"
                    " mount; this location is never readable through diag",
                    rule=f"deny:{entry.path}",
                )

    def _check_tree_identity(self, value: str, tree: tuple[str, ...], wall: tuple[str, ...] | None = None) -> None:
        places = []  # (st_dev, place in that fs) of the tree and of every mount beneath it
        ident = self._ident("/" + "/".join(tree))
        if ident is not None:
            places.append((ident[0], place_in_fs(self._mounts, tree)))
        for m in self._mounts:
            if m.point[: len(tree)] == tree and len(m.point) > len(tree):
                mident = self._ident("/" + "/".join(m.point))
                if mident is not None:
                    places.append((mident[0], m.root))
        # With a wall (check's ``wall``), an entry is shown empty only where the tree reaches it
        # by a name the wall covers: in the tree's own file system, with no mount beneath the
        # tree (a bind mount there could show the entry, or a mount into it, by another name).
        literal = {i for i, (_, real, e) in enumerate(self._seen) if "*" not in e.path and not _no_second_names(real)}
        for k, (dev, place) in enumerate(places):
            for i, (edev, eplace, entry) in enumerate(self._located):
                # the tree (or a mount beneath it) shows the entry's place, a parent of it,
                # or a part of it (a bind of a denied directory's subdirectory or file)
                if edev != dev or not (eplace[: len(place)] == place or place[: len(eplace)] == eplace):
                    continue
                if (wall is not None and k == 0 and len(places) == 1 and i in literal
                        and eplace[: len(place)] == place):
                    name = tree + eplace[len(place):]  # how the walk reaches it
                    if any(_split(w) == name[: len(_split(w))] for w in wall):
                        continue
                raise Deny(
                    "path.tree-contains-denied",
                    f"{value} is a tree that reaches {entry.path} ({entry.why}) through a"
                    " mount or bind mount beneath it; name a narrower path beside it",
                    rule=f"deny:{entry.path}",
                )

    def _resolve(self, path: str) -> tuple[str | None, list[tuple[str, ...]]]:
        """Walk ``path`` like realpath; return (resolved or None on a loop, names looked up)."""
        fs = self._fs
        done: list[str] = []
        todo = [c for c in reversed(path.split("/"))]
        names: list[tuple[str, ...]] = []
        links = 0
        while todo:
            comp = todo.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if done:
                    done.pop()
                continue
            name = (*done, comp)
            names.append(name)
            try:
                is_link = stat.S_ISLNK(fs.lstat("/" + "/".join(name)).st_mode)
            except (OSError, ValueError):
                is_link = False
            if not is_link:
                done.append(comp)
                continue
            links += 1
            if links > MAX_SYMLINKS:
                return None, names
            try:
                target = fs.readlink("/" + "/".join(name))
            except (OSError, ValueError):
                return None, names
            if target.startswith("/"):
                done.clear()
            todo.extend(reversed(target.split("/")))
        return "/" + "/".join(done), names

    def _check_name(self, value: str, comps: tuple[str, ...], how: str) -> None:
        for pat in self._patterns:
            if pat.at_or_under(comps):
                raise Deny(
                    "path.denied",
                    f"{value} {how} {'/' + '/'.join(comps)}, which is at or under {pat.shown}"
                    f" ({pat.entry.why}); this location is never readable through diag",
                    rule=f"deny:{pat.entry.path}",
                )

    def check(self, value: str, kind: str, content: bool = False, index: int | None = None,
              wall: tuple[str, ...] | None = None) -> PathCheck:
        """Return the resolved path, or raise Deny if ``value`` reaches a denied location.

        ``content``: the command reads what it names (cat, grep, df opens it), so it must be
        a regular file or a directory, and in /proc and /sys one the policy lists.
        ``wall``: what the planned kernel wall covers (:meth:`covers`). A tree that contains
        deny entries is then allowed when the wall shows every one of them empty: each is
        a literal name (a ``*`` entry could match a name made after the wall went up) at or
        under a covered path, outside /proc and /sys; they are the result's ``masked``."""
        if kind not in (FILE, TREE):
            raise ValueError(f"unknown path kind {kind!r}")
        if value == "":
            raise Deny("match.bad-value", "empty path; name a file or directory")
        if value == "-":
            raise Deny("match.bad-value", "'-' would mean standard input; name a file instead")
        if "\0" in value:
            raise Deny("match.bad-value", "path contains a NUL byte")
        path = self._absolute(value)
        resolved, names = self._resolve(path)
        if resolved is not None:
            self._check_name(value, _split(resolved), "resolves to")
        for name in names:
            self._check_name(value, name, "passes through")
        if resolved is not None:
            self._check_identity(value, _split(resolved), "resolves to")
        for name in names:
            self._check_identity(value, name, "passes through")
        if resolved is None:
            raise Deny(
                "match.bad-value",
                f"{value} cannot be resolved: a symbolic link loop (more than {MAX_SYMLINKS}"
                " links) or a link that cannot be read; name the file by its real path",
            )
        try:
            other = self._fs.realpath(path)
        except (OSError, ValueError, RuntimeError):
            other = resolved
        if other != resolved:
            self._check_name(value, _split(other), "resolves to")
        masked: tuple[str, ...] = ()
        if kind == TREE:
            tree = _split(resolved)
            inside = [pat for pat in self._patterns if pat.beneath(tree)]
            if inside and wall is not None and all(_masked_by(pat, wall) for pat in inside):
                masked = tuple(sorted({"/" + "/".join(pat.comps) for pat in inside}))  # type: ignore[arg-type]
                inside = []
            if inside:
                pat = inside[0]
                raise Deny(
                    "path.tree-contains-denied",
                    f"{value} resolves to {resolved}, a tree that contains {pat.shown}"
                    f" ({pat.entry.why}); {self._clean_children(resolved)}",
                    rule=f"deny:{pat.entry.path}",
                )
            self._check_tree_identity(value, tree, wall if masked else None)
        self._check_kernel_mounts(value, _split(resolved), kind)
        if content:
            self.check_kernel(value, _split(resolved), kind)
        try:
            st = self._fs.stat(resolved)
        except (OSError, ValueError):
            st = None
        if st is not None:
            if content:
                check_type(value, st)
            self.check_links(value, st)
        return PathCheck(value=value, resolved=resolved, kind=kind, index=index, masked=masked)

    def _clean_children(self, resolved: str, most: int = 24) -> str:
        """What to name instead of a tree that contains a deny entry: its entries that are
        clean trees themselves (as ``ls`` of it would show them; never inside a deny entry)."""
        if getattr(self, "_listing", False):  # a child's own refusal: no hint of its own
            return "name a narrower path beside it"
        try:
            names = sorted(self._fs.listdir(resolved), key=os.fsencode)
        except OSError:
            names = []
        clean = []
        self._listing = True
        try:
            for n in names[:256]:
                child = f"{resolved.rstrip('/')}/{n}"
                try:
                    self.check(child, TREE)
                except Deny:
                    continue
                clean.append(child)
        finally:
            self._listing = False
        if not clean:
            return "name a narrower path beside it"
        more = f" and {len(clean) - most} more" if len(clean) > most else ""
        return f"its clean parts, which may be named: {' '.join(clean[:most])}{more}"

    def _check_kernel_mounts(self, value: str, real: tuple[str, ...], kind: str) -> None:
        """Nothing on a kernel file system mounted elsewhere than /proc and /sys, and no tree
        with one beneath it (a chroot's /proc holds every process's environ)."""
        m = kernel_mount(self._mounts, real)
        if m is None and kind == TREE:
            m = next((k for k in self._mounts if k.point[: len(real)] == real and len(k.point) > len(real)
                      and kernel_mount(self._mounts, k.point) is not None), None)
        if m is not None:
            raise Deny("path.kernel-file", f"{value} resolves to {'/' + '/'.join(real)}, which is or holds a"
                       f" {m.fstype} file system mounted at {'/' + '/'.join(m.point)}, outside /proc and /sys;"
                       " the kernel's files are read where the rules for /proc and /sys apply")

    def check_kernel(self, value: str, real: tuple[str, ...], kind: str) -> None:
        """Content reads in /proc and /sys only of the files the policy lists
        (``settings.kernel_readable``): maps, auxv, stack, keys, kallsyms, firmware,
        debug and tracing files are kernel memory layouts and secrets, not diagnostics."""
        if kind == TREE and (not real or real[0] in _KERNEL_TREES):
            where = "/" + "/".join(real)
            raise Deny("path.kernel-file", f"{value} resolves to {where}, a tree that is or holds /proc or"
                       " /sys; a recursive read there is refused: name the files (help lists them)")
        if real and real[0] in _KERNEL_TREES and not any(_kernel_matches(p, real) for p in self._kernel):
            raise Deny("path.kernel-file", f"{value} resolves to {'/' + '/'.join(real)}, which is not one"
                       " of the /proc and /sys files readable through diag (settings.kernel_readable:"
                       " meminfo, loadavg, pressure/*, PID/status, cgroup memory.*, ...); 'help' lists them")

    def _absolute(self, value: str) -> str:
        if value.startswith("/"):
            return value
        try:
            cwd = self._fs.getcwd()
        except (OSError, ValueError):
            cwd = ""
        if not cwd.startswith("/"):
            raise Deny("match.bad-value", f"{value} is relative but the working directory is unknown;"
                       " use an absolute path")
        return cwd + "/" + value

    def check_stable(self, check: PathCheck) -> None:
        """Raise Deny unless only root can change what ``check.value`` reaches (see "Stable
        names" above): every directory the walk looks a name up in is root's and writable by
        nobody else, or sticky with the name in it root's."""
        _, names = self._resolve(self._absolute(check.value))
        for name in names:
            if name[0] in _KERNEL_TREES and len(name) > 1:
                continue  # procfs, sysfs: the kernel makes their names; no user can rename in them
            parent = "/" + "/".join(name[:-1])
            try:
                pst = self._fs.lstat(parent)
            except (OSError, ValueError):
                pst = None
            if pst is not None and not _writable_by_others(pst):
                continue
            if pst is not None and pst.st_uid == 0 and pst.st_mode & stat.S_ISVTX:
                try:
                    if self._fs.lstat("/" + "/".join(name)).st_uid == 0:
                        continue  # sticky: only the entry's owner (root) or root may replace it
                except (OSError, ValueError):
                    pass  # missing: anyone who may write the directory could create it
            who = "cannot be examined" if pst is None else (
                f"is owned by uid {pst.st_uid}" if pst.st_uid else "is writable by group or others")
            raise Deny(
                "path.unstable",
                f"{check.value}: the directory {parent} {who}, so {'/' + '/'.join(name)} could be"
                " swapped between the check and the command's own lookup, and the kernel wall is not"
                " up here; name it through root-owned directories, or read the file with cat, head,"
                " tail, wc or grep (they get it as an open descriptor)",
            )


_compiled: dict[int, tuple[Policy, DenyList]] = {}


def for_policy(policy: Policy, host: Host | None = None) -> DenyList:
    """The policy's deny list compiled against ``host``; against this host (None) it is
    compiled once per policy for the life of the process."""
    if host is not None:
        return DenyList(policy.deny, host, policy.settings.kernel_readable)
    hit = _compiled.get(id(policy))
    if hit is None or hit[0] is not policy:
        hit = _compiled[id(policy)] = (policy, DenyList(policy.deny, None, policy.settings.kernel_readable))
    return hit[1]


# --------------------------------------------------------------------------- globs in path values

#: Paths one glob may expand to; more is refused (narrow the pattern).
MAX_GLOB = 256


def expand_glob(pattern: str, literal: str, host: Host, denylist: "DenyList | None" = None) -> list[str]:
    """What bash makes of an unquoted ``*``/``?`` in the last component of a path.

    ``pattern`` is the parse module's: ``*`` and ``?`` as themselves, every other character
    after a backslash. The result: the directory's entries that match, in byte order (bash
    under LC_COLLATE=C), none starting with '.' unless the pattern's component does, never
    '.' or '..' (globskipdots); with no match the word as typed (``literal``), as bash
    leaves it. Deny if a wildcard is anywhere but the last component, if it matches more
    than :data:`MAX_GLOB` entries, or if ``denylist`` refuses the directory: the names in a
    denied directory are never listed (they may say which secrets exist)."""
    tokens = _tokens(pattern)
    slash = max((k for k, t in enumerate(tokens) if t == "\\/"), default=-1)
    if any(t in ("*", "?") for t in tokens[:max(slash, 0)]):
        raise Deny("parse.glob", f"{literal!r}: '*' and '?' are expanded in the last part of a path only;"
                   " name the directories before it")
    directory = "".join(t[1] for t in tokens[:slash]) if slash >= 0 else None
    last = tokens[slash + 1:]
    rx = re.compile("".join("[^/]*" if t == "*" else "[^/]" if t == "?" else re.escape(t[1]) for t in last), re.DOTALL)
    hidden = bool(last) and last[0] == "\\."
    where = "." if directory is None else (directory or "/")
    if denylist is not None:
        denylist.check(where, "file", False, None)
    try:
        names = host.listdir(where if where.startswith("/") else os.path.join(host.getcwd(), where))
    except OSError:
        names = []
    hits = sorted((n for n in names if n not in (".", "..") and (hidden or not n.startswith(".")) and rx.fullmatch(n)),
                  key=os.fsencode)
    if len(hits) > MAX_GLOB:
        raise Deny("parse.glob", f"{literal!r} matches {len(hits)} entries (at most {MAX_GLOB}); narrow the pattern")
    if not hits:
        return [literal]
    return [n if directory is None else f"{directory}/{n}" for n in hits]


def _tokens(pattern: str) -> list[str]:
    """The pattern as ``*``, ``?`` and escaped literals (``\\x``), one character each."""
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return out
