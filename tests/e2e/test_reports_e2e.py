"""Fixed reports against this machine's systemd booted as PID 1 of a private namespace.

The socket and service units are the ones the NixOS module renders: nix/reports.nix is
evaluated here with nixpkgs' lib (NIXPKGS_LIB), the shipped reports with Debian's
programs standing in for the packages (``${pkgs.iproute2}/bin/ss`` is /usr/bin/ss), and
a few test reports through the same ``units`` function; the attrsets are written out as
unit files the way nixpkgs' systemd-lib does (one ``Key=value`` line per value). So the
units cannot drift from the module's. Then, as the unprivileged test user, through sshd
running in that namespace and through the ForceCommand path directly:

* ``report listening`` shows the process of another user's socket (plain ``ss -tlnp``
  as diag does not), ``report disk-usage`` sizes state directories diag may not read,
  ``report postgres-activity`` counts a real PostgreSQL's sessions (where Debian's server
  is installed; containers, firewall and redis-info need podman, nft and redis, which
  this machine does not have: the VM test runs those);
* another user is refused at the socket (EACCES; the wrapper says report.refused);
* bytes a client sends are never read (StandardInput=null, the command's stdin /dev/null);
* a collector over its time or output cap is stopped with a clear message;
* many concurrent requests are turned away at MaxConnections at once ("busy") instead of
  piling up, a flood stops the socket at its trigger limit (report.unavailable), and the
  OnFailure unit reopens it after its rest.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from . import harness

NIXPKGS_LIB = os.environ.get("NIXPKGS_LIB", "")
# Debian's PostgreSQL server, where this machine has it: then postgres-activity runs too
PG = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))), None) if Path("/usr/lib/postgresql").is_dir() else None
LISTEN_PORT = 18473
REOPEN_AFTER = 3
VENV_MOUNT = "/run/diag-e2e-venv"

# Test reports, through the same units function as the shipped ones.
TEST_REPORTS = {
    "slow": {"description": "sleeps past its limit", "command": ["/bin/sleep", "60"], "timeout": 2,
             "maxOutputBytes": 1000},
    "flood": {"description": "prints without end", "command": ["/usr/bin/yes", "diag"], "timeout": 20,
              "maxOutputBytes": 5000},
    "stdin": {"description": "counts what it reads", "command": ["/usr/bin/wc", "-c"], "timeout": 5,
              "maxOutputBytes": 1000},
    "busy": {"description": "takes three seconds", "command": ["/bin/sleep", "3"], "timeout": 10,
             "maxOutputBytes": 1000, "maxConnections": 2},
    "burst": {"description": "answers at once", "command": ["/bin/true"], "timeout": 5, "maxOutputBytes": 1000},
    "locked": {"description": "a socket of another group", "command": ["/bin/true"], "timeout": 5,
               "maxOutputBytes": 1000, "group": "root"},
}

EVAL = """
{ nixpkgsLib, repo, collect, group, spec, pg }:
let
  lib = if builtins.pathExists (nixpkgsLib + "/lib/default.nix") then import (nixpkgsLib + "/lib") else import nixpkgsLib;
  r = import (repo + "/nix/reports.nix") { inherit lib; };
  # Debian's programs where the module has packages
  pkgs = { iproute2 = "/usr"; coreutils = "/usr"; };
  config = if pg == "" then { } else { services.postgresql = { enable = true; package = pg; }; };
  shipped = r.builtin { inherit pkgs config; };
  all = shipped // builtins.fromJSON spec;
in
{
  reports = lib.mapAttrs (name: report: r.units { inherit name report collect; group = report.group or group; }) all;
  reopen = r.reopen { systemctl = "/bin/systemctl"; sleep = "/bin/sleep"; reopenAfter = %d; };
}
""" % REOPEN_AFTER

LISTENER = """\
[Unit]
Description=a listener of another user (what report listening must name)
[Service]
User=nobody
ExecStart=/usr/bin/python3 -m http.server --bind 127.0.0.1 %d
""" % LISTEN_PORT


def _value(x) -> str:
    return "true" if x is True else "false" if x is False else str(x)


def _section(name: str, config: dict) -> list[str]:
    """As nixpkgs' attrsToSection: a list is one line per element, bools are true/false."""
    lines = [f"[{name}]"]
    for key, value in config.items():
        lines += [f"{key}={_value(x)}" for x in (value if isinstance(value, list) else [value])]
    return lines


