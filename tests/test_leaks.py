"""What leaves through allowed output: journal fields, unit properties, devices, /proc, ss.

Table tests of the decision (the shipped web-02 policy with stub programs). The
same attacks run for real, against a real journald and a booted systemd, in
tests/e2e/test_leaks_e2e.py.
"""

from __future__ import annotations

import os
import socket
import stat

import pytest

from diag_wrapper.model import ALLOW
from diag_wrapper.plan import plan
from diag_wrapper.deny import DenyList, check_type
from diag_wrapper.model import Deny

SECRET_FIELDS = ["COREDUMP_ENVIRON", "COREDUMP_CMDLINE", "COREDUMP_OPEN_FDS", "COREDUMP", "COREDUMP_PROC_STATUS",
                 "COREDUMP_PROC_MAPS", "_CMDLINE", "COREDUMP_PROC_CGROUP"]

STRUCTURED = ["verbose", "export", "json", "json-pretty", "json-sse", "json-seq"]


def _decide(policy, command: str):
    return plan(command.encode(), policy)


def _denied(policy, command: str, code: str) -> str:
    d = _decide(policy, command)
    assert (d.decision, d.code) == ("deny", code), (command, d.decision, d.code, d.reason)
    return d.reason


# --------------------------------------------------------------------------- journal fields


@pytest.mark.parametrize("field", SECRET_FIELDS)
@pytest.mark.parametrize("form", ["journalctl -F {f}", "journalctl --field={f}", "journalctl --field {f}",
                                  "journalctl -o cat --output-fields={f}", "journalctl -o json --output-fields={f}",
                                  "journalctl -o verbose --output-fields=MESSAGE,{f}",
                                  "journalctl --output-fields {f} -o export"])
def test_fields_that_carry_secrets_are_never_asked_for(web02, field, form):
    _denied(web02, form.format(f=field), "match.bad-value")


@pytest.mark.parametrize("mode", STRUCTURED)
@pytest.mark.parametrize("spelling", ["-o {m}", "--output={m}", "--output {m}", "-o{m}"])
def test_modes_that_print_every_field_get_the_safe_list_forced(web02, mode, spelling):
    d = _decide(web02, f"journalctl COREDUMP_UNIT=n8n.service {spelling.format(m=mode)}")
    assert d.decision == ALLOW, d.reason
    forced = [a for a in d.exec_argv if a.startswith("--output-fields=")]
    assert len(forced) == 1
    fields = forced[0].split("=", 1)[1].split(",")
    assert "MESSAGE" in fields and "COREDUMP_UNIT" in fields
    assert not set(fields) & set(SECRET_FIELDS)
    # it comes before the agent's words, so nothing the agent sends can be read as its value
    assert d.exec_argv.index(forced[0]) < d.exec_argv.index("COREDUMP_UNIT=n8n.service")


def test_the_safe_list_is_written_once(web02):
    forced = _decide(web02, "journalctl -o json").exec_argv
    values = next(a for a in forced if a.startswith("--output-fields=")).split("=", 1)[1].split(",")
    opt = web02.commands["journalctl"].index["--output-fields"]
    assert tuple(values) == opt.value.values == web02.commands["journalctl"].index["-F"].value.values


@pytest.mark.parametrize("command", [
    "journalctl -o cat -u n8n",  # cat prints MESSAGE alone
    "journalctl -o short-iso -u n8n",
    "journalctl -u n8n",
    "journalctl -o json --output-fields=MESSAGE,_PID,COREDUMP_SIGNAL_NAME",  # the agent's own safe list
    "journalctl -o cat --output-fields=MESSAGE,_SYSTEMD_UNIT",
])
def test_modes_without_all_fields_or_with_a_checked_list_get_nothing_added(web02, command):
    d = _decide(web02, command)
    assert d.decision == ALLOW, d.reason
    assert d.exec_argv == (d.argv[0], "--no-pager", *d.argv[1:])  # only the forced --no-pager


@pytest.mark.parametrize("command", [
    "journalctl -F _SYSTEMD_UNIT", "journalctl -F COREDUMP_UNIT", "journalctl -F CONTAINER_NAME", "journalctl -N",
    "journalctl COREDUMP_UNIT=n8n.service -o short",  # matching on a printable field stays allowed
])
def test_useful_field_questions_stay_allowed(web02, command):
    assert _decide(web02, command).decision == ALLOW


