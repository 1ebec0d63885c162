"""Command line: dispatch and printing only.

No subcommand: ForceCommand mode (run.py). ``check`` prints what ``plan()`` decides for each
string, the same decision ForceCommand mode makes on this host (everything but the effects:
the wall's mounts, opening the passed files, the journal record); ``lint`` checks the
policy's ``[[examples]]`` with it; ``help`` renders the policy. Exit codes are in README.md.
"""

from __future__ import annotations

import os
import sys

from .model import DENY, PolicyError
from .plan import plan
from .policy import DEFAULT_POLICY, Policy, load

EX_OK = 0
EX_SOFTWARE = 70
CHECK_ALLOW, CHECK_DENY, CHECK_ERROR = 0, 1, 2

USAGE = """\
usage: diag-wrapper [--policy FILE]                        ForceCommand mode (reads SSH_ORIGINAL_COMMAND)
       diag-wrapper check [--policy FILE] [--json] -- 'COMMAND' ...   decide only: exit 0 allow, 1 deny, 2 error
       diag-wrapper lint [--policy FILE]                   check the policy and its [[examples]]
       diag-wrapper help [--policy FILE] [COMMAND|--brief|--json]   what the policy allows
       diag-wrapper render [--policy FILE]                 the policy and its includes as one JSON document
       diag-wrapper collect NAME --timeout S --max-output B -- COMMAND ...   a report's run (in its unit)
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


def force_command(args: list[str]) -> int:
    from . import run

    raw = os.environb.get(b"SSH_ORIGINAL_COMMAND", b"")
    try:
        policy_path, _, extra = _options(args)
        if extra:
            raise ValueError(f"unexpected argument {extra[0]!r}")
    except ValueError as exc:
        return run.refuse(raw, "policy.error", f"bad wrapper command line: {exc}; fix the ForceCommand line",
                          os.environ)
    return run.force_command(raw, policy_path, os.environ)


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

    from .helptext import denial

    policy, flags, commands = _setup(args, ("--json",), "some")
    status = CHECK_ALLOW
    for command in commands:
        p = plan(os.fsencode(command), policy)
        if p.decision == DENY:
            status = CHECK_DENY
        if "--json" in flags:
            print(json.dumps(as_json(p), ensure_ascii=False))
        elif p.decision == DENY:
            print(denial(p, None))
        else:
            # quoted as a shell would read them back: a word '|' is not a pipe
            import shlex

            words = " | ".join(shlex.join(a) for a in (p.exec_argv or p.argv, *(f.exec_argv for f in p.filters)))
            print(f"{p.decision}: {words}" + (f" [rule {p.rule}]" if p.rule else "")
                  + f" [layers {','.join(p.layers)}]" * bool(p.layers))
    return status


def as_json(p) -> dict:
    return {
        "decision": p.decision,
        "argv": list(p.argv),
        "executable": p.executable,
        "reason": p.reason,
        "rule": p.rule,
        "code": p.code,
        "exec_argv": list(p.exec_argv),
        "paths": [{"value": c.value, "resolved": c.resolved, "kind": c.kind, "index": c.index} for c in p.paths],
        "timeout": p.timeout,
        "rlimits": dict(p.rlimits),
        "layers": list(p.layers),
        "notes": list(p.notes),
        "pass_fds": list(p.pass_fds),
        "wall": list(p.wall),
        "filters": [{"rule": f.rule, "argv": list(f.argv), "exec_argv": list(f.exec_argv), "executable": f.executable}
                    for f in p.filters],
        "max_output": p.max_output,
        "redact": [r.name for r in p.redact],
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

    policy, flags, topic = _setup(args, ("--brief", "--json"), operands="any")
    if len(flags) + len(topic) > 1:
        raise _UsageError("help takes one of: COMMAND, --brief, --json")
    sys.stdout.write(helptext.render(policy, topic[0] if topic else next(iter(flags), None)))
    return EX_OK


def render(args: list[str]) -> int:
    """One JSON document that loads to the same policy: faster to load than TOML (no
    tomllib), and what the NixOS module installs as /etc/diag-wrapper/policy.json."""
    from .policy import render as render_policy

    try:
        path, _, rest = _options(args)
    except ValueError as exc:
        raise _UsageError(f"{exc}\n{USAGE}") from None
    if rest:
        raise _UsageError(f"unexpected argument {rest[0]!r}\n{USAGE}")
    try:
        sys.stdout.write(render_policy(path))
    except PolicyError as exc:
        raise _UsageError(f"policy error: {exc}") from None
    return EX_OK


def collect(args: list[str]) -> int:
    """One run of a fixed report, in its service unit (collect.py); never reached over SSH:
    ForceCommand mode reads only SSH_ORIGINAL_COMMAND, whatever the arguments."""
    from . import collect as collector

    return collector.main(args)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    subcommands = {"check": check, "lint": lint, "help": help_, "render": render, "collect": collect}
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
