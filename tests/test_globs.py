"""Globs in path values: expanded by the wrapper exactly as bash expands them (a property
test against real bash on generated trees), every expanded path checked like any other,
denied matches left out with a note, and refused where the value is not a path."""

from __future__ import annotations

import os
import sys
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from diag_wrapper.deny import MAX_GLOB, RealHost, expand_glob

sys.path.insert(0, os.path.dirname(__file__))
from conftest import RootAbove  # noqa: E402
from diag_wrapper.model import ALLOW, DENY, Deny
from diag_wrapper.parse import parse_words
from diag_wrapper.plan import plan
from diag_wrapper.policy import load

BASH = shutil.which("bash", path="/usr/bin:/bin")
NAME_CHARS = "abcXY01.-_ *?[]'"
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=6).filter(lambda n: n not in (".", ".."))
# One piece of the last component as an agent types it, and whether it is a wildcard.
piece = st.one_of(
    st.sampled_from(["*", "?"]),
    st.text(alphabet="abcXY01.-_", min_size=1, max_size=3),
    st.text(alphabet="abc*?. ", min_size=1, max_size=3).map(lambda t: f"'{t}'"),
    st.sampled_from(["\\*", "\\?", '"*"', '"a?"']),
)
patterns = st.lists(piece, min_size=1, max_size=4).map("".join).filter(lambda p: "*" in p or "?" in p)


def _bash_words(cwd: str, word: str) -> list[str]:
    out = subprocess.run([BASH, "--norc", "--noprofile", "-c", f"printf '%s\\0' {word}"], cwd=cwd,
                         capture_output=True, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}, timeout=10)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode().split("\0")[:-1]


def _ours(word: str) -> list[str] | None:
    (words,) = parse_words(f"ls {word}".encode())
    w = words[1]
    if w.glob is None:
        return None
    return expand_glob(w.glob, w.literal, RealHost())


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.lists(st.tuples(names, st.booleans()), max_size=12, unique_by=lambda t: t[0]), pattern=patterns,
       hidden=st.booleans(), absolute=st.booleans())
def test_the_expansion_is_what_bash_makes_of_it(tmp_path_factory, tree, pattern, hidden, absolute):
    root = tmp_path_factory.mktemp("g")
    for name, is_dir in tree:
        (root / name).mkdir() if is_dir else (root / name).write_text("")
    word = ("." + pattern if hidden else pattern)
    word = f"{root}/{word}" if absolute else word
    try:
        ours = _ours(word)
    except Deny:  # the parser refused the word (bashlex reads it differently, say)
        assume(False)
    if ours is None:
        return  # every wildcard was quoted: a literal word
    if not absolute:
        # relative: as seen from the directory bash runs in
        old = os.getcwd()
        os.chdir(root)
        try:
            ours = _ours(word)
        finally:
            os.chdir(old)
    assert ours == _bash_words(str(root), word)


def test_the_property_sees_real_expansions(tmp_path):
    """Not vacuous: dotfiles, sorting, quoting and the unmatched case, as bash does them."""
    for n in ("b.log", "a.log", ".h.log", "A.log", "x*y", "c.txt"):
        (tmp_path / n).write_text("")
    for word, want in [
        (f"{tmp_path}/*.log", [f"{tmp_path}/A.log", f"{tmp_path}/a.log", f"{tmp_path}/b.log"]),
        (f"{tmp_path}/.*", [f"{tmp_path}/.h.log"]),
        (f"{tmp_path}/x'*'?", [f"{tmp_path}/x*y"]),
        (f"{tmp_path}/'*'", None),
        (f"{tmp_path}/nothing*", [f"{tmp_path}/nothing*"]),
    ]:
        assert _ours(word) == want
        if want is not None and BASH:
            assert _bash_words(str(tmp_path), word) == want


# --------------------------------------------------------------------------- through plan


@pytest.fixture
def tree(tmp_path):
    """A host tree with logs and a denied directory beside them; a policy on the real host."""
    logs = tmp_path / "log"
    logs.mkdir()
    for n in ("access.log", "error.log", "other.txt"):
        (logs / n).write_text(n + "\n")
    (tmp_path / "lib").mkdir()
    for n in ("app", "secretsvc", "cache"):
        (tmp_path / "lib" / n).mkdir()
    (tmp_path / "lib" / "secretsvc" / "signing.key").write_text("k")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("ls", "du", "cat", "tail", "grep", "systemctl"):
        os.symlink("/bin/true", bindir / name)
    path = tmp_path / "p.toml"
    fleet = os.path.join(os.path.dirname(__file__), "..", "policy", "fleet.toml")
    path.write_text(f'include = ["{os.path.abspath(fleet)}"]\n[[deny]]\npath = "{tmp_path}/lib/secretsvc"\n'
                    f'why = "a service secret"\n[settings]\nsearch_path = ["{bindir}"]\nsandbox = "off"\n'
                    'persist_roots = []\n')
    return tmp_path, load(str(path))


