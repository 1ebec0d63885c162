#!/usr/bin/env python3
"""Line count of the ForceCommand decision path (README "Layout"): every module from reading
the environment to the exec call; not the shipped bashlex tables (data), lint.py (not on the
path) or the policies. ``lines`` counts everything; ``code`` leaves out blank lines, comments
and docstrings."""

import ast
import io
import sys
import tokenize
from pathlib import Path

PATH = ["model", "valuetypes", "redact", "policy", "parse", "_bashlex", "match", "deny", "plan", "helptext",
        "limits", "sandbox", "audit", "execute", "report", "supervise", "run", "cli", "__main__"]


def code_lines(text: str) -> int:
    doc = set()
    for node in ast.walk(ast.parse(text)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            doc.update(range(body[0].lineno, body[0].end_lineno + 1))
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - doc)


def main() -> int:
    src = Path(__file__).resolve().parent.parent / "diag_wrapper"
    total = code = 0
    for name in PATH:
        text = (src / f"{name}.py").read_text()
        n, c = len(text.splitlines()), code_lines(text)
        total, code = total + n, code + c
        if "-v" in sys.argv:
            print(f"{name + '.py':16} {n:5} {c:5}")
    print(f"decision path: {total} lines, {code} of code (no blank lines, comments or docstrings)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
