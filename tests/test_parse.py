"""Table and robustness tests for diag_wrapper.parse.parse_command."""

from __future__ import annotations

import bashlex
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diag_wrapper import _bashlex
from diag_wrapper.model import Deny
from diag_wrapper.parse import parse_command

ACCEPTED: list[tuple[str, tuple[str, ...]]] = [
    ("ls", ("ls",)),
    ("ls -la /var/log", ("ls", "-la", "/var/log")),
    ("  df   -h  ", ("df", "-h")),
    ("systemctl status podman-invidious.service", ("systemctl", "status", "podman-invidious.service")),
    ('journalctl -u invidious-companion --since "1 hour ago" -p warning',
     ("journalctl", "-u", "invidious-companion", "--since", "1 hour ago", "-p", "warning")),
    ("journalctl CONTAINER_NAME=invidious -n 100", ("journalctl", "CONTAINER_NAME=invidious", "-n", "100")),
    ("journalctl --since='1 hour ago'", ("journalctl", "--since=1 hour ago")),
    ('journalctl --since="1 hour ago"', ("journalctl", "--since=1 hour ago")),
    ("ls 'a b'", ("ls", "a b")),
    ('ls "a b"', ("ls", "a b")),
    ('ls "a\\"b"', ("ls", 'a"b')),
    ('ls "a\\\\b"', ("ls", "a\\b")),
    ('ls "\\$"', ("ls", "$")),
    ('ls "\\`"', ("ls", "`")),
    ("ls a\\ b", ("ls", "a b")),
    ("ls a\\ ", ("ls", "a ")),
    ("ls \\$HOME", ("ls", "$HOME")),
    ("ls \\'", ("ls", "'")),
    ("ls \\\\", ("ls", "\\")),
    ("ls '\\'", ("ls", "\\")),
    ("ls \\#x", ("ls", "#x")),
    ("ls \\~", ("ls", "~")),
    ("ls \\*", ("ls", "*")),
    ("ls ''", ("ls", "")),
    ('ls ""', ("ls", "")),
    ("ls '' x", ("ls", "", "x")),
    ("ls a'b c'", ("ls", "ab c")),
    ('ls a"b"', ("ls", "ab")),
    ('ls "a"b', ("ls", "ab")),
    ("grep ';|&<>*?[{}~#$`\"!()\\' /var/log/x",
     ("grep", ';|&<>*?[{}~#$`"!()\\', "/var/log/x")),
    ("grep '$(id)' f", ("grep", "$(id)", "f")),
    ("grep '${x}' f", ("grep", "${x}", "f")),
    ('grep "a;b|c&d<e>f*g?h[i]{j}~k#l(m)n\'o" f', ("grep", "a;b|c&d<e>f*g?h[i]{j}~k#l(m)n'o", "f")),
    ("ls a]", ("ls", "a]")),
    ("ls a,b %x ^y @z :w +v", ("ls", "a,b", "%x", "^y", "@z", ":w", "+v")),
    ("ls a=1 --x=y", ("ls", "a=1", "--x=y")),
    ("ls -- -x", ("ls", "--", "-x")),
    ("ls é 'ü b'", ("ls", "é", "ü b")),
    ("\\ls x", ("ls", "x")),
    ("'ls' x", ("ls", "x")),
    ("'if' x", ("if", "x")),
    ("'!' x", ("!", "x")),
    ("a% x", ("a%", "x")),  # quoted reserved word is an ordinary command name to bash
    ("/bin/cat x", ("/bin/cat", "x")),  # matching, not parsing, refuses paths
    ("ls x" + " " * 100, ("ls", "x")),
]

