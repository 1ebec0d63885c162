"""Table tests: every rule, option form, value type and deny entry of the shipped policies.

Each row is a command string exactly as an agent would send it, and the
decision the web-02 policy must make. Denied rows name the code, so a row
cannot pass by being refused for the wrong reason.
"""

from __future__ import annotations

import os

import pytest

from diag_wrapper.model import ALLOW, DENY, HELP
from diag_wrapper.plan import plan

A = "allow"

ALLOWED = [
    # systemctl: every read-only verb, options before and after the verb
    "systemctl status",
    "systemctl status podman-invidious.service",
    "systemctl status 'n8n*'",
    "systemctl status matrix-synapse.service mautrix-telegram.service",
    "systemctl --no-pager -l status nginx",
    "systemctl status nginx -n 50 -o short-iso",
    "systemctl show nginx -p MainPID,ActiveState",
    "systemctl show --property=ActiveState --value nginx",
    "systemctl show -P ActiveState nginx",
    "systemctl cat nginx.service",
    "systemctl list-units --failed",
    "systemctl list-units --type=service --state=running",
    "systemctl list-units -t service,timer --all",
    "systemctl --failed list-units",
    "systemctl list-timers",
    "systemctl list-sockets",
    "systemctl list-unit-files 'mautrix-*'",
    "systemctl is-active n8n",
    "systemctl is-enabled zammad-web.service",
    "systemctl is-failed invidious",
    # journalctl: units, fields, times, priorities, boots, follow
    "journalctl -u n8n -n 100",
    "journalctl -u invidious-companion --since \"1 hour ago\" -p warning",
    "journalctl --since='1 hour ago' --until=now -u nginx",
    "journalctl -S -1h",
    "journalctl CONTAINER_NAME=invidious -n 100",
    "journalctl _SYSTEMD_UNIT=nginx.service _PID=1234",
    "journalctl -n",
    "journalctl -n50 -r",
    "journalctl --lines=20",
    "journalctl -fu n8n",
    "journalctl -u n8n -f",
    "journalctl -b",
    "journalctl -b -1",
    "journalctl -b -1 -k",
    "journalctl --boot=0",
    "journalctl -b 0123456789abcdef0123456789abcdef",
    "journalctl --list-boots",
    "journalctl -p err..alert -o json",
    "journalctl -p 3",
    "journalctl -g 'timeout|refused' --case-sensitive=no -u nginx",
    "journalctl -o cat --output-fields=MESSAGE,_PID",
    "journalctl -F _SYSTEMD_UNIT",
    "journalctl -N",
    "journalctl --disk-usage",
    "journalctl --facility=auth,daemon",
    "journalctl --after-cursor 's=abc;i=1'",
    "journalctl -u n8n -- _PID=1",
    # files
    "cat /etc/hostname",
    "cat -n /etc/hostname /etc/os-release",
    "cat -- /etc/hostname",
    "head -n 5 /etc/passwd",
    "head -n5 /etc/passwd",
    "head --lines=-3 /etc/passwd",
    "head -c 100 /etc/hosts",
    "tail -n 200 /var/log/nginx/error.log",
    "tail -n +10 /etc/passwd",
    "tail -f /var/log/nginx/access.log",
    "tail -Fn 20 /var/log/nginx/access.log",
    "wc -l /etc/passwd",
    "stat /etc/hostname",
    "stat -c '%U %a %s' /etc/hostname",
    "stat --printf '%s\\n' /etc/hostname",
    "ls",
    "ls -la /etc",
    "ls -lah --full-time /var/log",
    "ls --color=never /",
    "ls --sort=size /var/log",
    "ls -d /var/lib/n8n-other",
    "ls /var/lib",
    "ls -R /etc/nginx",
    "grep -i error /var/log/nginx/error.log",
    "grep -rn listen /etc/nginx",
    "grep -C 3 -m 5 'upstream timed out' /var/log/nginx/error.log",
    "grep -E 'a|b' /etc/hosts",
    "grep -- -v /etc/hosts",
    "grep --color=never -r --include='*.conf' server /etc/nginx",
    "grep ';|&<>$`*?[{}~#' /etc/hosts",
    # system state
    "df -h",
    "df -hT /",
    "df -x tmpfs,devtmpfs",
    "du -sh /var/log/nginx",
    "du -h -d 1 /var/log/nginx",
    "free -h",
    "free -wt",
    "uptime",
    "uptime -p",
    "ps aux",
    "ps -ef",
    "ps -eo pid,ppid,user,%cpu,%mem,args --sort=-%cpu",
    "ps -p 1,2 -o pid=,comm=",
    "ps -u root",
    "ps -C nginx -f",
    "ps auxf",
    "ss -tlnp",
    "ss -s",
    "ss -tan state established",
    "ss -tn 'sport = :443'",
    "ss -A tcp,udp -n",
    "ip addr",
    "ip -br addr show",
    "ip -brief link show dev eth0",
    "ip -4 -j -p addr show eth0",
    "ip route",
    "ip route show table main",
    "ip -6 route show",
    "ip neigh show",
    "ip address show dev lo",
    "findmnt /persist",
    "findmnt -no SOURCE,TARGET,FSTYPE /",
    "findmnt --target /var/log",
    "findmnt -t ext4,btrfs -J",
    "lsblk",
    "lsblk -f",
    "lsblk -o NAME,SIZE,MOUNTPOINT /dev/vda",
    "uname -a",
    "uname -r",
    "hostname",
    "hostname -s",
    "hostname -I",
    "id",
    "id -Gn",
    "id nginx",
    "date",
    "date -u",
    "date +%s",
    "date '+%Y-%m-%d %H:%M'",
    "date -d @1700000000",
    "date --iso-8601=seconds",
    "date -I",
    "networkctl status",
    "networkctl status eth0 -a",
    "networkctl list",
    "resolvectl status",
    "timedatectl status",
    "timedatectl timesync-status",
    "hostnamectl status",
]