def unit_files(evaluated: dict) -> dict[str, str]:
    files = {}
    for u in evaluated["reports"].values():
        s = u["socket"]
        files[f"{u['socketName']}.socket"] = "\n".join(
            _section("Unit", {"Description": s["description"], **s["unitConfig"]})
            + _section("Socket", {"ListenStream": s["listenStreams"], **s["socketConfig"]})) + "\n"
        v = u["service"]
        files[f"{u['serviceName']}.service"] = "\n".join(
            _section("Unit", {"Description": v["description"]}) + _section("Service", v["serviceConfig"])) + "\n"
    r = evaluated["reopen"]
    files["diag-reports-reopen@.service"] = "\n".join(
        _section("Unit", {"Description": r["description"]}) + _section("Service", r["serviceConfig"])) + "\n"
    return files


@pytest.fixture(scope="module")
def reports(e2e):
    if not os.access(harness.SYSTEMD, os.X_OK) or not os.access("/usr/bin/dbus-daemon", os.X_OK):
        pytest.fail("systemd and dbus-daemon are needed (scripts/setup installs them)")
    nix = shutil.which("nix-instantiate")
    if nix is None or not NIXPKGS_LIB:
        pytest.skip("needs nix-instantiate and NIXPKGS_LIB (scripts/test sets it from ../shared)")
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", LISTEN_PORT)) == 0:
            pytest.skip(f"127.0.0.1:{LISTEN_PORT} is taken on this machine")
    # The units have PrivateTmp=, and the suite's venv is under /tmp: the collector runs from
    # a bind mount of it outside /tmp (on NixOS it is in the store).
    collect = f"{VENV_MOUNT}/bin/python -I -m diag_wrapper collect"
    res = subprocess.run([nix, "--eval", "--strict", "--json", "-E", EVAL, "--argstr", "nixpkgsLib", NIXPKGS_LIB,
                          "--argstr", "repo", str(harness.REPO), "--argstr", "collect", collect,
                          "--argstr", "group", e2e.user.name, "--argstr", "spec", json.dumps(TEST_REPORTS),
                          "--argstr", "pg", str(PG.parent.parent) if PG else ""],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    evaluated = json.loads(res.stdout)
    units = unit_files(evaluated)
    units["diag-e2e-listener.service"] = LISTENER
    if PG:  # a PostgreSQL for postgres-activity: initdb'd as postgres, its socket in /run/postgresql
        pgdata = e2e.work / "pgdata"
        pgdata.mkdir()
        shutil.chown(pgdata, "postgres", "postgres")
        pgdata.chmod(0o700)
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG.parent / "initdb"), "-D", str(pgdata),
                        "--auth-local=peer", "-U", "postgres"], check=True, capture_output=True, timeout=120)
        units["postgresql.service"] = (
            "[Unit]\nDescription=PostgreSQL for the postgres-activity report\n[Service]\nUser=postgres\n"
            "RuntimeDirectory=postgresql\n"
            f"ExecStart={PG} -D {pgdata} -k /run/postgresql -c listen_addresses= -c shared_buffers=16MB\n")
    policy = e2e.work / "reports.toml"
    tables = "".join(
        f"[reports.{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in u["policy"].items())
        for name, u in evaluated["reports"].items())
    policy.write_text(f'include = ["{e2e.policy}"]\n{tables}')
    policy.chmod(0o644)
    boot = harness.BootedSystemd(e2e.work, "n8n.service", "n8n reports", extra_units=units)
    sshd = None
    try:
        boot.start()
        boot.run(["mkdir", "-p", "-m", "0755", "/run/sshd", VENV_MOUNT], check=True)
        boot.run(["mount", "--bind", "-o", "ro", str(e2e.python.parent.parent), VENV_MOUNT], check=True)
        deadline = time.monotonic() + 20
        while not Path(f"/proc/{boot.pid}/root/run/diag-reports/burst.sock").exists() or \
                boot.run(["systemctl", "is-active", "--quiet", "diag-e2e-listener.service"]).returncode or \
                (PG and not Path(f"/proc/{boot.pid}/root/run/postgresql/.s.PGSQL.5432").exists()):
            assert time.monotonic() < deadline, boot.run(["systemctl", "--no-pager", "--failed"]).stdout
            time.sleep(0.2)
        wrapper = f"{e2e.python} -I -m diag_wrapper --policy {policy}"
        (e2e.work / "reports-sshd").mkdir(exist_ok=True)
        sshd = harness.Sshd(boot, e2e.work / "reports-sshd", e2e.user.name, wrapper).start()
        boot.ssh = harness.SshClient(sshd, e2e.user.name, e2e.ssh.key)
        boot.policy = policy
        boot.evaluated = evaluated
        yield boot
    finally:
        if sshd is not None:
            sshd.stop()
        boot.stop()


