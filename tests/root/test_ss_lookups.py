"""ss filters: no allowed filter makes the real ss look a name up (root: strace, netns).

Every allowed ss filter from the table tests is handed, exactly as the decision
execs it, to the real ss under strace in a fresh network namespace (nothing to
reach). A name lookup shows as opening /etc/resolv.conf, /etc/hosts or
/etc/services, or asking nscd. The control shows the detection works: a host name
filter (refused by the policy) does all of that.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from diag_wrapper.model import ALLOW
from diag_wrapper.plan import plan

from test_leaks import SS_FAMILY_MISMATCH
from test_leaks import test_ss_numeric_filters_are_allowed as allowed_table


LOOKUPS = ("/etc/resolv.conf", "/etc/hosts", "/etc/services", "nscd", "/etc/nsswitch.conf")
ALLOWED = [m.args[1] for m in allowed_table.pytestmark if m.name == "parametrize"][0]


def _trace(argv: list[str], tmp_path) -> str:
    if not shutil.which("strace") or not shutil.which("ss"):
        pytest.skip("needs strace and ss (scripts/setup installs them)")
    out = tmp_path / "trace"
    subprocess.run(["unshare", "-n", "strace", "-f", "-qq", "-e", "trace=openat,connect,sendto", "-o", str(out),
                    shutil.which("ss"), *argv[1:]], capture_output=True, timeout=30)
    return out.read_text()


def test_the_detection_sees_a_lookup(tmp_path):
    trace = _trace(["ss", "-tn", "dst", "some-name.example"], tmp_path)
    assert any(name in trace for name in LOOKUPS), trace


@pytest.mark.parametrize("command", ALLOWED)
def test_allowed_filters_look_nothing_up(web02, tmp_path, command):
    d = plan(command.encode(), web02)
    assert d.decision == ALLOW, d.reason
    trace = _trace(list(d.exec_argv), tmp_path)
    assert not [line for line in trace.splitlines() if any(name in line for name in LOOKUPS)], trace


@pytest.mark.parametrize("command", [*SS_FAMILY_MISMATCH, "ss -n dst 65535", "ss -tn 'dst [2001:db8::1]/64'"])
def test_the_refused_forms_really_look_names_up(tmp_path, command):
    # why they are refused: the real ss hands each of them to the resolver
    import shlex

    trace = _trace(shlex.split(command), tmp_path)
    assert any(name in trace for name in LOOKUPS), command