DENIED = [
    ("journalctl -t sshd -x", "match.unknown-option"),  # catalogs fill in @FIELD@ from any field
    # ---- mutating verbs, remote hosts, other roots
    ("systemctl stop sshd", "match.unknown-subcommand"),
    ("systemctl restart nginx", "match.unknown-subcommand"),
    ("systemctl daemon-reload", "match.unknown-subcommand"),
    ("systemctl edit nginx", "match.unknown-subcommand"),
    ("systemctl set-property nginx CPUQuota=1%", "match.unknown-subcommand"),
    ("systemctl", "match.missing-subcommand"),
    ("systemctl -H root@host status", "match.unknown-option"),
    ("systemctl --host=x status", "match.unknown-option"),
    ("systemctl -M container status", "match.unknown-option"),
    ("systemctl --root=/ cat x", "match.unknown-option"),
    ("systemctl status -r", "match.unknown-option"),
    ("systemctl stat nginx", "match.unknown-subcommand"),
    ("systemctl status /dev/sda", "match.bad-value"),
    ("systemctl status -- -x", "match.bad-value"),
    ("systemctl cat", "match.too-few-args"),
    ("systemctl show -p 'Id;x' nginx", "match.bad-value"),
    ("systemctl --value=1 show nginx", "match.unexpected-value"),
    ("systemctl --fai list-units", "match.abbreviated-option"),
    # ---- journalctl: files, directories, maintenance
    ("journalctl --file=/run/secrets/x", "match.unknown-option"),
    ("journalctl --file /var/log/journal/x.journal", "match.unknown-option"),
    ("journalctl --fil=x", "match.unknown-option"),
    ("journalctl -D /run/secrets", "match.unknown-option"),
    ("journalctl --directory=/var/lib/n8n", "match.unknown-option"),
    ("journalctl --root=/", "match.unknown-option"),
    ("journalctl --image=/x.img", "match.unknown-option"),
    ("journalctl -M x", "match.unknown-option"),
    ("journalctl --vacuum-size=1", "match.unknown-option"),
    ("journalctl --vacuum-time=1s", "match.unknown-option"),
    ("journalctl --rotate", "match.unknown-option"),
    ("journalctl --flush", "match.unknown-option"),
    ("journalctl --sync", "match.unknown-option"),
    ("journalctl --relinquish-var", "match.unknown-option"),
    ("journalctl --setup-keys", "match.unknown-option"),
    ("journalctl --cursor-file=/tmp/x", "match.unknown-option"),
    ("journalctl --update-catalog", "match.unknown-option"),
    ("journalctl -e", "match.unknown-option"),
    ("journalctl --unit", "match.missing-value"),
    ("journalctl --uni=n8n", "match.abbreviated-option"),
    ("journalctl -u", "match.missing-value"),
    ("journalctl -u -n", "match.bad-value"),
    ("journalctl -n 100000000", "match.bad-value"),
    ("journalctl -p verbose", "match.bad-value"),
    ("journalctl -b foo", "match.bad-value"),
    ("journalctl --since 'now; id'", "match.bad-value"),
    ("journalctl --since='x\"y'", "parse.mismatch"),
    ("journalctl /usr/bin/sshd", "match.bad-value"),
    ("journalctl _pid=1", "match.bad-value"),
    ("journalctl -f=1", "match.unknown-option"),
    ("journalctl --follow=yes", "match.unexpected-value"),
    ("journalctl --case-sensitive maybe", "match.bad-value"),
    # ---- files: secrets by every name
    ("cat /etc/shadow", "path.denied"),
    ("cat /etc//shadow", "path.denied"),
    ("cat /etc/./shadow", "path.denied"),
    ("cat /etc/nginx/../shadow", "path.denied"),
    ("cat /etc/gshadow", "path.denied"),
    ("cat /run/secrets/x", "path.denied"),
    ("cat /run/secrets/", "path.denied"),
    ("cat /run/secrets", "path.denied"),
    ("cat /run/secrets.d/1/x", "path.denied"),
    ("cat /run/agenix/x", "path.denied"),
    ("cat /run/credentials/n8n.service/x", "path.denied"),
    ("cat /etc/ssh/ssh_host_ed25519_key", "path.denied"),
    ("cat /etc/ssh/ssh_host_rsa_key", "path.denied"),
    ("cat /persist/etc/ssh/ssh_host_ed25519_key", "path.denied"),
    ("cat /root/.bash_history", "path.denied"),
    ("cat /home/alice/.ssh/id_ed25519", "path.denied"),
    ("cat /var/lib/acme/example.org/key.pem", "path.denied"),
    ("cat /var/lib/private/n8n/.n8n/config", "path.denied"),
    ("cat /var/lib/sops-nix/key.txt", "path.denied"),
    ("cat /var/lib/microvms/web-02/persist.img", "path.denied"),
    ("cat /var/lib/containers/storage/volumes/x", "path.denied"),
    ("cat /var/lib/matrix-synapse/homeserver.signing.key", "path.denied"),
    ("cat /persist/var/lib/matrix-synapse/homeserver.signing.key", "path.denied"),
    ("cat /var/lib/mautrix-telegram/config.yaml", "path.denied"),
    ("cat /var/lib/mautrix-whatsapp/x", "path.denied"),
    ("cat /persist/var/lib/mautrix-signal/x", "path.denied"),
    ("cat /var/lib/matrix-authentication-service/config.yaml", "path.denied"),
    ("cat /var/lib/n8n/.n8n/config", "path.denied"),
    ("cat /persist/var/lib/n8n/.n8n/config", "path.denied"),
    ("cat /var/lib/zammad/config/secrets.yml", "path.denied"),
    ("cat /persist/var/lib/zammad/x", "path.denied"),
    ("cat /var/lib/postgresql/16/base/1", "path.denied"),
    ("cat /proc/self/environ", "path.denied"),
    ("cat /proc/1/environ", "path.denied"),
    ("cat /proc/thread-self/environ", "path.denied"),
    ("cat /proc/self/root/etc/shadow", "path.denied"),
    ("cat /proc/self/cwd/x", "path.denied"),
    ("cat /proc/self/mem", "path.denied"),
    ("cat /proc/1/root/run/secrets/x", "path.denied"),
    ("cat /dev/fd/0", "path.denied"),
    ("cat /dev/stdin", "path.denied"),
    ("cat /etc/hostname /etc/shadow", "path.denied"),
    ("head -n 1 /etc/shadow", "path.denied"),
    ("tail /var/lib/n8n/x", "path.denied"),
    ("wc -c /etc/shadow", "path.denied"),
    ("stat /run/secrets/x", "path.denied"),
    ("ls /run/secrets", "path.denied"),
    ("ls /var/lib/n8n", "path.denied"),
    ("ls -d /var/lib/mautrix-x", "path.denied"),
    ("grep x /etc/shadow", "path.denied"),
    ("df /run/secrets", "path.denied"),
    ("findmnt --target /run/secrets", "path.denied"),
    ("findmnt -T /run/secrets", "path.denied"),
    ("findmnt --target=/run/secrets/", "path.denied"),
    # ---- recursion over trees holding secrets
    ("ls -R /var", "path.tree-contains-denied"),
    ("ls -R /", "path.tree-contains-denied"),
    ("ls -laR /var/lib", "path.tree-contains-denied"),
    ("ls -R /var/lib/n8n", "path.denied"),
    ("grep -r x /var/lib", "path.tree-contains-denied"),
    ("grep -r x /etc", "path.tree-contains-denied"),
    ("grep -r x /", "path.tree-contains-denied"),
    ("du -sh /var/lib", "path.tree-contains-denied"),
    ("du /", "path.tree-contains-denied"),
    ("du -sh /var/log", "path.tree-contains-denied"),
    ("du -sh /persist", "path.tree-contains-denied"),
    ("du -sh /proc", "path.tree-contains-denied"),
    ("grep -r x /run", "path.tree-contains-denied"),
    # ---- options that read other files, follow links, or run things
    ("cat", "match.too-few-args"),
    ("cat -", "match.bad-value"),
    ("cat -- -", "match.bad-value"),
    ("cat ''", "match.bad-value"),
    ("cat --help", "match.unknown-option"),
    ("tail --pid=1 -f /etc/hostname", "match.unknown-option"),
    ("tail -100 /etc/hostname", "match.unknown-option"),
    ("head -n x /etc/hostname", "match.bad-value"),
    ("wc --files0-from=/etc/hostname", "match.unknown-option"),
    ("ls -L /etc", "match.unknown-option"),
    ("ls --dereference /etc", "match.unknown-option"),
    ("ls --color=always /", "match.bad-value"),
    ("ls --colo=never /", "match.abbreviated-option"),
    ("grep -f /etc/hostname x /etc/hosts", "match.unknown-option"),
    ("grep --file=/etc/hostname /etc/hosts", "match.abbreviated-option"),
    ("grep -R x /etc/nginx", "match.unknown-option"),
    ("grep --dereference-recursive x /etc/nginx", "match.unknown-option"),
    ("grep -d recurse x /etc/nginx", "match.unknown-option"),
    ("grep --exclude-from=/etc/shadow x /etc/hosts", "match.unknown-option"),
    ("grep -e x /etc/hosts", "match.unknown-option"),
    ("grep x", "match.too-few-args"),
    ("grep -r x", "match.too-few-args"),
    ("du -L /var/log", "match.unknown-option"),
    ("du --files0-from=/etc/hostname", "match.unknown-option"),
    ("du -X /etc/hostname /var/log", "match.unknown-option"),
    ("free -s 1", "match.unknown-option"),
    ("ps e", "match.bad-value"),
    ("ps auxe", "match.bad-value"),
    ("ps -E", "match.unknown-option"),
    ("ps aux x", "match.too-many-args"),
    ("ss -K", "match.unknown-option"),
    ("ss --kill", "match.unknown-option"),
    ("ss -D /tmp/x", "match.unknown-option"),
    ("ss -F /etc/shadow", "match.unknown-option"),
    ("ss -N other", "match.unknown-option"),
    ("ss -r", "match.unknown-option"),
    ("ss -E", "match.unknown-option"),
    ("ip netns exec x id", "match.unknown-subcommand"),
    ("ip -n x addr", "match.unknown-option"),
    ("ip -netns x addr", "match.unknown-option"),
    ("ip -b /etc/hostname", "match.unknown-option"),
    ("ip -batch /etc/hostname", "match.unknown-option"),
    ("ip -force addr", "match.unknown-option"),
    ("ip link set eth0 down", "match.too-many-args"),
    ("ip addr add 10.0.0.1/24 dev eth0", "match.too-many-args"),
    ("ip addr flush dev eth0", "match.too-many-args"),
    ("ip route add default via 10.0.0.1", "match.too-many-args"),
    ("ip monitor", "match.unknown-subcommand"),
    ("ip a", "match.unknown-subcommand"),
    ("ip", "match.missing-subcommand"),
    ("ip addr show -4", "match.bad-value"),
    ("findmnt -F /etc/shadow", "match.unknown-option"),
    ("findmnt --tab-file=/etc/shadow", "match.unknown-option"),
    ("findmnt -p", "match.unknown-option"),
    ("hostname evil", "match.too-many-args"),
    ("hostname -F /etc/hostname", "match.unknown-option"),
    ("hostname -f", "match.unknown-option"),
    ("date -s 2020-01-01", "match.unknown-option"),
    ("date --set=2020-01-01", "match.unknown-option"),
    ("date 010100002020", "match.bad-value"),
    ("date -f /etc/shadow", "match.unknown-option"),
    ("date -r /etc/shadow", "match.unknown-option"),
    ("networkctl reload", "match.unknown-subcommand"),
    ("networkctl down eth0", "match.unknown-subcommand"),
    ("resolvectl query example.org", "match.unknown-subcommand"),
    ("resolvectl flush-caches", "match.unknown-subcommand"),
    ("timedatectl set-time 2020-01-01", "match.unknown-subcommand"),
    ("hostnamectl set-hostname x", "match.unknown-subcommand"),
    ("hostnamectl hostname x", "match.unknown-subcommand"),
    ("uname -x", "match.unknown-option"),
    ("id -Z x y", "match.unknown-option"),
    # ---- programs that are not on the list at all
    ("bash -c id", "match.unknown-command"),
    ("sh", "match.unknown-command"),
    ("python3 -c 'print(1)'", "match.unknown-command"),
    ("less /etc/hostname", "match.unknown-command"),
    ("vi /etc/hostname", "match.unknown-command"),
    ("find / -exec id ;", "parse.list"),
    ("find / -name x", "match.unknown-command"),
    ("curl http://127.0.0.1/", "match.unknown-command"),
    ("podman logs invidious", "match.unknown-command"),
    ("docker ps", "match.unknown-command"),
    ("sudo id", "match.unknown-command"),
    ("env", "match.unknown-command"),
    ("timeout 1 id", "match.unknown-command"),
    ("/bin/cat /etc/hostname", "match.path-command"),
    ("./cat /etc/hostname", "match.path-command"),
    ("/run/current-system/sw/bin/journalctl", "match.path-command"),
    ("Cat /etc/hostname", "match.unknown-command"),
    ("help-me", "match.unknown-command"),
    # ---- shell constructs never reach the matcher
    ("ls; id", "parse.list"),
    ("ls && id", "parse.list"),
    ("ls || id", "parse.list"),
    ("ls & id", "parse.background"),
    ("ls | sh", "parse.pipeline"),
    ("cat /etc/hostname > /tmp/x", "parse.redirect"),
    ("cat < /etc/shadow", "parse.redirect"),
    ("cat <<EOF", "parse.heredoc"),
    ("cat $(echo /etc/shadow)", "parse.command-substitution"),
    ("cat `echo /etc/shadow`", "parse.command-substitution"),
    ("cat <(id)", "parse.process-substitution"),
    ("cat $HOME/x", "parse.parameter"),
    ("cat ${HOME}", "parse.parameter"),
    ("cat \"$HOME\"", "parse.parameter"),
    ("cat $((1+1))", "parse.arithmetic"),
    ("cat $'\\x2fetc/shadow'", "parse.ansi-c-quote"),
    ("cat $\"x\"", "parse.locale-quote"),
    ("PAGER=sh journalctl", "parse.assignment"),
    ("(id)", "parse.compound"),
    ("{ id; }", "parse.reserved-word"),
    ("! ls", "parse.reserved-word"),
    ("time ls", "parse.reserved-word"),
    ("cat /etc/*", "parse.glob"),
    ("cat /etc/host?ame", "parse.glob"),
    ("cat /etc/[s]hadow", "parse.glob"),
    ("cat /etc/{shadow,hostname}", "parse.brace"),
    ("cat ~/x", "parse.tilde"),
    ("cat ~root/.ssh/id_rsa", "parse.tilde"),
    ("ls # comment", "parse.comment"),
    ("cat 'unterminated", "parse.syntax"),
    ("", "input.empty"),
    ("ls\nid", "input.multiline"),
    ("ls\rid", "input.multiline"),
    ("ls\x00id", "input.nul"),
    ("ls\tid", "input.control"),
    ("ls \x1b[2J", "input.control"),
    ("x" * 5000, "input.too-long"),
]


