"""systemctl and journalctl inside the kernel wall, against systemd running as PID 1.

The wrapper runs as the unprivileged test user (in systemd-journal), with
``sandbox = "required"`` so nothing runs unless the wall is up, inside a private
PID + mount + cgroup namespace whose PID 1 is this machine's systemd, with its
journald, the D-Bus system bus and a stand-in ``n8n.service``. systemctl, as a
non-root user, reaches systemd over the system bus; journalctl reads journald's
files through the group. Both must work from inside the user + mount namespace.
"""

from __future__ import annotations

import os
import secrets

import pytest

from . import harness

pytestmark = pytest.mark.e2e

SERVICE = "n8n.service"


@pytest.fixture(scope="module")
def booted(e2e):
    if not os.access(harness.SYSTEMD, os.X_OK) or not os.access("/usr/bin/dbus-daemon", os.X_OK):
        pytest.fail("systemd and dbus-daemon are needed (scripts/setup installs them)")
    marker = f"stand-in n8n up {secrets.token_hex(4)}"
    boot = harness.BootedSystemd(e2e.work, SERVICE, marker)
    policy = e2e.policy.parent / "systemd-required.toml"
    policy.write_text(f'include = ["{e2e.policy}"]\n[settings]\nsandbox = "required"\n')
    policy.chmod(0o644)
    # The unit files' directory as a deny entry: `systemctl cat` reads them itself, by a
    # path it gets from systemd, which no path check of the wrapper ever sees.
    for mode in ("required", "off"):
        p = e2e.policy.parent / f"systemd-units-{mode}.toml"
        p.write_text(f'include = ["{e2e.policy}"]\n[settings]\nsandbox = "{mode}"\n'
                     f'[[deny]]\npath = "{boot.units}"\nwhy = "stand-in for a secret unit directory"\n')
        p.chmod(0o644)
    try:
        boot.start()
        yield boot, policy
    finally:
        boot.stop()


def wrapper(e2e, booted, command: str, policy=None):
    """One ForceCommand-style run as the test user; returns (result, its audit record)."""
    boot, default = booted
    policy = policy or default
    cursor = boot.cursor()
    res = boot.run(["runuser", "-u", e2e.user.name, "--", "env", "-i", f"SSH_ORIGINAL_COMMAND={command}",
                    str(e2e.python), "-I", "-m", "diag_wrapper", "--policy", str(policy)], cwd="/")
    recs = boot.records_since(cursor, expect=1)
    assert len(recs) == 1, recs
    return res, recs[0]


def assert_inside_the_wall(e2e, rec) -> None:
    assert rec["DIAG_DECISION"] == "allow"
    assert rec["DIAG_LAYERS"].split(",")[-1] == "sandbox"
    assert rec["_UID"] == str(e2e.user.pw.pw_uid) != "0"


def test_systemctl_status_talks_to_systemd_and_shows_the_journal(e2e, booted):
    boot, _ = booted
    res, rec = wrapper(e2e, booted, "systemctl status n8n")
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr
    assert "stand-in for the real n8n" in out and "active (running)" in out
    assert boot.marker in out  # the unit's journal lines: read through systemd-journal
    assert_inside_the_wall(e2e, rec)


@pytest.mark.parametrize(("command", "expect"), [
    ("systemctl is-active n8n", "active\n"),
    ("systemctl show -P ActiveState n8n", "active\n"),
    ("systemctl is-failed n8n", "active\n"),
])
def test_systemctl_queries_answer_from_systemd(e2e, booted, command, expect):
    res, rec = wrapper(e2e, booted, command)
    assert res.stdout.decode() == expect
    assert_inside_the_wall(e2e, rec)


def test_systemctl_lists_units_from_systemd(e2e, booted):
    res, rec = wrapper(e2e, booted, "systemctl list-units --type=service --no-legend --plain")
    assert res.returncode == 0, res.stderr
    names = [line.split()[0] for line in res.stdout.decode().splitlines() if line.strip()]
    assert SERVICE in names and "dbus.service" in names
    assert_inside_the_wall(e2e, rec)


def test_journalctl_reads_the_units_lines_inside_the_wall(e2e, booted):
    boot, _ = booted
    res, rec = wrapper(e2e, booted, "journalctl -u n8n -n 20 -o cat")
    assert res.returncode == 0, res.stderr
    assert boot.marker in res.stdout.decode().splitlines()
    assert_inside_the_wall(e2e, rec)


@pytest.mark.parametrize("command", ["systemctl stop n8n", "systemctl restart n8n", "systemctl kill n8n",
                                     "systemctl --no-block stop n8n", "systemctl daemon-reload"])
def test_verbs_that_change_state_are_refused_and_nothing_changes(e2e, booted, command):
    boot, _ = booted
    before = boot.run(["systemctl", "show", "-P", "MainPID", SERVICE]).stdout
    res, rec = wrapper(e2e, booted, command)
    assert res.returncode == 77 and res.stdout == b""
    assert rec["DIAG_DECISION"] == "deny" and rec["DIAG_CODE"].startswith("match.")
    assert boot.run(["systemctl", "is-active", SERVICE]).stdout == b"active\n"
    assert boot.run(["systemctl", "show", "-P", "MainPID", SERVICE]).stdout == before


def test_what_systemctl_reads_itself_is_behind_the_wall(e2e, booted):
    # A gap no path check can close: systemctl cat opens the unit file systemd names.
    # With the unit directory denied, the wall covers it: systemctl still talks to
    # systemd (status works) but cannot read the file. With the wall off, it can.
    walled = e2e.policy.parent / "systemd-units-required.toml"
    res, rec = wrapper(e2e, booted, "systemctl cat n8n", walled)
    assert b"ExecStart=" not in res.stdout + res.stderr and res.returncode != 0
    assert b"Permission denied" in res.stderr  # the mode-000 cover, not a missing unit
    assert_inside_the_wall(e2e, rec)
    res, rec = wrapper(e2e, booted, "systemctl status n8n", walled)
    assert res.returncode == 0 and b"active (running)" in res.stdout
    assert_inside_the_wall(e2e, rec)

    res, rec = wrapper(e2e, booted, "systemctl cat n8n", e2e.policy.parent / "systemd-units-off.toml")
    assert res.returncode == 0 and b"ExecStart=" in res.stdout  # the gap is real without the wall
    assert "sandbox" not in rec["DIAG_LAYERS"].split(",")
