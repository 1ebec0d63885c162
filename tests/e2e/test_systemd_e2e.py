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


SERVICE = "n8n.service"
UNIT_SECRET = "unit-env-canary-" + secrets.token_hex(6)
ENV_CANARY = "visible-env-canary-" + secrets.token_hex(6)


@pytest.fixture(scope="module")
def booted(e2e):
    if not os.access(harness.SYSTEMD, os.X_OK) or not os.access("/usr/bin/dbus-daemon", os.X_OK):
        pytest.fail("systemd and dbus-daemon are needed (scripts/setup installs them)")
    marker = f"stand-in n8n up {secrets.token_hex(4)}"
    boot = harness.BootedSystemd(e2e.work, SERVICE, marker, secret=UNIT_SECRET, env_canary=ENV_CANARY)
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
    res = boot.run(e2e.wrapper_argv(policy, command), cwd="/")
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
    assert b"ExecStart=" in res.stdout  # the gap is real without the wall
    # (the mode-0600 secret drop-in stays unreadable to systemctl cat: file modes hold there)
    assert UNIT_SECRET.encode() not in res.stdout and b"50-secret.conf: Permission denied" in res.stderr
    assert "sandbox" not in rec["DIAG_LAYERS"].split(",")


def test_the_net_masks_environment_values_systemctl_cat_prints(e2e, booted):
    # A world-readable drop-in with an API key in Environment=: file modes allow it, the
    # wall does not cover it; the redaction net is what keeps the value out of the output.
    boot, _ = booted
    plain = boot.run(["runuser", "-u", e2e.user.name, "--", "systemctl", "cat", SERVICE, "--no-pager"])
    assert ENV_CANARY.encode() in plain.stdout  # the control: the value is there to be printed
    cursor = boot.cursor()
    res = boot.run(e2e.wrapper_argv(booted[1], "systemctl cat n8n | grep -v '^#'"), cwd="/")
    assert ENV_CANARY.encode() not in res.stdout + res.stderr
    assert b"Environment=[redacted:environment]\n" in res.stdout and b"[Service]" in res.stdout
    (end,) = [r for r in boot.records_since(cursor, expect=2, ends=True) if r["DIAG_DECISION"] == "end"]
    assert end["DIAG_REDACTED"] == "environment=1"


# --------------------------------------------------------------------------- what output leaks

CANARIES = {
    "COREDUMP_ENVIRON": "environ-canary-" + secrets.token_hex(6),
    "COREDUMP_CMDLINE": "cmdline-canary-" + secrets.token_hex(6),
    "COREDUMP": "core-canary-" + secrets.token_hex(6),
    "COREDUMP_OPEN_FDS": "fds-canary-" + secrets.token_hex(6),
    "COREDUMP_PROC_STATUS": "status-canary-" + secrets.token_hex(6),
}
COREDUMP_MESSAGE = "Process 4242 (node) of user 0 dumped core."

SEND_COREDUMP = r"""
import json, sys
from systemd import journal
fields = json.loads(sys.argv[1])
journal.send(sys.argv[2], MESSAGE_ID="fc2e22bc6ee647b6b90729ab34a250b1", COREDUMP_UNIT="n8n.service",
             COREDUMP_SIGNAL_NAME="SIGSEGV", COREDUMP_PID="4242", COREDUMP_COMM="node",
             SYSLOG_IDENTIFIER="systemd-coredump", PRIORITY="2", **fields)
"""


@pytest.fixture(scope="module")
def coredump(e2e, booted):
    """A systemd-coredump style record for n8n (as root, so `-u n8n` matches it too)."""
    boot, _ = booted
    cursor = boot.cursor()
    res = boot.run([str(e2e.python), "-c", SEND_COREDUMP, __import__("json").dumps(CANARIES), COREDUMP_MESSAGE])
    assert res.returncode == 0, res.stderr
    rec = boot.records_since(cursor, expect=1, identifier="systemd-coredump")
    assert rec and rec[-1]["COREDUMP_ENVIRON"] == CANARIES["COREDUMP_ENVIRON"]
    # The control: the record is reachable by the unit's own matches, and a plain
    # `journalctl -u n8n -o json` prints the environment of the crashed process.
    plain = boot.run(["runuser", "-u", e2e.user.name, "--", "journalctl", "-u", "n8n", "-o", "json", "--no-pager"])
    assert CANARIES["COREDUMP_ENVIRON"].encode() in plain.stdout, plain.stderr
    return boot


def _no_canary(res) -> None:
    out = res.stdout + res.stderr
    for name, canary in CANARIES.items():
        assert canary.encode() not in out, (name, out[:2000])
    assert UNIT_SECRET.encode() not in out


MODES = ["short", "short-full", "short-iso", "short-iso-precise", "short-precise", "short-monotonic",
         "short-delta", "short-unix", "verbose", "export", "json", "json-pretty", "json-sse", "json-seq", "cat",
         "with-unit"]
FIELD_OPTIONS = ["", "--output-fields=MESSAGE,COREDUMP_UNIT,COREDUMP_SIGNAL_NAME", "--output-fields=COREDUMP_ENVIRON",
                 "--output-fields=MESSAGE,COREDUMP_CMDLINE", "-F COREDUMP_ENVIRON"]


