"""A tree that contains deny entries, allowed because the kernel wall shows them empty.

The plan allows `grep -r`/`du`/`ls -R` over such a tree only when the wall it plans
covers every entry inside (literal names, outside /proc and /sys); the real wall is then
entered in a child and the real grep and du run over the tree: the canary is not seen.
If the wall cannot come up, the effect turns the allow into path.tree-contains-denied.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diag_wrapper import run, sandbox
from diag_wrapper.model import ALLOW, DENY
from diag_wrapper.plan import plan
from diag_wrapper.policy import load

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, subprocess, sys
from diag_wrapper import sandbox
wall, argv = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sandbox.enter(wall)
out = subprocess.run(argv, capture_output=True, text=True)
print(json.dumps({"rc": out.returncode, "out": out.stdout, "err": out.stderr}))
"""


@pytest.fixture
def layout(tmp_path):
    tree = tmp_path / "log"
    (tree / "private" / "svc").mkdir(parents=True)
    (tree / "private" / "svc" / "token").write_text("CANARY-7f3a\n")
    (tree / "nginx").mkdir()
    (tree / "nginx" / "error.log").write_text("upstream timed out\n")
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "host_a_key").write_text("CANARY-glob\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("grep", "du", "ls"):
        os.symlink(shutil.which(name), bindir / name)
    path = tmp_path / "p.toml"
    path.write_text(f'include = ["{REPO / "policy" / "fleet.toml"}"]\n'
                    f'[[deny]]\npath = "{tree}/private"\nwhy = "logs of DynamicUser services"\n'
                    f'[[deny]]\npath = "{tmp_path}/keys/host_*_key"\nwhy = "host keys"\n'
                    f'[settings]\nsearch_path = ["{bindir}"]\nsandbox = "auto"\npersist_roots = []\n')
    return tmp_path, load(str(path))


def _in_wall(p, argv):
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(list(p.wall)), json.dumps(argv)],
                         capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_tree_with_literal_entries_is_allowed_and_reads_nothing_secret(layout):
    root, pol = layout
    p = plan(f"grep -r CANARY {root}/log".encode(), pol)
    if "sandbox" not in p.layers:
        pytest.skip(f"no user namespaces here: {p.reason}")
    assert p.decision == ALLOW, p.reason
    assert p.masked == (f"{root}/log/private",)
    assert any("shows these denied locations in the tree empty" in n for n in p.notes)
    assert f"{root}/log/private" in p.wall
    got = _in_wall(p, [p.executable, *p.exec_argv[1:]])
    assert "CANARY" not in got["out"] and got["rc"] == 1  # nothing found: the entry is empty
    du = plan(f"du -a {root}/log".encode(), pol)
    assert du.decision == ALLOW
    seen = _in_wall(du, [du.executable, *du.exec_argv[1:]])
    assert "token" not in seen["out"] and "error.log" in seen["out"]


def test_a_tree_with_a_glob_entry_stays_refused(layout):
    """A '*' entry could match a name made after the wall went up: nothing can cover it."""
    root, pol = layout
    p = plan(f"grep -r CANARY {root}".encode(), pol)
    assert (p.decision, p.code) == (DENY, "path.tree-contains-denied"), p.reason
    assert f"{root}/log" in p.reason  # the clean parts are named for the next request


def test_without_the_wall_the_tree_is_refused(layout, monkeypatch):
    root, pol = layout
    off = pol._replace(settings=pol.settings._replace(sandbox="off"))
    p = plan(f"du -sh {root}/log".encode(), off)
    assert (p.decision, p.code) == (DENY, "path.tree-contains-denied")
    assert f"{root}/log/nginx" in p.reason
    # planned with the wall, which then fails to come up ("auto"): the effect refuses it
    p = plan(f"du -sh {root}/log".encode(), pol)
    if "sandbox" not in p.layers:
        pytest.skip("no user namespaces here")

    def fail(wall):
        raise sandbox.SandboxError("unshare(CLONE_NEWUSER|CLONE_NEWNS): Operation not permitted")

    monkeypatch.setattr(sandbox, "enter", fail)
    q = run._wall(p, "auto")
    assert (q.decision, q.code) == (DENY, "path.tree-contains-denied"), q.reason
    assert f"{root}/log/private" in q.reason