@pytest.mark.parametrize("command", ALLOWED)
def test_allowed(web02, command):
    d = plan(command.encode(), web02)
    assert (d.decision, d.code) == (ALLOW, "allow"), d.reason
    assert d.executable and os.path.basename(d.executable) == d.argv[0]
    assert d.exec_argv[0] == d.argv[0]


@pytest.mark.parametrize("command,code", DENIED)
def test_denied(web02, command, code):
    d = plan(command.encode(), web02)
    assert (d.decision, d.code) == (DENY, code), d.reason
    assert d.executable is None and d.exec_argv == ()
    assert d.reason and "\n" not in d.reason


def test_invalid_utf8_is_denied(web02):
    d = plan(b"cat /etc/\xff", web02)
    assert (d.decision, d.code) == (DENY, "input.encoding")


def test_help_is_its_own_decision(web02):
    assert plan(b"help", web02).decision == HELP
    assert plan(b"help journalctl", web02).decision == HELP
    assert plan(b"help a b", web02).code == "match.unknown-command"


@pytest.mark.parametrize(
    "command,argv",
    [
        ("systemctl status nginx", ("systemctl", "--no-pager", "status", "nginx")),
        ("journalctl -u n8n -n 100", ("journalctl", "--no-pager", "-u", "n8n", "-n", "100")),
        ("cat -- /etc/hostname", ("cat", "--", "/etc/hostname")),
        ("ip -br addr", ("ip", "-br", "addr")),
        ("grep 'a b' /etc/hosts", ("grep", "a b", "/etc/hosts")),
    ],
)
def test_exec_argv_has_forced_arguments_after_the_name(web02, command, argv):
    assert plan(command.encode(), web02).exec_argv == argv


