"""The supervisor (supervise.py) against real processes: the closing record, the output cap,
the time limit and a disconnect stop the whole tree, and nothing outlives it (root).

``helper`` is a small C program: ``helper fork TOKEN`` starts a grandchild that leaves the
process group (``setsid``) and the parent, and both sleep with TOKEN in their argv, so a
survivor is found from outside by scanning /proc; ``helper die N`` dies of signal N;
``helper utf8 N`` prints N two-byte characters, ``helper split x`` a bearer token in two
writes 0.2 s apart, ``helper stubborn x`` ignores SIGTERM, ``helper slow MS`` prints a line,
waits MS ms, prints another and exits 3, ``helper cpu x`` its own RLIMIT_CPU, ``helper bytes N`` N bytes, ``helper mixed N``
N bytes and then three-byte characters, ``helper spew x`` writes stderr without end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from e2e.harness import procs_with

HELPER_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "cpu")) {  /* its own RLIMIT_CPU, soft and hard */
        struct rlimit r; getrlimit(RLIMIT_CPU, &r);
        printf("%ld %ld\n", (long)r.rlim_cur, (long)r.rlim_max);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "fork")) {
        if (fork() == 0) {
            setsid();
            if (fork() == 0) { for (;;) pause(); }
            _exit(0);
        }
        fprintf(stderr, "started\n");
        for (;;) pause();
    }
    if (argc == 3 && !strcmp(argv[1], "die")) { fflush(stdout); raise(atoi(argv[2])); return 0; }
    if (argc == 3 && !strcmp(argv[1], "spew")) {  /* stderr, as fast as it will take it */
        char buf[4096]; memset(buf, 'e', sizeof buf);
        for (;;) write(2, buf, sizeof buf);
    }
    if (argc == 3 && !strcmp(argv[1], "bytes")) {
        for (int i = 0; i < atoi(argv[2]); i++) putchar('a');
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "mixed")) {  /* N ASCII bytes, then three-byte characters */
        for (int i = 0; i < atoi(argv[2]); i++) putchar('a');
        for (int i = 0; i < 1000; i++) fputs("\xe2\x82\xac", stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "split")) {  /* a secret in two writes, apart in time */
        fputs("Authorization: Bearer abcdefgh", stdout); fflush(stdout);
        usleep(200000);
        fputs("ijklmnopq done\n", stdout);
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "hostile")) {  /* lines that keep the net busy, forever */
        static char line[65536];
        for (size_t i = 0; i + 4 < sizeof line; i += 4) memcpy(line + i, "key=", 4);
        line[sizeof line - 1] = '\n';
        for (;;) fwrite(line, 1, sizeof line, stdout);
    }
    if (argc == 3 && !strcmp(argv[1], "orphan")) {  /* says hi and exits; a grandchild keeps stdout */
        if (fork() == 0) { setsid(); sleep(30); _exit(0); }
        puts("hi");
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "stubborn")) {  /* ignores SIGTERM, and says so */
        signal(SIGTERM, SIG_IGN);
        fprintf(stderr, "stubborn\n");
        for (;;) pause();
    }
    if (argc == 3 && !strcmp(argv[1], "slow")) {  /* a line, a pause, a line, exit 3 */
        puts("before it"); fflush(stdout);
        usleep(atoi(argv[2]) * 1000);
        puts("after it");
        return 3;
    }
    if (argc == 3 && !strcmp(argv[1], "utf8")) {
        for (int i = 0; i < atoi(argv[2]); i++) fputs("\xc3\xa9", stdout);
        return 0;
    }
    return 2;
}
"""

