"""The last stage: replace this process with the allowed command.

No shell: ``os.execve`` with the absolute path from the policy's search path,
the argv as decided (forced arguments included) and a fresh environment. A
wall-clock limit is armed with ``alarm(2)``, which survives ``execve``: when it
fires the command is killed by SIGALRM. Signal dispositions that Python
changed (SIGPIPE, SIGXFSZ ignored) are put back first, or the command would
inherit them.
"""

from __future__ import annotations

import os
import signal
from typing import NoReturn

from .decision import Decision

_RESET = ("SIGPIPE", "SIGXFSZ", "SIGALRM", "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


def execute(decision: Decision) -> NoReturn:
    if not decision.allowed or not decision.executable:
        raise RuntimeError("execute() called without an allow decision")  # never reached from cli
    sigs = [getattr(signal, name) for name in _RESET]
    for sig in sigs:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)
    if decision.timeout:
        signal.alarm(decision.timeout)
    os.execve(decision.executable, list(decision.exec_argv), dict(decision.env))
