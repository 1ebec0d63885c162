"""Two of docs/incidents.md's transcripts, replayed through the wrapper against this
machine's systemd booted as PID 1 of a private namespace.

Stand-ins: a mautrix bridge that cannot parse its configuration and crash-loops into
`failed` (incident 3), and an invidious companion that answers its health probe with 503
while its journal says why (incident 1). The agent's commands run as the unprivileged test
user, inside the wall, exactly as the transcripts write them.
"""

from __future__ import annotations

import os
import secrets
import socket
import time

import pytest

from . import harness

BRIDGE = "mautrix-telegram.service"
COMPANION = "invidious-companion.service"
YAML_ERROR = "yaml: line 42: mapping values are not allowed in this context"
POTOKEN = "potoken generation failed: fetch https://www.youtube.com/ ETIMEDOUT"

COMPANION_PY = """\
import http.server, sys
print("%s", flush=True)
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"Companion is starting... potoken\\n"
        self.send_response(503 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", 8282), H).serve_forever()
"""


@pytest.fixture(scope="module")
def incidents(e2e):
    if not os.access(harness.SYSTEMD, os.X_OK) or not os.access("/usr/bin/dbus-daemon", os.X_OK):
        pytest.fail("systemd and dbus-daemon are needed (scripts/setup installs them)")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 8282)) == 0:
            pytest.skip("127.0.0.1:8282 is taken on this machine")
    script = e2e.work / "companion.py"
    script.write_text(COMPANION_PY % POTOKEN)
    script.chmod(0o644)
    units = {
        BRIDGE: ("[Unit]\nDescription=stand-in for a bridge that cannot read its configuration\n"
                 "StartLimitIntervalSec=60\nStartLimitBurst=3\n[Service]\n"
                 f"ExecStart=/bin/sh -c 'echo \"{YAML_ERROR}\" >&2; exit 1'\n"
                 "Restart=on-failure\nRestartSec=200ms\n"),
        COMPANION: (f"[Unit]\nDescription=stand-in for the invidious companion\n[Service]\n"
                    f"ExecStart=/usr/bin/python3 {script}\nStandardOutput=journal\n"),
    }
    boot = harness.BootedSystemd(e2e.work, "n8n.service", f"n8n {secrets.token_hex(4)}", extra_units=units)
    try:
        boot.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the bridge gives up after three starts
            if boot.run(["systemctl", "is-failed", "--quiet", BRIDGE]).returncode == 0:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the stand-in bridge did not end failed")
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", 8282)) == 0:
                    break
            time.sleep(0.2)
        boot.sync()
        yield boot
    finally:
        boot.stop()


def agent(e2e, boot, command: str):
    res = boot.run(e2e.wrapper_argv(e2e.policy, command), cwd="/")
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def test_incident_3_a_crash_looping_bridge(e2e, incidents):
    rc, out, _ = agent(e2e, incidents, "systemctl --failed")
    assert rc == 0 and BRIDGE in out and "failed" in out
    rc, out, _ = agent(e2e, incidents, "systemctl show -p NRestarts,Result mautrix-telegram")
    assert rc == 0
    props = dict(line.split("=", 1) for line in out.split())
    assert props["NRestarts"].isdigit() and props["Result"] in ("exit-code", "start-limit-hit"), out
    rc, out, err = agent(e2e, incidents, "journalctl -xeu mautrix-telegram.service")
    assert rc == 0 and YAML_ERROR in out  # the first error after a restart: the cause
    assert "-x is accepted and not passed on" in err
    rc, out, _ = agent(e2e, incidents, "systemctl is-system-running")
    assert out.strip() == "degraded" and rc == 1


def test_incident_1_the_companion_answers_but_is_not_ready(e2e, incidents):
    rc, out, _ = agent(e2e, incidents, "systemctl status invidious-companion")
    assert rc == 0 and "active (running)" in out
    rc, out, _ = agent(e2e, incidents, "curl -sS -i http://127.0.0.1:8282/healthz")
    assert rc == 0 and out.startswith("HTTP/1.0 503") and "Companion is starting... potoken" in out
    rc, out, _ = agent(e2e, incidents, "journalctl -u invidious-companion -n 20")
    assert rc == 0 and POTOKEN in out
    rc, _, err = agent(e2e, incidents, "curl -sS http://127.0.0.1:8282/webhook")
    assert rc == 77 and "match.bad-value" in err and "not a probe endpoint" in err
