"""The redaction net (redact.py) and its policy section: each shipped pattern masks its
canaries and keeps ordinary text, a secret split across reads is still masked, memory stays
bounded, and a pattern that does not do what its examples say does not load."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diag_wrapper.model import PolicyError
from diag_wrapper.policy import load
from diag_wrapper.redact import Redactor, compile_pattern, mask

from conftest import POLICY_DIR

PEM = (b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
       b"c2VjcmV0IGtleSBtYXRlcmlhbA==\n-----END PRIVATE KEY-----\n")
OPENSSH = (b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"
           b"-----END OPENSSH PRIVATE KEY-----\n")
AGE = b"AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSNVPWS4"
JWT = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
SYT = b"syt_ZGlhZw_VxkqNmBZlgUHyBJKrLDC_2xH7Kc"

# (shipped pattern, text as a command prints it, the secret that must not come out)
CANARIES = [
    ("pem-private-key", b"key file:\n" + PEM + b"done\n", b"MIIEvQIBADANBgkqhkiG9w0"),
    ("pem-private-key", b"-----BEGIN RSA PRIVATE KEY-----\nabcdefSECRETabcdef\n-----END RSA PRIVATE KEY-----\n",
     b"SECRET"),
    ("openssh-private-key", OPENSSH, b"b3BlbnNzaC1rZXktdjE"),
    ("age-secret-key", b"# created: 2026-01-01\n" + AGE + b"\n", AGE[16:]),
    ("url-credentials", b"DATABASE_URL postgres://n8n:CANARYpw1@localhost:5432/n8n\n", b"CANARYpw1"),
    ("url-credentials", b"connecting to redis://:CANARYpw2@127.0.0.1:6379/0\n", b"CANARYpw2"),
    ("bearer", b"> Authorization: Bearer CANARYtoken0123456789\n", b"CANARYtoken"),
    ("authorization", b"authorization: basic Q0FOQVJZOnB3\n", b"Q0FOQVJZOnB3"),
    ("authorization", b"< Authorization: Token CANARYtok\n", b"CANARYtok"),
    ("github-token", b"ghp_CANARY0123456789abcdefghijABCDEFGHIJ\n", b"CANARY0123"),
    ("secret-option", b"root 1 0.0 /bin/n8n --db-password CANARYopt start\n", b"CANARYopt"),
    ("url-credentials", b"postgresql://u:CANARY/slash@db/x\n", b"CANARY/slash"),
    ("secret-assignment", b"password: 'CANARY open quote\n", b"CANARY open"),
    ("pem-private-key", b"tail of a key:\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nCANARYc2VjcmV0IGtleQ==\n-----END PRIVATE KEY-----\n",
     b"CANARYc2Vj"),
    ("pem-private-key", b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nCANARYlast\nfQ==\n-----END PRIVATE KEY-----\n", b"CANARYlast"),
    ("pem-private-key", b"key: |\n    MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n    CANARYyaml\n    -----END PRIVATE KEY-----\n",
     b"CANARYyaml"),
    ("pem-private-key", b"mQENBFCANARYpgpAAAAAAAAAAAAAAAAAAA\n=62sZ\n-----END PGP PRIVATE KEY BLOCK-----\n", b"CANARYpgp"),
    ("cookie", b"< Set-Cookie: _zammad_session=CANARYcookie; path=/\n", b"CANARYcookie"),
    ("jwt", b"id_token=" + JWT + b"\n", JWT[40:]),
    ("matrix-token", b"POST /_matrix/client/v3/sync?access_token=" + SYT + b" 200\n", SYT[4:]),
    ("matrix-token", b"Bearer-less mat_CANARYmasTokenAAAAAAAAAAAA_1a2b3c\n", b"CANARYmasToken"),
    ("environment", b'[Service]\nEnvironment="N8N_API_KEY=CANARYenv" "TZ=UTC"\nExecStart=/bin/n8n\n', b"CANARYenv"),
    ("secret-assignment", b"macaroon_secret_key: \"CANARYmacaroon\"\n", b"CANARYmacaroon"),
    ("secret-assignment", b"N8N_ENCRYPTION_KEY=CANARYenc\n", b"CANARYenc"),
    ("secret-assignment", b'{"client_secret": "CANARYclient"}\n', b"CANARYclient"),
    ("redis-password", b"requirepass CANARYredis\n", b"CANARYredis"),
]

KEPT = [
    b"Dec 01 10:00:00 web-02 nginx[123]: 127.0.0.1 - - \"GET /healthz HTTP/1.1\" 200 2\n",
    b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    b"synapse: password authentication failed for user \"synapse\"\n",
    b"cat: /run/secrets/db_password: Permission denied\n",
    b"gapcat: /tmp/x/gap-secret/token: Permission denied\n",
    b"Loaded: loaded (/etc/systemd/system/n8n.service; enabled)\n",
    b"EnvironmentFile=/run/secrets/n8n.env\n",
    b"https://127.0.0.1:8008/_matrix/client/versions\n",
    b"format_version=3 mat_rix\n",
    "grüße € ✓\n".encode(),
]


SHIPPED = load(str(POLICY_DIR / "web-02.toml"))  # the net does not depend on the search path


@pytest.fixture(scope="module")
def net():
    return SHIPPED.redact


@pytest.mark.parametrize("name,text,secret", CANARIES)
def test_each_shipped_pattern_masks_its_canary(net, name, text, secret):
    out, counts = mask(net, text)
    assert secret not in out
    assert f"[redacted:{name}]".encode() in out
    assert counts.get(name, 0) >= 1


@pytest.mark.parametrize("text", KEPT)
def test_ordinary_output_passes_unchanged(net, text):
    assert mask(net, text) == (text, {})


def test_the_shipped_net_has_the_patterns_the_issue_names(net):
    assert {p.name for p in net} >= {"pem-private-key", "openssh-private-key", "age-secret-key", "url-credentials",
                                     "bearer", "jwt", "matrix-token", "environment", "authorization", "cookie"}


def test_only_the_secret_group_is_masked(net):
    out, _ = mask(net, b"postgresql://synapse:pw@db/synapse\n")
    assert out == b"postgresql://synapse:[redacted:url-credentials]@db/synapse\n"


def test_counts_are_per_pattern(net):
    text = b"a " + JWT + b" b " + JWT + b"\n" + PEM + b"Bearer abcdefghijkl\n"
    out, counts = mask(net, text)
    assert counts == {"jwt": 2, "pem-private-key": 1, "bearer": 1}


def test_a_block_without_its_end_hides_everything_after_its_begin(net):
    r = Redactor(net)
    out = r.feed(b"before\n-----BEGIN PRIVATE KEY-----\nMIIE\n") + r.feed(b"more key\n" * 1000) + r.flush()
    assert out == b"before\n[redacted:pem-private-key]"


def _pieces(text: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(CANARIES + [(None, t, None) for t in KEPT]), min_size=1, max_size=6),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_a_secret_split_across_reads_is_masked_all_the_same(items, cuts):
    net = SHIPPED.redact
    text = b"".join(t for _, t, _ in items)
    r = Redactor(net)
    out = b"".join(r.feed(piece) for piece in _pieces(text, cuts)) + r.flush()
    assert (out, r.counts) == mask(net, text)
    for _, _, secret in items:
        assert secret is None or secret not in out


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=8))
def test_arbitrary_bytes_come_through_whole_when_nothing_matches(data, cuts):
    net = SHIPPED.redact
    data = data.lower().replace(b"eyj", b"").replace(b"-----", b"")  # nothing that could match
    out, counts = mask(net, data)
    if not counts:
        r = Redactor(net)
        assert b"".join(r.feed(p) for p in _pieces(data, cuts)) + r.flush() == data == out


def test_memory_is_bounded_by_the_line_limit_whatever_the_output():
    p = compile_pattern("t", regex="SECRET[0-9]+", hints=("secret",))
    r = Redactor((p,), max_line=4096)
    held = 0
    passed = 0
    for _ in range(2000):  # 128 MiB of one line without a newline
        passed += len(r.feed(b"x" * 65536))
        held = max(held, len(r.buf))
    assert held <= 4096 + 65536
    assert passed + len(r.flush()) == 2000 * 65536


def test_a_match_that_reaches_the_end_of_an_overlong_line_masks_the_rest_of_it():
    p = compile_pattern("t", regex="SECRET[0-9]+", hints=("secret",))
    r = Redactor((p,), max_line=4096)
    out = r.feed(b"a" * 4090 + b" SECRET1234") + r.feed(b"5678 tail") + r.feed(b" more\nnext line\n") + r.flush()
    assert out == b"a" * 4090 + b" [redacted:t]\nnext line\n"


def test_an_overlong_line_is_cut_before_a_match_that_runs_across_the_cut():
    p = compile_pattern("t", regex="SECRET[0-9]+", hints=("secret",))
    r = Redactor((p,), max_line=4096)
    line = b"a" * 2040 + b" SECRET" + b"1" * 40 + b" " + b"b" * 2100
    out = b"".join(r.feed(line[i:i + 1000]) for i in range(0, len(line), 1000)) + r.flush()
    assert out == b"a" * 2040 + b" [redacted:t] " + b"b" * 2100


# --------------------------------------------------------------------------- the policy section


def _policy(tmp_path, body):
    f = tmp_path / "p.toml"
    f.write_text(textwrap.dedent(body))
    return load(str(f))


GOOD = """
[redact.patterns.canary]
why = "test"
regex = 'CANARY-[0-9]+'
hints = ["canary-"]
examples = ["x CANARY-1 y"]
keeps = ["canary bird"]
"""


def test_a_pattern_with_examples_and_keeps_loads(tmp_path):
    p = _policy(tmp_path, GOOD)
    assert [x.name for x in p.redact] == ["canary"]


@pytest.mark.parametrize("change,problem", [
    (("'CANARY-[0-9]+'", "'CANARY-[0-9'"), "not a valid regular expression"),
    (("'CANARY-[0-9]+'", "'x*'"), "matches the empty string"),
    (('["canary-"]', '["CANARY-"]'), "lower-case"),
    (('["canary-"]', "[]"), "lower-case"),
    (('["canary-"]', '["nothere"]'), "is not masked"),
    (('["x CANARY-1 y"]', '["x CANARY y"]'), "is not masked"),
    (('["x CANARY-1 y"]', "[]"), "at least one"),
    (('["canary bird"]', '["CANARY-2"]'), "keeps"),
    (('why = "test"\n', ""), "missing key"),
    (("regex = 'CANARY-[0-9]+'", "regex = 'CANARY-[0-9]+'\nbegin = 'x'"), "either regex"),
    (("regex = 'CANARY-[0-9]+'", "begin = 'CANARY-'"), "either regex"),
    (("hints", "hint"), "unknown key"),
])
def test_a_pattern_that_does_not_do_what_it_says_does_not_load(tmp_path, change, problem):
    with pytest.raises(PolicyError) as info:
        _policy(tmp_path, GOOD.replace(*change))
    assert "redact.patterns.canary" in str(info.value) and problem in str(info.value)


def test_a_command_may_opt_out_of_the_net(tmp_path):
    p = _policy(tmp_path, GOOD + """
        [settings]
        search_path = ["/usr/bin"]
        [commands.cat]
        args = [{ name = "F", type = "file", min = 1 }]
        [commands.od]
        redact = false
        args = [{ name = "F", type = "file", min = 1 }]
    """)
    from diag_wrapper.plan import plan

    assert plan(b"cat /etc/hostname", p).redact == p.redact
    assert plan(b"od /etc/hostname", p).redact == ()


# --------------------------------------------------------------------------- hostile output


def _through(net, data: bytes, step: int = 65536) -> tuple[bytes, dict[str, int]]:
    r = Redactor(net)
    out = b"".join(r.feed(data[i:i + step]) for i in range(0, len(data), step)) + r.flush()
    return out, r.counts


@pytest.mark.parametrize("line,secret", [
    # the only blank of the first 64 KiB is inside the secret: the cut must not split it
    (b'{"headers":{"authorization":"Bearer opaqueTok3nXYZ0123456789"},"body":"' + b"A" * 70000 + b'"}\n',
     b"opaqueTok3n"),
    (b'{"blob":"' + b"B" * 64000 + b'","key":"-----BEGIN PRIVATE KEY-----\\nMIIEvQ' + b"x" * 1600
     + b'\\n-----END PRIVATE KEY-----"}\n', b"MIIEvQ"),
    (b"C" * 65530 + b'"password":"hunter2secret"' + b"D" * 1000 + b"\n", b"hunter2"),
    (b"E" * 65520 + b" eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJl " + b"F" * 100, b"c2lnbmF0dXJl"),
    # a to-the-end match early in the line, a secret right at the first read's end
    (b"< Cookie: sid=abc " + b"x" * (65536 - 18 - 15) + b" DB_PASSWORD=hunter2 more\n", b"hunter2"),
    (b"Environment=A=" + b"v" * 70000 + b" TOKEN=CANARYtail\n", b"CANARYtail"),
    (b"password='" + b"p" * 70000 + b" CANARYq\n", b"CANARYq"),
    (b"token=" + b"A" * 57000 + b"/pg://u:ab,cdSECRETcd@host" + b" " * 9000 + b"\n", b"SECRETcd"),
])
@pytest.mark.parametrize("step", [65536, 4096, 1000])
def test_a_secret_across_the_cut_of_an_overlong_line_is_masked(net, line, secret, step):
    out, counts = _through(net, line, step)
    assert secret not in out and counts


def test_a_begin_marker_without_an_end_hides_at_most_a_block_limit(net):
    from diag_wrapper.redact import BLOCK_MAX

    r = Redactor(net)
    out = r.feed(b"-----BEGIN PRIVATE KEY-----\n") + r.feed(b"log line\n" * 20000) + r.flush()
    assert out.startswith(b"[redacted:pem-private-key]")
    assert 20000 * 9 - BLOCK_MAX - 64 <= out.count(b"log line\n") * 9 + 64  # the rest comes through


# Each shipped pattern, fed what makes a backtracking regex quadratic: its hints and the
# characters of its classes repeated over a 64 KiB line. All of them together must stay
# far below the time limit (the supervisor masks on its own time).
def _hostile(p) -> list[bytes]:
    out = []
    for h in p.hints:
        out += [h * (65536 // len(h)), (h + b"-") * (65536 // (len(h) + 1)), b"a" * 64000 + h + b" ",
                (h + b"=") * (65536 // (len(h) + 1)), h + b" " * 65000 + b"x", h + b"a" * 65000]
    out += [b"eyJ-" * 16000, b"a" * 64000 + b":// ", b"password" * 8000, b"-----BEGIN " * 5000,
            b"AGE-PLUGIN-" + b"A" * 64000, b"_--_--token" * 5957, b"a://:" * 13000,
            b"-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n" * 1200]
    return out


def test_no_shipped_pattern_is_slow_on_hostile_output(net):
    import time

    for p in net:
        for data in _hostile(p):
            start = time.process_time()
            mask(net, data)
            took = time.process_time() - start
            assert took < 0.5, (p.name, data[:40], took)


def test_an_overlong_line_of_overlapping_matches_costs_little(net):
    import time

    unit = b"!a://u:x,!password=y@z"
    line = unit * (70000 // len(unit)) + b"@, ok"
    r = Redactor(net)
    start = time.process_time()
    r.feed(line)
    r.flush()
    assert time.process_time() - start < 0.2


def test_a_key_written_line_by_line_is_not_walked_again_at_every_line(net):
    import time

    body = (b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7c2VjcmV0IGtl\n") * 1000
    r = Redactor(net)
    start = time.process_time()
    out = b"".join(r.feed(body[i:i + 65]) for i in range(0, len(body), 65))
    out += r.feed(b"-----END PRIVATE KEY-----\n") + r.flush()
    assert time.process_time() - start < 0.5
    assert out == b"[redacted:pem-private-key]\n"
