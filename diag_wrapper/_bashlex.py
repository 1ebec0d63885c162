"""The single door to bashlex (so its parser construction can be optimised in one place)."""

from __future__ import annotations

import bashlex


def parse(source: str) -> list:
    return bashlex.parse(source)