@pytest.mark.parametrize("select", ["-u n8n", "COREDUMP_UNIT=n8n.service"])
@pytest.mark.parametrize("fields", FIELD_OPTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_no_output_mode_or_field_option_prints_a_coredump_canary(e2e, booted, coredump, mode, fields, select):
    res, rec = wrapper(e2e, booted, f"journalctl {select} -o {mode} {fields}".strip())
    _no_canary(res)
    if "COREDUMP_ENVIRON" in fields or "COREDUMP_CMDLINE" in fields:
        assert res.returncode == 77 and rec["DIAG_CODE"] == "match.bad-value"
        return
    assert res.returncode == 0, res.stderr
    assert_inside_the_wall(e2e, rec)
    out = res.stdout.decode()
    if mode not in ("export",) and not (mode == "cat" and "MESSAGE" not in fields and fields):
        assert "dumped core" in out, out[:500]  # the useful part still arrives
    if mode.startswith("json") or mode in ("verbose", "export"):
        assert "COREDUMP_SIGNAL_NAME" in out or "SIGSEGV" in out


@pytest.mark.parametrize("command", ["journalctl -F COREDUMP_ENVIRON", "journalctl --field=COREDUMP_CMDLINE",
                                     "journalctl -F COREDUMP"])
def test_field_values_of_secret_fields_are_refused(e2e, booted, coredump, command):
    res, rec = wrapper(e2e, booted, command)
    _no_canary(res)
    assert res.returncode == 77 and rec["DIAG_CODE"] == "match.bad-value"


def test_safe_field_values_are_listed(e2e, booted, coredump):
    res, rec = wrapper(e2e, booted, "journalctl -F COREDUMP_UNIT")
    assert res.returncode == 0 and res.stdout.decode().split() == ["n8n.service"]


@pytest.mark.parametrize("command", [
    "systemctl show n8n", "systemctl show", "systemctl show --all n8n", "systemctl show --value n8n",
    "systemctl status n8n", "systemctl status -l -n 100 n8n", "systemctl status n8n -o cat",
    "systemctl status n8n -o short-iso", "systemctl -a show n8n",
])
def test_systemctl_prints_no_secret_of_the_unit_or_its_coredumps(e2e, booted, coredump, command):
    res, rec = wrapper(e2e, booted, command)
    assert res.returncode in (0, 3), res.stderr  # status: 3 when a unit is not active
    _no_canary(res)
    assert_inside_the_wall(e2e, rec)
    if command.startswith("systemctl show") and "--value" not in command:
        assert b"ActiveState=" in res.stdout or b"SystemState=" in res.stdout


@pytest.mark.parametrize("command", [
    "systemctl show -p Environment n8n", "systemctl show --property=Id,Environment n8n",
    "systemctl show -P SetCredential n8n", "systemctl show -p StandardInputText n8n",
    "systemctl show -p LogExtraFields n8n", "systemctl show -p environment n8n", "systemctl status -o json n8n",
    "systemctl status -o verbose n8n", "systemctl status -o export n8n",
])
def test_systemctl_forms_that_would_print_secrets_are_refused(e2e, booted, coredump, command):
    res, rec = wrapper(e2e, booted, command)
    _no_canary(res)
    assert res.returncode == 77 and rec["DIAG_CODE"] == "match.bad-value"


def test_the_unit_secret_is_really_there_for_any_user(e2e, booted):
    # The control: systemd hands Environment= of a mode-0600 drop-in to any user over D-Bus.
    boot, _ = booted
    res = boot.run(["runuser", "-u", e2e.user.name, "--", "systemctl", "show", "-p", "Environment", SERVICE])
    assert UNIT_SECRET.encode() in res.stdout, res.stderr


def test_hostnamectl_status_runs_on_this_systemd(e2e, booted):
    # systemd 252 refuses --no-pager for hostnamectl ("unrecognized option"): it is not forced.
    res, rec = wrapper(e2e, booted, "hostnamectl status")
    assert b"unrecognized option" not in res.stderr
    assert_inside_the_wall(e2e, rec)
    if res.returncode == 0:
        assert b"hostname" in res.stdout.lower()


def test_transient_units_keep_their_credentials_and_environment(e2e, booted):
    # systemd-run writes SetCredential=/Environment= into /run/systemd/transient in plain,
    # world-readable files: a deny entry, covered by the wall for systemctl cat too
    boot, _ = booted
    secret = "transient-canary-" + secrets.token_hex(6)
    res = boot.run(["systemd-run", "--unit=diag-trans", "-p", "DefaultDependencies=no", "-p",
                    f"SetCredential=tok:{secret}", "-E",
                    f"TOK={secret}", "--", "/bin/sleep", "600"])
    assert res.returncode == 0, res.stderr
    try:
        plain = boot.run(["runuser", "-u", e2e.user.name, "--", "cat", "/run/systemd/transient/diag-trans.service"])
        assert secret.encode() in plain.stdout  # the control: any user can read it without the wrapper
        for command in ("systemctl cat diag-trans.service", "cat /run/systemd/transient/diag-trans.service",
                        "grep -r transient-canary /run/systemd", "systemctl show diag-trans.service",
                        "systemctl status diag-trans.service"):
            res, rec = wrapper(e2e, booted, command)
            assert secret.encode() not in res.stdout + res.stderr, command
    finally:
        boot.run(["systemctl", "stop", "diag-trans.service"])
