"""The evidence issue's commands: what each is allowed to do, and every other thing the
real program can do, refused (one row per ability, with the code it must be refused with).

Rows are commands as an agent sends them; ``runs`` is the exec argv after the program
name, so a forced or added word (``-b``, ``-n 1``, ``--query``) is part of the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from diag_wrapper.model import ALLOW, DENY
from diag_wrapper.plan import plan
from diag_wrapper.policy import PolicyError, load

ALLOWED = [
    # habits: what systemd itself prints, and the tools' own defaults
    ("journalctl -xeu nginx.service", "--no-pager -eu nginx.service"),
    ("journalctl -e -u n8n", "--no-pager -e -u n8n"),
    ("systemctl --failed", "--no-pager --failed list-units"),
    ("systemctl", "--no-pager list-units"),
    ("systemctl -t service --state=failed", "--no-pager -t service --state=failed list-units"),
    ("hostnamectl", "status"),
    ("timedatectl", "--no-pager status"),
    ("networkctl", "--no-pager list"),
    ("resolvectl", "--no-pager status"),
    ("ip a", "a"),
    ("ip -br a", "-br a"),
    ("ip a show dev eth0", "a show dev eth0"),
    ("ip r", "r"),
    ("ip -6 r show", "-6 r show"),
    ("ip l", "l"),
    ("ip n", "n"),
    ("ip route get 192.0.2.1", "route get 192.0.2.1"),
    ("ip r get 2001:db8::1", "r get 2001:db8::1"),
    ("ip route get 192.0.2.1 from 10.0.0.2", "route get 192.0.2.1 from 10.0.0.2"),
    ("whoami", ""),
    # systemd graph and timing
    ("systemctl list-dependencies nginx.service", "--no-pager list-dependencies nginx.service"),
    ("systemctl list-dependencies --reverse postgresql.service", "--no-pager list-dependencies --reverse postgresql.service"),
    ("systemctl list-dependencies --after matrix-synapse", "--no-pager list-dependencies --after matrix-synapse"),
    ("systemctl list-jobs", "--no-pager list-jobs"),
    ("systemctl is-system-running", "--no-pager is-system-running"),
    ("systemd-analyze blame", "--no-pager blame"),
    ("systemd-analyze time", "--no-pager time"),
    ("systemd-analyze critical-chain matrix-synapse.service", "--no-pager critical-chain matrix-synapse.service"),
    ("systemd-analyze security n8n.service", "--no-pager security n8n.service"),
    ("systemd-analyze security --threshold=50 --json=short zammad-web", "--no-pager security --threshold=50 --json=short zammad-web"),
    ("systemd-analyze calendar '*-*-* 03:00'", "--no-pager calendar *-*-* 03:00"),
    ("systemd-analyze calendar --iterations 3 daily", "--no-pager calendar --iterations 3 daily"),
    ("systemd-analyze timespan 1h30m", "--no-pager timespan 1h30m"),
    ("coredumpctl", "--no-pager list"),
    ("coredumpctl list", "--no-pager list"),
    ("coredumpctl list -r --since today mautrix-telegram", "--no-pager list -r --since today mautrix-telegram"),
    ("coredumpctl -1 list COREDUMP_UNIT=n8n.service", "--no-pager -1 list COREDUMP_UNIT=n8n.service"),
    ("coredumpctl list 4242", "--no-pager list 4242"),
    # what changed
    ("nixos-version", ""),
    ("nixos-version --json", "--json"),
    ("readlink /run/current-system", "/run/current-system"),
    ("readlink -f /run/booted-system", "-f /run/booted-system"),
    ("readlink /nix/var/nix/profiles/system", "/nix/var/nix/profiles/system"),
    ("nix-store -q --references /run/current-system", "--query -q --references /run/current-system"),
    ("nix-store --query --requisites /nix/var/nix/profiles/system-41-link",
     "--query --query --requisites /nix/var/nix/profiles/system-41-link"),
    ("nix-store -q --tree /run/booted-system", "--query -q --tree /run/booted-system"),
    ("nix-store -q --size /nix/store/" + "a" * 32 + "-nginx-1.27.3", "--query -q --size /nix/store/" + "a" * 32 + "-nginx-1.27.3"),
    ("nix-store -q --deriver /run/current-system", "--query -q --deriver /run/current-system"),
    # resources
    ("top", "-b -n 1"),
    ("top -b -n 1 -o %MEM", "-b -b -n 1 -o %MEM"),
    ("top -n 2 -d 2 -c -w 200", "-b -n 2 -d 2 -c -w 200"),
    ("top -u postgres", "-b -n 1 -u postgres"),
    ("vmstat", ""),
    ("vmstat 1 5", "1 5"),
    ("vmstat -w -t 2 3", "-w -t 2 3"),
    ("vmstat -s -S M", "-s -S M"),
    ("vmstat -d", "-d"),
    ("systemd-cgtop", "-b -n 1"),
    ("systemd-cgtop -m -n 2 --depth 3", "-b -m -n 2 --depth 3"),
    # names and reachability
    ("getent hosts web-02", "hosts web-02"),
    ("getent ahosts matrix.example.org", "ahosts matrix.example.org"),
    ("getent hosts", "hosts"),
    ("getent services https", "services https"),
    ("resolvectl query example.org", "--no-pager query example.org"),
    ("resolvectl query -t MX example.org", "--no-pager query -t MX example.org"),
    ("resolvectl query --cache=no 192.0.2.1", "--no-pager query --cache=no 192.0.2.1"),
    ("resolvectl statistics", "--no-pager statistics"),
    ("resolvectl dns eth0", "--no-pager dns eth0"),
    ("ping 192.0.2.1", "-c 3 192.0.2.1"),
    ("ping -c 1 -W 2 example.org", "-c 1 -W 2 example.org"),
    ("tracepath -n 192.0.2.1", "-n 192.0.2.1"),
    ("tracepath -n -m 10 example.org", "-n -m 10 example.org"),
]


@pytest.mark.parametrize("command,runs", ALLOWED)
def test_allowed(web02, command, runs):
    p = plan(command.encode(), web02)
    assert p.decision == ALLOW, p.reason
    assert " ".join(p.exec_argv[1:]) == runs


DENIED = [
    # systemctl: verbs of other kinds stay out; a verb the tool does not know is not a default
    ("systemctl nginx", "match.unknown-subcommand"),
    ("systemctl list-dependencies --root=/ x", "match.unknown-option"),
    ("systemctl list-jobs --host=x", "match.unknown-option"),
    ("systemctl cancel", "match.unknown-subcommand"),
    ("systemctl default", "match.unknown-subcommand"),
    ("hostnamectl hostname evil", "match.unknown-subcommand"),
    ("timedatectl set-ntp false", "match.unknown-subcommand"),
    ("networkctl reconfigure eth0", "match.unknown-subcommand"),
    ("networkctl renew eth0", "match.unknown-subcommand"),
    ("networkctl forcerenew eth0", "match.unknown-subcommand"),
    # journalctl: -x is dropped, never a value-taking disguise
    ("journalctl -x=1", "match.unknown-option"),
    ("journalctl --catalog=x", "match.unexpected-value"),
    ("journalctl --list-catalog", "match.unknown-option"),
    ("journalctl --dump-catalog", "match.unknown-option"),
    # ip: the abbreviations read only; every changing verb and object refused
    ("ip a add 10.0.0.1/24 dev eth0", "match.too-many-args"),
    ("ip a del 10.0.0.1/24 dev eth0", "match.too-many-args"),
    ("ip r replace default via 10.0.0.1", "match.too-many-args"),
    ("ip r flush cache", "match.too-many-args"),
    ("ip ro add default via 10.0.0.1", "match.too-many-args"),
    ("ip route get example.org", "match.bad-value"),
    ("ip route get 192.0.2.1 mark 1", "match.bad-value"),
    ("ip rule add from all table 1", "match.unknown-subcommand"),
    ("ip netns exec x sh", "match.unknown-subcommand"),
    ("ip -b /tmp/batch", "match.unknown-option"),
    ("ip -batch /tmp/batch", "match.unknown-option"),
    ("ip -force -b x", "match.unknown-option"),
    ("ip -n x a", "match.unknown-option"),
    ("ip -netns x a", "match.unknown-option"),
    # whoami takes nothing
    ("whoami root", "match.too-many-args"),
    # systemd-analyze: dump prints every unit's Environment=; files, other roots, setters
    ("systemd-analyze dump", "match.unknown-subcommand"),
    ("systemd-analyze plot", "match.unknown-subcommand"),
    ("systemd-analyze dot", "match.unknown-subcommand"),
    ("systemd-analyze verify /etc/systemd/system/x.service", "match.unknown-subcommand"),
    ("systemd-analyze cat-config systemd/system.conf", "match.unknown-subcommand"),
    ("systemd-analyze condition 'ConditionPathExists=/run/secrets/x'", "match.unknown-subcommand"),
    ("systemd-analyze inspect-elf /run/current-system/sw/bin/ls", "match.unknown-subcommand"),
    ("systemd-analyze log-level debug", "match.unknown-subcommand"),
    ("systemd-analyze log-target console", "match.unknown-subcommand"),
    ("systemd-analyze service-watchdogs off", "match.unknown-subcommand"),
    ("systemd-analyze malloc", "match.unknown-subcommand"),
    ("systemd-analyze fdstore nginx", "match.unknown-subcommand"),
    ("systemd-analyze pcrs", "match.unknown-subcommand"),
    ("systemd-analyze unit-files", "match.unknown-subcommand"),
    ("systemd-analyze security --root=/mnt x", "match.unknown-option"),
    ("systemd-analyze security --image=/x.img x", "match.unknown-option"),
    ("systemd-analyze security --offline=yes /etc/x.service", "match.unknown-option"),
    ("systemd-analyze security --profile=/etc/x x", "match.unknown-option"),
    ("systemd-analyze security --security-policy=/etc/x x", "match.unknown-option"),
    ("systemd-analyze -H root@x blame", "match.unknown-option"),
    ("systemd-analyze -M x blame", "match.unknown-option"),
    ("systemd-analyze --man=no verify x", "match.unknown-option"),
    ("systemd-analyze --generators=yes verify x", "match.unknown-option"),
    ("systemd-analyze security /etc/systemd/system/x.service", "match.bad-value"),
    # --json takes the next word, as systemd's getopt does (required_argument): the verb is not it
    ("systemd-analyze --json calendar daily", "match.unknown-subcommand"),
    ("systemd-analyze --json=pretty calendar daily", "allow"),
    ("resolvectl --cache query yes", "match.unknown-subcommand"),
    ("coredumpctl --json list", "match.bad-value"),
    # coredumpctl: info prints the command line; cores are never written or debugged
    ("coredumpctl info 1234", "match.unknown-subcommand"),
    ("coredumpctl dump 1234", "match.unknown-subcommand"),
    ("coredumpctl debug 1234", "match.unknown-subcommand"),
    ("coredumpctl gdb 1234", "match.unknown-subcommand"),
    ("coredumpctl list -o /tmp/core", "match.unknown-option"),
    ("coredumpctl list --output=/tmp/core", "match.unknown-option"),
    ("coredumpctl list -F COREDUMP_ENVIRON", "match.unknown-option"),
    ("coredumpctl list --field=COREDUMP_CMDLINE", "match.unknown-option"),
    ("coredumpctl list --file=/var/log/journal/x.journal", "match.unknown-option"),
    ("coredumpctl list -D /run/secrets", "match.unknown-option"),
    ("coredumpctl list --root=/", "match.unknown-option"),
    ("coredumpctl list --image=/x.img", "match.unknown-option"),
    ("coredumpctl debug -A '-ex shell' x", "match.unknown-option"),
    ("coredumpctl list --debugger=/bin/sh", "match.unknown-option"),
    ("coredumpctl list COREDUMP_ENVIRON=SECRET", "match.bad-value"),
    ("coredumpctl list COREDUMP_CMDLINE=x", "match.bad-value"),
    ("coredumpctl list /run/current-system/sw/bin/nginx", "match.bad-value"),
    # nixos-version, readlink: nothing but their read
    ("nixos-version --hash x", "match.too-many-args"),
    ("readlink /run/secrets/n8n", "path.denied"),
    ("readlink -f /etc/ssh/ssh_host_ed25519_key", "path.denied"),
    ("readlink", "match.too-few-args"),
    ("readlink -z /run/current-system", "match.unknown-option"),
    # nix-store: one operation, --query, and store paths only
    ("nix-store --realise /run/current-system", "match.unknown-option"),
    ("nix-store -r /nix/store/" + "a" * 32 + "-x", "match.unknown-option"),
    ("nix-store --add /etc/shadow", "match.unknown-option"),
    ("nix-store --delete /nix/store/" + "a" * 32 + "-x", "match.unknown-option"),
    ("nix-store --gc", "match.unknown-option"),
    ("nix-store --dump /run/current-system", "match.unknown-option"),
    ("nix-store --export /run/current-system", "match.unknown-option"),
    ("nix-store --import", "match.unknown-option"),
    ("nix-store --restore /tmp/x", "match.unknown-option"),
    ("nix-store --serve", "match.unknown-option"),
    ("nix-store --verify --repair", "match.unknown-option"),
    ("nix-store --optimise", "match.unknown-option"),
    ("nix-store --load-db", "match.unknown-option"),
    ("nix-store --dump-db", "match.unknown-option"),
    ("nix-store -q --roots /run/current-system", "match.unknown-option"),
    ("nix-store -l /run/current-system", "match.unknown-option"),
    ("nix-store --read-log /run/current-system", "match.unknown-option"),
    ("nix-store -q --binding src /nix/store/" + "a" * 32 + "-x.drv", "match.unknown-option"),
    ("nix-store -q --graph /run/current-system", "match.unknown-option"),
    ("nix-store --option build-hook /tmp/x -q --references /run/current-system", "match.unknown-option"),
    ("nix-store --store ssh://x -q --references /run/current-system", "match.unknown-option"),
    ("nix-store -q --references 'nixpkgs#hello'", "match.bad-value"),
    ("nix-store -q --references '/nix/store/x#y'", "match.bad-value"),
    ("nix-store -q --references /tmp/x", "match.bad-value"),
    ("nix-store -q --references ./result", "match.bad-value"),
    ("nix-store -q --references /nix/store/" + "a" * 32 + "-x/../../../etc/shadow", "match.bad-value"),
    ("nix-store -q --references", "match.too-few-args"),
    # top: batch only, bounded; no secure-mode games, no endless run
    ("top -s", "match.unknown-option"),
    ("top -d 0", "match.bad-value"),
    ("top -d 0.1", "match.bad-value"),
    ("top -n 100", "match.bad-value"),
    ("top -d 0.01x", "match.bad-value"),
    ("top -b -n 1 /etc/shadow", "match.too-many-args"),
    ("top -S", "match.unknown-option"),
    # vmstat: no device paths, no slabs, bounded counts
    ("vmstat -p /dev/sda1", "match.unknown-option"),
    ("vmstat --partition=/dev/sda1", "match.unknown-option"),
    ("vmstat -m", "match.unknown-option"),
    ("vmstat 1 100", "match.bad-value"),
    ("vmstat 0", "match.bad-value"),
    # systemd-cgtop: no other machines, bounded
    ("systemd-cgtop -M x", "match.unknown-option"),
    ("systemd-cgtop -n 10", "match.bad-value"),
    ("systemd-cgtop /system.slice", "match.too-many-args"),
    # getent: hosts and services only; no picking an NSS module
    ("getent passwd", "match.unknown-subcommand"),
    ("getent shadow", "match.unknown-subcommand"),
    ("getent shadow root", "match.unknown-subcommand"),
    ("getent gshadow", "match.unknown-subcommand"),
    ("getent group", "match.unknown-subcommand"),
    ("getent initgroups root", "match.unknown-subcommand"),
    ("getent netgroup x", "match.unknown-subcommand"),
    ("getent -s files hosts x", "match.unknown-option"),
    ("getent --service=dns hosts x", "match.unknown-option"),
    ("getent hosts -- -x", "match.bad-value"),
    ("getent hosts 'a b'", "match.bad-value"),
    ("getent hosts /etc/shadow", "match.bad-value"),
    # ping: privileged and noisy modes out; at most 3 packets
    ("ping -f 192.0.2.1", "match.unknown-option"),
    ("ping -i 0.01 192.0.2.1", "match.unknown-option"),
    ("ping -l 100 192.0.2.1", "match.unknown-option"),
    ("ping -s 65000 192.0.2.1", "match.unknown-option"),
    ("ping -p ff 192.0.2.1", "match.unknown-option"),
    ("ping -b 192.0.2.255", "match.unknown-option"),
    ("ping -I eth0 192.0.2.1", "match.unknown-option"),
    ("ping -c 1000 192.0.2.1", "match.bad-value"),
    ("ping -c 3 192.0.2.1 192.0.2.2", "match.too-many-args"),
    ("ping", "match.too-few-args"),
    # tracepath: one host, bounded hops
    ("tracepath -m 255 192.0.2.1", "match.bad-value"),
    ("tracepath -l 65000 192.0.2.1", "match.unknown-option"),
    ("tracepath", "match.too-few-args"),
    # the new nix CLI: realises what the store lacks, takes a non-store path for a flake
    ("nix path-info -S /run/current-system", "match.unknown-command"),
    ("nix store diff-closures /nix/var/nix/profiles/system-1-link /nix/var/nix/profiles/system-2-link",
     "match.unknown-command"),
    ("nix-store -q --references 'nixpkgs#hello'", "match.bad-value"),
    ("nix-store -q --references nixpkgs#hello", "parse.comment"),
    ("nix-store --realise /nix/store/00000000000000000000000000000000-x.drv", "match.unknown-option"),
]


@pytest.mark.parametrize("command,hint", [
    ("nix path-info -S /run/current-system", "nix-store -q --closure-size /run/current-system"),
    ("nix store diff-closures /nix/var/nix/profiles/system-1-link /nix/var/nix/profiles/system-2-link",
     "nix-store -q --requisites /run/current-system"),
])
def test_the_new_nix_cli_is_refused_with_the_nix_store_query_instead(web02, command, hint):
    p = plan(command.encode(), web02)
    assert p.decision == DENY and f"; instead: {hint}" in p.reason
    assert plan(hint.encode(), web02).decision == ALLOW


@pytest.mark.parametrize("command,code", DENIED)
def test_denied(web02, command, code):
    p = plan(command.encode(), web02)
    if code == "allow":  # the contrast row of a refusal next to it
        assert p.decision == ALLOW, p.reason
        return
    assert (p.decision, p.code) == (DENY, code), p.reason
    assert p.exec_argv == ()


# --------------------------------------------------------------------------- the policy's new keys


def _policy(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text('[settings]\nsearch_path = ["/bin"]\n' + text)
    return load(str(path))


@pytest.mark.parametrize("text,says", [
    ('[commands.x]\ndefault_subcommand = "nope"\n[commands.x.subcommands.list]\n', "not one of its subcommands"),
    ('[commands.x]\ndefault_subcommand = "l"\n[commands.x.subcommands.list]\n[commands.x.subcommands.l]\nsame_as = "list"\n',
     "not one of its subcommands"),
    ('[commands.x]\n[commands.x.subcommands.l]\nsame_as = "list"\n', "is not a subcommand"),
    ('[commands.x]\n[commands.x.subcommands.list]\n[commands.x.subcommands.l]\nsame_as = "list"\nargs = []\n',
     "unknown key"),
    ('[commands.x]\noptions = [{ names = ["-x"], drop = true }]\n', "help must say why"),
    ('[commands.x]\noptions = [{ names = ["-x"], drop = true, value = "int", help = "h" }]\n', "needs parameters"),
    ('[commands.x]\noptions = [{ names = ["-x"], drop = true, value = "unit", help = "h" }]\n', "drop is for flags"),
    ('[types]\np = { type = "file", pattern = "(" }\n', "does not compile"),
])
def test_the_loader_refuses_misuse_of_the_new_keys(tmp_path, text, says):
    with pytest.raises(PolicyError, match=says):
        _policy(tmp_path, text)


def test_a_dropped_flag_keeps_the_path_indices_right(tmp_path):
    """Dropping a whole word shifts the words after it: the descriptor a path is handed
    over as must still replace the path's own word."""
    (tmp_path / "f").write_text("x\n")
    pol = _policy(tmp_path, '[commands.cat]\nreads = "content"\noptions = [{ names = ["-q"], drop = true,'
                  ' help = "a habit" }, { names = ["-n"] }]\nargs = [{ name = "FILE", type = "file", max = 4 }]\n')
    pol = pol._replace(settings=pol.settings._replace(search_path=(os.path.dirname(shutil.which("cat")),),
                                                      sandbox="off"))
    p = plan(f"cat -q -n -q {tmp_path}/f".encode(), pol)
    assert p.allowed, p.reason
    assert p.exec_argv == ("cat", "-n", f"{tmp_path}/f")
    assert [c.index for c in p.paths] == [2] and p.pass_fds == (2,)
    assert p.notes == ("note: -q is accepted and not passed on: a habit",)