def test_environment_is_fixed_and_per_command(web02):
    d = plan(b"journalctl -n 1", web02)
    assert d.env == {
        "PATH": ":".join(web02.settings.search_path),
        "LANG": "C.UTF-8",
        "SYSTEMD_PAGER": "cat",
        "PAGER": "cat",
        "SYSTEMD_COLORS": "0",
        "LESSSECURE": "1",
        "SYSTEMD_PAGERSECURE": "1",
    }
    assert "SYSTEMD_PAGERSECURE" not in plan(b"cat /etc/hostname", web02).env


def test_time_limits(web02):
    assert plan(b"journalctl -f", web02).timeout == 60
    assert plan(b"systemctl status", web02).timeout == 30
    assert plan(b"uptime", web02).timeout == web02.settings.timeout


def test_paths_are_reported_with_their_resolved_form(web02):
    d = plan(b"grep -r x /etc/nginx/../nginx", web02)
    assert [(p.value, p.resolved, p.kind) for p in d.paths] == [("/etc/nginx/../nginx", "/etc/nginx", "tree")]
    d = plan(b"du", web02)
    assert [(p.value, p.kind) for p in d.paths] == [(".", "tree")]


def test_recursion_over_a_denied_working_directory_is_denied(web02, monkeypatch, tmp_path):
    # `du` with no operand walks the working directory: it is checked like a named tree.
    monkeypatch.chdir("/etc")
    assert plan(b"du", web02).code == "path.tree-contains-denied"
    assert plan(b"ls -R", web02).code == "path.tree-contains-denied"
    assert plan(b"ls", web02).decision == ALLOW
    monkeypatch.chdir(tmp_path)
    assert plan(b"du", web02).decision == ALLOW


