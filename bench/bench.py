#!/usr/bin/env python3
"""Start-up and throughput benchmark for diag-wrapper (stdlib only).

    python3 bench/bench.py              # ~1 minute; run as root on a host without journald
    python3 bench/bench.py --runs 60    # more samples

Everything uses the interpreter running this script (sys.executable), so the floor and
the wrapper are measured with the same Python. Reported, side by side:

* start-up medians of fresh processes, each with its ratio to the floor
  ``python -I -c 'import structlog, systemd.journal'``; the wrapper runs the full
  ForceCommand path (``python -I -m diag_wrapper --policy P`` with SSH_ORIGINAL_COMMAND:
  plan, one audit record to a real systemd-journald, exec);
* peak memory (ru_maxrss of the child) of the floor and of one wrapper run;
* import cost of stock bashlex vs diag_wrapper._bashlex (shipped LALR tables), and
  what the wrapper's own start-up spends its import time on (-X importtime);
* in-process throughput: _bashlex.parse() per call, plan() decisions per second,
  and ``diag-wrapper check`` on a batch of commands in one process.

Journald: the host's if /run/systemd/journal/socket exists; otherwise (root only) a
private systemd-journald in a private mount namespace (tests/e2e/harness.py), and this
script re-runs itself inside that namespace so no nsenter sits in the timed path.
Missing pieces (no journald, CLI absent, not importable) are reported, not fatal.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
SOCKET = "/run/systemd/journal/socket"
FLOOR = "import structlog, systemd.journal"
# How the wrapper is started when the package is not installed for this interpreter:
# what `-m diag_wrapper` does, with the repository on sys.path (still -I, isolated).
SHIM = f"import sys; sys.path.insert(0, {REPO!r}); import runpy; runpy.run_module('diag_wrapper', run_name='__main__', alter_sys=True)"

ORDINARY = [
    "uptime", "df -h", "free -m", "uname -a", "id", "hostname", "date",
    "systemctl status nginx.service", "systemctl status", "journalctl -u nginx -n 100",
    "journalctl -u sshd.service --since today -n 50", "ls -la /var/log", "ls /etc",
    "cat /etc/hostname", "head -n 20 /etc/os-release", "tail -n 50 /etc/passwd",
    "wc -l /etc/passwd", "stat /etc/hostname", "grep -n root /etc/passwd", "ps aux", "ss -tlnp",
    "ip addr show", "lsblk", "findmnt", "du -sh /var/log",
]
DENIED = ["cat /etc/shadow", "ls; id", "cat $(echo x)", "rm -rf /", "systemctl stop sshd", "echo *"]


# ------------------------------------------------------------------ helpers


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run_child(argv: list[str], env: dict | None = None) -> tuple[float, int, int, bytes]:
    """Wall time (s), exit status, peak RSS (KiB) of the child (via wait4), stderr."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, cwd="/")
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stderr.close()
    return elapsed, p.returncode, ru.ru_maxrss, err


def wrapper_argv(policy: str) -> tuple[list[str], str]:
    probe = subprocess.run([PY, "-I", "-c", "import diag_wrapper, os; print(os.path.realpath(diag_wrapper.__file__))"],
                           capture_output=True, text=True, cwd="/")
    if probe.returncode == 0 and probe.stdout.strip().startswith(os.path.realpath(REPO) + os.sep):
        return [PY, "-I", "-m", "diag_wrapper", "--policy", policy], "python -I -m diag_wrapper"
    return [PY, "-I", "-c", SHIM, "--policy", policy], "python -I -c <runpy diag_wrapper from the repo>"


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
    except OSError:
        pass
    return f"{platform.node()}: {cpu}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def bench_policy(tmp: str) -> str:
    """policy/demo.toml (web-02 with an FHS search path) plus `true`, the cheapest exec."""
    path = os.path.join(tmp, "bench-policy.toml")
    with open(path, "w") as f:
        f.write(f'include = ["{REPO}/policy/demo.toml"]\n\n[commands.true]\nsummary = "do nothing"\n'
                f'[settings]\nstate_dir = "{tmp}/state"\nrate_per_minute = 100000\n')
    os.makedirs(os.path.join(tmp, "state"), exist_ok=True)
    return path


# ------------------------------------------------------------------ sections


