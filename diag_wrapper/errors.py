"""The one exception every decision stage raises to refuse a command.

A ``Deny`` carries a stable, dotted ``code`` (documented in README.md) that an
agent can act on, a one-line human ``message``, and the ``rule`` it concerns
(a command rule such as ``"systemctl status"`` or a deny entry such as
``"deny:/run/secrets"``), when there is one.
"""

from __future__ import annotations


class Deny(Exception):
    def __init__(self, code: str, message: str, rule: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.rule = rule


class PolicyError(Exception):
    """The policy could not be loaded or is invalid. Every command is denied."""
