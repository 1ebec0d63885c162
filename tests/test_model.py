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


# --------------------------------------------------------------------------- forward-only modules

# The package's modules in data-flow order: each may import only those before it.
ORDER = ["model", "_bashlex_tables", "_bashlex", "valuetypes", "redact", "policy", "parse", "match", "deny", "plan",
         "helptext", "lint", "limits", "sandbox", "audit", "execute", "report", "collect",
         "supervise", "run", "cli", "__main__"]


def _package_imports(path: Path) -> list[tuple[str, int]]:
    """(module of the package, line) for every import in the file, function-level ones too."""
    import ast

    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("diag_wrapper")):
            base = (node.module or "").removeprefix("diag_wrapper").lstrip(".")
            if base:
                out.append((base.split(".")[0], node.lineno))
            else:  # from . import a, b
                out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name.split(".")[1], node.lineno) for a in node.names if a.name.startswith("diag_wrapper.")]
    return out


def test_every_module_imports_only_the_stages_before_it():
    src = Path(__file__).resolve().parents[1] / "diag_wrapper"
    files = {p.stem for p in src.glob("*.py")} - {"__init__"}
    assert files == set(ORDER), files ^ set(ORDER)
    for name in ORDER:
        for imported, line in _package_imports(src / f"{name}.py"):
            assert ORDER.index(imported) < ORDER.index(name), f"{name}.py:{line} imports {imported}"
    assert _package_imports(src / "model.py") == []  # the leaf


def test_every_deny_names_a_registered_code_as_a_literal():
    # Deny("...") and denied/refused(..., "...") at every raise site: the code is a literal the
    # registry holds, so no code can appear at run time that README does not document
    import ast

    from diag_wrapper.model import CODES

    src = Path(__file__).resolve().parents[1] / "diag_wrapper"
    sites = 0
    for f in src.glob("*.py"):
        if f.name == "model.py":  # the helpers themselves pass their parameter on
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            pos = {"Deny": 0, "denied": 1, "refused": 1, "refuse": 1}.get(fn)
            if pos is None or len(node.args) <= pos:
                continue
            code = node.args[pos]
            if isinstance(code, ast.Constant):
                assert code.value in CODES, f"{f.name}:{node.lineno}: {code.value!r}"
                sites += 1
            else:  # a code already raised (exc.code), or one from parse's table of bashlex kinds
                text = ast.unparse(code)
                assert text in ("exc.code", "d.code", "code") or text.startswith("_KIND_CODES.get("), \
                    f"{f.name}:{node.lineno}: {text}"
    assert sites > 80
    from diag_wrapper import parse

    assert set(parse._KIND_CODES.values()) <= set(CODES)