DENIED: list[tuple[str, str]] = [
    # input guard
    ("", "input.empty"),
    ("   ", "parse.empty"),
    ("''", "parse.empty"),
    ('"" ls', "parse.empty"),
    ("ls\x00", "input.nul"),
    ("ls\n", "input.multiline"),
    ("ls\nid", "input.multiline"),
    ("ls\rid", "input.multiline"),
    ("ls \u2028id", "input.multiline"),
    ("ls \u2029id", "input.multiline"),
    ("ls \u0085id", "input.multiline"),
    ("ls\t-l", "input.control"),
    ("ls \x1b[31m", "input.control"),
    ("ls \x7f", "input.control"),
    ("ls \x9b", "input.control"),
    ("ls \u202e", "input.control"),
    ("ls \u200b", "input.control"),
    ("ls '\x01'", "input.control"),
    # lists, pipelines, background
    ("ls; id", "parse.list"),
    ("ls ;", "parse.list"),
    ("ls && id", "parse.list"),
    ("ls || id", "parse.list"),
    ("ls & id", "parse.background"),
    ("ls &", "parse.background"),
    ("ls | id", "parse.pipeline"),
    ("ls |& id", "parse.pipeline"),
    # redirections and heredocs
    ("ls > x", "parse.redirect"),
    ("ls >x", "parse.redirect"),
    ("ls 2>&1", "parse.redirect"),
    ("ls >> x", "parse.redirect"),
    ("ls >| x", "parse.redirect"),
    ("ls < x", "parse.redirect"),
    ("ls &> x", "parse.redirect"),
    ("cat <<EOF", "parse.heredoc"),
    ("cat << EOF", "parse.heredoc"),
    ("cat <<<x", "parse.heredoc"),
    # substitutions and expansions
    ("ls $(id)", "parse.command-substitution"),
    ("ls `id`", "parse.command-substitution"),
    ('ls "$(id)"', "parse.command-substitution"),
    ('ls "`id`"', "parse.command-substitution"),
    ("ls <(id)", "parse.process-substitution"),
    ("ls >(id)", "parse.process-substitution"),
    ("ls $HOME", "parse.parameter"),
    ("ls ${HOME}", "parse.parameter"),
    ("ls $1", "parse.parameter"),
    ("ls $@", "parse.parameter"),
    ("ls a$", "parse.parameter"),
    ('ls "$HOME"', "parse.parameter"),
    ('ls "$"', "parse.parameter"),
    ("ls $((1+1))", "parse.arithmetic"),
    ('ls "$((1+1))"', "parse.arithmetic"),
    ("ls $[1+1]", "parse.arithmetic"),
    ("ls $'a\\nb'", "parse.ansi-c-quote"),
    ("ls x$'a'", "parse.ansi-c-quote"),
    ('ls $"a"', "parse.locale-quote"),
    # assignments
    ("A=1 ls", "parse.assignment"),
    ("A=1", "parse.assignment"),
    ("A+=1 ls", "parse.assignment"),
    ("_x= ls", "parse.assignment"),
    ("'A=1' ls", "parse.assignment"),
    # compound commands and reserved words
    ("(ls)", "parse.compound"),
    ("( ls )", "parse.compound"),
    ("f() { ls; }", "parse.compound"),
    ("{ ls; }", "parse.reserved-word"),
    ("! ls", "parse.reserved-word"),
    ("time ls", "parse.reserved-word"),
    ("if true; then ls; fi", "parse.reserved-word"),
    ("while true; do ls; done", "parse.reserved-word"),
    ("for x in a; do ls; done", "parse.reserved-word"),
    ("case x in x) ls;; esac", "parse.reserved-word"),
    ("[[ -f x ]]", "parse.reserved-word"),
    ("coproc ls", "parse.reserved-word"),
    ("function f", "parse.reserved-word"),
    ("select x", "parse.reserved-word"),
    ("  then x", "parse.reserved-word"),
    ("%1", "parse.reserved-word"),  # job spec: bash runs `fg`
    ("'%' x", "parse.reserved-word"),
    # globs, braces, tilde, comments, history
    ("ls [ab]", "parse.glob"),
    ("ls a[", "parse.glob"),
    ("* x", "parse.glob"),
    ("l? x", "parse.glob"),
    ("[ -f x ]", "parse.glob"),
    ("ls {a,b}", "parse.brace"),
    ("ls a{1..3}", "parse.brace"),
    ("ls {", "parse.brace"),
    ("ls }", "parse.brace"),
    ("ls ~", "parse.tilde"),
    ("ls ~root", "parse.tilde"),
    ("ls a=~", "parse.tilde"),
    ("ls --dir=~/x", "parse.tilde"),
    ("ls a~b", "parse.tilde"),
    ("ls # x", "parse.comment"),
    ("ls #", "parse.comment"),
    ("ls a#b", "parse.comment"),
    ("ls !x", "parse.history"),
    ("ls !!", "parse.history"),
    ('ls "a!"', "parse.history"),
    # syntax
    ("ls \\", "parse.syntax"),
    ("ls 'a", "parse.syntax"),
    ('ls "a', "parse.syntax"),
    ('ls "a\\"', "parse.syntax"),
    ("ls 'a''", "parse.syntax"),
    # bashlex reads these differently from bash: refused, never guessed
    ('ls "\\x"', "parse.mismatch"),
    ("ls 'a'b'c'", "parse.mismatch"),
    ("ls 'a'\\''b'", "parse.mismatch"),
    ('ls "a"\'b\'', "parse.mismatch"),
    ("ls 'a'\\'", "parse.mismatch"),  # bash: a'  bashlex: a'\
    # bashlex expands inside single quotes when the word does not start with the quote
    ("ls a'$x'", "parse.mismatch"),
    ("ls a'$(id)'", "parse.mismatch"),
    ("ls a'`id`'", "parse.mismatch"),
    ("ls \\z'$x'", "parse.mismatch"),
    # bashlex raises (TypeError / ParsingError) on some quoted backticks mid-word
    ("cat x'1$_`\u00a0'", "input.confusable"),  # NBSP: a word to bash, a space to a reader
    ("ls \u00a0", "input.confusable"),
    ("ls '(z_9 ''{`0'\\}", "parse.mismatch"),  # a backtick in single quotes that are not the whole word
]