POLICY = """
include = ["{base}"]
[settings]
search_path = ["{bin}"]
sandbox = "{mode}"
[commands.helper]
timeout = 2
args = [{{ name = "MODE", type = {{ type = "enum", values = ["fork", "die", "utf8", "spew", "split", "stubborn", "slow", "cpu", "orphan"] }}, min = 1 }},
        {{ name = "ARG", type = {{ type = "regex", pattern = "[A-Za-z0-9]{{1,32}}" }}, min = 1 }}]
[commands.helper-big]  # the same program, with a cap it will not reach in its time limit
timeout = 2
max_output_bytes = 1073741824
args = [{{ name = "MODE", type = {{ type = "enum", values = ["hostile"] }}, min = 1 }},
        {{ name = "ARG", type = {{ type = "regex", pattern = "[A-Za-z0-9]{{1,32}}" }}, min = 1 }}]
[commands.helper-raw]  # the same program, out of the redaction net
redact = false
args = [{{ name = "MODE", type = {{ type = "enum", values = ["split"] }}, min = 1 }},
        {{ name = "ARG", type = {{ type = "regex", pattern = "[A-Za-z0-9]{{1,32}}" }}, min = 1 }}]
[commands.helper-small]  # the same program, with a cap that falls inside a character
max_output_bytes = 4097
args = [{{ name = "MODE", type = {{ type = "enum", values = ["utf8", "bytes", "mixed"] }}, min = 1 }},
        {{ name = "N", type = {{ type = "int", min = 1, max = 100000 }}, min = 1 }}]
[commands.yes]
max_output_bytes = 100000
[filters.fdlist]  # the recording program, as a filter: what a stage after '|' inherits
[commands.sleep]
timeout = 1
args = [{{ name = "SECONDS", type = {{ type = "int", min = 1, max = 100 }}, min = 1 }}]
"""


@pytest.fixture(scope="module")
def sup(fc, tmp_path_factory):
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    root = tmp_path_factory.mktemp("sup")
    root.chmod(0o755)
    bindir = root / "bin"
    bindir.mkdir()
    (root / "helper.c").write_text(HELPER_C)
    subprocess.run(["gcc", "-O", "-o", str(bindir / "helper"), str(root / "helper.c")], check=True)
    for name in ("yes", "sleep", "cat", "tail", "grep", "head", "wc", "sort", "uniq", "cut"):
        (bindir / name).symlink_to(shutil.which(name))
    (bindir / "helper-small").symlink_to(bindir / "helper")
    (bindir / "helper-raw").symlink_to(bindir / "helper")
    (bindir / "helper-big").symlink_to(bindir / "helper")
    (bindir / "fdlist").symlink_to(fc.root / "recorder")
    policies = {}
    for mode in ("auto", "off"):
        p = root / f"{mode}.toml"
        p.write_text(POLICY.format(base=fc.policy, bin=bindir, mode=mode))
        policies[mode] = p
    return policies


def _gone(token: str, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while procs_with(token):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _records(fc, cursor):
    recs = fc.journald.records_since(cursor, expect=2, ends=True)
    return [r for r in recs if r["DIAG_DECISION"] != "end"], [r for r in recs if r["DIAG_DECISION"] == "end"]


def test_a_closing_record_follows_every_executed_command(fc):
    cursor = fc.journald.cursor()
    proc = fc.run("uptime")
    assert proc.returncode == 7
    (start,), (end,) = _records(fc, cursor)
    assert start["DIAG_INVOCATION"] == end["DIAG_INVOCATION"] and len(end["DIAG_INVOCATION"]) == 32
    assert end["DIAG_EXIT_STATUS"] == "7" and end["DIAG_EXIT_CODE"] == "7" and "DIAG_SIGNAL" not in end
    assert int(end["DIAG_BYTES_OUT"]) == len(proc.stdout) + len(proc.stderr)
    assert (end["DIAG_CUT"], end["DIAG_TIMED_OUT"], end["DIAG_DISCONNECTED"]) == ("0", "0", "0")
    assert end["DIAG_TREE"] == "pidns" and end["DIAG_REDACTIONS"] == "0"
    assert end["MESSAGE"].startswith(f"end: root 'uptime' exited 7 after ") and end["PRIORITY"] == "6"
    # a denied command has no closing record: nothing ran
    cursor = fc.journald.cursor()
    fc.run("cat /etc/shadow")
    assert [r["DIAG_DECISION"] for r in fc.journald.records_since(cursor, ends=True)] == ["deny"]


def test_the_command_reads_nothing_from_the_client(fc):
    assert fc.run("uptime").returncode == 7
    assert fc.inherited()[0] == "/dev/null"


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGTERM, signal.SIGKILL])
def test_a_signal_death_is_reported_as_a_shell_would(fc, sup, sig):
    cursor = fc.journald.cursor()
    proc = fc.run(f"helper die {int(sig)}", policy=sup["auto"])
    assert proc.returncode == 128 + sig
    _, (end,) = _records(fc, cursor)
    assert end["DIAG_SIGNAL"] == str(int(sig)) and "DIAG_EXIT_CODE" not in end


