"""The decision: a pure function of (command string, policy, filesystem view).

``decide`` composes the stages parse -> match -> deny and never raises: any
failure, expected or not, becomes a deny with a named code. Effects (audit,
exec) live in ``audit`` and ``execute`` and only consume a ``Decision``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALLOW = "allow"
DENY = "deny"
HELP = "help"


@dataclass(frozen=True)
class PathCheck:
    """One path-typed value, as given and as resolved (realpath)."""

    value: str
    resolved: str
    kind: str  # "file" or "tree"


@dataclass(frozen=True)
class Decision:
    decision: str  # ALLOW, DENY or HELP
    code: str  # "allow", "help", or a deny code such as "path.denied"
    reason: str  # one human line
    command: bytes  # the raw command exactly as received
    rule: str | None = None  # "journalctl", "systemctl status", "deny:/run/secrets", ...
    argv: tuple[str, ...] = ()  # the words as parsed (empty if parsing failed)
    exec_argv: tuple[str, ...] = ()  # what is handed to execve (forced args included)
    executable: str | None = None  # absolute path from the policy's search path
    env: dict[str, str] = field(default_factory=dict)
    timeout: int | None = None  # wall-clock seconds, survives exec
    paths: tuple[PathCheck, ...] = ()
    layers: tuple[str, ...] = ()  # which protections applied (see issue on identity/sandbox)

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW
