"""Command line: ForceCommand mode, ``check``, ``lint`` and ``help``.

ForceCommand mode (no subcommand) reads SSH_ORIGINAL_COMMAND, decides, audits
the decision to the journal, then executes or refuses. ``check`` runs the very
same ``decide()`` without auditing or executing. Exit codes are in README.md.
"""

from __future__ import annotations

import os
import sys

from .decision import ALLOW, DENY, HELP, Decision, decide, deny
from .errors import Deny, InsecurePolicy, PolicyError
from .policy import DEFAULT_POLICY, Policy, load

EX_OK = 0
EX_USAGE = 64
EX_SOFTWARE = 70
EX_NOPERM = 77
CHECK_ALLOW, CHECK_DENY, CHECK_ERROR = 0, 1, 2

USAGE = """\
usage: diag-wrapper [--policy FILE]                        ForceCommand mode (reads SSH_ORIGINAL_COMMAND)
       diag-wrapper check [--policy FILE] [--json] -- 'COMMAND' ...   decide only: exit 0 allow, 1 deny, 2 error
       diag-wrapper lint [--policy FILE]                   check the policy and its [[examples]]
       diag-wrapper help [--policy FILE] [COMMAND]         what the policy allows
"""


def _err(msg: str) -> None:
    sys.stderr.write(f"diag-wrapper: {msg}\n")
    sys.stderr.flush()


def _options(args: list[str], flags: tuple[str, ...] = ()) -> tuple[str, set[str], list[str]]:
    """Parse ``--policy FILE``/``--policy=FILE`` and boolean ``flags``; the rest are operands."""
    policy = DEFAULT_POLICY
    seen: set[str] = set()
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            rest += args[i:]
            break
        if a == "--policy" and i < len(args):
            policy = args[i]
            i += 1
        elif a.startswith("--policy="):
            policy = a[len("--policy=") :]
        elif a in flags:
            seen.add(a)
        elif a.startswith("-"):
            raise ValueError(f"unknown option {a}")
        else:
            rest.append(a)
    return policy, seen, rest


def _describe_deny(d: Decision, policy: Policy | None) -> str:
    line = f"denied: {d.reason}" + (f" [rule {d.rule}]" if d.rule else "") + f" ({d.code})"
    if policy is not None and d.argv and d.argv[0] in policy.commands:
        from . import helptext

        line += "\nallowed forms:\n" + helptext.command_help(policy.commands[d.argv[0]])
    return line


# --------------------------------------------------------------------------- ForceCommand


def force_command(args: list[str]) -> int:
    raw = os.environb.get(b"SSH_ORIGINAL_COMMAND", b"")
    try:
        policy_path, _, extra = _options(args)
        if extra:
            raise ValueError(f"unexpected argument {extra[0]!r}")
    except ValueError as exc:
        return _finish(deny(raw, "policy.error", f"bad wrapper command line: {exc}; fix the ForceCommand line"), None)
    if not raw:
        d = deny(raw, "input.empty", "no command given; interactive logins are not available. "
                 "Run: ssh HOST 'COMMAND', e.g. ssh HOST help")
        return _finish(d, None, EX_USAGE)
    if not sys.flags.isolated:
        d = deny(raw, "setup.not-isolated", "the wrapper must run as 'python -I' so the session's "
                 "environment cannot change it; fix the ForceCommand line")
        return _finish(d, None)
    try:
        policy = load(policy_path, root_only=True)
    except InsecurePolicy as exc:
        return _finish(deny(raw, "policy.insecure", str(exc)), None)
    except PolicyError as exc:
        return _finish(deny(raw, "policy.error", f"the policy is invalid, every command is denied: {exc}"), None)
    from . import audit, limits

    session = audit.session(os.environ)
    s = policy.settings
    try:
        ok, first = limits.count(s.state_dir, session.get("key_fingerprint") or session["user"], s.rate_per_minute)
    except Deny as exc:
        return _finish(deny(raw, exc.code, exc.message), policy, session=session)
    if not ok:
        d = deny(raw, "limit.rate", f"more than {s.rate_per_minute} commands a minute from this key; wait a"
                 " minute and send fewer, narrower commands")
        if first:  # one record per window: a flood cannot rotate the journal away
            return _finish(d, policy, session=session)
        _err(_describe_deny(d, None))
        return EX_NOPERM
    d = decide(raw, policy)
    if d.decision == ALLOW:
        # The slot before the wall: state_dir is itself a deny entry the wall covers.
        try:
            slot = limits.take_slot(s.state_dir, s.max_concurrent)  # held by the command until it exits
            d = d._replace(fds=(*d.fds, slot))
        except Deny as exc:
            d = deny(raw, exc.code, exc.message, d.rule, d.argv)
    if d.decision == ALLOW:
        from .execute import apply_limits

        apply_limits(d)  # before the wall (see apply_limits); nothing after this writes a file
    d = _wall(d, policy)
    return _finish(d, policy, session=session)


def _wall(d: Decision, policy: Policy) -> Decision:
    """Make what runs read only what was checked, before it is audited.

    Files for the single-file readers become open descriptors (execute.prepare). Then the
    kernel wall (see sandbox.py): ``sandbox = "auto"`` goes on without it when the
    namespaces cannot be had, and the record says so; ``"required"`` denies; ``"off"``
    skips it. Without the wall, a name still handed over must be one only root can
    change (deny.DenyList.check_stable), or the race would be open.
    """
    mode = policy.settings.sandbox
    if d.decision == ALLOW and d.paths:
        d = _pass_fds(d, policy)
    if d.decision != ALLOW:
        return d
    if mode != "off":
        from . import sandbox
        from .deny import RealFs

        try:
            name = d.argv[0]
            sandbox.enter(sandbox.wall_paths((e.path for e in policy.deny if name not in e.wall_except),
                                             RealFs().mounts()))
        except OSError as exc:
            if getattr(exc, "partial", False):
                return deny(d.command, "sandbox.partial", f"the kernel wall came up only in part ({exc}) and"
                            " could not be taken down again; nothing was executed", d.rule, d.argv)
            if mode == "required":
                return deny(d.command, "sandbox.unavailable", f"the kernel wall (user + mount namespace) could "
                            f"not be set up ({exc}) and this host's policy requires it; nothing was executed",
                            d.rule, d.argv)
            d = d._replace(layers=(*d.layers, "sandbox-unavailable"),
                           reason=f"{d.reason}; kernel wall unavailable ({exc}), path checks only")
        else:
            return d._replace(layers=(*d.layers, "sandbox"))
    return _stable_names(d, policy)


def _stable_names(d: Decision, policy: Policy) -> Decision:
    """Without the wall: every name handed over (not passed as a descriptor) must be stable."""
    if not d.paths or "fd-passing" in d.layers:
        return d
    from .decision import _denylist

    denylist = _denylist(policy, None)
    try:
        for check in d.paths:
            denylist.check_stable(check)
    except Deny as exc:
        return deny(d.command, exc.code, exc.message, exc.rule or d.rule, d.argv)
    return d._replace(layers=(*d.layers, "stable-names"))


def _pass_fds(d: Decision, policy: Policy) -> Decision:
    """Hand single-file readers the checked files as open descriptors (execute.prepare)."""
    from .decision import _denylist
    from .execute import prepare

    try:
        return prepare(d, _denylist(policy, None))
    except Deny as exc:
        return deny(d.command, exc.code, exc.message, exc.rule or d.rule, d.argv)


