"""The decision: a pure function of (command string, policy, filesystem view).

``decide`` composes the stages parse -> match -> deny and never raises: any
failure, expected or not, becomes a deny with a named code. Effects (audit,
exec) live in ``audit`` and ``execute`` and only consume a ``Decision``.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, NamedTuple

from .errors import CODES, Deny

if TYPE_CHECKING:
    from .deny import DenyList, FsView
    from .policy import Policy

ALLOW = "allow"
DENY = "deny"
HELP = "help"


class PathCheck(NamedTuple):
    """One path-typed value, as given and as resolved (realpath)."""

    value: str
    resolved: str
    kind: str  # "file" or "tree"


class Decision(NamedTuple):
    decision: str  # ALLOW, DENY or HELP
    code: str  # "allow", "help", or a deny code such as "path.denied"
    reason: str  # one human line
    command: bytes  # the raw command exactly as received
    rule: str | None = None  # "journalctl", "systemctl status", "deny:/run/secrets", ...
    argv: tuple[str, ...] = ()  # the words as parsed (empty if parsing failed)
    exec_argv: tuple[str, ...] = ()  # what is handed to execve (forced args included)
    executable: str | None = None  # absolute path from the policy's search path
    env: Mapping[str, str] = MappingProxyType({})
    timeout: int | None = None  # wall-clock seconds, survives exec
    paths: tuple[PathCheck, ...] = ()
    layers: tuple[str, ...] = ()  # which protections applied (see issue on identity/sandbox)
    rlimits: tuple[tuple[str, int], ...] = ()  # (RLIMIT_* name, soft = hard) set before execve
    fds: tuple[int, ...] = ()  # descriptors the command inherits besides 0-2 (passed files, its slot)

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW


BASE_ENV = {
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "cat",
    "PAGER": "cat",
    "SYSTEMD_COLORS": "0",
    "LESSSECURE": "1",
}


def deny(raw: bytes, code: str, reason: str, rule: str | None = None, argv: tuple[str, ...] = ()) -> Decision:
    if code not in CODES:  # a bug: still a deny, under the code for bugs
        code, reason = "internal.error", f"internal error (unregistered code {code!r}); nothing was executed"
    return Decision(DENY, code, reason, raw, rule=rule, argv=argv)


def decide(raw: bytes, policy: "Policy", fs: "FsView | None" = None) -> Decision:
    """The whole decision for one command string. Never raises.

    ``fs`` is the filesystem view the path checks see; None means the real one,
    whose compiled deny list is kept per policy for the life of the process.
    """
    argv: tuple[str, ...] = ()
    try:
        # The stages import this module's types, so they are imported here, not at the top.
        from . import match, parse
        argv = parse.parse_command(raw, policy.settings.max_command_bytes)
        if argv[0] == "help" and len(argv) <= 2:
            return Decision(HELP, "help", "help requested", raw, rule="help", argv=argv)
        m = match.match(argv, policy)
        checks = ()
        layers = ("allowlist",)
        if m.paths:  # the deny list is compiled only for commands that name paths
            denylist = _denylist(policy, fs)
            content = m.command.reads == "content"
            checks = tuple(denylist.check(value, kind, content=content) for value, kind in m.paths)
            layers += ("path-denylist", "identity") if denylist.identity else ("path-denylist",)
        executable = _executable(m.command.name, policy.settings.search_path)
        env = {"PATH": ":".join(policy.settings.search_path), **BASE_ENV, **m.command.env}
        timeout = m.command.timeout or policy.settings.timeout
        return Decision(
            ALLOW,
            "allow",
            f"allowed by rule {m.rule!r}",
            raw,
            rule=m.rule,
            argv=argv,
            exec_argv=(argv[0], *m.command.forced_args, *match.defaults(m), *argv[1:]),
            executable=executable,
            env=env,
            timeout=timeout,
            paths=checks,
            layers=layers,
            rlimits=rlimits(policy, m.command.memory_mb, timeout),
        )
    except Deny as d:
        return deny(raw, d.code, d.message, d.rule, argv)
    except Exception as exc:  # fail closed: a bug is a deny, never a traceback
        return deny(raw, "internal.error", f"internal error ({type(exc).__name__}); nothing was executed", None, argv)


def rlimits(policy: "Policy", memory_mb: int | None, timeout: int) -> tuple[tuple[str, int], ...]:
    """What bounds a command besides its time limit (soft = hard, so it cannot raise them).

    RLIMIT_DATA counts the heap and private writable mappings, not files mapped shared
    read-only (journalctl's journal files), so it stops `tail -n 1 BIG-FILE-WITHOUT-NEWLINES`
    and `grep -a` on a huge binary without starving journalctl. FSIZE 0: no command writes
    a file (SIGXFSZ). CORE 0: a crashing command leaves no core with what it read. NPROC
    bounds forks of the diag user. CPU: a busy loop cannot outlast the wall clock.
    """
    s = policy.settings
    return (("RLIMIT_DATA", (memory_mb or s.memory_mb) << 20), ("RLIMIT_NPROC", s.max_tasks),
            ("RLIMIT_FSIZE", 0), ("RLIMIT_CORE", 0), ("RLIMIT_CPU", timeout + 1))


_compiled: dict[int, tuple["Policy", "DenyList"]] = {}


def _denylist(policy: "Policy", fs: "FsView | None") -> "DenyList":
    from .deny import DenyList

    if fs is not None:
        return DenyList(policy.deny, fs, policy.settings.kernel_readable)
    hit = _compiled.get(id(policy))
    if hit is None or hit[0] is not policy:
        hit = _compiled[id(policy)] = (policy, DenyList(policy.deny, None, policy.settings.kernel_readable))
    return hit[1]


def _executable(name: str, search_path: tuple[str, ...]) -> str:
    """The program comes from the policy's search path only, never from the session's PATH."""
    for d in search_path:
        candidate = os.path.join(d, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise Deny("exec.not-found", f"{name!r} is allowed but not installed in {':'.join(search_path)}", name)
