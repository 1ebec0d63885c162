"""Real-program harness for the end-to-end tests (root only, no mocks).

* ``Namespace``: a holder process (``unshare -m --propagation private``) whose
  private mount namespace has a fresh tmpfs on ``/run`` (and on
  ``/var/log/journal`` when that exists), so the journald and sshd started in
  it never touch the host's journal, sockets or ``/run/sshd``. Everything else
  (``/usr``, ``/etc``, ``/home``, ``/tmp``) is shared with the host. Other
  programs join it with ``nsenter -t <holder pid> -m``. When the holder and its
  guests exit, the namespace and all its mounts disappear.
* ``Journald``: ``/lib/systemd/systemd-journald`` run standalone in that
  namespace (volatile storage, no kmsg/syslog/wall forwarding, via a drop-in
  in ``/run/systemd/journald.conf.d``); read back with ``journalctl -o json``
  through nsenter. It can be stopped and started again (fail-closed tests).
* ``Sshd``: ``/usr/sbin/sshd -D -e -f <cfg>`` in the same namespace, listening
  on 127.0.0.1 only, with a generated host key and the hardened config the
  NixOS module produces (``Match User`` + ``ForceCommand``, no forwarding, no
  TTY, ``ExposeAuthInfo yes``).
* ``LoginUser``: an unprivileged login user (``/bin/bash``, in
  ``systemd-journal``) created with useradd and removed with userdel.
* ``BootedSystemd``: this machine's systemd as PID 1 of a private PID + mount +
  cgroup namespace (its own /run, cgroup file systems mounted afresh, accounting
  off), running journald, the D-Bus system bus and a stand-in service from unit
  files of our own (``SYSTEMD_UNIT_PATH``); powered off and its cgroups removed
  at the end. It is how ``systemctl`` gets a real systemd to talk to here.
* ``build_venv``: a venv from Debian's ``/usr/bin/python3`` (which the test user
  can execute) with the repository pip-installed non-editably.

Every start has a matching stop; the stops are idempotent and never raise, so
fixtures can call them all in ``finally`` blocks.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"
SSHD = "/usr/sbin/sshd"
SYSTEM_PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]

JOURNALD_CONF = """\
[Journal]
Storage=volatile
ReadKMsg=no
ForwardToSyslog=no
ForwardToKMsg=no
ForwardToConsole=no
ForwardToWall=no
RateLimitIntervalSec=0
"""

SETUP_SCRIPT = r"""
set -eu
mount -t tmpfs -o mode=0755,size=64m diag-e2e-run /run
mkdir -p /run/systemd/journal /run/systemd/journald.conf.d /run/log/journal /run/sshd
chmod 0755 /run/sshd
chgrp systemd-journal /run/log/journal
chmod 2755 /run/log/journal
cat > /run/systemd/journald.conf.d/diag-e2e.conf
if [ -d /var/log/journal ]; then
    mount -t tmpfs -o mode=2755,size=16m diag-e2e-varlog /var/log/journal
fi
echo ready
exec sleep 86400
"""


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child if pytest dies (PR_SET_PDEATHSIG), so a killed test
    run cannot leave journald, sshd or the namespace holder behind."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def make_workdir(prefix: str = "diag-e2e-") -> Path:
    """A world-readable temp dir; also removes ones left by killed runs (owner pid gone)."""
    tmp = Path(tempfile.gettempdir())
    for old in tmp.glob(f"{prefix}*"):
        owner = old / "owner.pid"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(pid):
            shutil.rmtree(old, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    work.chmod(0o755)
    (work / "owner.pid").write_text(str(os.getpid()))
    return work


def missing_programs() -> list[str]:
    needed = [JOURNALD, SSHD, SYSTEM_PYTHON, "/usr/bin/unshare", "/usr/bin/nsenter",
              "/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/sbin/useradd", "/usr/sbin/userdel",
              "/usr/bin/journalctl"]
    return [p for p in needed if not os.access(p, os.X_OK)]


def _kill(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """Stop one process we started (by its pid) and reap it."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.terminate()
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def _wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not come up (exit {proc.poll() if proc else '?'}):\n{detail}")