@pytest.mark.parametrize(("command", "argv"), ACCEPTED, ids=[repr(c) for c, _ in ACCEPTED])
def test_accepted(command: str, argv: tuple[str, ...]) -> None:
    assert parse_command(command.encode()) == argv


@pytest.mark.parametrize(("command", "code"), DENIED, ids=[repr(c) for c, _ in DENIED])
def test_denied(command: str, code: str) -> None:
    with pytest.raises(Deny) as info:
        parse_command(command.encode())
    assert info.value.code == code
    assert info.value.message and "\n" not in info.value.message


def test_invalid_utf8() -> None:
    for raw in (b"ls \xff", b"ls \xc3", b"ls \xed\xa0\x80", b"ls \xc0\xaf"):
        with pytest.raises(Deny) as info:
            parse_command(raw)
        assert info.value.code == "input.encoding"


def test_length_cap() -> None:
    ok = b"ls " + b"a" * (4096 - 3)
    assert parse_command(ok) == ("ls", "a" * 4093)
    with pytest.raises(Deny) as info:
        parse_command(ok + b"a")
    assert info.value.code == "input.too-long"
    with pytest.raises(Deny) as info:
        parse_command(b"ls abc", max_bytes=5)
    assert info.value.code == "input.too-long"
    assert parse_command(b"ls abc", max_bytes=6) == ("ls", "abc")


def test_guard_order() -> None:
    # the size cap applies before anything else is looked at
    with pytest.raises(Deny) as info:
        parse_command(b"\x00" * 5000)
    assert info.value.code == "input.too-long"
    with pytest.raises(Deny) as info:
        parse_command(b"ls \xff\x00")
    assert info.value.code == "input.nul"


def test_non_bytes_is_denied() -> None:
    with pytest.raises(Deny) as info:
        parse_command("ls")  # type: ignore[arg-type]
    assert info.value.code == "input.encoding"
    assert parse_command(bytearray(b"ls x")) == ("ls", "x")


# --- bashlex is checked, not trusted: feed the tree check a different parse ---

def _pretend_bashlex_saw(monkeypatch: pytest.MonkeyPatch, other: str) -> None:
    monkeypatch.setattr(_bashlex, "parse", lambda _s: bashlex.parse(other))


