"""Property: for every string the parser accepts, argv equals what /bin/bash hands to execve."""

from __future__ import annotations

import os

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from bash_oracle import BASH, OracleSkip, bash_argv
from diag_wrapper.model import Deny
from diag_wrapper.parse import parse_command, parse_words

pytestmark = pytest.mark.skipif(not os.access(BASH, os.X_OK), reason="needs /bin/bash")

PLAIN = "abcxyzABC0189-_./:,%^@+="
META = " ;|&<>()*?[]{}~#!$`\"'\\=é\u00a0"

plain_word = st.text(alphabet=PLAIN, min_size=1, max_size=8)
command_name = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_", min_size=1, max_size=8) | st.sampled_from(
    ["ls", "cat", "echo", "printf", "test", "exec", "eval", "command", "builtin", "enable", "set", "export", ":"]
)
single_quoted = st.text(alphabet=PLAIN + META.replace("'", ""), max_size=8).map(lambda t: f"'{t}'")
dq_char = st.sampled_from(list(PLAIN + " ;|&<>()*?[]{}~#'é") + ['\\"', "\\\\", "\\$", "\\`"])
double_quoted = st.lists(dq_char, max_size=8).map(lambda cs: '"' + "".join(cs) + '"')
escaped = st.sampled_from(list(META + PLAIN)).map(lambda c: "\\" + c)
segment = plain_word | single_quoted | double_quoted | escaped
# Mostly one quoting form per word (bashlex only agrees on those), some concatenations.
word = segment | st.lists(segment, min_size=2, max_size=3).map("".join)
command = st.builds(
    lambda name, args, sep: name + "".join(sep + a for a in args),
    command_name | word,
    st.lists(word, max_size=5),
    st.sampled_from([" ", "  "]),
)
# Unstructured strings over a biased alphabet: most are denied, the accepted ones must still agree.
noise = st.text(alphabet=st.sampled_from(list(META + "ab-")), min_size=1, max_size=16)

REGRESSIONS = [
    "ls -la /var/log",
    "journalctl -u invidious-companion --since '1 hour ago' -p warning",
    'journalctl --since="1 hour ago"',
    "journalctl CONTAINER_NAME=invidious -n 100",
    "grep ';|&<>*?[{}~#$`\"!()\\' x",
    'grep "a;b|c&d<e>f*g?h[i]{j}~k#l(m)n\'o" x',
    "ls 'a b' a\\ b '' \"\"",
    'ls "a\\"b" "a\\\\b" "\\$" "\\`"',
    "ls \\$HOME \\~ \\* \\# \\{a,b\\}",
    "ls a] a,b %x ^y @z",
    "ls a=1 --x=y",
    "ls é",
    "echo -n -e x",
    "printf '%s' x",
    "exec ls",
    "eval x",
    "'if' then",
    "\\ls x",
    "'!' x",
    "'{' x",
    "'time' x",
    "'[[' x",
    "a% x",
]


def _check(s: str) -> bool:
    """Compare with bash if the parser accepts ``s``; return whether it was accepted.

    A word the parser marks as a glob must be one for bash too: in the oracle's empty
    scratch directory it matches nothing, and failglob makes bash refuse the command
    (what the glob expands to is tests/test_globs.py's business)."""
    try:
        words = parse_words(s.encode())
        if len(words) != 1:
            raise Deny("parse.pipeline", "a pipeline")
        argv = parse_command(s.encode())
    except Deny:
        return False
    try:
        recorded = bash_argv(s, argv[0])
    except OracleSkip:
        return True
    if any(w.glob for w in words[0]):
        assert recorded is None, f"{s!r}: the parser sees a glob, bash ran {recorded!r}"
        return True
    assert recorded is not None, f"bash did not run the command for accepted {s!r} -> {argv!r}"
    assert recorded == argv[1:], f"{s!r}: parser {argv[1:]!r} != bash {recorded!r}"
    return True


@pytest.mark.parametrize("s", REGRESSIONS)
def test_regressions_accepted_and_match_bash(s: str) -> None:
    assert _check(s), f"{s!r} should be accepted"


@settings(max_examples=300, deadline=None)
@given(command)
@example("ls 'a b' c")
@example('cat "x y"')
def test_accepted_commands_match_bash(s: str) -> None:
    accepted = _check(s)
    assume(accepted)


@settings(max_examples=300, deadline=None)
@given(noise)
def test_accepted_noise_matches_bash(s: str) -> None:
    _check(s)


def test_oracle_detects_expansion() -> None:
    """The oracle itself must notice what bash would expand (else the property is vacuous)."""
    assert bash_argv("echo 'a b' c", "echo") == ("a b", "c")
    assert bash_argv("echo a=~", "echo") != ("a=~",)
    assert bash_argv("echo {a,b}", "echo") == ("a", "b")
    assert bash_argv("echo x #y", "echo") == ("x",)
    assert bash_argv("echo *", "echo") is None  # failglob: an unmatched glob aborts
    assert bash_argv("echo $x", "echo") is None  # nounset
    assert bash_argv('echo "\\x"', "echo") == ("\\x",)
    with pytest.raises(OracleSkip):
        bash_argv("/bin/ls", "/bin/ls")


def test_percent_command_name_is_a_job_spec_in_bash() -> None:
    """Why the parser refuses a leading '%' in the command name, even quoted: bash runs `fg`."""
    for s, name in (("%x a", "%x"), ("'%x' a", "%x"), ("\\% a", "%")):
        assert bash_argv(s, name) is None
        with pytest.raises(Deny) as info:
            parse_command(s.encode())
        assert info.value.code == "parse.reserved-word"