def startup(runs: int, policy: str, journald: str, baseline: str | None = None) -> None:
    argv, how = wrapper_argv(policy)
    env0 = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    rows = [
        ("python -I -c pass", [PY, "-I", "-c", "pass"], env0),
        ("floor: python -I -c 'import structlog, systemd.journal'", [PY, "-I", "-c", FLOOR], env0),
        ("floor + stock `import bashlex` (what the cache avoids)", [PY, "-I", "-c", FLOOR + ", bashlex"], env0),
    ]
    for cmd in ("true", "uptime", "cat /etc/shadow"):
        rows.append((f"wrapper SSH_ORIGINAL_COMMAND={cmd!r}", argv, {**env0, "SSH_ORIGINAL_COMMAND": cmd,
                                                                    "USER": "bench", "SSH_CONNECTION": "127.0.0.1 1 127.0.0.1 22"}))
    rendered = os.path.splitext(policy)[0] + ".json"  # what the NixOS module installs
    with open(rendered, "w") as f:
        f.write(subprocess.run([PY, "-I", "-c", f"import sys; sys.path.insert(0, {REPO!r}); from diag_wrapper.policy"
                                f" import render; print(render({policy!r}), end='')"], capture_output=True,
                               text=True, check=True).stdout)
    rows.append(("wrapper, policy.json: SSH_ORIGINAL_COMMAND='true'", wrapper_argv(rendered)[0], {**rows[3][2]}))
    if baseline:  # another tree's wrapper (its own venv), interleaved with this one: before/after
        rows.append(("baseline wrapper SSH_ORIGINAL_COMMAND='true'", [baseline, "-I", "-m", "diag_wrapper",
                     "--policy", policy], {**rows[3][2]}))
    print(f"\n## Start-up: median of {runs} fresh processes (interleaved); wrapper = {how}")
    print(f"   journald: {journald}")
    # Warm-up (page cache, .pyc files) and a check that each row does what it says.
    status = {}
    for label, a, e in rows:
        _, rc, _, err = run_child(a, e)
        status[label] = (rc, err.decode(errors="replace").strip().splitlines()[-1:] or [""])
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    rss: dict[str, list[int]] = {label: [] for label, _, _ in rows}
    for _ in range(runs):
        for label, a, e in rows:
            t, _, maxrss, _ = run_child(a, e)
            times[label].append(t)
            rss[label].append(maxrss)
    floor = median_ms(times[rows[1][0]])
    print(f"   {'':58} {'median':>9} {'p90':>9} {'x floor':>8} {'peak RSS':>9}  exit")
    for label, _, _ in rows:
        ts = sorted(times[label])
        p90 = ts[min(len(ts) - 1, int(len(ts) * 0.9))] * 1000
        rc, last = status[label]
        note = f"{rc}" + (f"  ({last[0][:90]})" if rc not in (0,) and last[0] else "")
        print(f"   {label:58} {median_ms(ts):7.1f}ms {p90:7.1f}ms {median_ms(ts) / floor:7.2f}x "
              f"{statistics.median(rss[label]) / 1024:6.1f}MiB  {note}")
    full = median_ms(times[rows[3][0]])
    for label, ms in (("TOML policy", full), ("JSON policy (as deployed)", median_ms(times[rows[6][0]]))):
        verdict = "OK" if ms <= 1.25 * floor else "OVER BUDGET"
        print(f"   budget, {label}: full path {ms:.1f} ms vs 1.25 x floor = {1.25 * floor:.1f} ms -> {verdict}")
    if status[rows[3][0]][0] != 0:
        print("   NOTE: the 'true' run did not exit 0, so the full path was not measured as intended.")
    if baseline:
        base = median_ms(times[rows[-1][0]])
        print(f"   this tree vs baseline ({baseline}): {full:.1f} ms vs {base:.1f} ms ({full / base:.3f}x)")


def importtime_total(code: str) -> tuple[float, list[tuple[int, str]]]:
    """Wall ms of `code` measured inside the child, and its -X importtime rows (self µs, name)."""
    src = f"import sys, time; sys.path.insert(0, {REPO!r}); t = time.perf_counter()\n{code}\nprint((time.perf_counter() - t) * 1000)"
    out = subprocess.run([PY, "-I", "-X", "importtime", "-c", src], capture_output=True, text=True, cwd="/")
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), m.group(4)))
    try:
        return float(out.stdout.strip().splitlines()[-1]), rows
    except (IndexError, ValueError):
        return float("nan"), rows


