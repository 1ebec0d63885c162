"""The one decision: ``plan(raw, policy, host)``, for ``check``, ``lint`` and ForceCommand mode.

It runs parse -> match -> paths and returns a :class:`~diag_wrapper.model.Plan` with
everything the effects need: the decision and its code, the exec argv, which words are
handed over as open descriptors (by argv index), what the kernel wall covers, the
stable-name verdict for the policy's ``sandbox`` mode, the time limit, the rlimits and the
environment. It never raises: any failure, expected or not, is a deny with a named code.

What the plan cannot know is what only trying shows (the wall's mounts, opening the files
again); those effects (run.py) may turn an allow into a reported deny, never the reverse.
"""

from __future__ import annotations

import os
import sys

from . import match, parse
from .deny import DenyList, Host, RealHost, expand_glob, for_policy
from .model import ALLOW, HELP, Deny, PathCheck, Plan, Stage, denied
from .model import PolicyError
from .policy import Option, Policy

BASE_ENV = {
    "LANG": "C.UTF-8",
    "SYSTEMD_PAGER": "cat",
    "PAGER": "cat",
    "SYSTEMD_COLORS": "0",
    "LESSSECURE": "1",
}
# Single-file readers that get each checked file as an open descriptor (execute.py).
FD_COMMANDS = frozenset({"cat", "head", "tail", "wc", "grep"})


def plan(raw: bytes, policy: Policy, host: Host | None = None) -> Plan:
    """The whole decision for one command string on ``host`` (None: this one). Never raises."""
    argv: tuple[str, ...] = ()
    try:
        words = parse.parse_words(raw, policy.settings.max_command_bytes)
        stages = tuple(tuple(w.literal for w in stage) for stage in words)
        argv = stages[0]
        if argv[0] == "help" and len(argv) <= 2 and len(stages) == 1 and not any(w.glob for w in words[0]):
            return Plan(HELP, "help", "help requested", raw, rule="help", argv=argv)
        for k, stage in enumerate(words[1:], 2):
            if any(w.glob for w in stage):
                raise Deny("parse.glob", f"stage {k} of the pipeline ({stage[0].literal}): a filter reads only the"
                           " pipe, so a glob there names nothing; quote the '*' or '?'", f"| {stage[0].literal}")
        globs = {i: w.glob for i, w in enumerate(words[0]) if w.glob is not None}
        if argv[0] == "report":
            if len(argv) == 1 and len(stages) == 1:
                return Plan(HELP, "help", "reports listed", raw, rule="report", argv=argv)
            if globs:
                raise Deny("parse.glob", "a report is named in full; 'report' lists them", "report")
            p = _in_stage(1, stages, lambda: _report(raw, argv, policy))
        else:
            p = _in_stage(1, stages, lambda: _globbed(raw, argv, globs, policy, host) if globs
                          else _allowed(raw, argv, policy, host))
        if len(stages) == 1:
            return p
        view = host if host is not None else RealHost()
        filters = tuple(_in_stage(k, stages, lambda: _filter(stage, policy, view))
                        for k, stage in enumerate(stages[1:], 2))
        return p._replace(filters=filters, layers=(*p.layers, "pipeline"),
                          reason=f"{p.reason}, then {' | '.join(f.rule for f in filters)}")
    except PolicyError as exc:  # a sealed policy's command that fails the checks on first use
        return denied(raw, "policy.error", f"the policy is invalid: {exc}; nothing was executed", None, argv)
    except Deny as d:
        hint = instead(policy, argv) if d.code.startswith(("match.", "parse.")) and not (d.rule or "").startswith("| ") else None
        message = d.message + (f"; instead: {hint.run} ({hint.why})" if hint else "")
        return denied(raw, d.code, message, d.rule, argv)
    except Exception as exc:  # fail closed: a bug is a deny, never a traceback
        return denied(raw, "internal.error", f"internal error ({type(exc).__name__}); nothing was executed",
                      None, argv)


