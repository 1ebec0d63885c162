"""The one exception every decision stage raises to refuse a command.

A ``Deny`` carries a stable, dotted ``code`` (documented in README.md) that an
agent can act on, a one-line human ``message``, and the ``rule`` it concerns
(a command rule such as ``"systemctl status"`` or a deny entry such as
``"deny:/run/secrets"``), when there is one.
"""

from __future__ import annotations

# Every deny code, in the order of README.md's table ("Deny codes"); a test compares the
# two both ways. A Deny with a code not listed here is a bug: it raises ValueError, which
# the decision turns into internal.error.
CODES = frozenset("""
    input.empty input.too-long input.nul input.encoding input.multiline input.control input.confusable
    parse.list parse.pipeline parse.background parse.redirect parse.heredoc
    parse.command-substitution parse.process-substitution parse.parameter parse.arithmetic
    parse.ansi-c-quote parse.locale-quote parse.assignment parse.compound parse.reserved-word
    parse.glob parse.brace parse.tilde parse.comment parse.history parse.syntax parse.mismatch parse.empty
    match.unknown-command match.path-command match.missing-subcommand match.unknown-subcommand
    match.unknown-option match.abbreviated-option match.missing-value match.unexpected-value
    match.bad-value match.too-few-args match.too-many-args match.bad-combination
    path.denied path.tree-contains-denied path.unopenable path.changed path.hardlinked path.not-regular
    path.kernel-file path.unstable
    policy.error policy.insecure audit.unavailable exec.not-found setup.not-isolated
    sandbox.unavailable sandbox.partial limit.busy limit.rate limit.unavailable internal.error
""".split())


class Deny(Exception):
    def __init__(self, code: str, message: str, rule: str | None = None) -> None:
        if code not in CODES:
            raise ValueError(f"unregistered deny code {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.rule = rule


class PolicyError(Exception):
    """The policy could not be loaded or is invalid. Every command is denied."""


class InsecurePolicy(PolicyError):
    """A policy file that someone besides root could have written (ForceCommand mode)."""