def agent(e2e, boot, command: str, prefix: list[str] | None = None):
    res = boot.run(e2e.wrapper_argv(boot.policy, command, prefix), cwd="/", timeout=60)
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def _connect_as(boot, user: str, path: str, send: bytes = b"") -> subprocess.CompletedProcess:
    """A raw client as ``user`` inside the namespace: connect, send, read the reply (hex)."""
    # (a peer that closes with our bytes unread resets the connection: the reply came before)
    code = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1]);"
            " s.sendall(bytes.fromhex(sys.argv[2])); b = b''\n"
            "while True:\n try: c = s.recv(65536)\n except ConnectionResetError: break\n"
            " if not c: break\n b += c\nprint(b.hex())")
    return boot.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-c", code, path, send.hex()], timeout=30)


def test_report_listening_names_another_users_process_through_sshd(e2e, reports):
    res = reports.ssh.run("report listening")
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr
    line = next(l for l in out.splitlines() if f"127.0.0.1:{LISTEN_PORT}" in l)
    assert 'users:(("python3"' in line
    # what diag itself sees of the same socket: no process (the reason the report exists)
    rc, plain, _ = agent(e2e, reports, "ss -tlnp")
    assert rc == 0 and "python3" not in next(l for l in plain.splitlines() if f":{LISTEN_PORT}" in l)
    recs = reports.records_since(None, expect=1)
    assert any(r.get("DIAG_RULE") == "report listening" and r["DIAG_DECISION"] == "allow" for r in recs)


def test_report_disk_usage_sizes_what_diag_may_not_read(e2e, reports):
    reports.run(["install", "-d", "-m", "0700", "-o", "nobody", "/var/lib/diag-e2e-private"], check=True)
    try:
        reports.run(["dd", "if=/dev/zero", "of=/var/lib/diag-e2e-private/blob", "bs=1M", "count=3"], check=True)
        rc, out, err = agent(e2e, reports, "report disk-usage")
        assert rc == 0, err
        sizes = dict(reversed(l.split("\t", 1)) for l in out.splitlines())
        assert int(sizes["/var/lib/diag-e2e-private"]) >= 3 and int(sizes["/var/lib"]) >= 3  # (/var/log: if 1 MiB)
        assert all(v.isdigit() for v in sizes.values())  # sizes and names, nothing else
        rc, _, err = agent(e2e, reports, "ls /var/lib/diag-e2e-private")
        assert rc != 0  # diag itself cannot look inside
    finally:
        reports.run(["rm", "-rf", "/var/lib/diag-e2e-private"])


@pytest.mark.skipif(PG is None, reason="needs Debian's PostgreSQL server (/usr/lib/postgresql/*/bin/postgres)")
def test_report_postgres_activity_counts_connections_never_query_text(e2e, reports):
    rc, out, err = agent(e2e, reports, "report postgres-activity")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "max_connections\tconnections"  # a real tab between the fields
    header = lines.index("datname\tusename\tstate\twait_event_type\tn\toldest_xact\tlongest_in_state")
    rows = [l.split("\t") for l in lines[header + 1:]]
    assert ["postgres", "postgres", "active"] in [r[:3] for r in rows]  # the report's own session
    assert "SELECT" not in out and "pg_stat_activity" not in out  # its own query's text is not shown


