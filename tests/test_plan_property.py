"""Properties of the whole decision, not just of one stage.

* For any input at all, ``decide`` returns allow, deny or help, and never raises.
* Every path value of every *allowed* decision resolves outside every deny
  entry, by the independent oracle of test_deny_property (pathlib resolution,
  fnmatch expansion, kernel identities), for commands built the way an agent
  would send them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import write_stub_policy
from diag_wrapper.model import ALLOW, DENY, HELP
from diag_wrapper.plan import plan
from diag_wrapper.policy import load
from test_deny_property import SECRET_ENTRIES, _ancestry, _at_or_under, _beneath, _build, _comps, _expand, _ident, node, rel_path

SHELLISH = st.text(alphabet=st.sampled_from(list("abcn8/.-_=*?[]{}~#$`'\"\\;|&<>() \t\nx\x00\u00e9")), max_size=60)


@settings(max_examples=600, deadline=None)
@given(raw=st.one_of(st.binary(max_size=80), SHELLISH.map(str.encode), st.text(max_size=60).map(str.encode)))
def test_decide_is_total(web02, raw):
    d = plan(raw, web02)
    assert d.decision in (ALLOW, DENY, HELP)
    assert d.code and d.reason and "\n" not in d.reason
    assert (d.decision == ALLOW) == bool(d.executable)


TEMPLATES = ["cat {}", "head -n 1 {}", "tail {}", "wc -l {}", "stat {}", "ls -la {}", "ls -R {}", "grep -r x {}",
             "grep x {}", "du -sh {}", "findmnt --target {}", "df {}", "ls -d {} /etc/hostname"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(nodes=st.lists(node, max_size=8), rel=rel_path, absolute=st.booleans(), template=st.sampled_from(TEMPLATES))
def test_allowed_decisions_only_name_paths_outside_the_denylist(tmp_path_factory, nodes, rel, absolute, template):
    root = Path(tempfile.mkdtemp(prefix="decideprop-")).resolve()
    cwd = os.getcwd()
    try:
        _build(root, nodes)
        extra = "".join(f'[[deny]]\npath = "{root}/{e}"\nwhy = "test secret"\n' for e in SECRET_ENTRIES)
        policy = load(str(write_stub_policy(root, "web-02.toml", root / ".bin", extra=extra)))
        os.chdir(root)
        value = f"{root}/{rel}" if absolute else (rel or ".")
        d = plan(template.format(f"'{value}'").encode(), policy)
        event(f"{d.decision} {d.code}")
        if d.decision != ALLOW:
            return
        entries = [f"{root}/{e}" for e in SECRET_ENTRIES]
        patterns = [_comps(e) for e in entries] + [_comps(e.path) for e in policy.deny if "/proc/" not in e.path]
        found = [m for e in SECRET_ENTRIES for m in _expand(root, _comps(e))]
        patterns += [_comps(os.path.realpath(m)) for m in found]
        denied_ids = {i for m in found if (i := _ident(m))}
        assert d.paths, "an allowed path command reports its paths"
        for p in d.paths:
            real = str(Path(os.path.join(root, p.value)).resolve(strict=False))
            assert p.resolved == real
            rc = _comps(real)
            for pat in patterns:
                assert not _at_or_under(rc, pat), (p, pat)
                if p.kind == "tree":
                    assert not _beneath(rc, pat), (p, pat)
            if _ident(real) is not None:
                assert not denied_ids.intersection(_ancestry(real)), p
    finally:
        os.chdir(cwd)
        shutil.rmtree(root, ignore_errors=True)
