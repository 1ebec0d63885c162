"""``diag-wrapper lint``: what an admin runs after editing a policy (not on every start).

It checks every ``[[examples]]`` entry against the decision this host would
make (``plan()``, as ForceCommand mode), that every ``[instead]`` suggestion and every
``[services]`` recipe command and probe is allowed, and that each deny entry has its twin under every ``persist_roots``
directory (impermanence keeps the real files there: ``/persist/etc/ssh/...``)
for entries in the trees impermanence persists: /etc, /var, /home and /root.
"""

from __future__ import annotations

import os
import shlex

from .model import ALLOW, HELP
from .plan import plan
from .policy import Policy

_PERSISTED = ("/etc/", "/var/", "/home/", "/root/")


def lint_policy(policy: Policy) -> list[str]:
    problems = []
    for ex in policy.examples:
        d = plan(os.fsencode(ex.command), policy)
        got = "allow" if d.decision == ALLOW else "deny"
        if got != ex.decision or (ex.code is not None and d.code != ex.code):
            want = ex.decision + (f" ({ex.code})" if ex.code else "")
            problems.append(f"example {ex.command!r}: expected {want}, got {got} ({d.code}: {d.reason})")
    for form, hint in policy.instead.items():
        d = plan(os.fsencode(hint.run), policy)
        if d.decision not in (ALLOW, HELP):
            problems.append(f"instead {form!r}: {hint.run!r} is not allowed ({d.code}: {d.reason})")
    for name, svc in policy.services.items():
        for command in svc.commands:
            d = plan(os.fsencode(command), policy)
            if d.decision not in (ALLOW, HELP):
                problems.append(f"service {name!r}: {command!r} is not allowed ({d.code}: {d.reason})")
        for probe in svc.probes:
            d = plan(os.fsencode(f"curl -sS {shlex.quote(probe.url)}"), policy)
            if d.decision != ALLOW:
                problems.append(f"service {name!r}: probe {probe.url!r} cannot be asked ({d.code}: {d.reason})")
    paths = {e.path for e in policy.deny}
    for root in policy.settings.persist_roots:
        for e in policy.deny:
            if not (e.path + "/").startswith(_PERSISTED):
                continue
            if root + e.path not in paths:
                problems.append(f"deny entry {e.path} has no twin {root + e.path} (persist_roots)")
    return problems