PLAN_IN_NS = r"""
import json, sys
from diag_wrapper.plan import plan
from diag_wrapper.policy import load
p = plan(sys.argv[2].encode(), load(sys.argv[1]))
print(json.dumps({"decision": p.decision, "code": p.code, "masked": list(p.masked), "reason": p.reason}))
"""


def _plan_after(tmp_path, setup: str, root, deny: list[tuple[str, str]], programs: tuple[str, ...], command: str,
                sandbox: str = "auto") -> dict:
    """plan() of ``command`` in a private mount namespace after the shell line ``setup``
    ($0 is ``root``), with a policy of the fleet's plus ``deny`` and ``programs``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in programs:
        os.symlink(shutil.which(name), bindir / name)
    pol = tmp_path / "p.toml"
    pol.write_text(f'include = ["{REPO / "policy" / "fleet.toml"}"]\n'
                   + "".join(f'[[deny]]\npath = "{path}"\nwhy = "{why}"\n' for path, why in deny)
                   + f'[settings]\nsearch_path = ["{bindir}"]\nsandbox = "{sandbox}"\npersist_roots = []\n')
    out = subprocess.run([shutil.which("unshare"), "-m", "--propagation", "private", "/bin/sh", "-c",
                          f"{setup} && exec \"$@\"", str(root), sys.executable, "-c", PLAN_IN_NS, str(pol),
                          command.format(root=root)],
                         capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("command", ["grep -r CANARY {root}", "du -a {root}", "ls -R {root}"])
def test_an_entry_reached_through_a_bind_mount_is_not_masked(tmp_path, command):
    """A nested entry that is a bind mount of a directory elsewhere in the tree: the wall
    covers the entry's name, not the source, so the tree is refused (found by review)."""
    root = tmp_path / "t"
    (root / "lib" / "private" / "n8n").mkdir(parents=True)
    (root / "data" / "n8n").mkdir(parents=True)
    (root / "data" / "n8n" / "secret").write_text("CANARY-bind\n")
    mount = shutil.which("mount")
    got = _plan_after(tmp_path, f'{mount} --bind "$0/data/n8n" "$0/lib/private/n8n"', root,
                      [(f"{root}/lib/private", "DynamicUser state"), (f"{root}/lib/private/n8n", "n8n")],
                      ("grep", "du", "ls"), command)
    assert (got["decision"], got["code"]) == (DENY, "path.tree-contains-denied"), got


@pytest.mark.parametrize("command,code", [
    ("cat {root}/persist/svc/token", "path.denied"),
    ("grep -r CANARY {root}/persist", "path.tree-contains-denied"),
    ("ls {root}/persist/svc", "path.denied"),
])
def test_a_directory_mounted_into_an_entry_is_that_entry_under_its_own_name(tmp_path, command, code):
    """Impermanence's shape: /persist/... bind-mounted into a denied directory. The source
    holds the entry's content, so it is refused by its own name too (found by review)."""
    root = tmp_path / "h"
    (root / "log" / "private" / "svc").mkdir(parents=True)
    (root / "persist" / "svc").mkdir(parents=True)
    (root / "persist" / "svc" / "token").write_text("CANARY-mounted-in\n")
    mount = shutil.which("mount")
    got = _plan_after(tmp_path, f'{mount} --bind "$0/persist/svc" "$0/log/private/svc"', root,
                      [(f"{root}/log/private", "DynamicUser logs")], ("grep", "cat", "ls"), command)
    assert (got["decision"], got["code"]) == (DENY, code), got


@pytest.mark.parametrize("command", ["cat {root}/chroot/proc/1/environ", "grep -a PATH {root}/chroot/proc/1/environ",
                                     "cat {root}/chroot/proc/self/maps", "grep -r PATH {root}",
                                     "ls -R {root}/chroot", "du -s {root}"])
def test_a_proc_mounted_outside_proc_is_refused(tmp_path, command):
    """A chroot's or container's /proc holds every process's environ; the /proc rules match
    by name, so a proc file system anywhere else is refused by its type (found by review)."""
    root = tmp_path / "srv"
    (root / "chroot" / "proc").mkdir(parents=True)
    got = _plan_after(tmp_path, f'{shutil.which("mount")} -t proc proc "$0/chroot/proc"', root, [],
                      ("grep", "cat", "ls", "du"), command, sandbox="off")
    assert (got["decision"], got["code"]) == (DENY, "path.kernel-file"), got