# --------------------------------------------------------------------------- namespace

class Namespace:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> "Namespace":
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", SETUP_SCRIPT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(JOURNALD_CONF.encode())
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            rest = self.proc.stdout.read() if self.proc.poll() is not None else b""
            self.stop()
            raise RuntimeError(f"namespace setup failed: {(line + rest).decode(errors='replace')}")
        return self

    def nsenter(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "--", *argv]

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(self.nsenter(argv), **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.nsenter(argv), start_new_session=True,
                                preexec_fn=_die_with_parent, **kw)

    def path(self, inside: str) -> Path:
        """A path inside the namespace, as seen from outside (root only)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def stop(self) -> None:
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()
        _kill(self.proc)


# --------------------------------------------------------------------------- journal reading

class JournalReader:
    """Reads a journal through ``self.run`` (journalctl, wherever it must run) after
    ``self.sync()``; shared by the standalone journald and the booted systemd."""

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        raise NotImplementedError

    def sync(self) -> None:
        raise NotImplementedError

    def entries(self, *matches: str, after: str | None = None) -> list[dict]:
        argv = ["journalctl", "-o", "json", "--no-pager", "--all"]
        if after:
            argv.append(f"--after-cursor={after}")
        argv.extend(matches)
        res = self.run(argv, timeout=30)
        if res.returncode not in (0, 1):
            raise RuntimeError(f"journalctl failed: {res.stderr.decode(errors='replace')}")
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def cursor(self) -> str | None:
        self.sync()
        res = self.run(["journalctl", "-o", "json", "--no-pager", "-n", "1"])
        lines = [line for line in res.stdout.splitlines() if line.strip()]
        return json.loads(lines[-1])["__CURSOR"] if lines else None

    def records_since(self, cursor: str | None, expect: int = 1, timeout: float = 5.0,
                      identifier: str = "diag-wrapper", ends: bool = False) -> list[dict]:
        """diag-wrapper records after *cursor*; waits (up to *timeout*) for *expect* of them.

        The decision records only, unless ``ends``: then the closing records of executed
        commands (``DIAG_DECISION=end``) too."""
        deadline = time.monotonic() + timeout
        while True:
            self.sync()
            # No journal match together with --after-cursor: journalctl 252 skips
            # "cursor + 1" entries *of the filtered view*, losing the first match.
            recs = [e for e in self.entries(after=cursor) if e.get("SYSLOG_IDENTIFIER") == identifier
                    and (ends or e.get("DIAG_DECISION") != "end")]
            if len(recs) >= expect or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)


# --------------------------------------------------------------------------- journald

class Journald(JournalReader):
    SOCKET = "/run/systemd/journal/socket"

    def __init__(self, ns: Namespace, log: Path) -> None:
        self.ns = ns
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Journald":
        sock = self.ns.path(self.SOCKET)
        # A stale socket from a stopped journald would look "up" below.
        if sock.exists():
            sock.unlink()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_TARGET": "console"}
        with open(self.log, "ab") as log:
            self.proc = self.ns.popen([JOURNALD], stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=log, env=env)
        _wait_for(lambda: sock.exists() and self.ns.path("/run/systemd/journal/io.systemd.journal").exists(),
                  15, "systemd-journald", self.proc, self.log)
        self.sync()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _kill(self.proc)

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return self.ns.run(argv, **kw)

    def sync(self) -> None:
        if self.running:
            self.run(["journalctl", "--sync"], timeout=15)


def procs_with(needle: str) -> list[int]:
    """Pids of the processes whose argv holds ``needle``, seen from here (outside any PID
    namespace the wrapper made): how the tests find what a command left running."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out.append(int(pid))
            except OSError:
                pass
    return out


@contextlib.contextmanager
def private_journald(workdir: Path):
    """A Namespace with a Journald in it, both stopped on the way out (the one journald
    fixture: tests/root/conftest.py and the e2e session use it)."""
    ns = journald = None
    try:
        ns = Namespace(workdir).start()
        journald = Journald(ns, workdir / "journald.log").start()
        yield journald
    finally:
        if journald is not None:
            journald.stop()
        if ns is not None:
            ns.stop()