def test_output_is_cut_at_the_cap_with_one_line_that_says_so(fc, sup):
    cursor = fc.journald.cursor()
    proc = fc.run("yes", policy=sup["auto"])
    assert proc.returncode == 141
    assert len(proc.stdout) + len(proc.stderr.split(b"diag-wrapper: output cut")[0]) <= 100000
    assert len(proc.stdout) > 90000 and set(proc.stdout) == {ord("y"), ord("\n")}
    assert proc.stderr.decode().strip().endswith("narrow it with -n, --since, -g or a filter (exit 141)")
    _, (end,) = _records(fc, cursor)
    assert end["DIAG_CUT"] == "1" and end["DIAG_EXIT_STATUS"] == "141"


def test_the_cut_never_splits_a_character(fc, sup):
    proc = fc.run("helper-small utf8 5000", policy=sup["auto"])
    assert proc.returncode == 141 and len(proc.stdout) == 4096
    assert proc.stdout.decode("utf-8") == "\u00e9" * 2048


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_time_limit_stops_the_whole_tree(fc, sup, mode):
    token = f"T{os.getpid()}{mode}tl"
    start = time.monotonic()
    proc = fc.run(f"helper fork {token}", policy=sup[mode])
    assert proc.returncode == 124 and time.monotonic() - start < 8
    assert b"time limit of 2 s reached" in proc.stderr
    assert _gone(token, 1.0), procs_with(token)  # the grandchild that left with setsid too


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_client_that_goes_away_stops_the_tree_at_once(fc, sup, mode):
    token = f"T{os.getpid()}{mode}dc"
    argv = fc.ns.nsenter(["env", "-i", f"SSH_ORIGINAL_COMMAND=helper fork {token}", str(fc.python), "-I", "-m",
                          "diag_wrapper", "--policy", str(sup[mode])])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while len(procs_with(token)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(procs_with(token)) >= 2
    start = time.monotonic()
    proc.stdout.close()
    proc.stderr.close()  # the client is gone: both channels closed, the command writes nothing
    assert proc.wait(timeout=5) == -signal.SIGPIPE
    assert time.monotonic() - start < 1.5  # at once, not at the 2 s time limit
    assert _gone(token, 1.0), procs_with(token)


def test_a_killed_supervisor_takes_the_whole_tree_with_it(fc, sup):
    # inside the wall the command is PID 1 of its own PID namespace and dies with the
    # supervisor (PR_SET_PDEATHSIG); the kernel then kills everything else in it
    token = f"T{os.getpid()}kill"
    argv = fc.ns.nsenter(["env", "-i", f"SSH_ORIGINAL_COMMAND=helper fork {token}", str(fc.python), "-I", "-m",
                          "diag_wrapper", "--policy", str(sup["auto"])])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 5
    while len(procs_with(token)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    wrapper = [p for p in procs_with("diag_wrapper") if token.encode() in Path(f"/proc/{p}/environ").read_bytes()]
    assert wrapper
    for p in wrapper:
        os.kill(p, signal.SIGKILL)
    proc.wait(timeout=5)
    assert _gone(token, 2.0), procs_with(token)


def test_output_of_exactly_the_cap_is_not_cut(fc, sup):
    proc = fc.run("helper-small bytes 4097", policy=sup["auto"])  # the cap is 4097
    assert proc.returncode == 0 and proc.stdout == b"a" * 4097 and proc.stderr == b""
    proc = fc.run("helper-small bytes 4098", policy=sup["auto"])
    assert proc.returncode == 141 and proc.stdout == b"a" * 4097


@pytest.mark.parametrize("n", [4093, 4094, 4095, 4096, 4097])
def test_a_character_begun_in_an_earlier_read_is_not_split_either(fc, sup, n):
    proc = fc.run(f"helper-small mixed {n}", policy=sup["auto"])
    assert proc.returncode == 141 and len(proc.stdout) <= 4097
    text = proc.stdout.decode("utf-8")  # whole characters only
    assert text.startswith("a" * min(n, 4097)) and set(text[n:]) <= {"\u20ac"}
    assert len(proc.stdout) > 4097 - 3


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_client_that_stops_reading_holds_nothing_past_the_limit(fc, sup, mode):
    # neither stdout nor stderr is read: the command blocks, the wrapper must not
    cursor = fc.journald.cursor()
    argv = fc.ns.nsenter(["env", "-i", "SSH_ORIGINAL_COMMAND=helper spew x", str(fc.python), "-I", "-m",
                          "diag_wrapper", "--policy", str(sup[mode])])
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.wait(timeout=10) == 124
        assert time.monotonic() - start < 2 + 2 + 1.5  # the limit and one grace, not more
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    ends = [r for r in fc.journald.records_since(cursor, expect=2, ends=True) if r["DIAG_DECISION"] == "end"]
    assert len(ends) == 1 and ends[0]["DIAG_TIMED_OUT"] == "1"  # written before the line it could not say


def test_the_supervisor_cannot_be_traced_by_the_command(web02):
    # PR_SET_DUMPABLE 0: a process of the same uid cannot ptrace it or read its memory
    import ctypes

    from diag_wrapper import supervise
    from diag_wrapper.plan import plan

    p = plan(b"uptime", web02)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        supervise.run(p, 1 << 20)
        dumpable = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
        os.write(w, str(dumpable).encode())
        os._exit(0)
    os.close(w)
    assert os.read(r, 8) == b"0"
    os.waitpid(pid, 0)


def test_a_bug_in_the_supervisor_kills_the_command_before_it_propagates(web02, monkeypatch):
    # fail closed after the fork: whatever goes wrong while watching, the command does not
    # run on unwatched
    from diag_wrapper import supervise
    from diag_wrapper.plan import plan

    token = f"T{os.getpid()}bug"
    p = plan(b"uptime", web02)._replace(executable="/bin/sh", exec_argv=("sh", "-c", f"/bin/sleep 30; : {token}"))

    def broken(*args, **kw):
        deadline = time.monotonic() + 5
        while not procs_with(token) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not procs_with(token):
            os._exit(4)  # the command never ran: nothing shown
        raise RuntimeError("a bug")

    monkeypatch.setattr(supervise, "_supervise", broken)
    pid = os.fork()
    if pid == 0:
        try:
            supervise.run(p, 1 << 20)
        except RuntimeError:  # still alive here: PR_SET_PDEATHSIG has not fired, the kill did it
            os._exit(3 if _gone(token, 2.0) else 5)
        os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 3


# --------------------------------------------------------------------------- pipelines


def _end(fc, cursor):
    _, (end,) = _records(fc, cursor)
    return end


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_pipeline_runs_its_stages_connected_by_pipes(fc, sup, mode):
    cursor = fc.journald.cursor()
    proc = fc.run("yes | head -n 3 | wc -l", policy=sup[mode])
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"3\n", b"")
    end = _end(fc, cursor)
    # yes died of SIGPIPE when head was done: a stage stopping an earlier one is no failure
    assert end["DIAG_STAGES"] == "141 0 0" and end["DIAG_EXIT_STATUS"] == "0"


@pytest.mark.parametrize("command,status,stages", [
    ("helper die 11 | wc -l", 139, "139 0"),  # pipefail: an earlier stage's failure counts
    ("helper-small bytes 10 | grep -c zzz", 1, "0 1"),
    ("helper die 11 | grep -c zzz", 1, "139 1"),  # the last stage that failed decides
    ("helper-small bytes 10 | head -c 4", 0, "0 0"),
])
def test_the_exit_status_is_pipefail(fc, sup, command, status, stages):
    cursor = fc.journald.cursor()
    assert fc.run(command, policy=sup["auto"]).returncode == status
    end = _end(fc, cursor)
    assert (end["DIAG_STAGES"], end["DIAG_EXIT_STATUS"]) == (stages, str(status))


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_follower_upstream_of_a_finished_stage_is_stopped_not_waited_for(fc, sup, mode, tmp_path):
    log = sup["auto"].parent / "follow.log"
    log.write_text("one\nneedle\nthree\n")
    log.chmod(0o644)
    start = time.monotonic()
    cursor = fc.journald.cursor()
    proc = fc.run(f"tail -n 5 -f {log} | grep -m 1 needle", policy=sup[mode])
    assert (proc.returncode, proc.stdout) == (0, b"needle\n")
    assert time.monotonic() - start < 5  # not the time limit
    assert _end(fc, cursor)["DIAG_STAGES"] == "141 0"
    assert not procs_with(str(log))


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_time_limit_covers_every_stage(fc, sup, mode):
    start = time.monotonic()
    proc = fc.run("sleep 100 | sort | uniq -c", policy=sup[mode])
    assert proc.returncode == 124 and time.monotonic() - start < 6
    assert not procs_with("sleep 100")


def test_the_cap_counts_what_the_last_stage_prints(fc, sup):
    proc = fc.run("yes | cut -c 1", policy=sup["auto"])  # yes has max_output_bytes 100000
    assert proc.returncode == 141 and len(proc.stdout) <= 100000 and proc.stdout.startswith(b"y\ny\n")


def test_a_filter_gets_none_of_the_commands_files(fc, sup):
    # cat gets its file as a descriptor; the recorder, as a filter after it, lists its own
    log = sup["auto"].parent / "fds.log"
    log.write_text("x\n")
    log.chmod(0o644)
    proc = fc.run(f"cat {log} | fdlist", policy=sup["auto"])
    assert proc.returncode == 7, proc.stderr
    fds = fc.inherited()
    assert fds[0].startswith("pipe:") and fds[1].startswith("pipe:") and fds[2].startswith("pipe:")
    assert set(fds) - {0, 1, 2} <= {k for k, v in fds.items() if v.endswith("/fd")}  # opendir's own
    assert str(log) not in fds.values()


# --------------------------------------------------------------------------- the redaction net


def test_the_net_masks_a_canary_in_a_real_file(fc, sup):
    canary = sup["auto"].parent / "canary.conf"
    canary.write_text("[Service]\nEnvironment=\"API_KEY=CANARY1\"\nurl = postgres://u:CANARY2@db/x\n"
                      "-----BEGIN OPENSSH PRIVATE KEY-----\nCANARY3CANARY3\n-----END OPENSSH PRIVATE KEY-----\nend\n")
    canary.chmod(0o644)
    for command in (f"cat {canary}", f"cat {canary} | grep -v nothing"):
        cursor = fc.journald.cursor()
        proc = fc.run(command, policy=sup["auto"])
        assert proc.returncode == 0 and b"CANARY" not in proc.stdout
        assert proc.stdout == (b'[Service]\nEnvironment=[redacted:environment]\nurl = postgres://u:'
                               b'[redacted:url-credentials]@db/x\n[redacted:openssh-private-key]\nend\n')
        end = _end(fc, cursor)
        assert end["DIAG_REDACTIONS"] == "3"
        assert end["DIAG_REDACTED"] == "environment=1 openssh-private-key=1 url-credentials=1"


def test_a_secret_split_across_two_writes_is_masked(fc, sup):
    proc = fc.run("helper split x", policy=sup["auto"])
    assert (proc.returncode, proc.stdout) == (0, b"Authorization: Bearer [redacted:bearer] done\n")


def test_a_command_out_of_the_net_is_passed_as_it_is(fc, sup):
    cursor = fc.journald.cursor()
    proc = fc.run("helper-raw split x", policy=sup["auto"])
    assert proc.stdout == b"Authorization: Bearer abcdefghijklmnopq done\n"
    assert _end(fc, cursor)["DIAG_REDACTIONS"] == "0"


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_a_command_that_ignores_sigterm_is_killed_after_the_grace(fc, sup, mode):
    token = f"T{os.getpid()}{mode}"
    start = time.monotonic()
    proc = fc.run(f"helper stubborn {token}", policy=sup[mode])
    took = time.monotonic() - start
    assert proc.returncode == 124 and b"stubborn" in proc.stderr
    assert 2 + 2 - 0.5 < took < 2 + 2 + 1.5, took  # the limit, then SIGKILL after the grace
    assert _gone(token, 1.0), procs_with(token)


def test_journald_gone_before_the_closing_record_leaves_the_output_alone(fc, sup):
    argv = fc.ns.nsenter(["env", "-i", "SSH_ORIGINAL_COMMAND=helper slow 1000", str(fc.python), "-I", "-m",
                          "diag_wrapper", "--policy", str(sup["auto"])])
    cursor = fc.journald.cursor()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"before it\n"  # the start record was written, it runs
        fc.journald.stop()
        out, err = proc.communicate(timeout=10)
    finally:
        fc.journald.start()
    assert (proc.returncode, out, err) == (3, b"after it\n", b"")
    recs = fc.journald.records_since(cursor, expect=1, ends=True)
    assert [r["DIAG_DECISION"] for r in recs] == ["allow"]  # a start without an end: the gap shows


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_the_cpu_limit_is_the_commands_not_the_supervisors(fc, sup, mode):
    proc = fc.run("helper cpu x", policy=sup[mode])
    assert (proc.returncode, proc.stdout) == (0, b"3 3\n")  # timeout 2 + 1, soft = hard


@pytest.mark.parametrize("pidns", [False, True])
def test_a_fork_that_fails_runs_nothing_and_says_so(fc, sup, web02, pidns):
    # RLIMIT_NPROC reached while a pipeline starts: the stages already started are killed,
    # the exit status is 126, one line says why, nothing is left
    import pwd

    from diag_wrapper import supervise
    from diag_wrapper.plan import plan

    nobody = pwd.getpwnam("nobody")
    # every stage a sleep that only a kill ends (a token sleep accepts: 0.PID...), so the
    # statuses do not depend on how fast a stage could fail on its own (posix_spawn is fast)
    token = f"0.{os.getpid()}{secrets.randbelow(10**6):06d}"
    p = plan(b"uptime | grep x | grep y | head -n 1", web02)
    p = p._replace(executable="/bin/sleep", exec_argv=("sleep", "30", token),
                   filters=tuple(f._replace(executable="/bin/sleep", exec_argv=("sleep", "30", token))
                                 for f in p.filters))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        import resource

        from diag_wrapper import sandbox

        if pidns:
            assert sandbox.pid_namespace()  # as root here; inside the wall it is the diag user's
        os.setgid(nobody.pw_gid)
        os.setuid(nobody.pw_uid)
        here = len([d for d in os.listdir("/proc") if d.isdigit() and os.stat(f"/proc/{d}").st_uid == nobody.pw_uid])
        allowed = here + 2 + pidns  # init (in a PID namespace) and two stages start, not three
        resource.setrlimit(resource.RLIMIT_NPROC, (allowed, allowed))
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(w, 2)
        o = supervise.run(p, 1 << 20, pidns)
        os.write(w, f"\n{o.status} {o.stages} {o.error}\n".encode())
        os._exit(0)
    os.close(w)
    out = b""
    while chunk := os.read(r, 4096):
        out += chunk
    os.waitpid(pid, 0)
    last = out.decode().strip().splitlines()[-1]
    assert last.startswith("126 (137, 137, 127, 127) " + ("a stage could not be started inside the PID"
                                                          if pidns else "stage 3 could not be started")), out
    assert _gone(token, 2.0), procs_with(token)
    o = supervise.Outcome(126, None, None, 0, 0, error="stage 3 could not be started (x)")
    assert supervise.message(o, 1 << 20, 60).endswith("try again in a moment (exit 126)")


def test_output_that_keeps_the_net_busy_still_ends_at_the_time_limit(fc, sup):
    cursor = fc.journald.cursor()
    start = time.monotonic()
    proc = fc.run("helper-big hostile x", policy=sup["auto"])
    took = time.monotonic() - start
    assert proc.returncode == 124 and took < 2 + 2 + 1.5, took
    assert b"time limit of 2 s reached" in proc.stderr
    end = _end(fc, cursor)
    assert end["DIAG_TIMED_OUT"] == "1" and int(end["DIAG_BYTES_OUT"]) > 0


def test_waiting_for_an_orphan_that_holds_stdout_costs_no_cpu(fc, sup):
    # without the wall: the command exits, a setsid grandchild keeps its stdout open and
    # writes nothing; the wrapper waits (a grace at most), it does not spin
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = fc.run("helper orphan x", policy=sup["off"])
    took = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert (proc.returncode, proc.stdout) == (0, b"hi\n") and took < 4
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert cpu < 0.5, cpu
    assert not procs_with("helper orphan")