@pytest.mark.parametrize(
    ("seen", "code"),
    [
        ("ls; id", "parse.list"),
        ("ls & id", "parse.background"),
        ("ls | id", "parse.pipeline"),
        ("(ls)", "parse.compound"),
        ("! ls", "parse.reserved-word"),
        ("ls >x", "parse.redirect"),
        ("A=1 ls", "parse.assignment"),
        # an expansion inside a word can only be bashlex disagreeing with the scanner
        ("ls $(id)", "parse.mismatch"),
        ("ls <(id)", "parse.mismatch"),
        ("ls $x", "parse.mismatch"),
        ("ls ~", "parse.mismatch"),
        ("ls y", "parse.mismatch"),      # different word
        ("ls  x", "parse.mismatch"),     # same word, different position
        ("ls", "parse.mismatch"),        # a word dropped (as bashlex does for comments)
        ("ls x y", "parse.mismatch"),    # a word added
    ],
)
def test_bashlex_tree_is_cross_checked(monkeypatch: pytest.MonkeyPatch, seen: str, code: str) -> None:
    _pretend_bashlex_saw(monkeypatch, seen)
    with pytest.raises(Deny) as info:
        parse_command(b"ls x")
    assert info.value.code == code


@pytest.mark.parametrize(
    "exc", [NotImplementedError("time"), AttributeError("kind"), RecursionError(), ValueError(), IndexError()]
)
def test_bashlex_exceptions_become_syntax(monkeypatch: pytest.MonkeyPatch, exc: Exception) -> None:
    def boom(_s: str) -> list:
        raise exc

    monkeypatch.setattr(_bashlex, "parse", boom)
    with pytest.raises(Deny) as info:
        parse_command(b"ls x")
    assert info.value.code == "parse.syntax"


@pytest.mark.parametrize("result", [[], None, "ls", [object()], [None]])
def test_bashlex_odd_results_are_denied(monkeypatch: pytest.MonkeyPatch, result: object) -> None:
    monkeypatch.setattr(_bashlex, "parse", lambda _s: result)
    with pytest.raises(Deny) as info:
        parse_command(b"ls x")
    assert info.value.code.startswith("parse.")


def test_real_bashlex_errors_surface_as_syntax(monkeypatch: pytest.MonkeyPatch) -> None:
    # The scanner normally refuses these first; make sure the bashlex path alone also denies.
    for src in ("time ls", "ls $((1))", "ls 'a", "   "):
        _pretend_bashlex_saw(monkeypatch, src)
        with pytest.raises(Deny) as info:
            parse_command(b"ls x")
        assert info.value.code == "parse.syntax", src


# --- properties: parse_command returns a tuple of str or raises Deny, nothing else ---

SHELLISH = st.text(
    alphabet=st.sampled_from(list(" \t\n'\"\\$`;|&<>(){}[]*?~#!=-./:,%^@+_aAzZ09") + ["é", "\u2028", "\x00", "\x85"]),
    max_size=40,
)


def _total(raw: bytes) -> None:
    try:
        argv = parse_command(raw)
    except Deny as exc:
        assert exc.code.split(".")[0] in ("input", "parse")
        assert isinstance(exc.message, str) and exc.message
        return
    assert isinstance(argv, tuple) and argv
    assert all(isinstance(a, str) for a in argv)
    assert argv[0] != ""


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_any_text_returns_argv_or_denies(s: str) -> None:
    _total(s.encode("utf-8", "surrogatepass"))


@settings(max_examples=1000, deadline=None)
@given(SHELLISH)
def test_shell_metachar_text_returns_argv_or_denies(s: str) -> None:
    _total(s.encode())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_returns_argv_or_denies(raw: bytes) -> None:
    _total(raw)


@settings(max_examples=300, deadline=None)
@given(SHELLISH)
def test_accepted_words_round_trip_through_single_quotes(s: str) -> None:
    """Every accepted word, put back in one pair of single quotes, parses to itself."""
    try:
        argv = parse_command(s.encode())
    except Deny:
        return
    for a in argv:
        if "'" not in a:
            assert parse_command(("x '" + a + "'").encode()) == ("x", a)