# --------------------------------------------------------------------------- users

class LoginUser:
    COMMENT = "diag-wrapper e2e test user"

    def __init__(self, prefix: str = "diage2e") -> None:
        self.name = f"{prefix}{secrets.token_hex(3)}"
        self.created = False

    @classmethod
    def remove_stale(cls, prefix: str = "diage2e") -> None:
        """Remove test users left by a killed run: marked by our GECOS comment, and the
        pytest process that created them is gone (a concurrent run's user is kept)."""
        for entry in pwd.getpwall():
            if not (entry.pw_name.startswith(prefix) and entry.pw_gecos.startswith(cls.COMMENT)):
                continue
            owner = entry.pw_gecos.rpartition("pid ")[2]
            if owner.isdigit() and _alive(int(owner)):
                continue
            stale = cls.__new__(cls)
            stale.name, stale.created = entry.pw_name, True
            stale.remove()

    def create(self) -> "LoginUser":
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "systemd-journal",
             "--user-group", "--password", "*", "--comment", f"{self.COMMENT} pid {os.getpid()}",
             self.name],
            check=True, capture_output=True,
        )
        self.created = True
        return self

    @property
    def pw(self) -> pwd.struct_passwd:
        return pwd.getpwnam(self.name)

    @property
    def home(self) -> Path:
        return Path(self.pw.pw_dir)

    def authorize(self, pubkey: str, options: str) -> None:
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(f"{options} {pubkey.strip()}\n")
        keys.chmod(0o600)
        for p in (ssh_dir, keys):
            os.chown(p, self.pw.pw_uid, self.pw.pw_gid)

    def pids(self) -> list[int]:
        uid = self.pw.pw_uid
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        found.append(int(entry))
                except OSError:
                    pass
        return found

    def remove(self) -> None:
        if not self.created:
            return
        try:
            for pid in self.pids():  # only processes running as our own test user
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        except KeyError:
            pass
        subprocess.run(["userdel", "--remove", "--force", self.name], capture_output=True)
        self.created = False


# --------------------------------------------------------------------------- keys, venv

def keygen(path: Path, comment: str) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True)
    return path.with_suffix(path.suffix + ".pub").read_text()


def fingerprint_of(pubkey_file: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(pubkey_file)], check=True,
                         capture_output=True, text=True).stdout
    return out.split()[1]


