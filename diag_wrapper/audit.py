"""Audit: one systemd journal record per decision, written before anything runs.

``record(plan, environ)`` turns a :class:`~diag_wrapper.model.Plan`
into exactly one journal entry. The event pipeline is structlog, configured
locally (never through structlog's global configuration); the sink is
``systemd.journal.send`` from the systemd project's own Python binding.

Pipeline (each a small plain function ``(logger, method, event_dict)``):

1. ``add_session``        who and from where: DIAG_USER, DIAG_SSH_CONNECTION,
                           DIAG_SSH_CLIENT and, with ``ExposeAuthInfo yes``,
                           the login key (DIAG_AUTH_METHOD, DIAG_KEY_FINGERPRINT)
                           read from the ``SSH_USER_AUTH`` file.
2. ``add_decision``       the Plan's fields.
3. ``render_message``     one readable MESSAGE line.
4. ``escape_message``     control characters in MESSAGE become visible escapes,
                           so one record can never look like two.
5. ``to_journal_fields``  upper-case journal field names, priority, MESSAGE_ID.

Fail closed: if the record cannot be written for any reason (binding missing,
journald not running, socket missing, a bug in a processor), ``record`` raises
``Deny("audit.unavailable", ...)`` and the caller must execute nothing.

Note that libsystemd's ``sd_journal_sendv`` silently reports success when the
journal socket does not exist (ENOENT), so the socket is checked explicitly
before sending; a socket whose journald is gone fails the send itself
(ECONNREFUSED) and that error propagates.

Imports are deliberately lazy: structlog and systemd.journal are loaded on the
first ``record`` call only, so ``check``/``lint`` do not pay for them.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Mapping

from .model import Deny, Plan

SYSLOG_IDENTIFIER = "diag-wrapper"
JOURNAL_SOCKET = "/run/systemd/journal/socket"

# Fixed 128-bit message ids, one per decision kind (journalctl MESSAGE_ID=...).
MESSAGE_IDS = {
    "allow": "f771b2272ae84b1ca620140181693431",
    "deny": "a4457dbfc2f2434890babce22769dc51",
    "help": "fbde7b8f0ffa44c2ba557ea73e68429d",
    "end": "5437be3f58be4400a108a64ff8b6f69b",  # the closing record of an executed command
}
# syslog priorities: 6 = info, 4 = warning.
PRIORITIES = {"allow": 6, "help": 6, "deny": 4, "end": 6}

# The SSH_USER_AUTH file is small (one line per authentication method).
_MAX_AUTH_INFO = 64 * 1024
# sshd (session.c) makes it with mkstemp("/tmp/sshauth.XXXXXXXXXXXXXXX"), as the user, mode 0600.
_AUTH_PREFIX, _AUTH_RANDOM = "/tmp/sshauth.", 15
_METHODS = frozenset({"publickey", "password", "keyboard-interactive", "hostbased", "gssapi-with-mic",
                      "gssapi-keyex", "none"})
_KEY_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                        "ecdsa-sha2-nistp521", "sk-ecdsa-sha2-nistp256@openssh.com",
                        "sk-ssh-ed25519@openssh.com", "rsa-sha2-256", "rsa-sha2-512"})
# Record size: the command is kept once, whole (it is at most max_command_bytes when it was
# parsed at all); MESSAGE shows its start; every other field is cut.
MAX_COMMAND = 8192
MAX_IN_MESSAGE = 160
MAX_REASON = 512
MAX_FIELD = 2048

# Certificate key types -> (plain key type, number of key fields after the nonce).
_CERT_TYPES = {
    "ssh-rsa-cert-v01@openssh.com": ("ssh-rsa", 2),
    "ssh-dss-cert-v01@openssh.com": ("ssh-dss", 4),
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": ("ecdsa-sha2-nistp256", 2),
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": ("ecdsa-sha2-nistp384", 2),
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": ("ecdsa-sha2-nistp521", 2),
    "ssh-ed25519-cert-v01@openssh.com": ("ssh-ed25519", 1),
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": ("sk-ecdsa-sha2-nistp256@openssh.com", 3),
    "sk-ssh-ed25519-cert-v01@openssh.com": ("sk-ssh-ed25519@openssh.com", 2),
}


# --------------------------------------------------------------------------- escaping

def _escape_table() -> dict[int, str]:
    table = {c: f"\\x{c:02x}" for c in range(0x20)}
    table.update({c: f"\\x{c:02x}" for c in range(0x7F, 0xA0)})  # DEL and C1 (incl. NEL)
    table[0x2028] = "\\u2028"  # line separator
    table[0x2029] = "\\u2029"  # paragraph separator
    table[0x5C] = "\\\\"  # backslash, so the escaping is unambiguous
    return table


_ESCAPES = _escape_table()


def escape_control(text: str) -> str:
    """Make every control character visible: newline -> ``\\x0a``, backslash -> ``\\\\``.

    Invisible format characters (bidi overrides such as U+202E, zero-width ones) become
    ``\\uXXXX`` too, so a denied command cannot make its own record read differently.
    Lone surrogates (undecodable bytes) become ``\\udcXX`` as well.
    """
    out = text.translate(_ESCAPES)
    if not out.isascii():
        import unicodedata

        out = "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) == "Cf" else c for c in out)
    return out.encode("utf-8", "backslashreplace").decode("utf-8")


def _to_bytes(value: str) -> bytes:
    """Binary-safe field value: str from surrogateescape round-trips to its bytes."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace")


