"""Identity: a bind mount of a *part* of a denied directory is denied too (root only).

A subdirectory or a single file inside a denied directory, bind-mounted at an
innocent name, has an (st_dev, st_ino) of its own, so comparing identities with
the entries' does not see it. Its place inside its file system (mountinfo root +
the rest of the path, same st_dev) lies under the entry's place: that is what
refuses it. Runs in a private mount namespace (``unshare -m --propagation
private``) with a tmpfs on /srv, so the host's mounts are never touched.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]

SETUP = r"""
set -eu
mount -t tmpfs idp-srv /srv
mkdir -p /srv/secret/sub /srv/innocent /srv/pub /srv/open
echo SECRET-SUB > /srv/secret/sub/token
echo SECRET-FILE > /srv/secret/tok
echo fine > /srv/open/readme
touch /srv/pub/tok
mount --bind /srv/secret/sub /srv/innocent
mount --bind /srv/secret/tok /srv/pub/tok
exec "$PYTHON" -c "$CHECK"
"""

CHECK = r"""
import json
from diag_wrapper.deny import DenyList
from diag_wrapper.policy import DenyEntry
from diag_wrapper.model import Deny
dl = DenyList([DenyEntry("/srv/secret", "test secret")])
out = {}
for v, k in [("/srv/innocent/token", "file"), ("/srv/innocent", "file"), ("/srv/innocent", "tree"),
             ("/srv/pub/tok", "file"), ("/srv/pub", "tree"), ("/srv", "tree"),
             ("/srv/open/readme", "file"), ("/srv/open", "tree"), ("/srv/pub", "file")]:
    try:
        dl.check(v, k)
        out[v + " " + k] = "allow"
    except Deny as d:
        out[v + " " + k] = d.code
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def results() -> dict[str, str]:
    if not shutil.which("unshare"):
        pytest.skip("needs unshare(1) from util-linux")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHON": sys.executable, "CHECK": CHECK,
           "PYTHONPATH": str(REPO)}
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "--", "/bin/sh", "-c", SETUP],
                         env=env, capture_output=True, text=True, timeout=60, cwd="/")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("case, code", [
    ("/srv/innocent/token file", "path.denied"),       # bind of a denied dir's subdirectory
    ("/srv/innocent file", "path.denied"),
    ("/srv/innocent tree", "path.denied"),
    ("/srv/pub/tok file", "path.denied"),              # bind of one file inside a denied dir
    ("/srv/pub tree", "path.tree-contains-denied"),    # a walk would read it through the bind
    ("/srv tree", "path.tree-contains-denied"),
    ("/srv/open/readme file", "allow"),
    ("/srv/open tree", "allow"),
    ("/srv/pub file", "allow"),                        # listing the directory names the file only
])
def test_binds_of_parts_of_a_denied_directory(results, case, code):
    assert results[case] == code
