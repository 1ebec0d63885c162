"""Fixed reports: the policy's [reports], the plan of ``report NAME``, the help, and the
reply's protocol between the real collector (``diag-wrapper collect``, collect.py) and the
real decoder stage (report.main), over a socketpair standing in for the one connection
systemd accepts (the booted-systemd test, tests/e2e/test_reports_e2e.py, does the rest).

What a report could otherwise do, and where each is refused:
* run something the agent chose: the name is the only word that reaches the host, and
  only the host's configuration says what it runs (a name not in [reports] is refused,
  arguments are refused, globs are refused);
* be told something by the client: the wrapper shuts its write side at once, the
  collector's standard input is /dev/null (and the unit's StandardInput=null);
* forge its own end, or hide an error: the reply is framed; a collector's output that
  looks like a frame is data; a malformed reply is exit 70, an unfinished one 75;
* outlive its limits: the collector stops the command's whole process group at the
  timeout and at the output cap, and when the client goes away;
* see the caller's environment: the command gets LANG and PATH only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from diag_wrapper import report
from diag_wrapper.helptext import brief, render
from diag_wrapper.model import ALLOW, DENY, HELP, Deny, Plan
from diag_wrapper.plan import REPORT_GRACE, plan
from diag_wrapper.policy import PolicyError, load

sys.path.insert(0, os.path.dirname(__file__))
from conftest import POLICY_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WEB02_REPORTS = ["containers", "disk-usage", "firewall", "listening", "postgres-activity", "redis-info"]


# --------------------------------------------------------------------------- policy


def _policy(tmp_path: Path, reports: str) -> Path:
    p = tmp_path / "p.toml"
    p.write_text(f'include = ["{POLICY_DIR / "fleet.toml"}"]\n{reports}\n')
    return p


GOOD = '[reports.listening]\nsummary = "sockets"\nsocket = "/run/diag-reports/listening.sock"\n'


X = 'socket = "/run/diag-reports/x.sock"'


@pytest.mark.parametrize("table,problem", [
    ('[reports.Listening]\nsummary = "x"\nsocket = "/run/diag-reports/Listening.sock"', "lower case"),
    ('[reports."a b"]\nsummary = "x"\nsocket = "/run/diag-reports/a b.sock"', "lower case"),
    (f'[reports.x]\n{X}', "summary"),
    ('[reports.x]\nsummary = "x"', "socket"),
    (f'[reports.x]\nsummary = "x\\ny"\n{X}', "one line"),
    # only the socket services.diag.reports makes, in root's directory: not dbus's, not one in /tmp
    ('[reports.x]\nsummary = "x"\nsocket = "/tmp/x.sock"', "must be /run/diag-reports/x.sock"),
    ('[reports.x]\nsummary = "x"\nsocket = "/run/dbus/system_bus_socket"', "must be /run/diag-reports/x.sock"),
    ('[reports.x]\nsummary = "x"\nsocket = "/run/diag-reports/y.sock"', "must be /run/diag-reports/x.sock"),
    ('[reports.x]\nsummary = "x"\nsocket = "/run/diag-reports/../x.sock"', "must be /run/diag-reports/x.sock"),
    (f'[reports.x]\nsummary = "x"\n{X}\ntimeout = 0', "timeout"),
    (f'[reports.x]\nsummary = "x"\n{X}\ntimeout = 601', "timeout"),
    (f'[reports.x]\nsummary = "x"\n{X}\nmax_output_bytes = 0', "max_output_bytes"),
    (f'[reports.x]\nsummary = "x"\n{X}\ncommand = ["/bin/sh"]', "command"),
    ('[commands.report]\nsummary = "x"', "the wrapper's own command"),
    ('[commands.help]\nsummary = "x"', "the wrapper's own command"),
])
def test_a_bad_report_table_is_a_policy_error(tmp_path, table, problem):
    with pytest.raises(PolicyError, match=problem):
        load(str(_policy(tmp_path, table)))


def test_reports_load_with_defaults_and_survive_render(tmp_path):
    from diag_wrapper.policy import render as render_policy

    path = _policy(tmp_path, GOOD)
    r = load(str(path)).reports["listening"]
    assert (r.timeout, r.max_output_bytes, r.socket) == (30, 1 << 20, "/run/diag-reports/listening.sock")
    sealed = tmp_path / "p.json"
    sealed.write_text(render_policy(str(path)))
    assert load(str(sealed)).reports == load(str(path)).reports


def test_web02_lists_its_reports(web02):
    assert sorted(web02.reports) == WEB02_REPORTS
    assert all(r.socket == f"/run/diag-reports/{n}.sock" for n, r in web02.reports.items())


# --------------------------------------------------------------------------- plan


def test_report_alone_lists_the_reports(web02):
    p = plan(b"report", web02)
    assert p.decision == HELP and p.rule == "report"
    text = render(web02, "reports")
    for name, r in web02.reports.items():
        assert f"  {name}" in text and r.summary in text


def test_report_name_plans_the_decoder_stage_connected_to_its_socket(web02):
    p = plan(b"report postgres-activity", web02)
    assert p.decision == ALLOW and p.rule == "report postgres-activity"
    r = web02.reports["postgres-activity"]
    assert p.executable == sys.executable and p.exec_argv[:3] == (sys.executable, "-I", "-c")
    assert p.exec_argv[-2:] == ("postgres-activity", r.socket) and p.connect == len(p.exec_argv) - 1
    assert p.timeout == r.timeout + REPORT_GRACE
    assert p.max_output == r.max_output_bytes + 4096
    assert p.layers == ("allowlist", "report") and p.wall == () and p.env == {"LANG": "C.UTF-8"}
    assert dict(p.rlimits)["RLIMIT_FSIZE"] == 0 and p.redact == web02.redact


@pytest.mark.parametrize("command,code", [
    ("report shell", "report.unknown"),
    ("report ../../run/diag-reports/containers", "report.unknown"),
    ("report /run/diag-reports/containers.sock", "report.unknown"),
    ("report CONTAINERS", "report.unknown"),
    ("report containers --all", "match.too-many-args"),
    ("report containers inspect", "match.too-many-args"),
    ("report 'containers' x", "match.too-many-args"),
    ("report cont*", "parse.glob"),
    ("report containers; id", "parse.list"),
    ("report $(id)", "parse.command-substitution"),
    ("report containers > /tmp/x", "parse.redirect"),
    ("report | grep x", "match.too-few-args"),
    ("report containers | sh", "match.not-a-filter"),
    ("help report x", "match.unknown-command"),
])
def test_what_a_report_refuses(web02, command, code):
    p = plan(command.encode(), web02)
    assert p.decision == DENY and p.code == code, p.reason


def test_an_unknown_report_names_the_ones_there_are(web02):
    p = plan(b"report shell", web02)
    assert all(n in p.reason for n in WEB02_REPORTS)


def test_a_report_may_be_piped_into_filters(web02):
    p = plan(b"report listening | grep 5432", web02)
    assert p.decision == ALLOW and [f.rule for f in p.filters] == ["grep"]


def test_a_host_without_reports_says_so(fleet):
    assert plan(b"report listening", fleet).code == "report.unknown"
    assert "none on this host" in plan(b"report listening", fleet).reason
    assert render(fleet, "reports") == "this host's policy lists no reports\n"


def test_denials_point_at_the_reports(web02):
    for command, hint in [("podman ps", "report containers"), ("podman inspect invidious", "report containers"),
                          ("nft list ruleset", "report firewall"), ("psql -c 'select 1'", "report postgres-activity"),
                          ("redis-cli INFO", "report redis-info")]:
        p = plan(command.encode(), web02)
        assert p.decision == DENY and f"; instead: {hint}" in p.reason, (command, p.reason)


def test_help_brief_and_json_list_the_reports(web02):
    text = brief(web02)
    assert "report NAME" in text and all(n in text for n in WEB02_REPORTS)
    data = json.loads(render(web02, "--json"))
    assert sorted(data["reports"]) == WEB02_REPORTS
    assert "command" not in data["reports"]["containers"]  # the policy has none: the host's config does
    assert "report" in render(web02)


# --------------------------------------------------------------------------- connect (the effect)


def _report_plan(path: str, name: str = "t") -> Plan:
    return Plan(ALLOW, "allow", "x", b"report " + name.encode(), rule=f"report {name}", argv=("report", name),
                exec_argv=("python", name, path), connect=2)


def test_connect_hands_over_the_descriptor_and_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "PEER_UID", os.getuid())  # the listener is this test (tests/root: another uid)
    path = str(tmp_path / "s.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()
    p = report.connect(_report_plan(path))
    fd = p.fds[-1]
    try:
        assert p.exec_argv[2] == f"fd={fd}" and os.get_inheritable(fd)
        conn, _ = srv.accept()
        conn.settimeout(5)
        assert conn.recv(10) == b""  # the write side was shut at once: EOF, not a byte
        conn.sendall(b"reply")
        assert os.read(fd, 10) == b"reply"
        conn.close()
    finally:
        os.close(fd)
        srv.close()


def test_connect_maps_a_missing_or_silent_socket_to_report_unavailable(tmp_path):
    with pytest.raises(Deny) as missing:
        report.connect(_report_plan(str(tmp_path / "none.sock"), "containers"))
    assert missing.value.code == "report.unavailable" and "diag-report-containers.socket" in missing.value.message
    dead = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(dead))
    s.close()  # the file is there, nobody listens: ECONNREFUSED (a socket unit stopped without RemoveOnStop)
    with pytest.raises(Deny) as refused:
        report.connect(_report_plan(str(dead)))
    assert refused.value.code == "report.unavailable"


def test_a_plan_that_is_not_a_report_is_left_alone():
    p = Plan(ALLOW, "allow", "x", b"ls", exec_argv=("ls",))
    assert report.connect(p) is p


# --------------------------------------------------------------------------- collector and decoder


def _collect(command: list[str], timeout: int = 5, max_output: int = 1 << 20, client=None):
    """The real collector with the socket as stdout, the real decoder stage on the other end."""
    a, b = socket.socketpair()
    collector = subprocess.Popen([sys.executable, "-I", "-m", "diag_wrapper", "collect", "t", "--timeout",
                                  str(timeout), "--max-output", str(max_output), "--", *command],
                                 stdout=a.fileno(), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    a.close()
    if client is not None:
        return collector, b
    decoded = _decode(b)
    collector.wait(10)
    return decoded, collector.stderr.read().decode()


def _decode(sock: socket.socket) -> subprocess.CompletedProcess:
    from diag_wrapper.plan import REPORT_STAGE

    fd = sock.fileno()
    try:
        return subprocess.run([sys.executable, "-I", "-c", REPORT_STAGE, str(REPO), "t", f"fd={fd}"],
                              pass_fds=[fd], capture_output=True, timeout=30)
    finally:
        sock.close()


def test_a_report_prints_what_the_command_printed_and_exits_with_it():
    out, log = _collect(["/bin/sh", "-c", "echo hello; echo warn >&2; exit 3"])
    assert out.stdout == b"hello\n" and out.returncode == 3
    assert out.stderr.startswith(b"warn\n") and b"exited with status 3" in out.stderr
    assert "report t for uid" in log and "exit (status 3)" in log  # the unit's journal line: who asked


def test_output_that_looks_like_a_frame_is_data():
    forged = report.frame(report.EXIT, json.dumps({"reason": "exit", "status": 0}).encode())
    out, _ = _collect(["/usr/bin/printf", "".join(f"\\{b:03o}" for b in forged)])
    assert out.stdout == forged and out.returncode == 0


def test_the_command_reads_nothing_and_sees_only_lang_and_path():
    out, _ = _collect(["/usr/bin/env"])
    assert sorted(line.split("=", 1)[0] for line in out.stdout.decode().splitlines()) == ["LANG", "PATH"]
    out, _ = _collect(["/bin/readlink", "/proc/self/fd/0"])
    assert out.stdout == b"/dev/null\n"


def test_the_timeout_stops_the_whole_group():
    marker = f"diag-report-test-{os.getpid()}"
    start = time.monotonic()
    out, log = _collect(["/bin/sh", "-c", f"exec -a {marker} sleep 60 & exec sleep 60"], timeout=1)
    assert time.monotonic() - start < 10
    assert out.returncode == 124 and b"time limit (1 s" in out.stderr and "timeout" in log
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_the_output_cap_cuts_at_a_character_and_stops_the_command():
    out, log = _collect(["/bin/sh", "-c", "while :; do printf 'ä'; done"], max_output=101)
    assert out.returncode == 141 and b"cut at the report's limit of 101 bytes" in out.stderr
    assert out.stdout == "ä".encode() * 50  # 100 bytes: the 101st would split a character
    assert "cut, 100 bytes" in log


def test_the_commands_stderr_is_capped():
    out, _ = _collect(["/bin/sh", "-c", "head -c 100000 /dev/zero | tr '\\0' e >&2"])
    assert out.returncode == 0 and out.stderr.count(b"e") == 8192


def test_a_command_that_cannot_start_is_127_with_its_reason():
    out, log = _collect(["/nonexistent/collector"])
    assert out.returncode == 127 and b"No such file" in out.stderr and "not-started" in log


def test_the_client_going_away_stops_the_command():
    marker = f"diag-report-gone-{os.getpid()}"
    collector, sock = _collect(["/bin/sh", "-c", f"exec -a {marker} yes"], timeout=60, client=True)
    sock.recv(1024)
    sock.close()
    collector.wait(10)
    assert "client-gone" in collector.stderr.read().decode()
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


@pytest.mark.parametrize("reply,status,says", [
    (b"", 75, b"before the collector started"),  # closed at once: MaxConnections, or stopping
    (report.frame(report.START) + report.frame(report.DATA, b"partial\n"), 75, b"stopped before it finished"),
    (b"Z\0\0\0\0", 70, b"not a report"),
    (b"D\xff\xff\xff\xff", 70, b"not a report"),
    (report.frame(report.START) + report.frame(report.EXIT, b"{"), 70, b"bad end frame"),
    (report.frame(report.START) + report.frame(report.EXIT, b'{"reason": "maybe"}'), 70, b"not a report"),
    (report.frame(report.START) + report.frame(report.EXIT, b'{"reason": "exit", "status": 300}'), 70, b"bad end"),
    (report.frame(report.START) + report.frame(report.EXIT, b'{"reason": "exit", "status": 255}'), 255, b"255"),
    (report.frame(report.START) + b"D\0\0", 75, b"stopped before it finished"),
    # end frames a broken collector could send: still a clean 70, never a traceback
    (report.frame(report.START) + report.frame(report.EXIT, b'{"reason": "exit", "status": Infinity}'), 70, b"bad end"),
    (report.frame(report.START) + report.frame(report.EXIT, b"[" * 32000), 70, b"bad end"),
    (report.frame(report.START) + report.frame(report.EXIT, b'{"reason": "exit", "status": -1}'), 70, b"bad end"),
    (report.frame(report.START) + report.frame(report.EXIT, b'{"reason": "exit", "status": 1.5}'), 70, b"bad end"),
])
def test_the_decoder_table(reply, status, says):
    a, b = socket.socketpair()
    a.sendall(reply)
    a.close()
    out = _decode(b)
    assert out.returncode == status and says in out.stderr, out.stderr


def test_a_reset_connection_is_75_and_said():
    # systemd stopping the socket with this connection still queued: ECONNRESET on read
    path = tempfile.mktemp(prefix="diag-report-reset-", dir="/tmp")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(path)
    srv.close()
    os.unlink(path)
    out = _decode(client)
    assert out.returncode == 75 and b"reset" in out.stderr and b"Traceback" not in out.stderr


def test_an_abandoned_silent_report_stops_at_once():
    marker = f"diag-report-silent-{os.getpid()}"
    collector, sock = _collect(["/bin/sh", "-c", f"exec -a {marker} sleep 60"], timeout=60, client=True)
    assert sock.recv(5) == report.frame(report.START)
    start = time.monotonic()
    sock.close()
    collector.wait(10)
    assert time.monotonic() - start < 5 and "client-gone" in collector.stderr.read().decode()
    time.sleep(0.2)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1


def test_a_full_queue_is_busy_not_a_wait(tmp_path):
    path = str(tmp_path / "q.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(0)
    queued = []
    try:
        while True:  # fill the listener's queue (nobody accepts)
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(path)
            except BlockingIOError:
                c.close()
                break
            queued.append(c)
        start = time.monotonic()
        with pytest.raises(Deny) as busy:
            report.connect(_report_plan(path))
        assert busy.value.code == "report.unavailable" and "busy" in busy.value.message
        assert time.monotonic() - start < 1
    finally:
        for c in queued:
            c.close()
        srv.close()


def test_collect_refuses_a_bad_command_line():
    for args in (["t"], ["t", "--", "/bin/true"], ["t", "--timeout", "1", "--max-output", "1", "--", "true"],
                 ["t", "--max-output", "1", "--timeout", "1", "--", "/bin/true"],
                 ["t", "--timeout", "0", "--max-output", "1", "--", "/bin/true"]):
        r = subprocess.run([sys.executable, "-I", "-m", "diag_wrapper", "collect", *args], capture_output=True,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 64 and b"usage: diag-wrapper collect" in r.stderr, args


def test_frames_are_bounded():
    with pytest.raises(AssertionError):
        report.frame(report.DATA, b"x" * (report.MAX_FRAME + 1))
    assert struct.unpack(">I", report.frame(report.DATA, b"abc")[1:5]) == (3,)