# --------------------------------------------------------------------------- login key

def _ssh_string(blob: bytes, pos: int) -> tuple[bytes, int]:
    if pos + 4 > len(blob):
        raise ValueError("truncated key blob")
    n = int.from_bytes(blob[pos:pos + 4], "big")
    end = pos + 4 + n
    if end > len(blob):
        raise ValueError("truncated key blob")
    return blob[pos + 4:end], end


def _plain_key_blob(blob: bytes) -> bytes:
    """The plain public key inside a certificate blob (what ssh-keygen fingerprints)."""
    ktype, pos = _ssh_string(blob, 0)
    cert = _CERT_TYPES.get(ktype.decode("ascii", "replace"))
    if cert is None:
        return blob
    plain_type, nfields = cert
    _nonce, pos = _ssh_string(blob, pos)
    start = pos
    for _ in range(nfields):
        _field, pos = _ssh_string(blob, pos)
    name = plain_type.encode()
    return len(name).to_bytes(4, "big") + name + blob[start:pos]


def fingerprint(key_base64: str) -> str:
    """OpenSSH SHA256 fingerprint of a base64 public key blob (``ssh-keygen -lf``)."""
    import base64
    import binascii
    import hashlib

    try:
        blob = base64.b64decode(key_base64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a base64 key blob: {exc}") from None
    digest = hashlib.sha256(_plain_key_blob(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def parse_auth_info(text: str) -> dict[str, str]:
    """Fields from an sshd ``ExposeAuthInfo`` file.

    Each line is ``METHOD [DETAILS]``; for publickey the details are
    ``KEYTYPE BASE64``. Several lines (``AuthenticationMethods`` chains) are
    joined with a space, in order.
    """
    methods: list[str] = []
    key_types: list[str] = []
    fingerprints: list[str] = []
    for line in text.splitlines()[:16]:
        words = line.split()
        if not words:
            continue
        # only names sshd writes: nothing else of the file can reach the record
        methods.append(words[0] if words[0] in _METHODS else "other")
        if words[0] == "publickey" and len(words) >= 3:
            key_types.append(words[1] if words[1] in _KEY_TYPES or words[1] in _CERT_TYPES else "other")
            try:
                fingerprints.append(fingerprint(words[2]))
            except ValueError:
                fingerprints.append("invalid")
    fields: dict[str, str] = {}
    if methods:
        fields["auth_method"] = " ".join(methods)
    if key_types:
        fields["key_type"] = " ".join(key_types)
        fields["key_fingerprint"] = " ".join(fingerprints)
    return fields


def _read_auth_info(path: str) -> dict[str, str]:
    """Read the ``ExposeAuthInfo`` file only when it is the one sshd made for this session:
    ``/tmp/sshauth.`` and 15 random characters, a regular file of our uid with one name,
    mode 0600 or stricter, opened without following a link. Anything else named by
    ``SSH_USER_AUTH`` (a variable a client might have set) is not opened at all."""
    name = path[len(_AUTH_PREFIX):]
    if not path.startswith(_AUTH_PREFIX) or len(name) != _AUTH_RANDOM or not name.isalnum() or not name.isascii():
        return {"auth_info_error": "SSH_USER_AUTH is not a file sshd made; not read"}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        return {"auth_info_error": f"SSH_USER_AUTH: {exc.strerror or exc}"}
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077
                or st.st_nlink != 1):
            return {"auth_info_error": "SSH_USER_AUTH is not a private file of this user; not read"}
        data = os.read(fd, _MAX_AUTH_INFO)
    except OSError as exc:
        return {"auth_info_error": f"SSH_USER_AUTH: {exc.strerror or exc}"}
    finally:
        os.close(fd)
    return parse_auth_info(data.decode("utf-8", "replace"))


def session(environ: Mapping[str, str]) -> dict[str, str]:
    """Who is asking and from where: the fields ``add_session`` adds (read once per run), and
    the invocation id the start and the closing record share."""
    out = {"user": _user_name(environ), "invocation": os.urandom(16).hex()}
    for var, key in (("SSH_CONNECTION", "ssh_connection"), ("SSH_CLIENT", "ssh_client")):
        if environ.get(var):
            out[key] = environ[var][:128]
    auth_path = environ.get("SSH_USER_AUTH")
    if auth_path:
        out.update(_read_auth_info(auth_path))
    return out


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + f"...[{len(text) - n} more characters]"


def _user_name(environ: Mapping[str, str]) -> str:
    """The account we run as, from the uid (the environment is only a fallback)."""
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return environ.get("USER") or environ.get("LOGNAME") or str(os.getuid())


# --------------------------------------------------------------------------- processors

def add_session(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Who is asking and from where (environ is bound into the context as ``environ``)."""
    known = event.pop("session", None)
    environ: Mapping[str, str] = event.pop("environ", None) or {}
    event.update(known if known is not None else session(environ))
    return event


def add_decision(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """The Plan, as plain values (JSON for the structured ones)."""
    import json

    d = event.pop("decision")
    event["decision"] = d.decision
    event["code"] = d.code
    event["reason"] = _cut(d.reason, MAX_REASON)
    command = bytes(d.command)
    if len(command) > MAX_COMMAND:
        event["command_bytes"] = len(command)
        command = command[:MAX_COMMAND]
    event["command"] = command  # once, whole: the words are what `check` makes of it
    event["rule"] = d.rule
    event["executable"] = d.executable
    event["paths"] = json.dumps(
        [{"value": p.value, "resolved": p.resolved, "kind": p.kind} for p in d.paths]
    ) if d.paths else None
    event["layers"] = ",".join(d.layers)
    event["filters"] = json.dumps([list(f.exec_argv) for f in d.filters]) if d.filters else None
    return event


def render_message(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """One readable line (escaped by the next processor)."""
    command = _cut(event["command"].decode("utf-8", "backslashreplace"), MAX_IN_MESSAGE)
    who = event["user"]
    client = event.get("ssh_client", "").split(" ")[0]
    if client:
        who += f" from {client}"
    if event["decision"] == "end":
        how = (f"exited {event['exit_code']}" if event.get("exit_code") is not None
               else f"killed by signal {event['signal']}" if event.get("signal") is not None
               else f"did not run ({event.get('error')})" if event.get("exit_status") == 126
               else f"failed ({event.get('error')})")
        stops = [w for w in ("cut", "timed_out", "disconnected") if event.get(w) == "1"]
        text = (f"end: {who} '{command}' {how} after {event['duration_ms']} ms, {event['bytes_out']} bytes out"
                + (f" ({', '.join(w.replace('_', ' ') for w in stops)})" if stops else ""))
    elif event["decision"] == "allow":
        text = f"allow: {who} ran '{command}' (rule {event['rule']})"
    elif event["decision"] == "help":
        text = f"help: {who} asked for help"
    else:
        text = f"deny {event['code']}: {who} tried '{command}': {event['reason']}"
        if event.get("rule"):
            text += f" [rule {event['rule']}]"
    event["message"] = text
    return event


def escape_message(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Control characters in MESSAGE become visible escapes: one record, one line."""
    event["message"] = escape_control(event["message"])
    return event


def to_journal_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Final processor: upper-case journal field names; drops unset values."""
    kind = event["decision"]
    fields: dict[str, Any] = {
        "MESSAGE": event["message"],
        "MESSAGE_ID": MESSAGE_IDS.get(kind, MESSAGE_IDS["deny"]),
        # An allow that runs without the kernel wall is a warning: the operator should know.
        "PRIORITY": "4" if "sandbox-unavailable" in str(event.get("layers", "")).split(",")
        else str(PRIORITIES.get(kind, 4)),
        "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
        # Our own location, so journal.send does not walk the stack.
        "CODE_FUNC": "diag_wrapper.audit.record",
    }
    for key, value in event.items():
        if key in ("message", "event") or value is None:
            continue
        name = "DIAG_" + key.upper()
        fields[name] = value if isinstance(value, bytes) else _to_bytes(_cut(str(value), MAX_FIELD))
    return fields


def add_outcome(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """How an executed command ended (supervise.Outcome), for the closing record."""
    p, o = event.pop("plan"), event.pop("outcome")
    event["decision"] = "end"
    event["command"] = bytes(p.command)[:MAX_COMMAND]
    event["rule"] = p.rule
    event["exit_status"] = o.status
    event["exit_code"] = o.exit_code
    event["signal"] = o.signal
    event["duration_ms"] = o.duration_ms
    event["bytes_out"] = o.bytes_out
    for flag in ("cut", "timed_out", "disconnected"):
        event[flag] = "1" if getattr(o, flag) else "0"
    event["redactions"] = sum(o.redactions.values())
    event["redacted"] = " ".join(f"{k}={v}" for k, v in sorted(o.redactions.items())) or None
    event["stages"] = " ".join(map(str, o.stages)) if len(o.stages) > 1 else None
    event["tree"] = o.tree
    event["error"] = o.error
    return event


PROCESSORS = (add_session, add_decision, render_message, escape_message, to_journal_fields)
END_PROCESSORS = (add_session, add_outcome, render_message, escape_message, to_journal_fields)


# --------------------------------------------------------------------------- sink

class JournalSink:
    """The wrapped logger: every method name sends the fields with journal.send."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.written = 0

    def _write(self, **fields: Any) -> None:
        message = fields.pop("MESSAGE")
        self._send(message, **fields)  # exceptions propagate: fail closed
        self.written += 1

    msg = info = warning = _write


def _check_socket() -> None:
    try:
        st = os.stat(JOURNAL_SOCKET)
    except OSError as exc:
        raise OSError(f"{JOURNAL_SOCKET}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{JOURNAL_SOCKET} is not a socket")


def _log(processors: tuple, environ: Mapping[str, str], known: dict[str, str] | None) -> tuple[Any, JournalSink]:
    import structlog
    from systemd import journal

    _check_socket()
    sink = JournalSink(journal.send)
    log = structlog.wrap_logger(sink, processors=list(processors), wrapper_class=structlog.BoundLogger,
                                context_class=dict, cache_logger_on_first_use=False)
    return log.bind(environ=dict(environ), session=known), sink


def record_end(plan: Plan, outcome: Any, environ: Mapping[str, str], known: dict[str, str] | None = None) -> bool:
    """The closing record of an executed command, linked to its start by DIAG_INVOCATION.

    Never raises: the command has run, its output is the agent's; a failure here is only
    reported (False), the start record was the fail-closed one."""
    try:
        log, sink = _log(END_PROCESSORS, environ, known)
        log.info("end", plan=plan, outcome=outcome)
        return sink.written == 1
    except Exception:
        return False


def record(decision: Plan, environ: Mapping[str, str], known: dict[str, str] | None = None) -> None:
    """Write exactly one journal record for *decision*, or raise Deny(audit.unavailable).

    ``known``: the :func:`session` fields, when the caller has read them already."""
    try:
        log, sink = _log(PROCESSORS, environ, known)
        getattr(log, "warning" if decision.decision == "deny" else "info")(
            "decision", decision=decision
        )
        if sink.written != 1:
            raise RuntimeError("the event pipeline dropped the record")
    except Exception as exc:  # anything at all: fail closed
        detail = str(exc) or type(exc).__name__
        raise Deny(
            "audit.unavailable",
            f"cannot write the audit record to the systemd journal ({detail}); "
            "nothing was executed",
        ) from exc
