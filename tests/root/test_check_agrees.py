"""``check --json`` and ForceCommand mode make the same decision, because both are ``plan()``.

A table of command strings runs through both, for every ``sandbox`` mode, on this host and
on one where user namespaces cannot be had (a user namespace whose max_user_namespaces is
0). ForceCommand mode runs with the recording program (``fc``, tests/root/conftest.py) and
writes its record to a real journald; check runs in the same namespace as the same user.
The decision, the code and the layers must be identical.
"""

from __future__ import annotations

import json
import os

import pytest

NO_USERNS = ["unshare", "-U", "-r", "--", "/bin/sh", "-c",
             'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]
NO_MNTNS = ["unshare", "-U", "-r", "--", "/bin/sh", "-c",
            'echo 0 > /proc/sys/user/max_mnt_namespaces && exec "$@"', "sh"]


@pytest.fixture(scope="module")
def layout(fc, tmp_path_factory):
    base = tmp_path_factory.mktemp("agree")
    base.chmod(0o755)
    loose = base / "loose"
    loose.mkdir()
    (loose / "f").write_text("x\n")
    os.chown(loose, 65534, 65534)  # another user may swap anything in here
    (base / "stable").write_text("x\n")
    policies = {}
    for mode in ("off", "auto", "required"):
        p = base / f"{mode}.toml"
        p.write_text(f'include = ["{fc.policy}"]\n[settings]\nsandbox = "{mode}"\n')
        policies[mode] = p
    return base, policies


def _table(base):
    return [
        f"ls -l {base}/loose/f",        # the path.unstable case: a name another user can swap
        f"cat {base}/loose/f",          # the same file as a descriptor: nothing to swap
        f"grep -r x {base}/loose",      # a tree: names handed over
        f"ls -l {base}/stable",
        "uptime",
        "journalctl -n 1 -u n8n",
        "cat /etc/shadow",
        "systemctl stop n8n",
        "ls; id",
    ]


def _check(fc, policy, commands, prefix):
    argv = [*prefix, str(fc.python), "-I", "-m", "diag_wrapper", "check", "--policy", str(policy), "--json",
            "--", *commands]
    res = fc.ns.run(argv, timeout=60, cwd=str(fc.root))
    assert res.returncode in (0, 1), res.stderr
    return [json.loads(line) for line in res.stdout.decode().splitlines()]


def _force(fc, policy, command, prefix):
    cursor = fc.journald.cursor()
    argv = [*prefix, "env", "-i", f"SSH_ORIGINAL_COMMAND={command}", str(fc.python), "-I", "-m",
            "diag_wrapper", "--policy", str(policy)]
    fc.last = res = fc.ns.run(argv, timeout=60, cwd=str(fc.root))
    (rec,) = fc.journald.records_since(cursor, expect=1)  # the decision (an allow also has a closing one)
    ran = fc.recorded() is not None
    assert ran == (res.returncode == 7) and ran == (rec["DIAG_DECISION"] == "allow"), (res, rec)
    return rec


@pytest.mark.parametrize("userns", ["here", "none", "no-mount-ns"])
@pytest.mark.parametrize("mode", ["off", "auto", "required"])
def test_check_and_forcecommand_mode_cannot_disagree(fc, layout, mode, userns):
    base, policies = layout
    prefix = {"here": [], "none": NO_USERNS, "no-mount-ns": NO_MNTNS}[userns]
    commands = _table(base)
    checked = _check(fc, policies[mode], commands, prefix)
    seen = {}
    for command, want in zip(commands, checked):
        rec = _force(fc, policies[mode], command, prefix)
        got = (rec["DIAG_DECISION"], rec["DIAG_CODE"], rec.get("DIAG_LAYERS", ""))
        assert got == (want["decision"], want["code"], ",".join(want["layers"])), (command, want["reason"])
        seen[command] = want["code"]
    # the table covers what it is for: the stable-name rule follows the wall the plan expects
    unstable = seen[f"ls -l {base}/loose/f"]
    userns = "none" if userns == "no-mount-ns" else userns  # the wall needs both namespaces
    assert unstable == {("off", "here"): "path.unstable", ("auto", "here"): "allow",
                        ("required", "here"): "allow", ("off", "none"): "path.unstable",
                        ("auto", "none"): "path.unstable",
                        ("required", "none"): "sandbox.unavailable"}[(mode, userns)]
    assert seen[f"cat {base}/loose/f"] == ("sandbox.unavailable" if (mode, userns) == ("required", "none")
                                          else "allow")
