"""ForceCommand mode and a report: connecting starts root's collector, so the connection is
made only after the start record (root only: the fc fixture's namespace has its own /run,
where a listener stands in for the report's socket unit).

* journal down: audit.unavailable, and the listener never sees a connection;
* no socket: the start record, then report.unavailable in the closing record and on stderr;
* a listener answering as the collector does: its frames come back, exit 0, and closing record.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

LISTENER = r"""
import os, socket, struct, sys, time
path, log = sys.argv[1], sys.argv[2]
os.makedirs(os.path.dirname(path), exist_ok=True)
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o666)
s.listen()
print("up", flush=True)
while True:
    c, _ = s.accept()
    with open(log, "a") as f:
        f.write("connected\n")
    for kind, payload in ((b"S", b""), (b"D", b"report body\n"), (b"X", b'{"reason": "exit", "status": 0}')):
        c.sendall(kind + struct.pack(">I", len(payload)) + payload)
    c.close()
"""


@pytest.fixture
def listener(fc, tmp_path):
    log = tmp_path / "connections"
    log.write_text("")
    proc = fc.ns.popen(["python3", "-c", LISTENER, "/run/diag-reports/listening.sock", str(log)],
                       stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    try:
        yield log
    finally:
        proc.kill()
        proc.wait()
        fc.ns.run(["rm", "-f", "/run/diag-reports/listening.sock"])


def test_with_the_journal_down_nothing_connects(fc, listener):
    fc.journald.stop()
    try:
        proc = fc.run("report listening")
    finally:
        fc.journald.start()
    assert proc.returncode == 77 and b"(audit.unavailable)" in proc.stderr
    time.sleep(0.2)
    assert listener.read_text() == ""  # the collector was never started


def test_a_report_runs_after_its_record(fc, listener):
    cursor = fc.journald.cursor()
    proc = fc.run("report listening")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"report body\n" and listener.read_text() == "connected\n"
    recs = fc.journald.records_since(cursor, expect=2, ends=True)
    assert [r["DIAG_DECISION"] for r in recs] == ["allow", "end"]
    assert recs[0]["DIAG_RULE"] == "report listening" and recs[0]["DIAG_LAYERS"] == "allowlist,report"
    assert recs[1]["DIAG_EXIT_STATUS"] == "0"


def test_no_socket_is_report_unavailable_in_the_closing_record(fc):
    cursor = fc.journald.cursor()
    proc = fc.run("report containers")
    assert proc.returncode == 77 and proc.stdout == b""
    assert b"(report.unavailable)" in proc.stderr and b"diag-report-containers.socket" in proc.stderr
    recs = fc.journald.records_since(cursor, expect=2, ends=True)
    assert [r["DIAG_DECISION"] for r in recs] == ["allow", "end"]
    assert "report.unavailable" in json.dumps(recs[1])
