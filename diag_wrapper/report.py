"""Fixed reports, the wrapper's side: root-only facts the agent asks for by name (README "Reports").

The operator writes each report in the host's configuration (``services.diag.reports``):
one fixed command, and a socket unit listening on ``/run/diag-reports/NAME.sock`` that
only the diag group may connect to. For every connection systemd starts one instance of
the report's service, which runs the command through ``diag-wrapper collect`` (collect.py)
and reads nothing the client sends. The agent chooses only which report runs.

``report NAME`` is planned like any command (plan.py): the stage the supervisor runs is
this module's :func:`main`, under the interpreter that runs the wrapper, with the
command's limits, its output through the supervisor's cap and net (no kernel wall: it
reads no path). After the start record, :func:`connect` opens the connection and puts
its descriptor in the stage's argv; a socket that is not there or does not answer is a
deny with a code, in the closing record.

The reply is a stream of frames, ``KIND LENGTH(4 bytes, big-endian) PAYLOAD``: ``S``
(the collector started), ``D`` (its standard output), ``E`` (its standard error), ``X``
(how it ended: JSON ``{"reason": "exit"|"timeout"|"cut", "status": N}``), so nothing
the collector prints can pass for the end of the report.
"""

import json
import os
import socket
import struct
import sys

from .model import Deny, Plan

START, DATA, ERR, EXIT = b"S", b"D", b"E", b"X"
MAX_FRAME = 1 << 16  # payload bytes of one frame
EXIT_TIMEOUT, EXIT_CUT = 124, 141  # as the supervisor's own (supervise.py)
EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: the reply ended before the collector's end; try again
EXIT_MALFORMED = 70  # EX_SOFTWARE: what came back is not a report
PEER_UID = 0  # who must listen on a report's socket: systemd, as root


def peer(s: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the other end of a connected Unix socket (SO_PEERCRED)."""
    pid, uid, gid = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return pid, uid, gid


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    assert len(payload) <= MAX_FRAME
    return kind + struct.pack(">I", len(payload)) + payload


def connect(p: Plan) -> Plan:
    """The effect for a report's plan: connect to its socket, hand the descriptor to the stage.

    Called after the start record (run.py): the connection is what starts the collector.
    Nothing is ever sent (the write side is shut at once). ENOENT and ECONNREFUSED: the
    report's socket unit is not running here; EAGAIN: its queue is full; EACCES: this user
    is not in the socket's group. The other end must be root's (SO_PEERCRED: systemd made
    the socket), or nothing is read."""
    if p.connect is None:
        return p
    path = p.exec_argv[p.connect]
    name = p.argv[1]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        s.setblocking(False)  # AF_UNIX connects at once, or EAGAIN when the listener's queue is full
        s.connect(path)
        s.setblocking(True)
        s.shutdown(socket.SHUT_WR)
        uid = peer(s)[1]
        if uid != PEER_UID:
            s.close()
            raise Deny("report.refused", f"report {name}: {path} is not root's socket (its listener is uid {uid});"
                       " nothing was read from it", p.rule)
    except BlockingIOError:  # EAGAIN: its queue is full (the socket is pacing a flood)
        s.close()
        raise Deny("report.unavailable", f"report {name} is busy: its socket's queue is full (more requests than"
                   " it takes at once); try again in a few seconds", p.rule) from None
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        s.close()
        raise Deny("report.unavailable", f"report {name}: nothing answers at {path} ({_why(exc)}): its socket unit"
                   f" diag-report-{name}.socket is not running on this host (not enabled here, stopped, or"
                   " resting after too many requests); 'report' lists what is, systemctl status"
                   f" diag-report-{name}.socket says why", p.rule) from None
    except PermissionError as exc:
        s.close()
        raise Deny("report.refused", f"report {name}: {path} refuses this user ({_why(exc)}): only the diag"
                   " group may connect; the host's configuration must give the socket that group", p.rule) from None
    except OSError as exc:
        s.close()
        raise Deny("report.unavailable", f"report {name}: {path}: {_why(exc)}", p.rule) from None
    fd = s.detach()
    os.set_inheritable(fd, True)
    argv = list(p.exec_argv)
    argv[p.connect] = f"fd={fd}"
    return p._replace(exec_argv=tuple(argv), fds=(*p.fds, fd))


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or type(exc).__name__


# --------------------------------------------------------------------------- the stage


def _say(name: str, line: str) -> None:
    _write(2, f"diag-wrapper: report {name}: {line}\n".encode())


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read(fd: int, n: int) -> bytes:
    """Exactly n bytes, or fewer at the end of the stream."""
    out = b""
    while len(out) < n:
        chunk = os.read(fd, n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def main(argv: list[str]) -> int:
    """The decoder stage: ``NAME fd=N``. Copies the collector's output to 1 and 2, exits as it ended."""
    name, sock = argv[0], argv[1]
    fd = int(sock.removeprefix("fd="))
    started = False
    try:
        while True:
            head = _read(fd, 5)
            if len(head) < 5:  # the end of the stream (or a cut header): no end frame came
                break
            kind, length = head[:1], struct.unpack(">I", head[1:])[0]
            if length > MAX_FRAME or kind not in (START, DATA, ERR, EXIT):
                _say(name, "the reply is not a report (a bad frame); nothing more is read")
                return EXIT_MALFORMED
            payload = _read(fd, length)
            if len(payload) < length:
                break
            if kind == START:
                started = True
            elif kind == DATA:
                _write(1, payload)
            elif kind == ERR:
                _write(2, payload)
            else:
                return _ended(name, payload)
    except BrokenPipeError:  # the supervisor or the client went away; it reports that itself
        return 141
    except OSError as exc:  # ECONNRESET: the socket unit was stopped with this connection queued
        _say(name, f"the connection was reset ({exc.strerror or exc}): the report's socket was stopped or"
             " restarted (a flood rests it, a deployment restarts it); try again in a few seconds")
        return EXIT_INCOMPLETE
    if not started:
        _say(name, "the socket closed the connection before the collector started: the report is busy (its"
             " socket takes only a few connections at once) or resting after too many requests; try again in"
             " a few seconds")
    else:
        _say(name, "the collector was stopped before it finished (its unit's RuntimeMaxSec, or the service was"
             f" stopped); what it printed is above; journalctl -t diag-report-{name} says more")
    return EXIT_INCOMPLETE


def _ended(name: str, payload: bytes) -> int:
    try:
        end = json.loads(payload)
        reason, status = end["reason"], end.get("status", 0)
        if type(status) is not int or not 0 <= status <= 255:
            raise ValueError(status)
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
        _say(name, "the reply is not a report (a bad end frame)")
        return EXIT_MALFORMED
    if reason == "timeout":
        _say(name, f"the collector was stopped at its time limit ({end.get('limit', '?')} s, set in the host's"
             " configuration); what it printed is above")
        return EXIT_TIMEOUT
    if reason == "cut":
        _say(name, f"the output was cut at the report's limit of {end.get('limit', '?')} bytes (set in the"
             " host's configuration)")
        return EXIT_CUT
    if reason != "exit":
        _say(name, f"the reply is not a report (an end of kind {reason!r})")
        return EXIT_MALFORMED
    if status:
        _say(name, f"the collector exited with status {status}; journalctl -t diag-report-{name} shows its runs")
    return status


if __name__ == "__main__":  # pragma: no cover - the stage runs main() through plan.REPORT_STAGE
    sys.exit(main(sys.argv[1:]))
