"""The evidence target, measured: of what an SRE types on web-02 while diagnosing
(tests/corpus/web02-sre.txt, gathered from runbooks, not from this policy), at least 90 %
of the read-only lines are allowed, and every line that changes state or prints a
secret is refused."""

from __future__ import annotations

from pathlib import Path

from diag_wrapper.model import ALLOW
from diag_wrapper.plan import plan

CORPUS = Path(__file__).parent / "corpus" / "web02-sre.txt"


def _lines(kind: str) -> list[str]:
    out = []
    for line in CORPUS.read_text().splitlines():
        if line.startswith(kind + ": "):
            out.append(line[len(kind) + 2:])
    return out


def _allowed(policy, command: str) -> bool:
    return plan(command.encode(), policy).decision in (ALLOW, "help")


def test_the_corpus_is_big_enough_to_measure():
    assert len(_lines("read")) >= 150 and len(_lines("never")) >= 80


def test_at_least_90_percent_of_the_read_only_lines_are_allowed(web02):
    read = _lines("read")
    refused = [(c, plan(c.encode(), web02).code) for c in read if not _allowed(web02, c)]
    share = 1 - len(refused) / len(read)
    assert share >= 0.90, f"{share:.1%} allowed; refused: {refused}"


def test_every_line_that_changes_state_or_prints_a_secret_is_refused(web02):
    leaks = [c for c in _lines("never") if _allowed(web02, c)]
    assert not leaks
