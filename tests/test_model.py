"""model.py: the one registry of deny codes (README's table, every raise) and the leaf rule."""

from __future__ import annotations

from pathlib import Path

import pytest


def _readme_codes() -> set[str]:
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = text.split("### Deny codes", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            codes.update(re.findall(r"`([a-z]+\.[a-z-]+)`", line.split("|")[1]))
    return codes


def test_the_deny_code_registry_is_the_readme_table_both_ways():
    from diag_wrapper.model import CODES

    assert _readme_codes() == set(CODES)


def test_every_code_the_source_names_is_registered():
    import re

    from diag_wrapper.model import CODES

    src = Path(__file__).resolve().parents[1] / "diag_wrapper"
    named = set()
    for f in src.glob("*.py"):
        named.update(re.findall(r'"((?:input|parse|match|path|policy|audit|exec|setup|sandbox|limit|internal)'
                                r'\.[a-z-]+)"', f.read_text()))
    assert named and named <= set(CODES), named - set(CODES)


def test_an_unregistered_code_is_a_bug_not_a_new_kind_of_deny():
    from diag_wrapper.model import denied as deny
    from diag_wrapper.model import Deny

    with pytest.raises(ValueError):
        Deny("path.made-up", "x")
    assert deny(b"x", "path.made-up", "x").code == "internal.error"
