"""Audit records in a REAL systemd-journald (root: a private mount namespace)."""

from __future__ import annotations

import json
import os
import sys

from diag_wrapper import audit
from diag_wrapper.model import Plan as Decision
from test_audit import ALLOW, HELP, NASTY, REPO, _keygen, _keygen_fp, sshd_auth_file

# --------------------------------------------------------------------------- a real journald

RECORD_SNIPPET = r"""
import json, sys
from diag_wrapper import audit
from diag_wrapper.model import PathCheck, Plan as Decision
from diag_wrapper.model import Deny
spec = json.loads(sys.argv[1])
d = Decision(spec["decision"], spec["code"], spec["reason"], bytes.fromhex(spec["command"]),
             rule=spec.get("rule"), argv=tuple(spec.get("argv", ())), executable=spec.get("executable"),
             paths=tuple(PathCheck(**p) for p in spec.get("paths", ())), layers=tuple(spec.get("layers", ())))
try:
    audit.record(d, spec["environ"])
except Deny as e:
    print(json.dumps({"code": e.code, "message": e.message}))
    sys.exit(3)
print(json.dumps({"code": "ok"}))
"""


def _record_in_ns(journald, decision: Decision, environ: dict) -> dict:
    spec = {"decision": decision.decision, "code": decision.code, "reason": decision.reason,
            "command": decision.command.hex(), "rule": decision.rule, "argv": list(decision.argv),
            "executable": decision.executable, "layers": list(decision.layers),
            "paths": [{"value": p.value, "resolved": p.resolved, "kind": p.kind} for p in decision.paths],
            "environ": environ}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)}
    res = journald.ns.run([sys.executable, "-c", RECORD_SNIPPET, json.dumps(spec)], env=env)
    assert res.returncode in (0, 3), res.stderr.decode()
    return json.loads(res.stdout)


def _field(rec: dict, name: str) -> bytes:
    v = rec[name]
    return bytes(v) if isinstance(v, list) else v.encode()


def test_record_lands_in_journald(journald, tmp_path):
    pub = _keygen(tmp_path, "ed25519").with_suffix(".pub")
    ktype, blob = pub.read_text().split()[:2]
    auth = sshd_auth_file(f"publickey {ktype} {blob}\n")
    environ = {"SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22", "SSH_CLIENT": "127.0.0.1 40000 22",
               "SSH_USER_AUTH": str(auth), "USER": "spoofed"}
    cursor = journald.cursor()
    for d in (ALLOW, Decision("deny", "input.control", "control character", NASTY), HELP):
        assert _record_in_ns(journald, d, environ) == {"code": "ok"}
    recs = journald.records_since(cursor, expect=3)
    assert [r["DIAG_DECISION"] for r in recs] == ["allow", "deny", "help"]
    allow, deny, help_ = recs
    assert allow["PRIORITY"] == "6" and deny["PRIORITY"] == "4" and help_["PRIORITY"] == "6"
    assert [r["MESSAGE_ID"] for r in recs] == [audit.MESSAGE_IDS[k] for k in ("allow", "deny", "help")]
    assert allow["DIAG_RULE"] == "cat" and allow["DIAG_EXECUTABLE"] == "/usr/bin/cat"
    assert allow["DIAG_COMMAND"] == "cat /var/log/nginx/error.log"
    assert json.loads(allow["DIAG_PATHS"])[0]["resolved"] == "/var/log/nginx/error.log"
    assert allow["DIAG_LAYERS"] == "allowlist,path-denylist"
    assert allow["DIAG_USER"] == "root"  # from the uid, not the USER variable
    assert deny["DIAG_CODE"] == "input.control"
    assert _field(deny, "DIAG_COMMAND") == NASTY  # binary-safe round trip
    assert "\n" not in deny["MESSAGE"] and "\\x0a" in deny["MESSAGE"]
    for r in recs:
        assert r["SYSLOG_IDENTIFIER"] == "diag-wrapper"
        assert r["DIAG_SSH_CONNECTION"].startswith("127.0.0.1 ")
        assert r["DIAG_SSH_CLIENT"] == "127.0.0.1 40000 22"
        assert r["DIAG_KEY_FINGERPRINT"] == _keygen_fp(pub)
        assert r["DIAG_AUTH_METHOD"] == "publickey"


def test_dead_journald_fails_closed(journald):
    journald.stop()
    try:
        # journald gone, its socket still there: the send is refused.
        assert journald.ns.path(journald.SOCKET).exists()
        out = _record_in_ns(journald, ALLOW, {})
        assert out["code"] == "audit.unavailable" and "nothing was executed" in out["message"]
        # socket gone too: libsystemd would silently drop the record; record() must not.
        journald.ns.path(journald.SOCKET).unlink()
        out = _record_in_ns(journald, ALLOW, {})
        assert out["code"] == "audit.unavailable" and "No such file" in out["message"]
    finally:
        journald.start()
    assert _record_in_ns(journald, ALLOW, {}) == {"code": "ok"}
