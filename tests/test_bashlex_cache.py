"""diag_wrapper._bashlex (shipped LALR tables) must parse exactly like stock bashlex.

Both parsers live in this process with separate ``bashlex*`` module sets; each call swaps
its own set into sys.modules (bashlex.subst re-imports ``bashlex.parser`` lazily for
command substitutions, so the swap keeps nested parses on the same side).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diag_wrapper import _bashlex
from diag_wrapper import _bashlex_tables as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "scripts", "gen_bashlex_tables.py")


def _bashlex_modules() -> dict:
    return {n: m for n, m in sys.modules.items() if n == "bashlex" or n.startswith("bashlex.")}


@contextmanager
def _modules(mods: dict):
    """Run with exactly `mods` as the bashlex* modules; restore the previous ones after."""
    saved = _bashlex_modules()
    for n in saved:
        del sys.modules[n]
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n in _bashlex_modules():
            del sys.modules[n]
        sys.modules.update(saved)


class Impl:
    def __init__(self, fn, mods: dict, mode: str | None) -> None:
        self.fn, self.mods, self.mode = fn, mods, mode

    def run(self, source: str):
        """Comparable outcome: the dumped trees, the exception's type name and text, or timeout.

        Each call starts like a fresh process: stock bashlex pins its EOF token singleton to
        the first input that ends in a syntax error (see _bashlex._load), so unpin it here.
        Some inputs (e.g. ``a'${b'``) make bashlex 0.18 loop forever, eating ~150 MB a second:
        give up after half a second (a parse takes milliseconds), on both sides alike. With
        3 s, a run whose examples hit the loop often took minutes and 13 GB (a CI hang).
        """
        self.mods["bashlex.tokenizer"].eoftoken.__dict__.pop("lexer", None)
        old = signal.signal(signal.SIGALRM, _timeout)
        signal.setitimer(signal.ITIMER_REAL, 0.5, 0.1)
        try:
            with _modules(self.mods):
                try:
                    return ("ok", [node.dump() for node in self.fn(source)])
                except RecursionError:
                    return ("error", "RecursionError", "")
                except Exception as e:  # bashlex raises a zoo: ParsingError, NotImplementedError, ...
                    return ("error", type(e).__name__, str(e))
        except _Timeout:
            return ("timeout",)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


class _Timeout(BaseException):
    pass


def _timeout(*_):
    raise _Timeout


def load_cached() -> Impl:
    """Run diag_wrapper._bashlex's first-use import from scratch (no bashlex loaded)."""
    prev = _bashlex._parse, _bashlex.mode
    with _modules({}):
        _bashlex._parse = _bashlex.mode = None
        try:
            fn = _bashlex._load()
            impl = Impl(fn, _bashlex_modules(), _bashlex.mode)
        finally:
            _bashlex._parse, _bashlex.mode = prev
    return impl


def load_stock() -> Impl:
    with _modules({}):
        import bashlex

        return Impl(bashlex.parse, _bashlex_modules(), "stock")


@pytest.fixture(scope="module")
def cached() -> Impl:
    impl = load_cached()
    assert impl.mode == "cached"
    return impl


@pytest.fixture(scope="module")
def stock() -> Impl:
    return load_stock()


# ---------------------------------------------------------------- corpus