# Look-alikes: what a person reads in the audit log must be what bash runs.
@pytest.mark.parametrize("command", [
    "cat /etc/hostname\u00a0/run/secrets/x",  # no-break space: one word to bash, two to a reader
    "cat /etc/hostname\u2009/run/secrets/x",  # thin space
    "cat /etc/hostname\u3000x",  # ideographic space
    "cat \uff0fetc\uff0fhostname",  # fullwidth solidus
    "cat /etc\u2215hostname",  # division slash
    "cat /etc/hostname\u2024txt",  # one dot leader
    "\uff43at /etc/hostname",  # fullwidth c
    "ls \ufb01le",  # ligature fi
    "cat /etc/hos\u0338ts",  # combining overlay on an ASCII letter
    "grep \ue000 /etc/hosts",  # private use
    "grep \U000e0001x /etc/hosts",  # language tag (Cf) is a control already, unassigned below
    "grep \u0378 /etc/hosts",  # unassigned
    "cat /etc/p\u0430sswd",  # Cyrillic a inside a Latin word
    "grep -r \u0455ecret /var/log/nginx",  # Cyrillic dze for s
    "cat /etc/h\u03bfsts",  # Greek omicron
])
def test_confusable_characters_are_refused(command):
    with pytest.raises(Deny) as e:
        parse_command(command.encode())
    assert e.value.code in ("input.confusable", "input.control"), e.value.code


@pytest.mark.parametrize("command,argv", [
    ("grep -i 'straße' /etc/hosts", ("grep", "-i", "straße", "/etc/hosts")),
    ("grep café /etc/hosts", ("grep", "café", "/etc/hosts")),
    ("grep 日本語 /etc/hosts", ("grep", "日本語", "/etc/hosts")),
    ("journalctl -g 'Ошибка'", ("journalctl", "-g", "Ошибка")),
])
def test_plain_non_ascii_text_still_passes(command, argv):
    assert parse_command(command.encode()) == argv


@pytest.mark.parametrize("command,words", [
    ("ls *", [("*", "*")]),
    ("ls *.log", [("*.log", "*\\.\\l\\o\\g")]),
    ("ls a?", [("a?", "\\a?")]),
    ("ls '*'", [("*", None)]),
    ("ls \\*", [("*", None)]),
    ('ls "a*"b*', [("a*b*", "\\a\\*\\b*")]),
    ("ls /var/log/nginx/*.log x", [("/var/log/nginx/*.log", "\\/\\v\\a\\r\\/\\l\\o\\g\\/\\n\\g\\i\\n\\x\\/*\\.\\l\\o\\g"),
                                    ("x", None)]),
])
def test_an_unquoted_star_or_question_mark_is_marked_as_a_glob(command, words):
    """The parser passes ``*`` and ``?`` through, marked: the word keeps its quote-removed
    text, and its pattern escapes every character but the unquoted wildcards (plan expands
    it where the value is a path, README "Globs")."""
    from diag_wrapper.parse import parse_words

    got = [(w.literal, w.glob) for w in parse_words(command.encode())[0][1:]]
    assert got == words


@pytest.mark.parametrize("command", ["ls a'${b'", "ls '${b'c", "ls \"\"'${'", "ls x'${'y", "ls a'$x'", "ls a'`x'"])
def test_a_quoted_dollar_that_bashlex_would_loop_on_is_refused_before_it(command):
    """bashlex 0.18 reads '$' in single quotes as an expansion unless the quotes are the
    whole word, and on a'${b' it never returns, eating memory (a found CI hang). The scanner
    refuses such a word before bashlex sees it; run in a child so a regression fails, not hangs."""
    import subprocess
    import sys

    code = ("import sys\nfrom diag_wrapper.parse import parse_command\nfrom diag_wrapper.model import Deny\n"
            "try:\n    parse_command(sys.argv[1].encode())\nexcept Deny as d:\n    print(d.code)\n")
    out = subprocess.run([sys.executable, "-c", code, command], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "parse.mismatch", out


def test_bashlex_runs_under_a_deadline(monkeypatch):
    """Any other input bashlex loops on is cut off and refused, even if it swallows exceptions."""
    import time

    from diag_wrapper import _bashlex, parse

    def spin(text):
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                time.sleep(0.01)
            except Exception:  # what a loop inside bashlex might do
                pass
        return []

    monkeypatch.setattr(_bashlex, "parse", spin)
    monkeypatch.setattr(parse, "BASHLEX_SECONDS", 0.3)
    t = time.monotonic()
    with pytest.raises(Deny) as info:
        parse_command(b"ls x")
    assert info.value.code == "parse.syntax" and time.monotonic() - t < 2