def imports(runs: int) -> None:
    print(f"\n## bashlex import + first parse, in a fresh `python -I` (median of {runs}; after structlog, systemd.journal)")
    pre = "import structlog, systemd.journal\n"
    cases = [
        ("stock: import bashlex; bashlex.parse('true')", "import bashlex; bashlex.parse('true')"),
        ("cached: diag_wrapper._bashlex.parse('true')",
         "from diag_wrapper import _bashlex; _bashlex.parse('true'); assert _bashlex.mode == 'cached', _bashlex.mode"),
    ]
    res = {}
    for label, code in cases:
        # time only the bashlex part: the floor modules are imported before the clock starts
        src = pre + "t0 = __import__('time').perf_counter()\n" + code + "\nprint((__import__('time').perf_counter() - t0) * 1000)"
        vals = []
        for _ in range(runs):
            out = subprocess.run([PY, "-I", "-c", f"import sys; sys.path.insert(0, {REPO!r})\n" + src],
                                 capture_output=True, text=True, cwd="/")
            if out.returncode != 0:
                print(f"   {label}: FAILED: {out.stderr.strip().splitlines()[-1:]}")
                break
            vals.append(float(out.stdout.strip()))
        if vals:
            res[label] = statistics.median(vals)
            print(f"   {label:58} {res[label]:7.1f} ms")
    if len(res) == 2:
        a, b = res.values()
        print(f"   saved per process: {a - b:.1f} ms ({a / b:.0f}x less)")


def _importtime(argv: list[str], env: dict) -> list[tuple[int, str]]:
    out = subprocess.run([argv[0], "-X", "importtime", *argv[1:]], env=env, capture_output=True, text=True, cwd="/")
    rows = []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(1)), m.group(4)))
    return rows


PHASES = """
import sys, time
sys.path.insert(0, {repo!r})
import structlog, systemd.journal  # the floor, not timed
clock = time.perf_counter
t = clock(); from diag_wrapper import cli; t_cli = clock() - t
t = clock(); policy = cli.load({policy!r}); t_load = clock() - t
t = clock(); d = cli.plan(b"true", policy); t_first = clock() - t
t = clock(); d = cli.plan(b"true", policy); t_again = clock() - t
t = clock(); from diag_wrapper import audit, execute, run; t_audit = clock() - t
print(t_cli, t_load, t_first, t_again, t_audit, d.decision)
"""


def what_dominates(policy: str, runs: int) -> None:
    """Beyond the floor: which imports, and how long policy load and plan() take."""
    argv, _ = wrapper_argv(policy)
    env = {"PATH": "/usr/bin:/bin", "SSH_ORIGINAL_COMMAND": "true", "USER": "bench"}
    floor = {name for _, name in _importtime([PY, "-I", "-c", FLOOR], env)}
    extra = [(us, name) for us, name in _importtime(argv, env) if name not in floor]
    print(f"\n## What the wrapper adds to the floor (one 'true' run)")
    print(f"   imports beyond the floor: {len(extra)} modules, {sum(us for us, _ in extra) / 1000:.1f} ms self time; largest:")
    for us, name in sorted(extra, reverse=True)[:12]:
        print(f"     {us / 1000:5.2f} ms  {name}")
    vals = []
    for _ in range(runs):
        out = subprocess.run([PY, "-I", "-c", PHASES.format(repo=REPO, policy=policy)], capture_output=True,
                             text=True, cwd="/")
        if out.returncode != 0:
            print(f"   phases: FAILED {out.stderr.strip().splitlines()[-1:]}")
            return
        vals.append(out.stdout.split())
    med = lambda i: statistics.median(float(v[i]) for v in vals) * 1000
    print(f"   phases (median of {runs}, fresh process after the floor imports):")
    print(f"     import diag_wrapper.cli {med(0):6.1f} ms | policy load {med(1):6.1f} ms | first plan('true') "
          f"{med(2):6.1f} ms (second: {med(3):.2f} ms) | import audit+execute {med(4):6.1f} ms  [{vals[0][5]}]")


