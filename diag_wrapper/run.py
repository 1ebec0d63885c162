"""ForceCommand mode: the plan, then its effects in order, then exec.

Read SSH_ORIGINAL_COMMAND -> load the policy (root's files only) -> the session -> the rate
count -> ``plan()`` -> a slot -> rlimits -> open the passed files -> the kernel wall -> the
start record -> the command, as a child of the supervisor (supervise.py) -> the closing record. Every step after ``plan()`` is an effect that may only turn an allow
into a reported deny (``model.refused``), or record that the planned wall did not come up
under ``sandbox = "auto"`` (``model.degraded``); nothing runs unless the record was written.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

from . import audit, limits, sandbox, supervise
from .deny import for_policy
from .execute import apply_limits, open_fds
from .model import ALLOW, HELP, Deny, InsecurePolicy, Plan, PolicyError, degraded, denied, refused
from .plan import plan
from .policy import Policy, load

EX_OK = 0
EX_SOFTWARE = 70
EX_USAGE = 64
EX_NOPERM = 77


def force_command(raw: bytes, policy_path: str, environ: Mapping[str, str]) -> int:
    if not raw:
        return _finish(denied(raw, "input.empty", "no command given; interactive logins are not available."
                              " Run: ssh HOST 'COMMAND', e.g. ssh HOST help"), None, environ, EX_USAGE)
    if not sys.flags.isolated:
        return _finish(denied(raw, "setup.not-isolated", "the wrapper must run as 'python -I' so the"
                              " session's environment cannot change it; fix the ForceCommand line"), None, environ)
    try:
        policy = load(policy_path, root_only=True)
    except InsecurePolicy as exc:
        return _finish(denied(raw, "policy.insecure", str(exc)), None, environ)
    except PolicyError as exc:
        return _finish(denied(raw, "policy.error", f"the policy is invalid, every command is denied: {exc}"),
                       None, environ)
    session = audit.session(environ)
    s = policy.settings
    try:
        ok, first = limits.count(s.state_dir, session.get("key_fingerprint") or session["user"], s.rate_per_minute)
    except Deny as exc:
        return _finish(denied(raw, exc.code, exc.message), policy, environ, session=session)
    if not ok:
        p = denied(raw, "limit.rate", f"more than {s.rate_per_minute} commands a minute from this key; wait a"
                   " minute and send fewer, narrower commands")
        if first:  # one record per window: a flood cannot rotate the journal away
            return _finish(p, policy, environ, session=session)
        from .helptext import denial

        _err(denial(p, None))
        return EX_NOPERM
    return _finish(_effects(plan(raw, policy), policy), policy, environ, session=session)


def refuse(raw: bytes, code: str, reason: str, environ: Mapping[str, str]) -> int:
    """A deny decided before the policy was read (the wrapper's own command line)."""
    return _finish(denied(raw, code, reason), None, environ)


def _effects(p: Plan, policy: Policy) -> Plan:
    """Slot, rlimits, descriptors, wall: each can only refuse the plan."""
    if not p.allowed:
        return p
    try:
        # The slot before the wall: state_dir is itself a deny entry the wall covers.
        p = p._replace(fds=(*p.fds, limits.take_slot(policy.settings.state_dir, policy.settings.max_concurrent)))
        try:
            apply_limits(p)  # before the wall (see apply_limits); nothing after this writes a file
        except (ValueError, OSError) as exc:  # a hard limit below the policy's, set by whoever started us
            raise Deny("limit.unavailable", f"the command's resource limits cannot be set ({exc}); nothing"
                       " was executed") from None
        p = open_fds(p, for_policy(policy))
    except Deny as exc:
        return refused(p, exc.code, exc.message, exc.rule)
    return _wall(p, policy.settings.sandbox)


def _wall(p: Plan, mode: str) -> Plan:
    """Enter the planned wall; what its failure means depends on the mode (see plan.py)."""
    if "sandbox" not in p.layers:
        return p
    try:
        sandbox.enter(p.wall)
    except sandbox.SandboxError as exc:
        if exc.partial:
            return refused(p, "sandbox.partial", f"the kernel wall came up only in part ({exc}) and could not"
                           " be taken down again; nothing was executed")
        if mode == "required":
            return refused(p, "sandbox.unavailable", f"the kernel wall (user + mount namespace) could not be"
                           f" set up ({exc}) and this host's policy requires it; nothing was executed")
        if p.masked:
            return refused(p, "path.tree-contains-denied", f"the tree was allowed because the kernel wall shows"
                           f" {' '.join(p.masked)} empty, and the wall could not come up ({exc}); name a"
                           " narrower path beside them")
        if p.unstable:
            return refused(p, "path.unstable", p.unstable)
        p = degraded(p, "sandbox-unavailable", f"kernel wall unavailable ({exc}), path checks only")
        if p.paths and not p.pass_fds:
            p = p._replace(layers=(*p.layers, "stable-names"))
    return p


def _finish(p: Plan, policy: Policy | None, environ: Mapping[str, str], deny_status: int = EX_NOPERM,
            session: dict[str, str] | None = None) -> int:
    """Audit, then print / refuse / execute. Nothing runs unless the record was written."""
    try:
        audit.record(p, environ, session)
    except Deny as exc:
        _err(f"denied: {exc.message} ({exc.code})")
        return EX_NOPERM
    except Exception as exc:  # the audit sink itself is broken: fail closed
        _err(f"denied: the audit record could not be written ({type(exc).__name__}); nothing was executed"
             " (audit.unavailable)")
        return EX_NOPERM
    if p.decision == HELP:
        from .helptext import render

        assert policy is not None
        try:
            text = render(policy, "reports" if p.argv[0] == "report" else p.argv[1] if len(p.argv) > 1 else None)
        except PolicyError as exc:  # a sealed policy's command that fails its checks when built
            _err(f"denied: the policy is invalid: {exc} (policy.error)")
            return EX_NOPERM
        sys.stdout.write(text)
        sys.stdout.flush()
        return EX_OK
    if p.decision != ALLOW:
        from .helptext import denial

        try:
            line = denial(p, policy)
        except PolicyError:  # the allowed forms of a command that fails its checks: the line alone
            line = denial(p, None)
        _err(line)
        return deny_status
    if p.connect is not None:  # a report: connecting starts its collector, so only now, after the record
        from . import report  # only for a report: socket's import costs every command ~4 ms

        try:
            p = report.connect(p)
        except Deny as exc:
            audit.record_end(p, supervise.Outcome(EX_NOPERM, None, None, 0, 0, error=f"{exc.code}: {exc.message}"),
                             environ, session)
            _err(f"denied: {exc.message} [rule {p.rule}] ({exc.code})")
            return EX_NOPERM
    for note in p.notes:
        _err(note)
    sys.stdout.flush()
    pidns = "sandbox" in p.layers and sandbox.pid_namespace()
    try:
        outcome = supervise.run(p, p.max_output, pidns)
    except Exception as exc:  # a supervisor bug: the tree is killed already (supervise.run)
        outcome = supervise.Outcome(EX_SOFTWARE, None, None, 0, 0,
                                    error=f"internal error in the supervisor ({type(exc).__name__})")
    audit.record_end(p, outcome, environ, session)  # best effort: the command has run
    line = supervise.message(outcome, p.max_output, p.timeout)
    if line and not outcome.disconnected:
        supervise.say(line)  # stdout and stderr are non-blocking now: a stalled client holds nothing
    if outcome.disconnected:  # as a shell's command whose reader went away
        import signal

        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGPIPE)
    # Done: skip the interpreter's teardown (~20 ms of freeing modules), as the exec did.
    os._exit(outcome.status)


def _err(msg: str) -> None:
    try:
        sys.stderr.write(f"diag-wrapper: {msg}\n")
        sys.stderr.flush()
    except OSError:
        pass
