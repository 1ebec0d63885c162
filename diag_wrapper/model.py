"""The types every stage shares: deny codes, ``Deny``, a matched argument, a path check, the Plan.

A leaf module: it imports nothing of the package, and every other module may import it.
The data flow is parse -> match -> paths (deny.py) -> plan; the effects (limits, sandbox,
audit, execute) only consume a :class:`Plan`.
"""

from types import MappingProxyType
from typing import Any, Mapping, NamedTuple

# Every deny code, in the order of README.md's table ("Deny codes"); a test compares the
# two both ways, and another that every ``Deny("...")`` in the package names one of these.
CODES = tuple("""
    input.empty input.too-long input.nul input.encoding input.multiline input.control input.confusable
    parse.list parse.pipeline parse.background parse.redirect parse.heredoc
    parse.command-substitution parse.process-substitution parse.parameter parse.arithmetic
    parse.ansi-c-quote parse.locale-quote parse.assignment parse.compound parse.reserved-word
    parse.glob parse.brace parse.tilde parse.comment parse.history parse.syntax parse.mismatch parse.empty
    match.unknown-command match.path-command match.missing-subcommand match.unknown-subcommand
    match.unknown-option match.abbreviated-option match.missing-value match.unexpected-value
    match.bad-value match.too-few-args match.too-many-args match.bad-combination match.not-a-filter
    path.denied path.tree-contains-denied path.unopenable path.changed path.hardlinked path.not-regular
    path.kernel-file path.unstable report.unknown report.unavailable report.refused
    policy.error policy.insecure audit.unavailable exec.not-found setup.not-isolated
    sandbox.unavailable sandbox.partial limit.busy limit.rate limit.unavailable internal.error
""".split())
_REGISTERED = frozenset(CODES)


class Deny(Exception):
    """What every stage raises to refuse: a registered ``code`` the agent can act on, one
    human line, and the ``rule`` it concerns (``"systemctl status"``, ``"deny:/run/secrets"``)."""

    def __init__(self, code: str, message: str, rule: str | None = None) -> None:
        if code not in _REGISTERED:
            raise ValueError(f"unregistered deny code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.rule = rule


class PolicyError(Exception):
    """The policy could not be loaded or is invalid. Every command is denied."""


class InsecurePolicy(PolicyError):
    """A policy file that someone besides root could have written (ForceCommand mode)."""


class Arg(NamedTuple):
    """A path value the allowlist matched, and where it stands in the argv.

    ``index`` is its word in argv when the value *is* that whole word (a positional, or an
    option value given as the next word); None when it is part of a word (``--file=X``,
    ``-fX``) or implied (the working directory of ``du`` with no path)."""

    value: str
    kind: str  # "file" or "tree"
    index: int | None


class PathCheck(NamedTuple):
    """One path value, as given and as resolved (realpath), and its word in exec_argv."""

    value: str
    resolved: str
    kind: str  # "file" or "tree"
    index: int | None = None
    masked: tuple[str, ...] = ()  # deny entries inside this tree that the wall shows empty


class Stage(NamedTuple):
    """A filter after ``|``: matched in the policy's ``[filters]``, reading standard input only."""

    rule: str
    argv: tuple[str, ...]
    exec_argv: tuple[str, ...]
    executable: str


ALLOW = "allow"
DENY = "deny"
HELP = "help"


class Plan(NamedTuple):
    """Everything the effects need, decided by ``plan.plan()`` alone.

    After the plan, an effect may only turn an allow into a reported deny (:func:`refused`)
    or note that a layer it expected did not come up (:func:`degraded`)."""

    decision: str  # ALLOW, DENY or HELP
    code: str  # "allow", "help", or a deny code such as "path.denied"
    reason: str  # one human line
    command: bytes  # the raw command exactly as received
    rule: str | None = None  # "journalctl", "systemctl status", "deny:/run/secrets", ...
    argv: tuple[str, ...] = ()  # the words as parsed (empty if parsing failed)
    exec_argv: tuple[str, ...] = ()  # what is handed to execve (forced and default args included)
    executable: str | None = None  # absolute path from the policy's search path
    env: Mapping[str, str] = MappingProxyType({})
    timeout: int | None = None  # wall-clock seconds, for the whole tree the command starts
    max_output: int = 8 << 20  # bytes that may reach the client (stdout and stderr together)
    paths: tuple[PathCheck, ...] = ()
    layers: tuple[str, ...] = ()  # the protections that apply (README: "Layers")
    rlimits: tuple[tuple[str, int], ...] = ()  # (RLIMIT_* name, soft = hard)
    pass_fds: tuple[int, ...] = ()  # exec_argv indices whose file is handed over as a descriptor
    wall: tuple[str, ...] = ()  # what the kernel wall covers; () when no wall is planned
    unstable: str | None = None  # why a name is unstable: the deny if the planned wall fails
    fds: tuple[int, ...] = ()  # descriptors the command inherits (filled in by the effects)
    filters: tuple[Stage, ...] = ()  # the stages after '|', in order; stdin of each is the one before
    redact: tuple[Any, ...] = ()  # the redaction net's patterns (redact.Pattern); () when it is off
    redact_max_line: int = 1 << 16
    notes: tuple[str, ...] = ()  # lines for the agent's stderr before the command runs (a dropped flag)
    masked: tuple[str, ...] = ()  # deny entries inside a tree that are allowed only because the wall covers them
    connect: int | None = None  # exec_argv index of a report's socket: connected after the start record, the word becomes fd=N

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOW


def denied(raw: bytes, code: str, reason: str, rule: str | None = None, argv: tuple[str, ...] = ()) -> Plan:
    if code not in _REGISTERED:  # a bug: still a deny, under the code for bugs
        code, reason = "internal.error", f"internal error (unregistered code {code!r}); nothing was executed"
    return Plan(DENY, code, reason, raw, rule=rule, argv=argv)


def refused(p: Plan, code: str, reason: str, rule: str | None = None) -> Plan:
    """An effect turns a plan into a deny (never the reverse)."""
    return denied(p.command, code, reason, rule or p.rule, p.argv)


def degraded(p: Plan, layer: str, note: str) -> Plan:
    """An allow that runs with less than planned (the wall could not come up under "auto")."""
    return p._replace(layers=(*(x for x in p.layers if x != "sandbox"), layer), reason=f"{p.reason}; {note}")