# --------------------------------------------------------------------------- systemctl properties


@pytest.mark.parametrize("prop", ["Environment", "environment", "SetCredential", "SetCredentialEncrypted",
                                  "UnsetEnvironment", "PassEnvironment", "StandardInputData", "StandardInputText",
                                  "LogExtraFields", "ExecStart", "ExecStartPre", "ExecStartPreEx", "ExecStartEx",
                                  "ExecStop", "ExecReload", "ExecCondition", "Options", "What",
                                  "LoadCredential", "ImportCredential", "EnvironmentFiles", "NoSuchProperty"])
@pytest.mark.parametrize("form", ["systemctl show -p {p} n8n", "systemctl show --property={p} n8n",
                                  "systemctl show --property {p} n8n", "systemctl show -P {p} n8n",
                                  "systemctl show -p Id,{p} n8n", "systemctl show -p {p},Id", "systemctl show -p{p}",
                                  "systemctl status -p {p} n8n"])
def test_properties_that_carry_secrets_are_refused(web02, prop, form):
    _denied(web02, form.format(p=prop), "match.bad-value")


@pytest.mark.parametrize("command", ["systemctl show n8n", "systemctl show", "systemctl show --all n8n",
                                     "systemctl show --value n8n"])
def test_a_bare_show_gets_the_safe_property_list(web02, command):
    d = _decide(web02, command)
    assert d.decision == ALLOW, d.reason
    forced = [a for a in d.exec_argv if a.startswith("--property=")]
    assert len(forced) == 1
    props = forced[0].split("=", 1)[1].split(",")
    assert "ActiveState" in props and "MainPID" in props and "NRestarts" in props
    assert not {p for p in props if "nvironment" in p or "Credential" in p or "StandardInput" in p
                or p.startswith("Exec") and not p.startswith("ExecMain") or p in ("Options", "What")}


def test_show_with_a_property_list_gets_no_default(web02):
    d = _decide(web02, "systemctl show -p ActiveState,MainPID n8n")
    assert d.decision == ALLOW and not any(a.startswith("--property=") for a in d.exec_argv)


@pytest.mark.parametrize("mode", [*STRUCTURED])
def test_status_journal_lines_only_in_modes_that_print_the_message(web02, mode):
    # status shows the unit's journal records, its coredump records included; systemctl has
    # no --output-fields, so the modes that print every field are refused there.
    _denied(web02, f"systemctl status -o {mode} n8n", "match.bad-value")
    assert _decide(web02, "systemctl status -o short-iso n8n").decision == ALLOW


# --------------------------------------------------------------------------- devices and /proc


@pytest.mark.parametrize("command", [
    "cat /dev/vda", "cat /dev/zero", "cat /dev/null", "cat /dev/urandom", "cat /dev/mem", "cat /dev/ptmx",
    "head -c 10 /dev/sda", "head -c 10 /dev/zero", "tail -f /dev/kmsg", "tail -n 1 /dev/zero",
    "head -n -1 /dev/zero", "grep -a x /dev/zero", "wc -c /dev/zero", "df /dev/zero", "cat /dev/tty",
])
def test_devices_are_never_read(web02, command):
    path = command.split()[-1]
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    _denied(web02, command, "path.not-regular")