def _finish(d: Decision, policy: Policy | None, deny_status: int = EX_NOPERM,
            session: dict[str, str] | None = None) -> int:
    """Audit, then print / refuse / execute. Nothing runs unless the record was written."""
    try:
        from . import audit

        audit.record(d, os.environ, session)
    except Deny as exc:
        _err(f"denied: {exc.message} ({exc.code})")
        return EX_NOPERM
    except Exception as exc:  # the audit sink itself is broken: fail closed
        _err(f"denied: the audit record could not be written ({type(exc).__name__}); nothing was executed (audit.unavailable)")
        return EX_NOPERM
    if d.decision == HELP:
        from . import helptext

        assert policy is not None
        sys.stdout.write(helptext.render(policy, d.argv[1] if len(d.argv) > 1 else None))
        sys.stdout.flush()
        return EX_OK
    if d.decision != ALLOW:
        _err(_describe_deny(d, policy))
        return deny_status
    from .execute import execute

    sys.stdout.flush()
    execute(d)  # does not return


# --------------------------------------------------------------------------- check / lint / help


class _UsageError(Exception):
    """A subcommand's command line or policy is unusable: exit 2 with a message."""


def _setup(args: list[str], flags: tuple[str, ...] = (), operands: str = "none") -> tuple[Policy, set[str], list[str]]:
    """Options and policy of check/lint/help; ``operands``: "none", "some" (at least one) or "any"."""
    try:
        policy_path, seen, rest = _options(args, flags)
    except ValueError as exc:
        raise _UsageError(f"{exc}\n{USAGE}") from None
    if operands == "none" and rest:
        raise _UsageError(f"unexpected argument {rest[0]!r}\n{USAGE}")
    if operands == "some" and not rest:
        raise _UsageError(f"no command string given\n{USAGE}")
    try:
        return load(policy_path), seen, rest
    except PolicyError as exc:
        raise _UsageError(f"policy error: {exc}") from None


def check(args: list[str]) -> int:
    import json

    policy, flags, commands = _setup(args, ("--json",), "some")
    status = CHECK_ALLOW
    for command in commands:
        d = decide(os.fsencode(command), policy)
        if d.decision == DENY:
            status = CHECK_DENY
        if "--json" in flags:
            print(json.dumps(as_json(d), ensure_ascii=False))
        elif d.decision == DENY:
            print(_describe_deny(d, None))
        else:
            print(f"{d.decision}: {' '.join(d.exec_argv) or ' '.join(d.argv)}" + (f" [rule {d.rule}]" if d.rule else ""))
    return status


def as_json(d: Decision) -> dict:
    return {
        "decision": d.decision,
        "argv": list(d.argv),
        "executable": d.executable,
        "reason": d.reason,
        "rule": d.rule,
        "code": d.code,
        "exec_argv": list(d.exec_argv),
        "paths": [{"value": p.value, "resolved": p.resolved, "kind": p.kind} for p in d.paths],
        "timeout": d.timeout,
        "rlimits": dict(d.rlimits),
    }


def lint(args: list[str]) -> int:
    from .lint import lint_policy

    policy, _, _ = _setup(args)
    problems = lint_policy(policy)
    for p in problems:
        print(p)
    print(f"{policy.sources[-1]}: {len(policy.examples)} examples, {len(problems)} problem(s)")
    return CHECK_DENY if problems else CHECK_ALLOW


def help_(args: list[str]) -> int:
    from . import helptext

    policy, _, topic = _setup(args, operands="any")
    sys.stdout.write(helptext.render(policy, topic[0] if topic else None))
    return EX_OK


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    subcommands = {"check": check, "lint": lint, "help": help_}
    try:
        if args and args[0] in subcommands:
            try:
                return subcommands[args[0]](args[1:])
            except _UsageError as exc:
                _err(str(exc))
                return CHECK_ERROR
        if args and args[0] in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return EX_OK
        return force_command(args)
    except SystemExit:
        raise
    except BaseException as exc:  # fail closed: nothing has been executed
        _err(f"denied: internal error ({type(exc).__name__}); nothing was executed (internal.error)")
        return EX_SOFTWARE