def instead(policy: Policy, argv: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """The policy's ``[instead]`` entry for the longest form ``argv`` starts with, if any."""
    for n in range(min(3, len(argv)), 0, -1):
        hit = policy.instead.get(" ".join(argv[:n]))
        if hit is not None:
            return hit
    return None


def _in_stage(k: int, stages: tuple[tuple[str, ...], ...], decide):  # type: ignore[no-untyped-def]
    """``decide()``; in a pipeline, a deny names the stage it is about."""
    try:
        return decide()
    except Deny as d:
        if len(stages) == 1:
            raise
        name = stages[k - 1][0]
        rule = d.rule if k == 1 else f"| {d.rule or name}"  # a filter's rule: "| grep"
        raise Deny(d.code, f"stage {k} of the pipeline ({name}): {d.message}", rule) from None


def _globbed(raw: bytes, argv: tuple[str, ...], globs: dict[int, str], policy: Policy, host: Host | None) -> Plan:
    """Expand the globs in path values as bash would (deny.expand_glob), then plan the
    expanded argv like any other. A glob where the value is not a path is refused; an
    expanded path the deny list refuses is left out, and a note says so (none left: deny)."""
    view = host if host is not None else RealHost()
    m = match.match(argv, policy)
    kinds = {a.index: a.kind for a in m.paths if a.index is not None}
    for i in globs:
        if i not in kinds:
            raise Deny("parse.glob", f"{argv[i]!r} is not a path here, so it is not expanded; quote the '*' or '?'"
                       " (a pattern, a unit name) or name the file", m.rule)
    denylist = for_policy(policy, host)
    planned = None if _no_wall(policy, view) else denylist.covers(argv[0])  # as _allowed plans it
    out: list[str] = []
    notes: list[str] = []
    for i, word in enumerate(argv):
        if i not in globs:
            out.append(word)
            continue
        kept, left = [], []
        for path in expand_glob(globs[i], word, view, denylist):
            try:
                denylist.check(path, kinds[i], m.command.reads == "content", None, planned)
                kept.append(path)
            except Deny as d:
                if d.code not in ("path.denied", "path.tree-contains-denied"):
                    raise
                left.append(path)
                why = d
        if not kept:  # the last refusal stands, said of the pattern
            raise why
        if left:
            notes.append(f"note: {word} left out {len(left)} denied match(es): {' '.join(left)}")
        out += kept
    p = _allowed(raw, tuple(out), policy, host)
    return p._replace(notes=(*notes, *p.notes), reason=f"{p.reason}; globs expanded to {len(out) - len(argv) + len(globs)}"
                      f" path(s)")


def _no_wall(policy: Policy, view: Host) -> str | None:
    """Why no kernel wall will be planned here, or None."""
    return 'sandbox = "off"' if policy.settings.sandbox == "off" else view.userns()


def _filter(argv: tuple[str, ...], policy: Policy, host: Host) -> Stage:
    """A stage after '|': a filter of the policy; it names no path (the loader sees to that)."""
    m = match.match(argv, policy, filter=True)
    assert not m.paths, "a filter with a path value passed the loader"
    words, _ = match.edit(argv, m.drops)
    exec_argv = (argv[0], *m.command.forced_args, *match.defaults(m), *words[1:], *m.implied)
    return Stage(m.rule, argv, exec_argv, _executable(argv[0], policy.settings.search_path, host))


def _allowed(raw: bytes, argv: tuple[str, ...], policy: Policy, host: Host | None) -> Plan:
    s = policy.settings
    m = match.match(argv, policy)
    cmd = m.command
    head = (argv[0], *cmd.forced_args, *match.defaults(m), *m.pins)
    words, where = match.edit(argv, m.drops)  # argv[i] is exec_argv[len(head) - 1 + where[i]]
    shift = len(head) - 1
    layers = ["allowlist"]
    denylist = for_policy(policy, host) if m.paths or s.sandbox != "off" else None
    view = host if host is not None else RealHost()
    no_wall = _no_wall(policy, view)
    planned = None if no_wall or denylist is None else denylist.covers(argv[0])
    checks: tuple[PathCheck, ...] = ()
    if m.paths:  # the deny list is compiled only for commands that name paths or get a wall
        assert denylist is not None
        content = cmd.reads == "content"
        checks = tuple(denylist.check(a.value, a.kind, content, None if a.index is None else where[a.index] + shift,
                                      planned) for a in m.paths)
        layers += ("path-denylist", "identity") if denylist.identity else ("path-denylist",)
    masked = tuple(sorted({e for c in checks for e in c.masked}))
    executable = _executable(cmd.name, s.search_path, view)
    timeout = cmd.timeout or s.timeout
    pass_fds = _fd_plan(argv[0], checks)
    if pass_fds:
        layers.append("fd-passing")
    handed = () if pass_fds else checks  # names the command will look up again itself
    unstable = _unstable(denylist, handed) if handed else None
    reason = f"allowed by rule {m.rule!r}"
    notes = tuple(f"note: {spelled} is accepted and not passed on: {opt.help}" for opt, spelled in _dropped(m, argv))
    if masked:
        notes += (f"note: the kernel wall shows these denied locations in the tree empty: {' '.join(masked)}",)
    wall: tuple[str, ...] = ()
    if no_wall and s.sandbox == "required":
        raise Deny("sandbox.unavailable", f"the kernel wall (user + mount namespace) cannot be set up here"
                   f" ({no_wall}) and this host's policy requires it; nothing was executed", m.rule)
    if no_wall:
        if unstable:
            raise Deny("path.unstable", unstable, m.rule)
        if s.sandbox == "auto":
            layers.append("sandbox-unavailable")
            reason += f"; kernel wall unavailable ({no_wall}), path checks only"
        if handed:
            layers.append("stable-names")
    else:
        assert planned is not None
        wall = planned
        layers.append("sandbox")
    return Plan(
        ALLOW, "allow", reason, raw, rule=m.rule, argv=argv, exec_argv=(*head, *words[1:], *m.implied),
        executable=executable, env={"PATH": ":".join(s.search_path), **BASE_ENV, **cmd.env},
        timeout=timeout, max_output=cmd.max_output_bytes or s.max_output_bytes, paths=checks, layers=tuple(layers),
        rlimits=rlimits(policy, cmd.memory_mb, timeout), pass_fds=pass_fds, wall=wall, unstable=unstable,
        redact=policy.redact if cmd.redact else (), redact_max_line=policy.redact_max_line, notes=notes,
        masked=masked,
    )


REPORT_GRACE = 5  # seconds the wrapper waits beyond a report's own time limit (its unit's start, the reply)
# The stage: report.main under this interpreter, the package found where this one was (-I
# ignores PYTHONPATH; a Nix wrapper adds its site directories at run time, not in the interpreter).
REPORT_STAGE = ("import sys; sys.path.insert(0, sys.argv[1]); from diag_wrapper.report import main;"
                " sys.exit(main(sys.argv[2:]))")
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where diag_wrapper is imported from


def _report(raw: bytes, argv: tuple[str, ...], policy: Policy) -> Plan:
    """``report NAME``: the stage is report.main under this interpreter, connected (an effect) to
    the report's socket; nothing of the agent's reaches the collector but the name."""
    s = policy.settings
    names = ", ".join(sorted(policy.reports)) or "none on this host"
    if len(argv) < 2:
        raise Deny("match.too-few-args", f"name the report: report NAME | FILTER (reports: {names})", "report")
    r = policy.reports.get(argv[1])
    if r is None:
        raise Deny("report.unknown", f"{argv[1]!r} is not a report of this host (reports: {names}); 'report'"
                   " lists them with what each shows", "report")
    rule = f"report {argv[1]}"
    if len(argv) > 2:
        raise Deny("match.too-many-args", "a report takes no arguments: its command is fixed in the host's"
                   " configuration", rule)
    # No kernel wall: the stage reads no path (a fixed program copying a connected socket to
    # its stdout, no word of the agent's but the name), and its connection, which starts
    # the collector, is made after the start record (run.py), where the wall would hide
    # whether root is listening (SO_PEERCRED reads uid 0 as the overflow uid in it).
    timeout = r.timeout + REPORT_GRACE
    exec_argv = (sys.executable, "-I", "-c", REPORT_STAGE, _HERE, argv[1], r.socket)
    return Plan(
        ALLOW, "allow", f"allowed by rule {rule!r}", raw, rule=rule, argv=argv, exec_argv=exec_argv,
        executable=sys.executable, env={"LANG": "C.UTF-8"}, timeout=timeout,
        max_output=min(s.max_output_bytes, r.max_output_bytes + 4096), layers=("allowlist", "report"), rlimits=rlimits(policy, None, timeout), redact=policy.redact,
        redact_max_line=policy.redact_max_line, connect=len(exec_argv) - 1,
    )


def _dropped(m: match.Match, argv: tuple[str, ...]) -> list[tuple[Option, str]]:
    """The dropped flags, as the agent spelled them, once each."""
    seen: dict[Option, str] = {}
    for index, letter in m.drops:
        word = argv[index]
        opt = m.command.index[word if letter < 0 else "-" + word[letter]]
        seen.setdefault(opt, word if letter < 0 else "-" + word[letter])
    return [(opt, spelled) for opt, spelled in seen.items()]


def _fd_plan(name: str, checks: tuple[PathCheck, ...]) -> tuple[int, ...]:
    """The exec_argv indices to hand over as descriptors: all of a single-file reader's path
    values when each is a whole word of its own, else none (then the names are handed over)."""
    if name not in FD_COMMANDS or not checks or any(c.kind != "file" or c.index is None for c in checks):
        return ()
    return tuple(sorted({c.index for c in checks if c.index is not None}))


def _unstable(denylist: DenyList | None, handed: tuple[PathCheck, ...]) -> str | None:
    """Why some name handed over could be swapped by a user other than root, or None."""
    assert denylist is not None
    try:
        for c in handed:
            denylist.check_stable(c)
    except Deny as exc:
        return exc.message
    return None


def rlimits(policy: Policy, memory_mb: int | None, timeout: int) -> tuple[tuple[str, int], ...]:
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


def _executable(name: str, search_path: tuple[str, ...], host: Host) -> str:
    """The program comes from the policy's search path only, never from the session's PATH."""
    for d in search_path:
        candidate = f"{d}/{name}"
        if host.executable(candidate):
            return candidate
    raise Deny("exec.not-found", f"{name!r} is allowed but not installed in {':'.join(search_path)}", name)