def in_process(policy_path: str, seconds: float, batch: int) -> None:
    sys.path.insert(0, REPO)
    print("\n## In-process throughput (this interpreter)")
    try:
        from diag_wrapper import _bashlex
    except Exception as e:
        print(f"   diag_wrapper._bashlex not importable: {e!r}")
        return
    for cmd in ["true", "systemctl status nginx.service", "journalctl -u nginx -n 100 --since '1 hour ago'",
                "ls -la /var/log | grep x"]:
        _bashlex.parse(cmd)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 4:
            for _ in range(100):
                _bashlex.parse(cmd)
            n += 100
        print(f"   _bashlex.parse {cmd!r:52} {(time.perf_counter() - t0) / n * 1e6:7.1f} us/call  ({_bashlex.mode})")
    try:
        from diag_wrapper.plan import plan
        from diag_wrapper.policy import load
    except Exception as e:
        print(f"   plan()/policy.load not available yet: {e!r}")
        return
    policy = load(policy_path)
    for label, cmds in (("ordinary (allowed)", ORDINARY), ("denied mix", DENIED)):
        raws = [c.encode() for c in cmds]
        kinds = {}
        for r in raws:
            d = plan(r, policy)
            kinds[d.decision] = kinds.get(d.decision, 0) + 1
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for r in raws:
                plan(r, policy)
            n += len(raws)
        rate = n / (time.perf_counter() - t0)
        verdict = "" if label.startswith("denied") else ("  OK (>= 5000/s)" if rate >= 5000 else "  BELOW 5000/s")
        print(f"   plan() {label:22} {rate:9.0f} decisions/s  {dict(sorted(kinds.items()))}{verdict}")

    # the CLI: one `check` process with a batch vs with one command -> marginal rate
    argv, _ = wrapper_argv(policy_path)
    base = argv[:-2] if argv[-2] == "--policy" else argv
    cmds = [ORDINARY[i % len(ORDINARY)] for i in range(batch)]
    one = [*base, "check", "--policy", policy_path, "--", ORDINARY[0]]
    many = [*base, "check", "--policy", policy_path, "--", *cmds]
    t1 = statistics.median([run_child(one)[0] for _ in range(5)])
    tb, rc, _, err = run_child(many)
    if rc not in (0, 1):
        print(f"   check batch: exit {rc}: {err.decode(errors='replace').strip()[-200:]}")
        return
    print(f"   `check` batch of {batch} in one process: {tb * 1000:.0f} ms total, "
          f"{(batch - 1) / max(tb - t1, 1e-9):.0f} decisions/s after start-up ({t1 * 1000:.0f} ms for one)")