_SIMPLE = [
    "true", "uptime", "ls", "ls -la", "ls -la /var/log", "df -h", "free -m", "uname -a", "id",
    "journalctl -u nginx -n 100", "journalctl -u nginx.service --since '1 hour ago' --no-pager",
    "journalctl _SYSTEMD_UNIT=sshd.service PRIORITY=3", "systemctl status nginx", "systemctl status",
    "systemctl list-units --failed", "ip addr show", "ip -j route", "ss -tlnp", "cat /etc/os-release",
    "head -n 20 /var/log/syslog", "tail -f /var/log/nginx/error.log", "grep -r error /var/log/nginx",
    "find /var/log -name '*.gz' -mtime +7", "du -sh /var/lib/docker", "ps aux", "ps -eo pid,comm,rss",
    "stat /etc/passwd", "wc -l /etc/passwd", "dmesg -T", "lsblk -f", "mount", "env", "date +%s",
    "echo hello world", "echo", "a=b", "a=b c", "A=1 B=2 cmd arg", "x+=1", "--", "-", "cmd -- -x",
    "cmd  with   many    spaces", "\tcmd\targ", "cmd arg ", " cmd", "cmd=", "=cmd", "/usr/bin/env ls",
    "./script.sh", "../x", "~", "~/x", "~root/x", "a~b", "cmd ~", "cmd a=~/x", "!", "! true", "!!", "!x",
    "cmd #comment", "#only", "cmd a#b", "cmd '#'", "x*", "*", "?", "[ab]", "cmd [", "cmd ]", "{a,b}",
    "{", "}", "{ }", "cmd {a..z}", "a\\ b", "\\", "cmd \\", "cmd \\\\", "cmd \\$x", "cmd \\'",
]
_QUOTING = [
    "echo 'single quoted'", 'echo "double quoted"', "echo 'a'b'c'", 'echo "a"b"c"', "echo 'it''s'",
    'echo "it\'s"', "echo 'say \"hi\"'", 'echo "\\$HOME"', 'echo "\\x"', 'echo "\\\\"', 'echo "a\\"b"',
    "echo $'a\\nb'", 'echo $"loc"', "echo ''", 'echo ""', "echo '' ''", 'echo "$HOME"', "echo '$HOME'",
    'echo "${HOME}/x"', 'echo "$(date)"', "echo '$(date)'", 'echo "`date`"', "echo 'unterminated",
    'echo "unterminated', "echo \"mixed 'quotes'\"", "echo 'a\tb'", 'echo "a b" c "d e"', "e'c'ho x",
    '"ls"', "'ls' -la", 'l"s"', "echo \\\"x", "echo a\\'b", "echo 'a\\'", 'echo "a\\', "echo ''''",
]
_LISTS = [
    "a; b", "a;b", "a ; b ;", "a && b", "a || b", "a && b || c", "a & b", "a &", "a &&", "a ||", "; a",
    "a ;; b", "a & & b", "a; b; c; d", "a && b; c || d &", "true && false || echo x", "a\nb", "a\n\nb",
    "a;\nb", "a &&\nb", "a; ;", "&", "&&", "||", ";",
]
_PIPES = [
    "a | b", "a|b", "a | b | c", "a |& b", "! a | b", "a |", "| a", "a || b | c", "time a | b",
    "ls -la /var/log | grep err | head -n 5", "ps aux | sort -k4 -nr | head", "a | b && c | d",
    "cat x | tee y", "a | | b",
]
_REDIRS = [
    "a > f", "a >f", "a>f", "a >> f", "a < f", "a 2> f", "a 2>&1", "a >&2", "a &> f", "a &>> f",
    "a <> f", "a >| f", "a 3< f", "a 1>&-", "a <&-", "a > f 2>&1", "> f", "< f a", "a > ", "a >",
    "a <<< word", "a <<< 'x y'", "a << EOF\nx\nEOF", "a <<-EOF\n\tx\nEOF", "a << 'EOF'\n$x\nEOF",
    "a << EOF", "a > $f", "a > 'f g'", "a > /dev/null 2>&1 &", "a 2>/dev/null | b", "{ a; } > f",
    "a >& f", "a 10> f", "a > f > g",
]
_SUBST = [
    "echo $HOME", "echo $1", "echo $@", "echo $*", "echo $#", "echo $?", "echo $$", "echo $!", "echo $-",
    "echo ${HOME}", "echo ${x:-d}", "echo ${x:=d}", "echo ${x:?e}", "echo ${x:+a}", "echo ${#x}",
    "echo ${x%.*}", "echo ${x##*/}", "echo ${x/a/b}", "echo ${x,,}", "echo ${!x}", "echo ${x[0]}",
    "echo $(date)", "echo $(echo $(date))", "echo `date`", "echo `echo \\`date\\``", "echo $((1+2))",
    "echo $((x*2))", "echo $[1+2]", "cat <(ls)", "diff <(a) <(b)", "tee >(cat)", "echo $(", "echo $(a",
    "echo ${", "echo ${x", "echo $((1+", "echo `date", "echo $(a; b)", "echo $(a | b)", "echo $(a && b)",
    "echo \"$(a) $(b)\"", "x=$(date) cmd", "echo a$(b)c", "echo $(case x in a) b;; esac)",
    "echo $(echo ')')", "echo $(# c\n)", "echo ${x:-$(date)}", "$(ls)", "`ls`", "$x", "${x}y", "$",
    "echo $ x", "echo a$", "echo $'", "echo $\"",
]
_COMPOUND = [
    "{ a; }", "{ a; b; }", "{a;}", "{ a }", "( a )", "(a)", "(a; b)", "( a ) > f", "(", ")", "( a",
    "a )", "if a; then b; fi", "if a; then b; else c; fi", "if a; then b; elif c; then d; fi",
    "if a; then b", "if; then; fi", "while a; do b; done", "until a; do b; done",
    "for x in a b c; do echo $x; done", "for x; do a; done", "for ((i=0;i<3;i++)); do a; done",
    "for x in; do a; done", "for in a; do b; done", "select x in a b; do c; done",
    "case x in a) b;; esac", "case x in a|b) c;; *) d;; esac", "case x in esac", "case x in a) b",
    "f() { a; }", "function f { a; }", "function f() { a; }", "f () ( a )", "coproc a", "coproc n { a; }",
    "[[ -f x ]]", "[[ a == b ]]", "(( x++ ))", "((1))", "time a", "time -p a", "! { a; }",
    "if a; then { b; } fi", "while true; do :; done &", "{ a; } | b", "( a ) && { b; }",
    "if [ -f x ]; then cat x; fi", "for f in *.log; do wc -l \"$f\"; done", "done", "fi", "then", "esac",
    "do", "in", "elif", "else", "echo if then fi", "echo for while", "if", "while", "for", "case",
]
_ODD = [
    "", " ", "  ", "\t", "\n", "\n\n", ";;", "(( ", "((", "))", "[[", "]]", "a b c d e f g h i j k l m n o p",
    "x" * 300, "echo " + "a " * 100, "a" + "; a" * 30, "a" + " | a" * 30, "echo " + "$(" * 5 + "x" + ")" * 5,
    "echo " + "'x' " * 40, "é", "echo ünïcödé 'ñ' \"ß\"", "echo \u2028", "echo \x1b[31m", "echo \r",
    "\\\n", "a\\\nb", "echo a\\\n b", "echo '\n'", 'echo "\n"', "cmd\x00", "cmd 2>", "cmd &>",
    "cmd <(", "cmd >(", "a=(1 2 3)", "a[0]=x", "declare -A m", "export A=1", "alias x=y", "let x=1",
    "exec ls", "eval 'ls'", ". file", "source file", "trap '' INT", "%1", "fg", "!-1", "^a^b",
]