def test_a_glob_in_a_path_value_is_expanded_and_each_path_checked(tree):
    root, pol = tree
    p = plan(f"tail -n 5 {root}/log/*.log".encode(), pol)
    assert p.decision == ALLOW, p.reason
    assert p.argv == ("tail", "-n", "5", f"{root}/log/access.log", f"{root}/log/error.log")
    assert [c.value for c in p.paths] == [f"{root}/log/access.log", f"{root}/log/error.log"]
    assert p.pass_fds  # handed over as descriptors like any named file


def test_a_denied_match_is_left_out_and_said(tree):
    root, pol = tree
    p = plan(f"du -sh {root}/lib/*".encode(), pol, RootAbove(f"{root}/lib"))
    assert p.decision == ALLOW, p.reason
    assert p.argv == ("du", "-sh", f"{root}/lib/app", f"{root}/lib/cache")
    assert p.notes == (f"note: {root}/lib/* left out 1 denied match(es): {root}/lib/secretsvc",)


def test_the_names_in_a_denied_directory_are_never_listed(tree, monkeypatch):
    root, pol = tree
    listed = []
    real = RealHost.listdir
    monkeypatch.setattr(RealHost, "listdir", lambda self, p: listed.append(p) or real(self, p))
    p = plan(f"ls {root}/lib/secretsvc/*".encode(), pol)
    assert (p.decision, p.code) == (DENY, "path.denied")
    assert "signing.key" not in p.reason and not listed


@pytest.mark.parametrize("command,code", [
    ("grep err* {root}/log/error.log", "parse.glob"),  # a pattern, not a path
    ("systemctl status nginx*", "parse.glob"),  # a unit pattern: quote it
    ("ls {root}/*/access.log", "parse.glob"),  # only the last component
    ("ls {root}/log/[ae]*", "parse.glob"),  # no bracket expressions
    ("ls {root}/log/* | grep *", "parse.glob"),  # a filter names no path
    ("cat {root}/lib/secretsvc/*", "path.denied"),
])
def test_a_glob_is_refused_where_it_would_not_be_a_path(tree, command, code):
    root, pol = tree
    p = plan(command.format(root=root).encode(), pol)
    assert (p.decision, p.code) == (DENY, code), p.reason


def test_an_unmatched_glob_is_passed_as_typed_like_bash(tree):
    root, pol = tree
    p = plan(f"ls {root}/log/*.gz".encode(), pol, RootAbove(f"{root}/log"))
    assert p.decision == ALLOW and p.argv == ("ls", f"{root}/log/*.gz")


def test_too_many_matches_are_refused(tmp_path):
    for i in range(MAX_GLOB + 1):
        (tmp_path / f"f{i}").write_text("")
    (words,) = parse_words(f"ls {tmp_path}/f*".encode())
    with pytest.raises(Exception) as info:
        expand_glob(words[1].glob, words[1].literal, RealHost())
    assert getattr(info.value, "code", None) == "parse.glob" and "narrow" in str(info.value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.lists(st.tuples(st.text(alphabet="ab.-_*", min_size=1, max_size=4).filter(lambda n: n not in (".", "..")),
                               st.sampled_from(["file", "dir", "link"])), max_size=10, unique_by=lambda t: t[0]),
       pattern=st.lists(st.sampled_from(["a", "b", "*", "a*", "*b", ".*", "*.*", "x"]), min_size=1, max_size=3))
def test_the_deny_lists_glob_is_the_glob_modules(tmp_path_factory, tree, pattern):
    """RealHost.glob (deny entries: '*' within components) lists what glob.glob does."""
    import glob as stdlib_glob

    root = tmp_path_factory.mktemp("dg")
    for name, kind in tree:
        if kind == "dir":
            (root / name).mkdir()
            (root / name / "a").write_text("")
        elif kind == "link":
            (root / name).symlink_to("nowhere")
        else:
            (root / name).write_text("")
    pat = str(root) + "/" + "/".join(pattern)
    assert RealHost().glob(pat) == sorted(stdlib_glob.glob(pat, include_hidden=True))