# --------------------------------------------------------------------------- against the real programs


REAL = [
    "top", "top -n 1 -o %MEM -w 200", "vmstat", "vmstat 1 2", "vmstat -s -S M", "vmstat -d",
    "systemd-cgtop", "getent hosts localhost", "getent ahosts 127.0.0.1", "getent services ssh",
    "systemd-analyze calendar '*-*-* 03:00'", "systemd-analyze timespan 1h30m", "whoami",
    "readlink -f /proc/self/exe",
]


@pytest.mark.parametrize("command", REAL)
def test_the_real_program_accepts_the_planned_argv(tmp_path, command):
    """The forced and added words are ones the real tool takes (this machine's procps,
    glibc, systemd): the planned argv runs and ends on its own, well inside the time limit."""
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from conftest import write_stub_policy

    bindir = tmp_path / "bin"
    bindir.mkdir()
    name = command.split()[0]
    real = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if real is None:
        pytest.skip(f"{name} is not installed here")
    os.symlink(real, bindir / name)
    pol = load(str(write_stub_policy(tmp_path, "web-02.toml", bindir)))
    p = plan(command.encode(), pol)
    assert p.allowed, p.reason
    out = subprocess.run([p.executable, *p.exec_argv[1:]], capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                         env=dict(p.env))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip()