def corpus() -> list[str]:
    base = _SIMPLE + _QUOTING + _LISTS + _PIPES + _REDIRS + _SUBST + _COMPOUND + _ODD
    # Some mechanical variety on top: every quoting case inside a pipeline and a list.
    extra = [f"{c} | wc -l" for c in _QUOTING[:20]] + [f"true && {c}" for c in _SUBST[:20]]
    out = list(dict.fromkeys(base + extra))
    assert len(out) >= 300, len(out)
    return out


CORPUS = corpus()


def test_cached_mode_is_used(cached: Impl) -> None:
    assert cached.mode == "cached"
    assert cached.mods["bashlex"] is not load_stock().mods["bashlex"]


@pytest.mark.parametrize("source", CORPUS, ids=range(len(CORPUS)))
def test_corpus_same_as_stock(cached: Impl, stock: Impl, source: str) -> None:
    assert cached.run(source) == stock.run(source)


def test_corpus_exercises_errors_and_trees(cached: Impl) -> None:
    kinds = {cached.run(s)[0] for s in CORPUS}
    assert kinds == {"ok", "error"}
    errors = {cached.run(s)[1] for s in CORPUS if cached.run(s)[0] == "error"}
    assert "ParsingError" in errors


_PIECES = st.sampled_from(
    [" ", "a", "b", "ls", "-l", "x=1", ";", "&", "&&", "|", "||", "|&", "(", ")", "{", "}", "<", ">",
     ">>", "2>&1", "<<<", "'", '"', "`", "$", "$(", "${", "$((", "))", "\\", "#", "*", "~", "!", "\n",
     "if", "then", "fi", "for", "in", "do", "done", "case", "esac", ";;", "while", "[[", "]]", "=", "é"]
)
_SHELLISH = st.one_of(
    st.lists(_PIECES, max_size=12).map("".join),
    st.text(alphabet=" \tabc-=$(){}[];|&<>'\"`\\\n#*?~!0123456789", max_size=30),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=_SHELLISH)
def test_property_same_as_stock(cached: Impl, stock: Impl, source: str) -> None:
    assert cached.run(source) == stock.run(source)


# ---------------------------------------------------------------- fallback and no rebuild