def build_venv(dest: Path, repo: Path = REPO) -> Path:
    """venv from Debian's python with the repo pip-installed (non-editable); returns its python."""
    src = dest / "src"
    src.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py"):
        if (repo / name).exists():
            shutil.copy2(repo / name, src / name)
    shutil.copytree(repo / "diag_wrapper", src / "diag_wrapper",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if not (src / "README.md").exists():
        (src / "README.md").write_text("diag-wrapper\n")
    venv = dest / "venv"
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", str(venv)], check=True, capture_output=True)
    res = subprocess.run([str(venv / "bin" / "pip"), "install", "--no-input", "--quiet", str(src)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"pip install of the repo into the e2e venv failed:\n{res.stdout}\n{res.stderr}")
    shutil.rmtree(src)
    return venv / "bin" / "python"


def chmod_world_readable(root: Path) -> None:
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(0.5)
            return s.recv(4).startswith(b"SSH-")
    except OSError:
        return False


# --------------------------------------------------------------------------- sshd

SSHD_CONFIG = """\
# Like the NixOS module's output: the diag user gets only the wrapper.
Port {port}
ListenAddress 127.0.0.1
AddressFamily inet
HostKey {host_key}
PidFile none
UsePAM no
UseDNS no
StrictModes yes
LogLevel VERBOSE
PermitRootLogin no
AllowUsers {user}
PubkeyAuthentication yes
AuthenticationMethods publickey
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile .ssh/authorized_keys
PermitUserEnvironment no
PermitUserRC no
ExposeAuthInfo yes
AllowTcpForwarding no
AllowStreamLocalForwarding no
AllowAgentForwarding no
X11Forwarding no
PermitTunnel no
GatewayPorts no
PermitTTY no

Match User {user}
    ForceCommand {wrapper}
    AllowTcpForwarding no
    AllowStreamLocalForwarding no
    AllowAgentForwarding no
    X11Forwarding no
    PermitTTY no
    PermitTunnel no
"""


class Sshd:
    def __init__(self, ns: Namespace, workdir: Path, user: str, wrapper: str) -> None:
        self.ns = ns
        self.workdir = workdir
        self.user = user
        self.wrapper = wrapper
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log = workdir / "sshd.log"
        self.config = workdir / "sshd_config"
        self.host_key = workdir / "ssh_host_ed25519_key"

    def start(self) -> "Sshd":
        if not self.host_key.exists():
            keygen(self.host_key, "diag-e2e host key")
        for attempt in range(5):
            self.port = free_port()
            self.config.write_text(SSHD_CONFIG.format(
                port=self.port, host_key=self.host_key, user=self.user, wrapper=self.wrapper))
            test = self.ns.run([SSHD, "-t", "-f", str(self.config)])
            if test.returncode != 0:
                raise RuntimeError(f"sshd -t: {test.stderr.decode(errors='replace')}")
            with open(self.log, "ab") as log:
                self.proc = self.ns.popen([SSHD, "-D", "-e", "-f", str(self.config)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            try:
                _wait_for(lambda: port_open(self.port), 10, "sshd", self.proc, self.log)
                return self
            except RuntimeError:
                if self.proc.poll() is None:
                    raise
                if "Address already in use" not in self.log.read_text(errors="replace"):
                    raise
        raise RuntimeError("sshd: no free port")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        _kill(self.proc)


class SshClient:
    def __init__(self, sshd: Sshd, user: str, key: Path) -> None:
        self.sshd = sshd
        self.user = user
        self.key = key

    def argv(self, *options: str) -> list[str]:
        return [
            "ssh", "-F", "/dev/null",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"IdentityFile={self.key}",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
            "-p", str(self.sshd.port), *options, "--", f"{self.user}@127.0.0.1",
        ]

    def run(self, command: str | bytes | None, *options: str, timeout: float = 30,
            stdin_open: bool = False) -> subprocess.CompletedProcess:
        """One ssh connection. stdin is /dev/null, or (stdin_open) a pipe that never hits EOF,
        as an interactive user's terminal would be (with -tt and EOF on stdin the client
        hangs up before the exit status arrives)."""
        argv: list = self.argv(*options)
        if command is not None:
            argv.append(command)
        if not stdin_open:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        r, w = os.pipe()
        try:
            return subprocess.run(argv, stdin=r, capture_output=True, timeout=timeout)
        finally:
            os.close(r)
            os.close(w)


# --------------------------------------------------------------------------- systemd as PID 1

SYSTEMD = "/lib/systemd/systemd"

# Run by `unshare --pid --fork --mount --cgroup --mount-proc` (so as PID 1 of a new PID
# namespace) from a cgroup made for it: private /run and /var/log/journal, the cgroup
# file systems mounted afresh (in the new cgroup namespace they show only our own
# subtree), resource accounting off (no v1 controller is touched), then systemd.
BOOT_SCRIPT = r"""
set -eu
units=$1 layout=$2
mount -t tmpfs -o mode=0755,size=64m diag-boot-run /run
if [ -d /var/log/journal ]; then
    mount -t tmpfs -o mode=2755,size=16m diag-boot-varlog /var/log/journal
fi
if [ "$layout" = hybrid ]; then
    mount -t tmpfs -o mode=0755 diag-boot-cgroup /sys/fs/cgroup
    mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
    mount -t cgroup -o none,name=systemd,xattr cgroup /sys/fs/cgroup/systemd
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
else
    mount -t cgroup2 cgroup2 /sys/fs/cgroup
fi
mkdir -p /run/systemd/system.conf.d /run/systemd/journald.conf.d /run/log/journal
# What systemd-tmpfiles does at boot: the journal readable by the systemd-journal group.
chgrp systemd-journal /run/log/journal
chmod 2755 /run/log/journal
cat > /run/systemd/journald.conf.d/diag-e2e.conf  # JOURNALD_CONF, on stdin
printf '[Manager]\nDefaultCPUAccounting=no\nDefaultIOAccounting=no\nDefaultIPAccounting=no\nDefaultMemoryAccounting=no\nDefaultTasksAccounting=no\nShowStatus=no\n' \
    > /run/systemd/system.conf.d/diag-e2e.conf
# If the unshare process above us dies (a killed test run), the kernel kills systemd, and
# with it, as PID 1, everything in the namespace.
exec setpriv --pdeathsig KILL env -i container=diag-e2e SYSTEMD_UNIT_PATH="$units" \
    PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$0" --system --unit=diag-e2e.target --log-target=console --log-level=notice
"""

BOOT_UNITS = {
    "diag-e2e.target": """\
[Unit]
Description=diag-wrapper e2e boot
Wants=systemd-journald.socket systemd-journald.service dbus.socket dbus.service {service}
After=systemd-journald.service dbus.service
""",
    "{service}": """\
[Unit]
Description=stand-in for the real {name}
After=systemd-journald.socket

[Service]
ExecStart=/bin/sh -c 'echo "{marker}"; exec sleep infinity'
StandardOutput=journal
""",
}


def cgroup_layout() -> str:
    """'hybrid' (cgroup v1 with a named systemd hierarchy + unified) or 'unified' (cgroup2 only)."""
    return "hybrid" if os.path.isdir("/sys/fs/cgroup/unified") else "unified"


class BootedSystemd(JournalReader):
    """systemd as PID 1 of a private PID + mount + cgroup namespace, with journald, the
    D-Bus system bus and one stand-in service, all from this machine's packages.

    Commands join it with ``nsenter -t <pid> -m -p``: they see its /run (its bus and
    journal sockets), its processes and nothing of the host's /run. A stand-in unit
    named like one of web-02's services logs *marker* once, so ``journalctl -u`` and
    ``systemctl status`` have something of theirs to show.
    """

    def __init__(self, workdir: Path, service: str, marker: str, secret: str | None = None,
                 env_canary: str | None = None, extra_units: dict[str, str] | None = None) -> None:
        self.extra_units = dict(extra_units or {})  # more units, started with the target
        self.workdir = workdir
        self.service = service
        self.marker = marker
        self.secret = secret  # put in a mode-0600 drop-in: Environment= and SetCredential=
        self.env_canary = env_canary  # in a world-readable drop-in's Environment= (the net's case)
        self.log = workdir / "systemd-boot.log"
        self.units = workdir / "boot-units"
        self.cgroups: list[Path] = []
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        """systemd's pid as the host sees it (the only child of the unshare process)."""
        assert self.proc is not None
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        if not children:
            raise RuntimeError("systemd is not running")
        return int(children[0])

    def _write_units(self) -> None:
        self.units.mkdir(exist_ok=True)
        for unit in ("systemd-journald.socket", "systemd-journald-dev-log.socket",
                     "systemd-journald.service", "dbus.socket", "dbus.service"):
            text = Path("/lib/systemd/system", unit).read_text()
            # A container has no OOM score to lower, nor kernel log to read.
            text = "\n".join(l for l in text.splitlines() if not l.startswith(("OOMScoreAdjust=",)))
            (self.units / unit).write_text(text + "\n")
        name = self.service.removesuffix(".service")
        for key, text in BOOT_UNITS.items():
            text = text.format(service=self.service, name=name, marker=self.marker)
            wanted = [u for u in self.extra_units if "@." not in u and "/" not in u]  # not templates
            if key.endswith(".target") and wanted:
                text = text.replace("Wants=", "Wants=" + " ".join(wanted) + " ", 1)
            (self.units / key.format(service=self.service)).write_text(text)
        for unit, text in self.extra_units.items():
            (self.units / unit).write_text(text)
        # What units with default dependencies need to be startable later (a socket's
        # connection service is enqueued alone, and its Requires=sysinit.target must exist).
        for target in ("sysinit.target", "basic.target", "sockets.target", "shutdown.target"):
            if not (self.units / target).exists():
                (self.units / target).write_text("[Unit]\nDescription=stand-in (diag-wrapper e2e)\n")
        chmod_world_readable(self.units)
        if self.secret:
            dropin = self.units / f"{self.service}.d"
            dropin.mkdir(exist_ok=True)
            conf = dropin / "50-secret.conf"
            conf.write_text(f"[Service]\nEnvironment=N8N_ENCRYPTION_KEY={self.secret}\n"
                            f"SetCredential=token:{self.secret}\nStandardInputText={self.secret}\n"
                            f"LogExtraFields=TOKEN={self.secret}x\n")
            conf.chmod(0o600)  # systemd reads it as root; over D-Bus any user sees the values
        if self.env_canary:
            dropin = self.units / f"{self.service}.d"
            dropin.mkdir(exist_ok=True)
            conf = dropin / "40-env.conf"
            conf.write_text(f'[Service]\nEnvironment="N8N_API_KEY={self.env_canary}" "TZ=UTC"\n')
            conf.chmod(0o644)
            dropin.chmod(0o755)

    def _make_cgroups(self) -> list[Path]:
        tag = f"diag-e2e-{os.getpid()}-{secrets.token_hex(3)}"
        roots = (["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"] if cgroup_layout() == "hybrid"
                 else ["/sys/fs/cgroup"])
        for root in roots:  # left by a killed run (its systemd died with it): empty, remove
            for old in Path(root).glob("diag-e2e-*"):
                owner = old.name.split("-")[2]
                if owner.isdigit() and not _alive(int(owner)):
                    _rmdir_tree(old)
        made = []
        for root in roots:
            path = Path(root, tag)
            path.mkdir()
            made.append(path)
        return made

    def start(self) -> "BootedSystemd":
        self._write_units()
        self.cgroups = self._make_cgroups()
        procs_files = [str(c / "cgroup.procs") for c in self.cgroups]

        def enter_cgroup() -> None:  # before unshare --cgroup, so that its root is ours
            _die_with_parent()
            for f in procs_files:
                with open(f, "w") as fh:
                    fh.write("0")

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--cgroup", "--mount-proc",
                 "--propagation", "private", "--", "/bin/sh", "-c", BOOT_SCRIPT, SYSTEMD,
                 str(self.units), cgroup_layout()],
                stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True,
                preexec_fn=enter_cgroup,
            )
        assert self.proc.stdin is not None
        self.proc.stdin.write(JOURNALD_CONF.encode())
        self.proc.stdin.close()
        _wait_for(self._ready, 30, "systemd as PID 1", self.proc, self.log)
        return self

    def _ready(self) -> bool:
        try:
            res = self.run(["systemctl", "is-active", "--quiet", "diag-e2e.target", self.service,
                            "dbus.service", "systemd-journald.service"], timeout=10)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):
            return False
        return res.returncode == 0

    def nsenter(self, argv: list[str]) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-m", "-p", "--", *argv]

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(self.nsenter(argv), **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.nsenter(argv), start_new_session=True, preexec_fn=_die_with_parent, **kw)

    def sync(self) -> None:
        self.run(["journalctl", "--sync"], timeout=15)

    def stop(self) -> None:
        """Power off (systemd stops its units and removes their cgroups), then clean up."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGRTMIN + 4)  # poweroff, as a container manager asks
                self.proc.wait(timeout=20)
            except (RuntimeError, OSError, subprocess.TimeoutExpired):
                try:
                    os.kill(self.pid, signal.SIGKILL)  # PID 1 of the namespace: takes all with it
                except (RuntimeError, OSError):
                    pass
                _kill(self.proc)
        for top in self.cgroups:
            _rmdir_tree(top)


def _rmdir_tree(top: Path) -> None:
    """Remove an empty cgroup and its children (cgroup directories go by rmdir alone)."""
    for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        try:
            sub.rmdir()
        except OSError:
            pass
    try:
        top.rmdir()
    except OSError:
        pass