# --------------------------------------------------------------------------- help for agents


def _tokens(text: str) -> int:
    """A generous token count: every word and every punctuation mark is one."""
    import re

    return len(re.findall(r"\w+|[^\w\s]", text))


def test_help_brief_fits_an_agents_context_and_names_everything(web02):
    from diag_wrapper import helptext

    assert plan(b"help --brief", web02).decision == "help"
    text = helptext.render(web02, "--brief")
    assert _tokens(text) <= 2000, _tokens(text)
    for name in (*web02.commands, *web02.filters, *web02.services):
        assert name in text, name


def test_help_json_is_the_policy_as_data(web02):
    import json

    from diag_wrapper import helptext

    data = json.loads(helptext.render(web02, "--json"))
    assert set(data["commands"]) == set(web02.commands) and set(data["filters"]) == set(web02.filters)
    assert [d["path"] for d in data["deny"]] == [e.path for e in web02.deny]
    assert data["commands"]["systemctl"]["default_subcommand"] == "list-units"
    assert data["commands"]["ip"]["aliases"]["a"] == "address"
    assert any(o["drop"] for o in data["commands"]["journalctl"]["options"])
    assert data["services"]["n8n"]["probes"] == ["http://127.0.0.1:5678/healthz", "http://127.0.0.1:5678/healthz/readiness"]


def test_help_has_a_recipe_per_service_and_the_probes(web02):
    from diag_wrapper import helptext

    text = helptext.render(web02, "services")
    for name, svc in web02.services.items():
        assert f"{name}: {svc.summary}" in text
        for c in svc.commands:
            assert f"$ {c}" in text
    one = helptext.render(web02, "invidious-companion")
    assert "CONTAINER_NAME" in one and "matrix" not in one
    probes = helptext.render(web02, "probes")
    assert all(p.url in probes for s in web02.services.values() for p in s.probes)
    full = helptext.render(web02)
    assert "Services of this host" in full and "Examples:" in full and "with no subcommand: systemctl list-units" in full


def test_cli_help_takes_brief_and_json(tmp_path, web02):
    import json

    from diag_wrapper.cli import main

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["help", "--policy", web02.sources[-1], "--json"]) == 0
    assert "commands" in json.loads(buf.getvalue())
    with contextlib.redirect_stderr(io.StringIO()):
        assert main(["help", "--policy", web02.sources[-1], "--json", "--brief"]) == 2