def test_relative_paths_resolve_from_the_working_directory(web02, monkeypatch):
    monkeypatch.chdir("/etc")
    assert plan(b"cat shadow", web02).code == "path.denied"
    assert plan(b"cat ./ssh/../shadow", web02).code == "path.denied"
    assert plan(b"cat hostname", web02).decision == ALLOW


def test_symlinks_into_denied_places(web02, tmp_path):
    (tmp_path / "to-shadow").symlink_to("/etc/shadow")
    (tmp_path / "to-secrets").symlink_to("/run/secrets")
    (tmp_path / "to-n8n").symlink_to("/var/lib/n8n/.n8n/config")
    (tmp_path / "chain").symlink_to(tmp_path / "to-shadow")
    (tmp_path / "to-etc").symlink_to("/etc")
    for value in ["to-shadow", "to-secrets/x", "to-n8n", "chain", "to-etc/shadow", "to-etc/ssh/ssh_host_ed25519_key"]:
        d = plan(f"cat {tmp_path}/{value}".encode(), web02)
        assert d.code == "path.denied", value
    assert plan(f"grep -r x {tmp_path}/to-etc".encode(), web02).code == "path.tree-contains-denied"
    assert plan(f"cat {tmp_path}/to-etc/hostname".encode(), web02).decision == ALLOW


def test_unknown_command_lists_what_is_allowed(web02):
    d = plan(b"vim /etc/hosts", web02)
    assert "journalctl" in d.reason and "help" in d.reason


def test_decide_never_raises_on_a_broken_policy_object(web02):
    class Broken:
        settings = web02.settings
        commands = None  # a bug elsewhere must still end in a deny

    d = plan(b"cat /etc/hostname", Broken())  # type: ignore[arg-type]
    assert (d.decision, d.code) == (DENY, "internal.error")