def throughput(policy: str, tmp: str, mib: int = 256, runs: int = 5) -> None:
    """The supervisor's copy: MiB of journal-like text through `cat FILE` in ForceCommand mode
    into a reader, against `cat FILE | cat > /dev/null` (the floor), and its peak RSS."""
    path = os.path.join(tmp, "big.log")
    line = b"2026-12-01T10:00:00.123456+00:00 web-02 n8n[1234]: request POST /webhook took 30001 ms\n"
    with open(path, "wb") as f:
        block = line * ((1 << 20) // len(line) + 1)
        for _ in range(mib):
            f.write(block[: 1 << 20])
    os.chmod(path, 0o644)
    big = os.path.join(tmp, "throughput-policy.toml")
    bindir = os.path.join(tmp, "rawbin")  # `rawcat`: cat, out of the redaction net
    os.makedirs(bindir, exist_ok=True)
    if not os.path.exists(os.path.join(bindir, "rawcat")):
        os.symlink(shutil.which("cat"), os.path.join(bindir, "rawcat"))
    with open(big, "w") as f:  # 256 MiB must pass the cap
        f.write(f'include = ["{policy}"]\n[settings]\nmax_output_bytes = {1 << 30}\n'
                f'search_path = ["{bindir}", "/usr/bin", "/bin"]\n'
                '[commands.rawcat]\nreads = "content"\nredact = false\n'
                'args = [{ name = "FILE", type = "file", min = 1 }]\n')
    argv, _ = wrapper_argv(big)

    def env(command: str) -> dict:
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SSH_ORIGINAL_COMMAND": command, "USER": "bench"}

    def piped(first: list[str], first_env: dict | None) -> tuple[float, int, int]:
        t0 = time.perf_counter()
        a = subprocess.Popen(first, env=first_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd="/")
        b = subprocess.Popen(["cat"], stdin=a.stdout, stdout=subprocess.DEVNULL)
        a.stdout.close()
        _, status, ru = os.wait4(a.pid, 0)
        b.wait()
        return time.perf_counter() - t0, os.waitstatus_to_exitcode(status), ru.ru_maxrss

    floor_label = "floor: cat FILE | cat > /dev/null"
    cases = {
        floor_label: (["cat", path], None),
        "wrapper, net off: `rawcat FILE` | cat > /dev/null": (argv, env(f"rawcat {path}")),
        "wrapper, net on: `cat FILE` | cat > /dev/null": (argv, env(f"cat {path}")),
        "wrapper, net on: `cat FILE | grep -v x` | cat": (argv, env(f"cat {path} | grep -v zzz")),
    }
    rows: dict[str, list[float]] = {k: [] for k in cases}
    rss: dict[str, int] = {k: 0 for k in cases}
    status: dict[str, int] = {}
    for _ in range(runs):
        for label, (first, first_env) in cases.items():
            t, status[label], r = piped(first, first_env)
            rows[label].append(t)
            rss[label] = max(rss[label], r)
    print(f"\n## Output through the supervisor: {mib} MiB of journal-like lines, median of {runs}")
    print(f"   cpu: {machine()}")
    floor = median_ms(rows[floor_label])
    for label, ts in rows.items():
        m = median_ms(ts)
        print(f"   {label:58} {m:7.1f}ms {mib * 1.048576 / (m / 1000):8.0f} MB/s {m / floor:6.2f}x"
              f"  exit {status[label]}  peak RSS {rss[label] / 1024:5.1f} MiB")
    print("   (peak RSS: the wrapper's process tree, largest child; target <= 40 MiB; MB = 10^6 bytes)")
    os.unlink(path)


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description="diag-wrapper start-up benchmark")
    ap.add_argument("--runs", type=int, default=30, help="fresh processes per start-up row")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per in-process measurement")
    ap.add_argument("--batch", type=int, default=2000, help="commands in the `check` batch")
    ap.add_argument("--baseline", help="python of a venv with another tree's diag_wrapper (before/after)")
    ap.add_argument("--inside-namespace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if not os.path.exists(SOCKET) and not args.inside_namespace and os.geteuid() == 0:
        return rerun_with_private_journald()
    journald = ("private systemd-journald in a private mount namespace" if args.inside_namespace
                else "host" if os.path.exists(SOCKET)
                else "NONE: not root and no host journald; the wrapper fails closed (audit.unavailable)")

    print("# diag-wrapper benchmark")
    print(f"machine:     {machine()}")
    print(f"interpreter: {PY} (Python {platform.python_version()})")
    with tempfile.TemporaryDirectory(prefix="diag-bench-") as tmp:
        policy = bench_policy(tmp)
        os.chmod(tmp, 0o755)
        startup(args.runs, policy, journald, args.baseline)
        imports(max(5, args.runs // 3))
        what_dominates(policy, max(5, args.runs // 3))
        in_process(policy, args.seconds, args.batch)
        throughput(policy, tmp)
    return 0


def rerun_with_private_journald() -> int:
    sys.path.insert(0, os.path.join(REPO, "tests"))
    try:
        from e2e import harness
    except Exception as e:
        print(f"no journald and cannot load tests/e2e/harness.py ({e!r}); running without one")
        os.execv(PY, [PY, *sys.argv, "--inside-namespace"])
    work = tempfile.mkdtemp(prefix="diag-bench-ns-")
    ns = jd = None
    try:
        ns = harness.Namespace(harness.Path(work)).start()
        jd = harness.Journald(ns, harness.Path(work) / "journald.log").start()
        return subprocess.run(ns.nsenter([PY, os.path.abspath(__file__), *sys.argv[1:], "--inside-namespace"])).returncode
    finally:
        if jd is not None:
            jd.stop()
        if ns is not None:
            ns.stop()
        subprocess.run(["rm", "-rf", "--", work])


if __name__ == "__main__":
    sys.exit(main())
