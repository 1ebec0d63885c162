"""Typed filter pipelines: `COMMAND | FILTER | FILTER ...`, parsed, matched and planned.

The parser splits at a plain `|` only; bash is the oracle for every stage's argv (a
recorder under each stage's name prints what bash handed to execve). Each filter's table
below lists what else the real program can do (read a file, write one, recurse, follow)
and shows it refused; the supervisor's side (pipes, pipefail, SIGPIPE) is in
tests/root/test_supervise.py.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bash_oracle import BASH, OracleSkip, bash_pipeline_argvs
from diag_wrapper.model import ALLOW, DENY, Deny, PolicyError
from diag_wrapper.parse import MAX_STAGES, parse_command, parse_pipeline
from diag_wrapper.plan import plan
from diag_wrapper.policy import load

# --------------------------------------------------------------------------- parsing

SPLIT = [
    ("journalctl -u n8n | grep -i timeout", (("journalctl", "-u", "n8n"), ("grep", "-i", "timeout"))),
    ("a|b", (("a",), ("b",))),
    ("a  |  b  |c", (("a",), ("b",), ("c",))),
    ("grep 'x|y' f | wc -l", (("grep", "x|y", "f"), ("wc", "-l"))),
    ('grep "a | b" f', (("grep", "a | b", "f"),)),
    ("grep a\\|b f", (("grep", "a|b", "f"),)),
    ("ls", (("ls",),)),
]


@pytest.mark.parametrize("command,stages", SPLIT)
def test_a_plain_pipe_splits_stages(command, stages):
    assert parse_pipeline(command.encode()) == stages


REFUSED = [
    ("a |", "parse.syntax"),
    ("| a", "parse.syntax"),
    ("a | | b", "parse.syntax"),
    ("a || b", "parse.list"),
    ("a |& b", "parse.pipeline"),
    ("a | b; c", "parse.list"),
    ("a | b && c", "parse.list"),
    ("a | b > f", "parse.redirect"),
    ("a | b < f", "parse.redirect"),
    ("a | b &", "parse.background"),
    ("a | (b)", "parse.compound"),
    ("a | x=1 b", "parse.assignment"),
    ("a | if b", "parse.reserved-word"),
    ("a | ! b", "parse.history"),
    ("a | %1", "parse.reserved-word"),
    ("a | $(b)", "parse.command-substitution"),
    ("a | b <(c)", "parse.process-substitution"),
    ("a | b [x]", "parse.glob"),
    (" | ".join("a" * (MAX_STAGES + 1)), "parse.pipeline"),
]


@pytest.mark.parametrize("command,code", REFUSED)
def test_everything_but_a_plain_pipeline_stays_refused(command, code):
    with pytest.raises(Deny) as info:
        parse_pipeline(command.encode())
    assert info.value.code == code


def test_the_single_command_parser_still_refuses_a_pipe():
    with pytest.raises(Deny) as info:
        parse_command(b"a | b")
    assert info.value.code == "parse.pipeline"


# --------------------------------------------------------------------------- bash as oracle

name = st.sampled_from(["journalctl", "grep", "head", "tail", "sort", "cut", "wc", "uniq", "a-b"])
plain = st.text(alphabet="abcxyz0189-_./:,=+", min_size=1, max_size=6)
quoted = st.text(alphabet="ab |&;<>()*?[]{}~#!$`\"\\=", max_size=6).map(lambda t: "'" + t.replace("'", "") + "'")
dq = st.text(alphabet="ab |&;<>()*?[]{}~#'", max_size=6).map(lambda t: f'"{t}"')
escaped = st.sampled_from(list(" |&;<>()*?[]{}~#!$`\"'\\")).map(lambda c: "\\" + c)
word = plain | quoted | dq | escaped | st.lists(plain | quoted | escaped, min_size=2, max_size=3).map("".join)
stage = st.builds(lambda n, ws: " ".join([n, *ws]), name, st.lists(word, max_size=4))
glue = st.sampled_from([" | ", "|", " |", "| ", "  |  "])
pipeline = st.builds(lambda first, rest, g: g.join([first, *rest]), stage, st.lists(stage, min_size=1, max_size=4), glue)


@pytest.mark.skipif(not os.access(BASH, os.X_OK), reason="needs /bin/bash")
@settings(max_examples=150, deadline=None)
@given(pipeline)
@example("journalctl -u n8n --since '1 hour ago' | grep -i 'time out' | tail -n 5")
@example("grep 'a|b' x|sort -t '|' -k 2|uniq -c")
@example("journalctl | grep \\| | cut -d '|' -f 2")
def test_every_accepted_stage_is_what_bash_hands_to_execve(command):
    try:
        stages = parse_pipeline(command.encode())
    except Deny:
        return
    try:
        theirs = bash_pipeline_argvs(command, tuple(s[0] for s in stages))
    except OracleSkip:
        return
    assert theirs == stages


# --------------------------------------------------------------------------- matching and plans


def test_a_pipeline_plans_each_filter_with_its_program_and_argv(web02):
    p = plan(b"journalctl -u n8n | grep -i timeout | tail -n 5", web02)
    assert p.decision == ALLOW, p.reason
    assert p.exec_argv == ("journalctl", "--no-pager", "-u", "n8n")
    assert [(f.rule, f.exec_argv) for f in p.filters] == [("grep", ("grep", "-i", "timeout")),
                                                        ("tail", ("tail", "-n", "5"))]
    assert all(f.executable == os.path.join(web02.settings.search_path[0], f.argv[0]) for f in p.filters)
    assert "pipeline" in p.layers
    assert p.redact and p.redact == web02.redact  # the net is on after the filters


def test_a_denied_first_stage_is_named_with_its_reason(web02):
    p = plan(b"cat /etc/shadow | grep root", web02)
    assert (p.decision, p.code) == (DENY, "path.denied")
    assert p.reason.startswith("stage 1 of the pipeline (cat): ")


def test_a_denied_filter_is_named_and_its_rule_says_it_follows_a_pipe(web02):
    p = plan(b"journalctl -n 5 | sort -o /tmp/x", web02)
    assert (p.code, p.rule) == ("match.unknown-option", "| sort")
    assert p.reason.startswith("stage 2 of the pipeline (sort): ")


# What else each filter program can do, and the code that refuses it after '|'.
FILTER_REFUSALS = [
    # a non-filter after '|': nothing runs that is not a stdin-only filter
    ("journalctl | sh", "match.not-a-filter"),
    ("journalctl | tee /tmp/x", "match.not-a-filter"),
    ("journalctl | xargs cat", "match.not-a-filter"),
    ("journalctl | cat", "match.not-a-filter"),
    ("journalctl | journalctl", "match.not-a-filter"),
    ("journalctl | /usr/bin/grep x", "match.path-command"),
    # grep: file operands, patterns from a file, recursion (walks '.' with no operand), devices
    ("journalctl | grep x /etc/hostname", "match.too-many-args"),
    ("journalctl | grep -f /etc/hostname", "match.unknown-option"),
    ("journalctl | grep --file=/etc/hostname", "match.unknown-option"),
    ("journalctl | grep -r x", "match.unknown-option"),
    ("journalctl | grep -R x", "match.unknown-option"),
    ("journalctl | grep -d recurse x", "match.unknown-option"),
    ("journalctl | grep -D read x", "match.unknown-option"),
    ("journalctl | grep --exclude-from=/x x", "match.unknown-option"),
    ("journalctl | grep -e x", "match.unknown-option"),
    ("journalctl | grep", "match.too-few-args"),
    # head, tail: operands; tail follows
    ("journalctl | head -n 5 /etc/hostname", "match.too-many-args"),
    ("journalctl | tail -n 5 /etc/hostname", "match.too-many-args"),
    ("journalctl | tail -f", "match.unknown-option"),
    ("journalctl | tail -F", "match.unknown-option"),
    ("journalctl | tail --follow=name", "match.unknown-option"),
    ("journalctl | tail --pid=1", "match.unknown-option"),
    ("journalctl | tail --retry", "match.unknown-option"),
    ("journalctl | tail -s 1", "match.unknown-option"),
    # wc: a list of names from a file, operands
    ("journalctl | wc --files0-from=/etc/hostname", "match.unknown-option"),
    ("journalctl | wc -l /etc/hostname", "match.too-many-args"),
    # sort: writes (-o, -T temporary files), runs (--compress-program), reads (--files0-from,
    # --random-source, operands, -m merges files), resources (-S, --parallel)
    ("journalctl | sort -o /tmp/x", "match.unknown-option"),
    ("journalctl | sort --output=/tmp/x", "match.unknown-option"),
    ("journalctl | sort -T /tmp", "match.unknown-option"),
    ("journalctl | sort --compress-program=sh", "match.unknown-option"),
    ("journalctl | sort --files0-from=/x", "match.unknown-option"),
    ("journalctl | sort --random-source=/etc/hostname -R", "match.unknown-option"),
    ("journalctl | sort -m /etc/hostname", "match.unknown-option"),
    ("journalctl | sort /etc/hostname", "match.too-many-args"),
    ("journalctl | sort -S 90%", "match.unknown-option"),
    ("journalctl | sort --parallel=64", "match.unknown-option"),
    ("journalctl | sort -k '1;x'", "match.bad-value"),
    # uniq: INPUT OUTPUT (writes OUTPUT)
    ("journalctl | uniq /etc/hostname", "match.too-many-args"),
    ("journalctl | uniq - /tmp/out", "match.too-many-args"),
    # cut: operands
    ("journalctl | cut -f 1 /etc/hostname", "match.too-many-args"),
    ("journalctl | cut -f x", "match.bad-value"),
]


@pytest.mark.parametrize("command,code", FILTER_REFUSALS)
def test_what_else_a_filter_can_do_is_refused(web02, command, code):
    p = plan(command.encode(), web02)
    assert (p.decision, p.code) == (DENY, code), p.reason


FILTER_ALLOWED = [
    "journalctl -u n8n | grep -i -m 20 timeout",
    "journalctl -u nginx | grep -v -E 'GET /health' | tail -n 20",
    "journalctl -u synapse | grep -c ERROR",
    "journalctl -u x | head -n -5",
    "journalctl -u x | tail -n +100 | head -n 10",
    "journalctl -o cat -u nginx | cut -d ' ' -f 1 | sort | uniq -c | sort -rn | head -n 10",
    "ps aux | sort -k 3 -rn | head -n 5",
    "ss -tan | wc -l",
    "cat /etc/hostname | wc -c",
    "journalctl -u x | sort -t : -k 2,2n",
    "journalctl -u x | cut -c 1-80 --complement",
]


@pytest.mark.parametrize("command", FILTER_ALLOWED)
def test_the_pipelines_an_sre_types_are_allowed(web02, command):
    p = plan(command.encode(), web02)
    assert p.decision == ALLOW, p.reason
    assert len(p.filters) == command.count(" | ")


# --------------------------------------------------------------------------- the policy's filters


def _load(tmp_path, text):
    f = tmp_path / "p.toml"
    f.write_text(textwrap.dedent(text))
    return load(str(f))


@pytest.mark.parametrize("body,problem", [
    ('args = [{ name = "F", type = "file" }]', "is a path"),
    ('options = [{ names = ["-f"], value = "file" }]', "names a path"),
    ('options = [{ names = ["-r"], recursive = true }]', "recurses"),
    ('reads = "content"', "unknown key"),
    ('timeout = 5', "unknown key"),
    ('memory_mb = 64', "unknown key"),
    ('redact = false', "unknown key"),
    ('[filters.x.subcommands.y]\nargs = [{ name = "F", type = "file" }]', "is a path"),
])
def test_a_filter_that_could_read_a_file_does_not_load(tmp_path, body, problem):
    with pytest.raises(PolicyError) as info:
        _load(tmp_path, f"[filters.x]\n{body}\n")
    assert "filters.x" in str(info.value) and problem in str(info.value)


def test_filters_and_commands_are_separate_tables(tmp_path):
    p = _load(tmp_path, """
        [settings]
        search_path = ["/usr/bin"]
        [commands.grep]
        args = [{ name = "P", type = "pattern", min = 1 }, { name = "F", type = "file", min = 1 }]
        [filters.wc]
    """)
    assert plan(b"grep x /etc/hostname | wc", p).decision == ALLOW
    assert plan(b"grep x /etc/hostname | grep y", p).code == "match.not-a-filter"
    assert plan(b"wc | wc", p).code == "match.unknown-command"


# --------------------------------------------------------------------------- what to run instead


@pytest.mark.parametrize("command,suggests", [
    ("dmesg -T", "journalctl -k"),
    ("podman logs invidious-companion", "journalctl CONTAINER_NAME="),
    ("docker logs x", "journalctl CONTAINER_NAME="),
    ("podman ps", "report containers"),
    ("top -s", "top -b -n 1 -o %MEM"),
    ("htop", "top -b -n 1"),
    ("coredumpctl info 1234", "journalctl COREDUMP_PID=1234 -o verbose"),
    ("dig example.org", "resolvectl query"),
    ("getent passwd", "id nginx"),
    ("netstat -tlnp", "ss -tlnp"),
    ("ifconfig", "ip -br addr show"),
    ("mount", "findmnt"),
    ("service nginx status", "systemctl status"),
    ("less /var/log/nginx/error.log", "tail -n 200"),
    ("sudo cat /etc/shadow", "help"),
])
def test_a_denial_says_what_to_run_instead(web02, command, suggests):
    p = plan(command.encode(), web02)
    assert p.decision == DENY and p.code.startswith("match.")
    assert f"; instead: {suggests}" in p.reason


def test_every_suggestion_is_allowed_and_lint_checks_it(web02, tmp_path):
    from diag_wrapper.lint import lint_policy
    from diag_wrapper.model import HELP

    assert web02.instead
    for form, hint in web02.instead.items():
        assert plan(hint.run.encode(), web02).decision in (ALLOW, HELP), form
    assert not [x for x in lint_policy(web02) if x.startswith("instead")]
    bad = tmp_path / "bad.toml"
    bad.write_text(f'include = ["{web02.sources[-1]}"]\n[instead.dmesg]\nrun = "cat /etc/shadow"\nwhy = "no"\n')
    assert any(x.startswith("instead 'dmesg'") for x in lint_policy(load(str(bad))))


def test_a_refused_filter_gets_no_suggestion_meant_for_the_command(web02):
    assert "instead" not in plan(b"journalctl -n 5 | top", web02).reason


@pytest.mark.parametrize("body,problem", [
    ('[instead."a b c d"]\nrun = "x"\nwhy = "y"', "at most 3 words"),
    ('[instead."A!"]\nrun = "x"\nwhy = "y"', "a form is a command name"),
    ('[instead.x]\nrun = ""\nwhy = "y"', "run must be one command line"),
    ('[instead.x]\nrun = "x"', "missing key"),
])
def test_a_bad_instead_entry_does_not_load(tmp_path, body, problem):
    with pytest.raises(PolicyError) as info:
        _load(tmp_path, body + "\n")
    assert problem in str(info.value)


@pytest.mark.parametrize("command", ["tail -20 /var/log/nginx/error.log", "head -5 /etc/hostname",
                                     "journalctl -u n8n | tail -20", "journalctl -u n8n | head -5"])
def test_the_old_dash_number_form_says_to_write_dash_n(web02, command):
    p = plan(command.encode(), web02)
    assert p.code == "match.unknown-option" and "; write -n " in p.reason


def test_a_digit_option_that_exists_is_still_itself(web02):
    assert plan(b"ls -1 /etc", web02).decision == ALLOW  # ls -1 is one per line, not -n 1
    assert "write -n" not in plan(b"ls -5 /etc", web02).reason  # ls -n is a flag: no such old form
