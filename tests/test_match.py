"""match(): the typed allowlist keeps each path value's place in argv (so fd passing replaces
exactly that word), and reads options the way the real tool's getopt does."""

from __future__ import annotations

import pytest

from diag_wrapper.match import match
from diag_wrapper.model import Arg, Deny


def _args(policy, command: str) -> list[Arg]:
    return list(match(tuple(command.split()), policy).paths)


@pytest.mark.parametrize("command,want", [
    ("cat /etc/hostname", [Arg("/etc/hostname", "file", 1)]),
    ("cat -n /a /b", [Arg("/a", "file", 2), Arg("/b", "file", 3)]),
    ("grep x x", [Arg("x", "file", 2)]),  # the pattern spelled like the file is not the file
    ("grep -i /etc/hosts /etc/hosts", [Arg("/etc/hosts", "file", 3)]),
    ("grep -rn x /etc/nginx", [Arg("/etc/nginx", "tree", 3)]),  # -r makes file slots trees
    ("tail -n 5 /var/log/x", [Arg("/var/log/x", "file", 3)]),
    ("ls -la /var/log", [Arg("/var/log", "file", 2)]),
    ("du", [Arg(".", "tree", None)]),  # the working directory, implied: no word to replace
    ("cat -- -x", [Arg("-x", "file", 2)]),
])
def test_each_path_value_keeps_its_argv_index(web02, command, want):
    assert _args(web02, command) == want


def test_option_values_given_as_the_next_word_keep_their_index_attached_ones_do_not(web02):
    # journalctl -D/--directory is not allowed; findmnt --target takes a path: --target X / --target=X
    got = _args(web02, "findmnt --target /var/log")
    assert got == [Arg("/var/log", "file", 2)]
    got = _args(web02, "findmnt --target=/var/log")
    assert got == [Arg("/var/log", "file", None)]  # part of a word: it cannot be replaced by a descriptor


def test_the_index_points_at_the_value_in_argv(web02):
    for command in ["cat /a /b", "grep -i x /a /b", "tail -n 1 -- /a", "findmnt --target /a", "wc -l /a x"]:
        argv = tuple(command.split())
        for a in match(argv, web02).paths:
            assert a.index is None or argv[a.index] == a.value, (command, a)


@pytest.mark.parametrize("command,code", [
    ("journalctl --unit", "match.missing-value"),
    ("journalctl --uni=x", "match.abbreviated-option"),
    ("journalctl -q=x", "match.unknown-option"),
    ("journalctl --no-pager=x", "match.unexpected-value"),
    ("cat", "match.too-few-args"),
    ("ip", "match.missing-subcommand"),
    ("systemctl stop x", "match.unknown-subcommand"),
    ("/bin/cat x", "match.path-command"),
    ("vim x", "match.unknown-command"),
    ("ss -6 dst 1.2.3.4", "match.bad-combination"),
])
def test_match_refusals(web02, command, code):
    with pytest.raises(Deny) as exc:
        match(tuple(command.split()), web02)
    assert exc.value.code == code
