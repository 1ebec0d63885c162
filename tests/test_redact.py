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
    ("basic-auth", b"authorization: basic Q0FOQVJZOnB3\n", b"Q0FOQVJZOnB3"),
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
    b"Loaded: loaded (/etc/systemd/system/n8n.service; enabled)\n",
    b"EnvironmentFile=/run/secrets/n8n.env\n",
    b"https://127.0.0.1:8008/_matrix/client/versions\n",
    b"format_version=3 mat_rix\n",
    "grüße € ✓\n".encode(),
]


@pytest.fixture(scope="module")
def net(web02):
    return web02.redact


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
                                     "bearer", "jwt", "matrix-token", "environment"}


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
def test_a_secret_split_across_reads_is_masked_all_the_same(web02, items, cuts):
    text = b"".join(t for _, t, _ in items)
    r = Redactor(web02.redact)
    out = b"".join(r.feed(piece) for piece in _pieces(text, cuts)) + r.flush()
    assert (out, r.counts) == mask(web02.redact, text)
    for _, _, secret in items:
        assert secret is None or secret not in out


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=8))
def test_arbitrary_bytes_come_through_whole_when_nothing_matches(web02, data, cuts):
    data = data.lower().replace(b"eyj", b"").replace(b"-----", b"")  # nothing that could match
    out, counts = mask(web02.redact, data)
    if not counts:
        r = Redactor(web02.redact)
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


def test_a_long_line_is_cut_at_a_blank_so_a_token_is_not_split():
    p = compile_pattern("t", regex="SECRET[0-9]+", hints=("secret",))
    r = Redactor((p,), max_line=4096)
    out = r.feed(b"a" * 4090 + b" SECRET1234") + r.feed(b"5678 tail") + r.flush()
    assert out == b"a" * 4090 + b" [redacted:t] tail"


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
