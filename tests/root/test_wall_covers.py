"""The kernel wall on DynamicUser-style layouts: every cover lands, or none (root).

``/var/lib/<name> -> private/<name>`` on both sides of "private" in sort order:
covering ``/var/lib/private`` first used to make the mount on
``/var/lib/tailscale`` fail (ENOENT through the symlink into the empty cover),
so ``required`` refused everything and ``auto`` silently ran with a half wall.
Each case runs in a child process that enters the wall for real (user + mount
namespace) and reports what it can see; the host's mounts are untouched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]


PROBE = r"""
import json, os, sys
from diag_wrapper import sandbox
from diag_wrapper.deny import DenyList
from diag_wrapper.policy import DenyEntry
root, patterns = sys.argv[1], json.loads(sys.argv[2])
cover = (list(DenyList([DenyEntry(p, "t") for p in patterns]).covers("cat")) if sys.argv[3] == "wall"
         else json.loads(sys.argv[3]))
out = {"cover": cover}
try:
    sandbox.enter(cover)
    out["entered"] = True
except OSError as exc:
    out["entered"] = False
    out["error"] = str(exc)
    out["partial"] = getattr(exc, "partial", False)
seen = {}
for dirpath, dirs, files in os.walk(root):
    for f in files:
        p = os.path.join(dirpath, f)
        try:
            seen[os.path.relpath(p, root)] = open(p).read()
        except OSError as exc:
            seen[os.path.relpath(p, root)] = "ERR " + exc.strerror
out["seen"] = seen
print(json.dumps(out))
"""


def _probe(root: Path, patterns: list[str], cover: list[str] | str = "wall") -> dict:
    res = subprocess.run([sys.executable, "-c", PROBE, str(root), json.dumps(patterns),
                          cover if isinstance(cover, str) else json.dumps(cover)],
                         capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _layout(root: Path) -> list[str]:
    lib = root / "var" / "lib"
    for name in ("aaa-bridge", "n8n", "tailscale", "zzz"):
        (lib / "private" / name).mkdir(parents=True)
        (lib / "private" / name / "secret").write_text(f"SECRET {name}\n")
        (lib / name).symlink_to(f"private/{name}")  # DynamicUser=: a relative link into private/
    (lib / "public").mkdir()
    (lib / "public" / "ok.txt").write_text("public\n")
    (root / "etc").mkdir()
    (root / "etc" / "host_key").write_text("SECRET key\n")
    (root / "etc" / "hostname").write_text("public\n")
    # entries in the order a policy lists them: the links before and after "private"
    return [str(lib / "aaa-bridge"), str(lib / "private"), str(lib / "tailscale"), str(lib / "n8n"),
            str(lib / "zzz"), str(root / "etc" / "host_key")]


def test_links_on_both_sides_of_private_are_covered_and_every_cover_lands(tmp_path):
    patterns = _layout(tmp_path)
    got = _probe(tmp_path, patterns)
    assert got["entered"], got.get("error")
    assert got["cover"] == [str(tmp_path / "etc" / "host_key"), str(tmp_path / "var" / "lib" / "private")]
    assert not any("SECRET" in v for v in got["seen"].values()), got["seen"]
    assert got["seen"]["var/lib/public/ok.txt"] == "public\n"
    assert got["seen"]["etc/hostname"] == "public\n"


def test_without_the_wall_the_same_layout_is_readable(tmp_path):
    # the control: the probe sees the secrets when no cover is applied
    patterns = _layout(tmp_path)
    got = _probe(tmp_path, patterns, cover=[])
    assert got["entered"]
    assert sum("SECRET" in v for v in got["seen"].values()) == 5


def test_a_cover_that_fails_takes_the_others_down_again(tmp_path):
    patterns = _layout(tmp_path)
    good = str(tmp_path / "var" / "lib" / "private")
    got = _probe(tmp_path, patterns, cover=[good, str(tmp_path / "no-such-place")])
    assert not got["entered"] and not got["partial"]
    assert "no-such-place" in got["error"]
    # all or none: the first cover was taken down, nothing half-built remains
    assert got["seen"]["var/lib/private/n8n/secret"] == "SECRET n8n\n"
