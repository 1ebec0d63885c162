"""docs/incidents.md: every command of the nine incident transcripts is one web-02 allows."""

from __future__ import annotations

from pathlib import Path

import pytest

from diag_wrapper.plan import plan

DOC = Path(__file__).resolve().parent.parent / "docs" / "incidents.md"
COMMANDS = [line[2:] for line in DOC.read_text().splitlines() if line.startswith("$ ")]


def test_there_are_nine_incidents_with_commands():
    assert DOC.read_text().count("\n## ") == 9 and len(COMMANDS) >= 45


@pytest.mark.parametrize("command", COMMANDS)
def test_each_transcript_command_is_allowed(web02, command):
    p = plan(command.encode(), web02)
    assert p.decision == "allow", f"{command}: {p.code}: {p.reason}"
