"""Session fixtures for the end-to-end suite: a real journald + sshd + ssh client.

One private mount namespace, one systemd-journald, one sshd and one test user per
pytest session (building them takes a few seconds; every test reuses them).
Everything created here is torn down in ``finally`` blocks, even on failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import harness

E2E_POLICY = """\
# e2e: the web-02 policy, with binaries from Debian's directories.
include = ["web-02.toml"]

[settings]
search_path = ["/usr/bin", "/bin"]
state_dir = "{state}"
rate_per_minute = 100000  # the suite sends far more than an agent would

[[deny]]  # as /run/diag-wrapper is in the fleet policy: the wall covers the state directory
path = "{state}"
why = "the wrapper's state"

"""

DATA_TEXT = "hello from the diag-wrapper e2e suite\n"


def skip_reason() -> str | None:
    missing = harness.missing_programs()
    if missing:
        return f"e2e tests need these programs: {', '.join(missing)}"
    return None


@dataclass
class E2E:
    work: Path
    python: Path
    policy: Path
    wrapper: str
    ns: harness.Namespace
    journald: harness.Journald
    sshd: harness.Sshd
    user: harness.LoginUser
    ssh: harness.SshClient
    client_pub: Path
    fingerprint: str
    data_file: Path
    marker_dir: Path

    def attempt(self, command, *options: str, expect_records: int = 1, timeout: float = 30,
                stdin_open: bool = False):
        """Run one ssh attempt; returns (CompletedProcess, audit records it produced)."""
        cursor = self.journald.cursor()
        result = self.ssh.run(command, *options, timeout=timeout, stdin_open=stdin_open)
        records = self.journald.records_since(cursor, expect=expect_records,
                                              timeout=5 if expect_records else 0.5)
        return result, records

    def wrapper_argv(self, policy, command: str, prefix: list[str] | None = None) -> list[str]:
        """ForceCommand mode as the test user (or under ``prefix``), SSH_ORIGINAL_COMMAND set,
        nothing else of the environment: what sshd runs, without sshd."""
        return [*(prefix or ["runuser", "-u", self.user.name, "--"]), "env", "-i",
                f"SSH_ORIGINAL_COMMAND={command}", str(self.python), "-I", "-m", "diag_wrapper",
                "--policy", str(policy)]

    def markers(self) -> list[str]:
        return sorted(os.listdir(self.marker_dir))


@pytest.fixture(scope="session")
def e2e() -> E2E:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    work = harness.make_workdir()
    sshd = user = None
    stack = contextlib.ExitStack()
    try:
        python = harness.build_venv(work)

        policy_dir = work / "policy"
        policy_dir.mkdir()
        for toml in sorted((harness.REPO / "policy").glob("*.toml")):
            shutil.copy2(toml, policy_dir / toml.name)
        policy = policy_dir / "e2e.toml"
        state = work / "state"
        state.mkdir()
        policy.write_text(E2E_POLICY.format(state=state))

        data_dir = work / "data"
        data_dir.mkdir()
        data_file = data_dir / "hello.txt"
        data_file.write_text(DATA_TEXT)
        marker_dir = work / "marker"
        marker_dir.mkdir()
        harness.chmod_world_readable(work)
        marker_dir.chmod(0o1777)  # writable by the test user: anything executed could leave a mark

        wrapper = os.environ.get("DIAG_E2E_WRAPPER") or f"{python} -I -m diag_wrapper --policy {policy}"

        harness.LoginUser.remove_stale()
        user = harness.LoginUser().create()
        os.chown(state, user.pw.pw_uid, user.pw.pw_gid)  # as /run/diag-wrapper is the diag group's
        state.chmod(0o770)
        client_key = work / "client_ed25519"
        pub = harness.keygen(client_key, "diag-e2e client")
        user.authorize(pub, f'restrict,command="{wrapper}"')

        journald = stack.enter_context(harness.private_journald(work))
        ns = journald.ns
        sshd = harness.Sshd(ns, work, user.name, wrapper).start()
        env = E2E(
            work=work, python=python, policy=policy, wrapper=wrapper, ns=ns, journald=journald,
            sshd=sshd, user=user, ssh=harness.SshClient(sshd, user.name, client_key),
            client_pub=client_key.with_suffix(".pub"),
            fingerprint=harness.fingerprint_of(client_key.with_suffix(".pub")),
            data_file=data_file, marker_dir=marker_dir,
        )
        yield env
    finally:
        if sshd is not None:
            sshd.stop()
        stack.close()  # journald, then its namespace
        if user is not None:
            user.remove()
        if os.environ.get("DIAG_E2E_KEEP"):
            print(f"\nkept e2e work dir {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def journald_down(e2e: E2E):
    """Stop journald for one test and bring it back afterwards."""
    e2e.journald.stop()
    try:
        yield e2e
    finally:
        e2e.journald.start()


def sshd_log(e2e: E2E) -> str:
    return e2e.sshd.log.read_text(errors="replace")