def test_another_user_is_refused_at_the_socket(e2e, reports):
    res = _connect_as(reports, "nobody", "/run/diag-reports/burst.sock")
    assert res.returncode != 0 and b"PermissionError" in res.stderr
    mode = os.stat(f"/proc/{reports.pid}/root/run/diag-reports/burst.sock")
    assert oct(mode.st_mode & 0o777) == "0o660"
    rc, _, err = agent(e2e, reports, "report locked")  # a socket of a group the test user is not in
    assert rc == 77 and "(report.refused)" in err


def test_bytes_the_client_sends_are_never_read(e2e, reports):
    res = _connect_as(reports, e2e.user.name, "/run/diag-reports/stdin.sock", b"rm -rf /\n" * 1000)
    assert res.returncode == 0, res.stderr
    reply = bytes.fromhex(res.stdout.decode().strip())
    assert reply.startswith(b"S\0\0\0\0") and b"D\0\0\0\x020\n" in reply  # wc -c read nothing: "0"
    rc, out, _ = agent(e2e, reports, "report stdin")
    assert rc == 0 and out == "0\n"


def test_a_collector_over_its_time_is_stopped(e2e, reports):
    start = time.monotonic()
    rc, _, err = agent(e2e, reports, "report slow")
    assert rc == 124 and "time limit (2 s" in err
    assert time.monotonic() - start < 8
    time.sleep(1.5)
    units = reports.run(["systemctl", "list-units", "--no-legend", "diag-report-slow@*"]).stdout.decode()
    assert "running" not in units


def test_a_collector_over_its_output_is_cut(e2e, reports):
    rc, out, err = agent(e2e, reports, "report flood")
    assert rc == 141 and "cut at the report's limit of 5000 bytes" in err
    assert out == "diag\n" * 1000


def test_concurrent_requests_are_turned_away_not_queued(e2e, reports):
    results: list[tuple[int, str, float]] = []

    def one() -> None:
        start = time.monotonic()
        rc, _, err = agent(e2e, reports, "report busy")
        results.append((rc, err, time.monotonic() - start))

    threads = [threading.Thread(target=one) for _ in range(4)]  # the wrapper's own max_concurrent
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ok = [r for r in results if r[0] == 0]
    busy = [r for r in results if r[0] == 75]
    assert len(ok) <= 2 and busy, results
    assert all("busy" in err and took < 3 for _, err, took in busy), busy


def test_a_flood_stops_the_socket_and_it_reopens_after_a_rest(e2e, reports):
    path = f"/proc/{reports.pid}/root/run/diag-reports/burst.sock"
    for _ in range(60):
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(path)
            except OSError:
                break
    deadline = time.monotonic() + 5
    while reports.run(["systemctl", "is-failed", "--quiet", "diag-report-burst.socket"]).returncode:
        assert time.monotonic() < deadline, "the flood did not stop the socket"
        time.sleep(0.1)
    result = reports.run(["systemctl", "show", "-p", "Result", "--value", "diag-report-burst.socket"])
    assert result.stdout.decode().strip() == "trigger-limit-hit"
    rc, _, err = agent(e2e, reports, "report burst")
    assert rc == 77 and "(report.unavailable)" in err and "resting" in err
    deadline = time.monotonic() + REOPEN_AFTER + 15
    while True:
        rc, _, err = agent(e2e, reports, "report burst")
        if rc == 0:
            break
        assert time.monotonic() < deadline, f"the socket did not reopen: {err}"
        time.sleep(0.5)


def test_the_rendered_policy_names_each_socket(reports):
    for name, u in reports.evaluated["reports"].items():
        assert u["policy"]["socket"] == f"/run/diag-reports/{name}.sock"
        assert u["socket"]["listenStreams"] == [u["policy"]["socket"]]
