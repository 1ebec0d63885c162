"""No race: what was checked is what ``cat`` reads, even with the kernel wall off (root only).

A separate process flips ``link`` (atomically, by rename) between an allowed
file and a file inside a deny entry as fast as it can. Meanwhile a driver runs
the wrapper's own steps thousands of times, each in a fresh child: ``decide``,
then ``cli._wall`` (fd passing, then the wall, here ``sandbox = "off"`` so fd
passing stands alone), then ``execute`` (signal reset, alarm, ``execve`` of
the real ``/usr/bin/cat``). Only the audit record is left out (no journald is
needed for this). Not one byte of the secret may come out. The control runs
the same loop with fd passing switched off and shows that the race is real
there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]
SECRET = b"FD-RACE-SECRET-5c1e"
RUNS = int(os.environ.get("DIAG_FD_RACE_RUNS", "3000"))

SWAP = r"""
import os, sys
link, a, b = sys.argv[1:4]
tmp = link + ".tmp"
targets = (a, b)
i = 0
while True:
    i ^= 1
    try:
        os.symlink(targets[i], tmp)
    except FileExistsError:
        os.unlink(tmp)
        continue
    os.rename(tmp, link)
"""

DRIVE = r"""
import os, sys
from diag_wrapper import cli, execute as ex
from diag_wrapper.decision import decide
from diag_wrapper.policy import load
policy_path, command, runs, fdpass = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "on"
if not fdpass:
    ex.FD_COMMANDS = frozenset()
policy = load(policy_path)
for _ in range(runs):
    pid = os.fork()
    if pid == 0:
        try:
            d = cli._wall(decide(command.encode(), policy), policy)
            if not d.allowed:
                os.write(1, f"DENY {d.code}\n".encode())
                os._exit(77)
            if fdpass and "fd-passing" not in d.layers:
                os.write(1, b"NO-FD-PASSING\n")
                os._exit(70)
            ex.execute(d)
        finally:
            os._exit(70)
    _, status = os.waitpid(pid, 0)
    os.write(1, f"EXIT {os.waitstatus_to_exitcode(status)}\n".encode())
"""


@pytest.fixture(scope="module")
def race(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("runs as root: root can read the secret, so a lost race would show")
    if not os.access("/usr/bin/cat", os.X_OK):
        pytest.skip("needs /usr/bin/cat")
    root = tmp_path_factory.mktemp("fdrace")
    (root / "denied").mkdir()
    (root / "allowed.txt").write_text("ALLOWED\n")
    (root / "denied" / "secret.txt").write_bytes(SECRET + b"\n")
    policy = root / "policy.toml"
    policy.write_text(
        f'include = ["{REPO / "policy" / "fleet.toml"}"]\n[settings]\nsearch_path = ["/usr/bin"]\n'
        f'sandbox = "off"\n[[deny]]\npath = "{root / "denied"}"\nwhy = "race test secret"\n')
    link = root / "link"
    os.symlink(root / "allowed.txt", link)
    swapper = subprocess.Popen([sys.executable, "-c", SWAP, str(link), str(root / "allowed.txt"),
                                str(root / "denied" / "secret.txt")])
    try:
        yield policy, link
    finally:
        swapper.kill()
        swapper.wait()


def _loop(policy: Path, link: Path, runs: int, fdpass: bool) -> tuple[bytes, dict[str, int]]:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    res = subprocess.run([sys.executable, "-c", DRIVE, str(policy), f"cat {link}", str(runs),
                          "on" if fdpass else "off"], env=env, capture_output=True, timeout=600, cwd="/")
    assert res.returncode == 0, res.stderr[-2000:]
    out = res.stdout
    seen = {
        "allowed": out.count(b"ALLOWED\n"),
        "denied": out.count(b"DENY path.denied\n"),
        "changed": out.count(b"DENY path.changed\n") + out.count(b"DENY path.unopenable\n"),
        "exits": out.count(b"EXIT "),
        "leaked": out.count(SECRET),
    }
    return out, seen


def test_not_one_byte_of_the_denied_file_comes_out(race):
    policy, link = race
    out, seen = _loop(policy, link, RUNS, fdpass=True)
    assert SECRET not in out, seen
    assert b"NO-FD-PASSING" not in out
    assert seen["exits"] == RUNS, seen
    assert seen["allowed"] > 0 and seen["denied"] > 0, seen  # the flips really raced the checks
    assert seen["allowed"] + seen["denied"] + seen["changed"] == RUNS, (seen, out[-500:])


def test_without_fd_passing_the_race_is_real(race):
    # Evidence that the loop above tests something: the same steps, with the name handed to
    # cat as before (and no wall), print the secret once a flip lands between check and open.
    policy, link = race
    for _ in range(5):
        if _loop(policy, link, 1000, fdpass=False)[1]["leaked"]:
            return
    pytest.skip("no leak observed without fd passing in 5,000 runs (the race window is narrow here)")
