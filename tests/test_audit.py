"""Audit: processors, field mapping, fingerprints, and records in a REAL journald."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from diag_wrapper import audit
from diag_wrapper.model import Deny, PathCheck, Plan as Decision

REPO = Path(__file__).resolve().parents[1]

ALLOW = Decision(
    "allow", "allow", "allowed by rule 'cat'", b"cat /var/log/nginx/error.log", rule="cat",
    argv=("cat", "/var/log/nginx/error.log"), exec_argv=("cat", "/var/log/nginx/error.log"),
    executable="/usr/bin/cat",
    paths=(PathCheck("/var/log/nginx/error.log", "/var/log/nginx/error.log", "file"),),
    layers=("allowlist", "path-denylist"),
)
DENY = Decision("deny", "path.denied", "/etc/shadow is a denied location (shadow passwords)",
                b"cat /etc/shadow", rule="deny:/etc/shadow", argv=("cat", "/etc/shadow"))
HELP = Decision("help", "help", "help requested", b"help", rule="help", argv=("help",))
NASTY = b"ls\nfake: allow: root ran 'rm -rf /'\r\x1b[2K\x00\xff\xfe end"


def pipeline(decision: Decision, environ: dict | None = None) -> dict:
    event = {"environ": environ or {}, "event": "decision", "decision": decision}
    for proc in audit.PROCESSORS:
        event = proc(None, "info", event)
    return event


# --------------------------------------------------------------------------- escaping

@pytest.mark.parametrize("raw, escaped", [
    ("a\nb", "a\\x0ab"),
    ("a\r\nb", "a\\x0d\\x0ab"),
    ("\x1b[31mred", "\\x1b[31mred"),
    ("del\x7f", "del\\x7f"),
    ("nel\x85", "nel\\x85"),
    ("ls\u2028x\u2029", "ls\\u2028x\\u2029"),
    ("back\\slash", "back\\\\slash"),
    ("tab\there\x00", "tab\\x09here\\x00"),
    ("plain ascii 'quoted' ünïcode", "plain ascii 'quoted' ünïcode"),
])
def test_escape_control(raw, escaped):
    assert audit.escape_control(raw) == escaped


def test_escape_is_unambiguous():
    # A literal backslash-x sequence and the control character it names stay distinct.
    assert audit.escape_control("a\\x0ab") != audit.escape_control("a\nb")


def test_escaped_text_has_no_control_characters():
    text = "".join(map(chr, range(0x00, 0x100))) + "\u2028\u2029\udcff"
    out = audit.escape_control(text)
    assert all(ord(c) >= 0x20 and not 0x7F <= ord(c) < 0xA0 for c in out)
    assert "\u2028" not in out and "\u2029" not in out
    out.encode("utf-8")  # lone surrogates escaped too


# --------------------------------------------------------------------------- field mapping

def test_allow_fields():
    f = pipeline(ALLOW, {"SSH_CONNECTION": "127.0.0.1 5555 127.0.0.1 22",
                         "SSH_CLIENT": "127.0.0.1 5555 22"})
    assert f["SYSLOG_IDENTIFIER"] == "diag-wrapper"
    assert f["PRIORITY"] == "6"
    assert f["MESSAGE_ID"] == audit.MESSAGE_IDS["allow"]
    assert f["DIAG_DECISION"] == b"allow"
    assert f["DIAG_CODE"] == b"allow"
    assert f["DIAG_RULE"] == b"cat"
    assert f["DIAG_COMMAND"] == b"cat /var/log/nginx/error.log"
    assert "DIAG_ARGV" not in f  # the command is stored once; `check` shows its words
    assert f["DIAG_EXECUTABLE"] == b"/usr/bin/cat"
    assert json.loads(f["DIAG_PATHS"]) == [
        {"value": "/var/log/nginx/error.log", "resolved": "/var/log/nginx/error.log", "kind": "file"}]
    assert f["DIAG_LAYERS"] == b"allowlist,path-denylist"
    assert f["DIAG_SSH_CONNECTION"] == b"127.0.0.1 5555 127.0.0.1 22"
    assert f["DIAG_SSH_CLIENT"] == b"127.0.0.1 5555 22"
    assert f["DIAG_USER"]
    assert f["MESSAGE"] == ("allow: " + f["DIAG_USER"].decode()
                            + " from 127.0.0.1 ran 'cat /var/log/nginx/error.log' (rule cat)")
    # Only journal-style upper-case names, nothing left over from the pipeline.
    assert all(k == k.upper() for k in f)
    assert not {"DIAG_EVENT", "DIAG_ENVIRON", "EVENT"} & set(f)


def test_deny_and_help_fields():
    d = pipeline(DENY)
    assert d["PRIORITY"] == "4" and d["MESSAGE_ID"] == audit.MESSAGE_IDS["deny"]
    assert d["DIAG_DECISION"] == b"deny" and d["DIAG_CODE"] == b"path.denied"
    assert d["DIAG_RULE"] == b"deny:/etc/shadow"
    assert d["DIAG_REASON"] == DENY.reason.encode()
    assert "DIAG_EXECUTABLE" not in d  # unset values are left out, not written empty
    assert "DIAG_SSH_CONNECTION" not in d and "DIAG_KEY_FINGERPRINT" not in d
    assert d["MESSAGE"].startswith("deny path.denied: ") and d["MESSAGE"].endswith("[rule deny:/etc/shadow]")
    h = pipeline(HELP)
    assert h["PRIORITY"] == "6" and h["MESSAGE_ID"] == audit.MESSAGE_IDS["help"]
    assert h["DIAG_DECISION"] == b"help"


def test_message_ids_are_fixed_128_bit_hex_and_distinct():
    ids = audit.MESSAGE_IDS
    assert set(ids) == {"allow", "deny", "help", "end"}
    assert len(set(ids.values())) == 4
    for v in ids.values():
        assert len(v) == 32 and int(v, 16) >= 0


def test_raw_command_is_kept_exactly_and_message_is_one_line():
    d = Decision("deny", "input.multiline", "more than one line", NASTY)
    f = pipeline(d)
    assert f["DIAG_COMMAND"] == NASTY  # bytes, exactly as received
    msg = f["MESSAGE"]
    assert "\n" not in msg and "\r" not in msg and "\x1b" not in msg and "\x00" not in msg
    assert "ls\\x0afake: allow" in msg


def test_non_utf8_text_fields_are_binary_safe():
    d = Decision("deny", "path.denied", "denied", b"cat x", rule="deny:/x",
                 argv=("cat", "/srv/\udcff"), paths=(PathCheck("/srv/\udcff", "/srv/\udcff", "file"),))
    f = pipeline(d)
    assert json.loads(f["DIAG_PATHS"]) == [{"value": "/srv/\udcff", "resolved": "/srv/\udcff", "kind": "file"}]


# --------------------------------------------------------------------------- login key

def _keygen(tmp_path: Path, kind: str, bits: str | None = None) -> Path:
    key = tmp_path / f"id_{kind}"
    argv = ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)]
    if bits:
        argv[4:4] = ["-b", bits]
    subprocess.run(argv, check=True, capture_output=True)
    return key


def _keygen_fp(pub: Path) -> str:
    return subprocess.run(["ssh-keygen", "-lf", str(pub)], check=True, capture_output=True,
                          text=True).stdout.split()[1]


@pytest.mark.parametrize("kind, bits", [("ed25519", None), ("rsa", "2048"), ("ecdsa", "256"),
                                        ("ecdsa", "521")])
def test_fingerprint_matches_ssh_keygen(tmp_path, kind, bits):
    pub = _keygen(tmp_path, kind, bits).with_suffix(".pub")
    ktype, blob = pub.read_text().split()[:2]
    assert audit.fingerprint(blob) == _keygen_fp(pub)
    info = audit.parse_auth_info(f"publickey {ktype} {blob}\n")
    assert info == {"auth_method": "publickey", "key_type": ktype, "key_fingerprint": _keygen_fp(pub)}


@pytest.mark.parametrize("kind", ["ed25519", "rsa", "ecdsa"])
def test_certificate_fingerprint_is_the_certified_key(tmp_path, kind):
    ca = _keygen(tmp_path, "ed25519")
    ca.rename(tmp_path / "ca")
    user = _keygen(tmp_path, kind)
    subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "agent", "-n", "diag",
                    str(user.with_suffix(".pub"))], check=True, capture_output=True)
    cert = tmp_path / f"id_{kind}-cert.pub"
    ktype, blob = cert.read_text().split()[:2]
    assert ktype.endswith("-cert-v01@openssh.com")
    assert audit.fingerprint(blob) == _keygen_fp(cert) == _keygen_fp(user.with_suffix(".pub"))


def test_auth_info_multiple_methods_and_garbage():
    info = audit.parse_auth_info("publickey ssh-ed25519 !!notbase64!!\n\nkeyboard-interactive\n")
    assert info == {"auth_method": "publickey keyboard-interactive", "key_type": "ssh-ed25519",
                    "key_fingerprint": "invalid"}
    assert audit.parse_auth_info("") == {}


def sshd_auth_file(text: str, mode: int = 0o600) -> Path:
    """A file where and as sshd makes it: /tmp/sshauth.<15 random>, ours, 0600."""
    import secrets
    import string

    name = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))
    path = Path("/tmp/sshauth." + name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, text.encode())
    os.close(fd)
    os.chmod(path, mode)
    return path


def test_session_reads_ssh_user_auth_file(tmp_path):
    pub = _keygen(tmp_path, "ed25519").with_suffix(".pub")
    ktype, blob = pub.read_text().split()[:2]
    auth = sshd_auth_file(f"publickey {ktype} {blob}\n")
    try:
        f = pipeline(ALLOW, {"SSH_USER_AUTH": str(auth)})
        assert f["DIAG_KEY_FINGERPRINT"] == _keygen_fp(pub).encode()
        assert f["DIAG_AUTH_METHOD"] == b"publickey"
    finally:
        auth.unlink()
    missing = pipeline(ALLOW, {"SSH_USER_AUTH": str(auth)})
    assert "DIAG_KEY_FINGERPRINT" not in missing and b"No such file" in missing["DIAG_AUTH_INFO_ERROR"]


def test_ssh_user_auth_naming_another_file_is_never_opened(tmp_path):
    # With AcceptEnv SSH_* a client could point SSH_USER_AUTH at a denied file: the first word
    # of each line used to land in DIAG_AUTH_METHOD. Only sshd's own file is read now.
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET-word rest\nsecond-SECRET line\n")
    link = Path("/tmp/sshauth." + "L" * 15)
    link.unlink(missing_ok=True)
    link.symlink_to(secret)
    group_readable = sshd_auth_file("TOPSECRET-word\n", mode=0o640)
    try:
        for path in (str(secret), "/etc/passwd", str(link), str(group_readable), "/tmp/sshauth.short",
                     "/tmp/sshauth.../../etc/passwd", "/proc/self/environ"):
            f = pipeline(ALLOW, {"SSH_USER_AUTH": path})
            assert "DIAG_AUTH_METHOD" not in f, path
            assert not any(b"SECRET" in v or b"root:" in v for v in f.values() if isinstance(v, bytes)), path
            assert "DIAG_AUTH_INFO_ERROR" in f
    finally:
        link.unlink()
        group_readable.unlink()


def test_only_known_method_names_and_key_types_are_logged():
    info = audit.parse_auth_info("TOPSECRET x y\npublickey SECRET-TYPE AAAA\npassword\n")
    assert info["auth_method"] == "other publickey password"
    assert info["key_type"] == "other"
    assert "SECRET" not in json.dumps(info)


def test_the_command_is_stored_once_and_every_field_is_capped():
    command = ("cat " + " ".join(f"/var/log/nginx/file-{i:04d}.log" for i in range(132))).encode()
    assert len(command) > 3800
    reason = "x " * 2000
    d = Decision("deny", "match.too-many-args", reason, command, rule="cat", argv=tuple(command.decode().split()))
    f = pipeline(d)
    assert f["DIAG_COMMAND"] == command
    total = sum(len(v if isinstance(v, bytes) else v.encode()) for v in f.values())
    assert total < len(command) + 1500, total  # the command once, the rest small
    assert len(f["MESSAGE"]) < 1000
    assert len(f["DIAG_REASON"]) <= audit.MAX_REASON + 40
    huge = Decision("deny", "input.too-long", "too long", b"x" * 100000)
    g = pipeline(huge)
    assert len(g["DIAG_COMMAND"]) == audit.MAX_COMMAND and g["DIAG_COMMAND_BYTES"] == b"100000"


# --------------------------------------------------------------------------- record(): sink and failure

@pytest.fixture
def fake_socket(tmp_path, monkeypatch):
    path = tmp_path / "journal.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    monkeypatch.setattr(audit, "JOURNAL_SOCKET", str(path))
    yield path
    s.close()


def test_record_sends_exactly_one_entry(fake_socket, monkeypatch):
    from systemd import journal

    sent = []
    monkeypatch.setattr(journal, "send", lambda message, **kw: sent.append((message, kw)))
    audit.record(DENY, {"SSH_CLIENT": "127.0.0.1 1 22"})
    assert len(sent) == 1
    message, fields = sent[0]
    assert message.startswith("deny path.denied: ")
    assert fields["DIAG_COMMAND"] == b"cat /etc/shadow" and fields["PRIORITY"] == "4"


def test_record_does_not_touch_global_structlog_config(fake_socket, monkeypatch):
    import structlog
    from systemd import journal

    monkeypatch.setattr(journal, "send", lambda message, **kw: None)
    structlog.configure(processors=[lambda *a: (_ for _ in ()).throw(AssertionError("global"))])
    try:
        audit.record(ALLOW, {})
    finally:
        structlog.reset_defaults()


def _assert_unavailable(excinfo):
    assert excinfo.value.code == "audit.unavailable"
    assert "nothing was executed" in excinfo.value.message
    assert "\n" not in excinfo.value.message


def test_send_failure_is_a_deny(fake_socket, monkeypatch):
    from systemd import journal

    def refuse(message, **kw):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(journal, "send", refuse)
    with pytest.raises(Deny) as excinfo:
        audit.record(ALLOW, {})
    _assert_unavailable(excinfo)
    assert "Connection refused" in excinfo.value.message


def test_missing_socket_is_a_deny(tmp_path, monkeypatch):
    # libsystemd reports success when the socket is missing (ENOENT): we must not.
    from systemd import journal

    sent = []
    monkeypatch.setattr(journal, "send", lambda message, **kw: sent.append(message))
    monkeypatch.setattr(audit, "JOURNAL_SOCKET", str(tmp_path / "no-such-socket"))
    with pytest.raises(Deny) as excinfo:
        audit.record(ALLOW, {})
    _assert_unavailable(excinfo)
    assert sent == []


def test_not_a_socket_is_a_deny(tmp_path, monkeypatch):
    regular = tmp_path / "socket"
    regular.write_text("")
    monkeypatch.setattr(audit, "JOURNAL_SOCKET", str(regular))
    with pytest.raises(Deny) as excinfo:
        audit.record(ALLOW, {})
    _assert_unavailable(excinfo)


def test_missing_binding_is_a_deny(fake_socket, monkeypatch):
    monkeypatch.setitem(sys.modules, "systemd.journal", None)
    monkeypatch.delattr(sys.modules["systemd"], "journal", raising=False)
    with pytest.raises(Deny) as excinfo:
        audit.record(ALLOW, {})
    _assert_unavailable(excinfo)


def test_dropped_event_is_a_deny(fake_socket, monkeypatch):
    import structlog
    from systemd import journal

    def drop(logger, method, event):
        raise structlog.DropEvent

    sent = []
    monkeypatch.setattr(journal, "send", lambda message, **kw: sent.append(message))
    monkeypatch.setattr(audit, "PROCESSORS", (drop, *audit.PROCESSORS))
    with pytest.raises(Deny) as excinfo:
        audit.record(ALLOW, {})
    _assert_unavailable(excinfo)
    assert "dropped" in excinfo.value.message


def test_processor_bug_is_a_deny(fake_socket, monkeypatch):
    with pytest.raises(Deny) as excinfo:
        audit.record(object(), {})
    _assert_unavailable(excinfo)


def test_import_is_light():
    code = ("import sys; import diag_wrapper.audit; "
            "print(sorted(m for m in ('structlog', 'systemd.journal', 'json', 'hashlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); {code}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