@pytest.mark.parametrize(
    "attr, value, reason",
    [
        ("BASHLEX_VERSION", "0.0", "installed bashlex 0.18, tables are for 0.0"),
        ("GRAMMAR", T.GRAMMAR.replace("simple_list", "simple_lisp", 1), "grammar differs"),
        ("TABLES_FORMAT", 99, "tables format 99 unknown"),
    ],
    ids=["version", "grammar", "format"],
)
def test_mismatch_falls_back_to_stock(monkeypatch, stock: Impl, attr, value, reason) -> None:
    monkeypatch.setattr(T, attr, value)
    impl = load_cached()
    assert impl.mode.startswith("stock: ") and reason in impl.mode
    # the fallback is a plain stock import: its tables were built by yacc, not ours
    assert impl.mods["bashlex.yacc"].yacc.__module__ == "bashlex.yacc"
    for source in ["ls -la | grep x", "echo $(date) > f", "if a; then", "a &&"]:
        assert impl.run(source) == stock.run(source)


def test_missing_tables_module_falls_back(monkeypatch, stock: Impl) -> None:
    monkeypatch.setitem(sys.modules, "diag_wrapper._bashlex_tables", None)
    impl = load_cached()
    assert impl.mode.startswith("stock: no shipped tables")
    assert impl.run("a | b") == stock.run("a | b")


def test_unknown_dist_info_version_falls_back(monkeypatch) -> None:
    monkeypatch.setattr(_bashlex, "_installed_version", lambda _dir: "0.19")
    assert load_cached().mode == "stock: installed bashlex 0.19, tables are for 0.18"


def test_already_imported_bashlex_is_used_as_is(stock: Impl) -> None:
    prev = _bashlex._parse, _bashlex.mode
    with _modules(stock.mods):
        _bashlex._parse = _bashlex.mode = None
        try:
            fn = _bashlex._load()
            assert _bashlex.mode.startswith("stock: bashlex was imported before")
            assert fn.__closure__ and any(c.cell_contents is stock.fn for c in fn.__closure__)
        finally:
            _bashlex._parse, _bashlex.mode = prev


def test_cached_path_builds_no_tables_and_restores_yacc() -> None:
    built = []

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.endswith(os.path.join("bashlex", "yacc.py")):
            if code.co_name in ("lr_parse_table", "lr0_items", "add_lalr_lookaheads"):
                built.append(code.co_name)

    def profiled(load):
        built.clear()
        sys.setprofile(profile)
        try:
            return load()
        finally:
            sys.setprofile(None)

    profiled(load_stock)
    assert "lr_parse_table" in built  # the probe does see a table build
    impl = profiled(load_cached)
    assert impl.mode == "cached"
    assert built == []
    yacc = impl.mods["bashlex.yacc"]
    assert yacc.yacc.__name__ == "yacc" and yacc.yacc.__module__ == "bashlex.yacc"


def test_cached_import_in_fresh_isolated_process() -> None:
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from diag_wrapper import _bashlex;"
        "assert 'bashlex' not in sys.modules;"
        "print(_bashlex.parse('ls -la | head')[0].kind, _bashlex.mode)"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code, ROOT], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pipeline", "cached"]
    assert out.stderr == ""


# ---------------------------------------------------------------- the shipped tables are current


def _gen_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_bashlex_tables", GEN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_tables_equal_a_fresh_build(stock: Impl) -> None:
    with _modules(stock.mods):
        fresh = _gen_module().build()
        yacc, parser = stock.mods["bashlex.yacc"], stock.mods["bashlex.parser"]
        decoded = _bashlex._LRTable(yacc, T, vars(parser))
    assert fresh["version"] == T.BASHLEX_VERSION
    assert fresh["grammar"] == T.GRAMMAR
    assert decoded.lr_action == fresh["action"]
    assert decoded.lr_goto == fresh["goto"]
    assert [(p.name, tuple(p.prod), p.func) for p in decoded.lr_productions] == fresh["productions"]
    assert all(p.callable is getattr(parser, p.func) for p in decoded.lr_productions if p.func)


def test_shipped_tables_module_is_up_to_date() -> None:
    out = subprocess.run([sys.executable, GEN, "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_eof_errors_do_not_depend_on_earlier_inputs() -> None:
    """Stock bashlex reports the first EOF-error input's length forever after; we do not."""
    for first in ["(", "{ a;"]:
        with pytest.raises(Exception) as warm:
            _bashlex.parse(first)
        assert str(warm.value) == f"unexpected EOF (position {len(first)})"
        with pytest.raises(Exception) as exc:
            _bashlex.parse("if a; then")
        assert str(exc.value) == "unexpected EOF (position 10)"
        assert exc.value.s == "if a; then"