def test_fifos_and_sockets_are_never_read(web02, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    try:
        for command in (f"cat {fifo}", f"df {fifo}", f"tail -f {fifo}", f"grep x {tmp_path / 'sock'}"):
            assert "FIFO" in _denied(web02, command, "path.not-regular") or "socket" in _denied(
                web02, command, "path.not-regular")
        # names only: ls and stat look at a FIFO without opening it
        assert _decide(web02, f"ls -l {fifo}").decision == ALLOW
        assert _decide(web02, f"stat {fifo}").decision == ALLOW
    finally:
        sock.close()


def test_metadata_commands_still_see_devices(web02):
    for command in ("ls -l /dev/null", "stat /dev/null", "ls /dev"):
        assert _decide(web02, command).decision == ALLOW, command


def test_check_type_names_the_kind():
    for mode, word in ((stat.S_IFCHR, "character device"), (stat.S_IFBLK, "block device"),
                       (stat.S_IFIFO, "FIFO"), (stat.S_IFSOCK, "socket")):
        st = os.stat_result((mode | 0o644, 1, 1, 1, 0, 0, 0, 0, 0, 0))
        with pytest.raises(Deny) as e:
            check_type("x", st)
        assert e.value.code == "path.not-regular" and word in e.value.message
    for mode in (stat.S_IFREG, stat.S_IFDIR):
        check_type("x", os.stat_result((mode | 0o644, 1, 1, 1, 0, 0, 0, 0, 0, 0)))


@pytest.mark.parametrize("path", [
    "/proc/1/maps", "/proc/self/maps", "/proc/1/smaps", "/proc/1/auxv", "/proc/1/stack", "/proc/1/syscall",
    "/proc/1/pagemap", "/proc/keys", "/proc/key-users", "/proc/kallsyms", "/proc/self/attr/current",
    "/proc/1/fdinfo/0", "/proc/1/numa_maps", "/proc/1/personality", "/proc/sched_debug", "/proc/timer_list",
    "/proc/modules", "/proc/iomem", "/proc/vmallocinfo", "/proc/slabinfo",
    "/sys/kernel/debug", "/sys/firmware/acpi/tables/DSDT", "/sys/kernel/security", "/sys/kernel/tracing/trace",
    "/sys/kernel/notes", "/sys/firmware/dmi/tables/DMI", "/sys/power/state",
])
def test_kernel_files_outside_the_list_are_refused(web02, path):
    for command in (f"cat {path}", f"head -n 1 {path}", f"grep x {path}", f"wc -l {path}"):
        _denied(web02, command, "path.kernel-file")


@pytest.mark.parametrize("path", [
    "/proc/meminfo", "/proc/loadavg", "/proc/pressure/memory", "/proc/self/status", "/proc/1/status",
    "/proc/1/cgroup", "/proc/1/limits", "/proc/uptime", "/proc/self/mountinfo", "/proc/net/dev",
])
def test_useful_kernel_files_are_readable(web02, path):
    if not os.path.exists(path):
        pytest.skip(f"{path} does not exist here")
    d = _decide(web02, f"cat {path}")
    assert d.decision == ALLOW, d.reason


def test_cgroup_files_are_readable_at_any_depth(web02):
    found = [os.path.join(root, f) for root, _, files in os.walk("/sys/fs/cgroup") for f in files
             if f in ("memory.current", "cpu.stat", "pids.current", "memory.pressure")][:8]
    if not found:
        pytest.skip("no cgroup v2 files here")
    for path in found:
        d = _decide(web02, f"cat {path}")
        assert d.decision == ALLOW, (path, d.reason)
    assert _decide(web02, "cat /sys/fs/cgroup/cgroup.subtree_control").code == "path.kernel-file"


@pytest.mark.parametrize("command", ["grep -r x /proc/self", "grep -r x /sys", "grep -r x /sys/fs/cgroup",
                                     "grep -r x /proc/sys", "grep -r x /"])
def test_recursive_reads_of_kernel_trees_are_refused(web02, command):
    d = _decide(web02, command)
    assert d.decision == "deny" and d.code in ("path.kernel-file", "path.tree-contains-denied"), d.code


def test_listing_kernel_trees_is_not_reading_them(web02):
    for command in ("ls /proc/1", "ls -l /sys/fs/cgroup", "stat /proc/1/maps", "ls /proc/1/maps"):
        assert _decide(web02, command).decision == ALLOW, command


def test_kernel_patterns_star_and_double_star():
    dl = DenyList([], None, ["/proc/*/status", "/sys/fs/cgroup/**/memory.*"])
    dl.check("/proc/1/status", "file", content=True)
    dl.check("/sys/fs/cgroup/memory.stat", "file", content=True)
    with pytest.raises(Deny):
        dl.check("/proc/1/task/1/status", "file", content=True)
    with pytest.raises(Deny):
        dl.check("/sys/fs/cgroup/cpu.max", "file", content=True)
    dl.check("/proc/1/maps", "file", content=False)  # names only: ls, stat


# --------------------------------------------------------------------------- ss filters


@pytest.mark.parametrize("command", [
    "ss dst some-name.example", "ss -tn dst localhost", "ss dst 'exfil.secret-bits.example'",
    "ss -x cgroup /../../../../run/secrets/x", "ss -x src /run/secrets/x", "ss dev eth0", "ss dev = eth0",
    "ss sport = :ssh", "ss dport eq :https", "ss dst 1.2.3", "ss dst 1.2.3.4.5", "ss dst 300.1.1.1",
    "ss dst '[fe80::1%eth0]'", "ss dst '[dead:beef]'", "ss 'dst exfil.example'", "ss 'sport = :443 or dst x.example'",
    "ss 'dst 1.2.3.4)'", "ss '(dst 1.2.3.4'", "ss dst 1.2.3.4:99999", "ss dst 99999",
    "ss 'dst  1.2.3.4'", "ss net 10.0.0.0/8", "ss dst 10.0.0.0/33",
    "ss -n dst 65535", "ss -tn dport = 22",  # a bare number after dst is a host name to ss
    "ss -tn 'dst [2001:db8::1]/64'",  # the real ss looks "/64" up as a service (test_ss_lookups)
])
def test_ss_filters_name_nothing_that_is_looked_up(web02, command):
    d = _decide(web02, command)
    assert d.decision == "deny" and d.code in ("match.bad-value", "match.bad-combination"), (d.code, d.reason)


# each of these makes the real ss look the address up as a name (tests/root/test_ss_lookups.py)
SS_FAMILY_MISMATCH = ["ss -n -6 dst 10.0.0.0/8", "ss -n -f xdp dst 10.0.0.0/8", "ss -n -f tipc dst 10.0.0.1",
                      "ss -n -6 dst 1.2.3.4", "ss -n -4 dst '[::1]'", "ss -n -f inet src '[::ffff:1.2.3.4]'",
                      "ss -n --ipv6 dst 1.2.3.4"]
# and a unix socket filter is a path pattern, never asked for
SS_UNIX_FILTERS = ["ss -n -x dst 10.0.0.1", "ss -n -A unix dst 10.0.0.1"]


@pytest.mark.parametrize("command", SS_FAMILY_MISMATCH + SS_UNIX_FILTERS)
def test_ss_filters_decide_the_family_themselves(web02, command):
    _denied(web02, command, "match.bad-combination")


def test_ss_family_options_without_a_filter_stay_allowed(web02):
    for command in ("ss -4 -tln", "ss -6 -tlnp", "ss -f inet -s", "ss -x -l", "ss -A tcp,udp -n"):
        assert _decide(web02, command).decision == ALLOW, command


@pytest.mark.parametrize("command", [
    "ss -tn dst 10.0.0.1", "ss -tn dst 10.0.0.0/8", "ss -tn dst 127.0.0.1:5432", "ss -tn 'dst [::1]:443'",
    "ss -tn 'dst [2001:db8::1]'", "ss -tln sport = :443", "ss -tn 'sport = :443'", "ss -tn dport = :22",
    "ss -t state established", "ss -t state time-wait dport = :80", "ss -tn '( dport = :80 or dport = :443 )'",
    "ss -tn not dst 127.0.0.1", "ss -tn src '*:22'", "ss -tn exclude listening",
])
def test_ss_numeric_filters_are_allowed(web02, command):
    d = _decide(web02, command)
    assert d.decision == ALLOW, d.reason


# --------------------------------------------------------------------------- the wrapper's own stdin


def test_the_dev_stdin_entry_takes_no_alias_from_the_wrappers_own_stdin(web02, tmp_path):
    # /dev/stdin -> /proc/self/fd/0 is whatever the *wrapper's* standard input is: with stdin
    # redirected from a file, that file used to become a deny entry (and check disagreed).
    import subprocess
    import sys


    target = tmp_path / "plain.txt"
    target.write_text("plain\n")
    code = ("import sys; from diag_wrapper.policy import load; from diag_wrapper.plan import plan;"
            f"d = plan(b'cat {target}', load(sys.argv[1])); print(d.code)")
    policy = web02.sources[-1]
    with open(target, "rb") as stdin:
        out = subprocess.run([sys.executable, "-c", code, policy], stdin=stdin, capture_output=True, text=True)
    assert out.stdout.strip() == "allow", out.stderr
    assert _decide(web02, "cat /dev/stdin").code == "path.denied"
    assert _decide(web02, "cat /proc/self/fd/0").code == "path.denied"


# --------------------------------------------------------------------------- the journal files


@pytest.mark.parametrize("command", [
    "cat /var/log/journal/0123/system.journal", "grep -a x /run/log/journal/0123/system.journal",
    "head -c 100 /var/log/journal/0123/user-1000.journal", "tail -c 100 /run/log/journal/x/system.journal",
    "grep -r -a -o SECRET /run/log/journal", "grep -r -a x /var/log/journal", "ls /var/log/journal",
    "cat /persist/var/log/journal/0123/system.journal", "du -sh /var/log/journal", "wc -c /run/log/journal/x",
])
def test_the_journal_files_are_read_only_through_journalctl(web02, command):
    d = _decide(web02, command)
    assert d.decision == "deny" and d.code in ("path.denied", "path.tree-contains-denied"), (d.code, d.reason)


def test_the_wall_leaves_the_journal_to_journalctl_and_systemctl_only(web02):
    entries = {e.path: e.wall_except for e in web02.deny}
    for path in ("/var/log/journal", "/run/log/journal", "/persist/var/log/journal"):
        assert entries[path] == ("journalctl", "systemctl")
    assert all(not ex for p, ex in entries.items() if "journal" not in p)


@pytest.mark.parametrize("match", ["COREDUMP_ENVIRON=SECRET=x", "_CMDLINE=node --password x",
                                   "COREDUMP_CMDLINE=x", "COREDUMP=x", "COREDUMP_PROC_STATUS=x"])
def test_matches_on_hidden_fields_are_refused(web02, match):
    # a match answers yes or no to a guessed value of a field that is never printed
    _denied(web02, f"journalctl -q -n 1 -o cat '{match}'", "match.bad-value")


def test_the_opened_descriptor_is_type_checked_too(tmp_path):
    # fd passing checks the object it opened, not only the name it checked: a FIFO or a
    # device swapped in between the two is refused
    from diag_wrapper.model import PathCheck
    from diag_wrapper.execute import open_checked

    fifo = tmp_path / "was-a-file"
    os.mkfifo(fifo)
    dl = DenyList([])
    with pytest.raises(Deny) as e:
        open_checked(PathCheck(str(fifo), str(fifo), "file"), dl)
    assert e.value.code == "path.not-regular"
    with pytest.raises(Deny) as e:
        open_checked(PathCheck("/dev/null", "/dev/null", "file"), dl)
    assert e.value.code == "path.not-regular"
    plain = tmp_path / "plain"
    plain.write_text("x")
    os.close(open_checked(PathCheck(str(plain), str(plain), "file"), dl))


@pytest.mark.parametrize("command,code", [
    ("cat /run/systemd/transient/run-u42.service", "path.denied"),
    ("grep -r SEKRET /run/systemd", "path.tree-contains-denied"),
    ("cat /run/systemd/system.control/n8n.service.d/50-Environment.conf", "path.denied"),
    ("cat /etc/systemd/system.control/x.conf", "path.denied"),
    ("ls -la /run/diag-wrapper", "path.denied"),
])
def test_unit_state_outside_the_properties_is_not_readable(web02, command, code):
    _denied(web02, command, code)


@pytest.mark.parametrize("command,runs", [
    ("journalctl -u n8n -x", ("-u", "n8n")),
    ("journalctl -xeu nginx", ("-eu", "nginx")),
    ("journalctl -exu nginx", ("-eu", "nginx")),
    ("journalctl -x -e -u nginx", ("-e", "-u", "nginx")),
    ("journalctl --catalog -u nginx", ("-u", "nginx")),
])
def test_the_catalog_is_never_passed_on(web02, command, runs):
    """Catalog texts fill in @FIELD@ from any field of the record (COMMAND=, EXECUTABLE=),
    listed in journal_fields or not: -x is accepted as the habit it is and dropped."""
    p = plan(command.encode(), web02)
    assert p.allowed, p.reason
    assert p.exec_argv[2:] == runs
    assert not any(w in ("-x", "--catalog") or (w.startswith("-") and not w.startswith("--") and "x" in w)
                   for w in p.exec_argv)
    assert p.notes and "not passed on" in p.notes[0]


def test_a_denied_commands_record_cannot_reorder_itself():
    from diag_wrapper import audit

    out = audit.escape_control("cat /etc/\u202ewodahs \u2066x\u2069 \u200b")
    assert "\u202e" not in out and "\\u202e" in out and "\u2066" not in out and "\u200b" not in out
