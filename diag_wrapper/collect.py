"""``diag-wrapper collect NAME --timeout S --max-output BYTES -- COMMAND ...``: one run of a fixed report.

It runs in the report's service unit (``services.diag.reports``, one instance per
connection), as the report's user (root unless the host's configuration says otherwise),
with the connection as standard output and ``/dev/null`` as standard input: nothing the
client sends is ever read. It starts the command the configuration fixed (no shell, its
own process group, standard input ``/dev/null``, an environment of ``LANG`` and ``PATH``
only), frames what it prints (report.py) and ends the reply with how it ended:

* ``exit``: the command's status (128 + N for a death by signal N);
* ``timeout``: at ``--timeout`` seconds the group gets SIGTERM, SIGKILL a second later;
* ``cut``: at ``--max-output`` bytes of standard output the group is killed.

Its standard error goes to the client too (E frames), the first :data:`MAX_STDERR` bytes.
When the client goes away (its end of the connection hangs up: noticed at once, also while
the command prints nothing) the group is killed and the run ends. Each run writes one line
to its own standard error (the unit's journal): which user asked (the connection's
``SO_PEERCRED``) and how it ended. The unit's ``RuntimeMaxSec`` backs the time limit up.
"""

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

from .report import DATA, ERR, EXIT, MAX_FRAME, START, frame, peer

MAX_STDERR = 8192
GRACE = 1.0
USAGE = "usage: diag-wrapper collect NAME --timeout SECONDS --max-output BYTES -- /ABSOLUTE/COMMAND [ARG ...]"


def _parse(argv: list[str]) -> tuple[str, int, int, list[str]]:
    if "--" not in argv or len(argv) < 2:
        raise ValueError(USAGE)
    cut = argv.index("--")
    name, opts, command = argv[0], argv[1:cut], argv[cut + 1:]
    if len(opts) != 4 or opts[0::2] != ["--timeout", "--max-output"]:
        raise ValueError(USAGE)
    timeout, max_output = int(opts[1]), int(opts[3])
    if not command or not os.path.isabs(command[0]) or not 1 <= timeout <= 3600 or not 1 <= max_output <= 1 << 30:
        raise ValueError(USAGE)
    return name, timeout, max_output, command


def _peer() -> str:
    """Who is connected on standard output (the socket systemd accepted), for the log line."""
    try:
        s = socket.socket(fileno=os.dup(1))
    except OSError:
        return "no socket"
    try:
        pid, uid, _ = peer(s)
        return f"uid {uid} pid {pid}"
    except OSError:
        return "no socket"
    finally:
        s.close()


def _send(kind: bytes, data: bytes = b"") -> None:
    for i in range(0, max(len(data), 1), MAX_FRAME):
        msg = memoryview(frame(kind, data[i:i + MAX_FRAME]))
        while msg:
            msg = msg[os.write(1, msg):]


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the group, SIGKILL after GRACE; a command that SIGKILL does not end (stuck
    in the kernel, on a hung mount) is left to the unit's RuntimeMaxSec and KillMode."""
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue


def run(name: str, timeout: int, max_output: int, command: list[str]) -> tuple[str, int | None, int]:
    """(reason, status, bytes) of one run; the reply is written to standard output as it goes."""
    env = {"LANG": "C.UTF-8", "PATH": os.environ.get("PATH", "/run/current-system/sw/bin")}
    _send(START)
    try:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True, close_fds=True, env=env)
    except OSError as exc:  # the command could not be started: say so to the client
        _send(ERR, f"{command[0]}: {exc.strerror or exc}\n".encode())
        _send(EXIT, json.dumps({"reason": "exit", "status": 127}).encode())
        return "not-started", 127, 0
    assert proc.stdout is not None and proc.stderr is not None
    kinds = {proc.stdout.fileno(): DATA, proc.stderr.fileno(): ERR}
    poller = select.poll()
    for fd in kinds:
        poller.register(fd, select.POLLIN)
    poller.register(1, 0)  # the client, who never sends: POLLHUP or POLLERR when it is gone
    deadline = time.monotonic() + timeout
    sent = errs = 0
    reason = None
    try:
        while reason is None:
            left = deadline - time.monotonic()
            if left <= 0:
                reason = "timeout"
                break
            if not kinds and proc.poll() is not None:
                break
            for fd, ev in poller.poll(min(left, 0.2 if not kinds else left) * 1000):
                if fd == 1:
                    if ev & (select.POLLHUP | select.POLLERR):
                        raise BrokenPipeError("the client went away")
                    continue
                chunk = os.read(fd, MAX_FRAME)
                if not chunk:
                    poller.unregister(fd)
                    del kinds[fd]
                elif kinds[fd] == ERR:
                    if errs < MAX_STDERR:
                        _send(ERR, chunk[:MAX_STDERR - errs])
                    errs += len(chunk)
                elif sent + len(chunk) > max_output:
                    keep = max_output - sent
                    while keep > 0 and chunk[keep] & 0xC0 == 0x80:  # not inside a UTF-8 character
                        keep -= 1
                    _send(DATA, chunk[:keep])
                    sent += keep
                    reason = "cut"
                    break
                else:
                    _send(DATA, chunk)
                    sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError):
        _stop(proc)
        return "client-gone", None, sent
    if reason is not None:
        _stop(proc)
        _send(EXIT, json.dumps({"reason": reason, "limit": timeout if reason == "timeout" else max_output}).encode())
        return reason, None, sent
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever it left behind in its group
    except ProcessLookupError:
        pass
    status = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    _send(EXIT, json.dumps({"reason": "exit", "status": status}).encode())
    return "exit", status, sent


def main(argv: list[str]) -> int:
    try:
        name, timeout, max_output, command = _parse(argv)
    except ValueError as exc:
        sys.stderr.write(f"diag-wrapper collect: {exc}\n")
        return 64
    peer = _peer()
    try:
        reason, status, sent = run(name, timeout, max_output, command)
    except (BrokenPipeError, ConnectionResetError):  # gone before the command started
        reason, status, sent = "client-gone", None, 0
    sys.stderr.write(f"report {name} for {peer}: {reason}{'' if status is None else f' (status {status})'},"
                     f" {sent} bytes\n")
    return 0
