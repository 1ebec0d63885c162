"""Property: whatever check() allows lies outside every deny entry, by an independent oracle.

Each example builds a small random tree (directories, files, symlinks relative and
absolute, dangling, looping, through /proc/self/root, into the denied subtree) and a
random path string over the same names with '.', '..', '//' and trailing '/'.  The
oracle does not use diag_wrapper.deny: it resolves with pathlib, expands the entries
by listing directories with fnmatch, compares component by component, and asks the
kernel (st_dev, st_ino) whether the object reached or any directory above it is a
denied object.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from diag_wrapper.deny import DenyList, RealHost
from diag_wrapper.policy import DenyEntry
from diag_wrapper.model import Deny

NAMES = ["a", "b", "s", "k1", "e"]
SECRET_ENTRIES = ["s", "*/k1", "e"]  # relative to the example root

name = st.sampled_from(NAMES)
step = st.sampled_from(NAMES + [".", "..", ""])
rel_path = st.lists(step, min_size=0, max_size=5).map("/".join)
link_target = st.tuples(st.sampled_from(["rel", "abs", "proc"]), rel_path)
node = st.tuples(
    st.lists(name, min_size=1, max_size=3),
    st.sampled_from(["dir", "file", "link", "link"]),
    link_target,
)
value = st.tuples(
    st.sampled_from(["abs", "rel", "rel"]),
    rel_path,
    st.booleans(),  # trailing '/'
    st.booleans(),  # leading '//' inside
)


def _build(root: Path, nodes: list) -> None:
    (root / "s").mkdir()
    (root / "s" / "f").write_text("SECRET")
    for comps, kind, (how, target) in nodes:
        p = root.joinpath(*comps)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(p):
                continue
            if kind == "dir":
                p.mkdir()
            elif kind == "file":
                p.write_text("data")
            else:
                tgt = {"rel": target, "abs": f"{root}/{target}", "proc": f"/proc/self/root{root}/{target}"}[how]
                os.symlink(tgt or ".", p)
        except OSError:
            continue  # parent is a file, a dangling link, a loop...: skip this node


def _comps(p: str) -> list[str]:
    return [c for c in p.split("/") if c]


def _at_or_under(path: list[str], pat: list[str]) -> bool:
    return len(path) >= len(pat) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(path, pat))


def _beneath(tree: list[str], pat: list[str]) -> bool:
    return len(tree) <= len(pat) and all(fnmatch.fnmatchcase(a, b) for a, b in zip(tree, pat))


def _expand(root: Path, pattern: list[str]) -> list[str]:
    """Existing names matching pattern (components under root), by listing directories."""
    found = [str(root)]
    for comp in pattern:
        nxt = []
        for base in found:
            if "*" in comp:
                try:
                    names = os.listdir(base)
                except OSError:
                    continue
                nxt += [f"{base}/{n}" for n in names if fnmatch.fnmatchcase(n, comp)]
            elif os.path.lexists(f"{base}/{comp}"):
                nxt.append(f"{base}/{comp}")
        found = nxt
    return found


def _ident(p: str) -> tuple[int, int] | None:
    try:
        s = os.stat(p)
    except (OSError, ValueError):
        return None
    return (s.st_dev, s.st_ino)


def _ancestry(real: str) -> list[tuple[int, int]]:
    """Kernel identities of real and every directory above it that exists."""
    out = []
    comps = _comps(real)
    for i in range(len(comps), -1, -1):
        ident = _ident("/" + "/".join(comps[:i]))
        if ident is not None:
            out.append(ident)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.lists(node, max_size=10), val=value, kind=st.sampled_from(["file", "tree"]))
def test_allowed_paths_resolve_outside_every_entry(nodes, val, kind) -> None:
    root = Path(tempfile.mkdtemp(prefix="denyprop-")).resolve()
    try:
        _build(root, nodes)
        entries = [DenyEntry(f"{root}/{e}", "test secret") for e in SECRET_ENTRIES]
        how, rel, slash, dbl = val
        text = rel + ("/" if slash and rel else "")
        if dbl:
            text = text.replace("/", "//", 1)
        cwd = str(root)
        v = f"{root}/{text}" if how == "abs" else (text or ".")
        dl = DenyList(entries, RealHost(cwd=cwd))
        try:
            pc = dl.check(v, kind)
        except Deny as d:
            assert d.code in ("path.denied", "path.tree-contains-denied", "match.bad-value")
            event(f"deny {d.code}")
            return
        event(f"allow {kind}")

        # --- the oracle ---
        absolute = os.path.join(cwd, v)
        real = str(Path(absolute).resolve(strict=False))  # RuntimeError on a loop: fails the test
        assert pc.resolved == real
        rc = _comps(real)
        patterns = [_comps(e.path) for e in entries]
        locations = [_comps(os.path.realpath(m)) for e in entries for m in _expand(root, _comps(e.path)[len(_comps(str(root))):])]
        denied_ids = {i for e in entries for m in _expand(root, _comps(e.path)[len(_comps(str(root))):]) if (i := _ident(m))}
        for pat in patterns + locations:
            assert not _at_or_under(rc, pat), (v, real, pat)
        target = _ident(absolute)
        if target is not None:
            assert target == _ident(real)  # the string resolution is what the kernel opens
            assert not denied_ids.intersection(_ancestry(real)), (v, real)
        if kind == "tree":
            for pat in patterns + locations:
                assert not _beneath(rc, pat), (v, real, pat)
            if target is not None:
                for e in entries:
                    for m in _expand(root, _comps(e.path)[len(_comps(str(root))):]):
                        assert target not in _ancestry(os.path.realpath(m)), (v, real, m)
    finally:
        shutil.rmtree(root, ignore_errors=True)
