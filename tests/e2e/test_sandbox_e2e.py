"""The kernel wall, as the unprivileged diag user behind a real sshd (root harness).

A deliberately weak test policy (a `gapcat` whose argument is typed as a plain
pattern, so the path checks never see it) stands in for a gap in parsing or
typing: with the wall the planted secret is not there to read; with
`sandbox = "off"` the same command prints it, which shows the wall is what
stopped it. journalctl still reads the journal inside the wall, through the
user's supplementary group systemd-journal.
"""

from __future__ import annotations

import shutil

import pytest


SECRET = "sandbox-secret-4f1c2a"


@pytest.fixture(scope="module")
def gap(e2e):
    secret_dir = e2e.work / "gap-secret"
    secret_dir.mkdir(exist_ok=True)
    (secret_dir / "token").write_text(SECRET + "\n")
    secret_dir.chmod(0o755)
    (secret_dir / "token").chmod(0o644)  # readable by the test user without the wall
    bindir = e2e.work / "gap-bin"
    bindir.mkdir(exist_ok=True)
    if not (bindir / "gapcat").exists():
        (bindir / "gapcat").symlink_to(shutil.which("cat"))
    policies = {}
    # shared by the test user and by root inside a user namespace (NO_USERNS below), to whom
    # the test user's files belong to nobody: a state directory both may write
    state = e2e.work / "gap-state"
    state.mkdir(exist_ok=True)
    state.chmod(0o777)
    for mode in ("auto", "off", "required"):
        p = e2e.policy.parent / f"gap-{mode}.toml"
        p.write_text(
            f'include = ["{e2e.policy}"]\n'
            f'[settings]\nsandbox = "{mode}"\nsearch_path = ["{bindir}", "/usr/bin", "/bin"]\n'
            f'state_dir = "{state}"\n'
            f'[[deny]]\npath = "{secret_dir}"\nwhy = "planted test secret"\n'
            '[commands.gapcat]\nargs = [{ name = "X", type = "pattern", min = 1, max = 1 }]\n'
        )
        p.chmod(0o644)
        policies[mode] = p
    return secret_dir / "token", policies


def run_as_user(e2e, policy, command: str, prefix: list[str] | None = None):
    return e2e.ns.run(e2e.wrapper_argv(policy, command, prefix), timeout=30, cwd="/")


def test_journal_is_read_inside_the_wall_and_the_record_says_so(e2e):
    res, recs = e2e.attempt("journalctl -n 3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip()
    assert recs[-1]["DIAG_LAYERS"].split(",")[-1] == "sandbox"
    assert recs[-1]["_UID"] != "0"


def test_the_wall_hides_a_secret_the_path_checks_missed(e2e, gap):
    token, policies = gap
    cursor = e2e.journald.cursor()
    res = run_as_user(e2e, policies["auto"], f"gapcat {token}")
    assert SECRET.encode() not in res.stdout + res.stderr
    assert res.returncode != 0 and b"Permission denied" in res.stderr
    rec = e2e.journald.records_since(cursor, expect=1)[-1]
    assert rec["DIAG_DECISION"] == "allow" and "sandbox" in rec["DIAG_LAYERS"].split(",")


def test_without_the_wall_the_gap_is_real(e2e, gap):
    token, policies = gap
    res = run_as_user(e2e, policies["off"], f"gapcat {token}")
    assert res.returncode == 0 and res.stdout.decode().strip() == SECRET


def test_the_path_checks_still_refuse_what_they_see(e2e, gap):
    token, policies = gap
    res = run_as_user(e2e, policies["auto"], f"cat {token}")
    assert res.returncode == 77 and b"path.denied" in res.stderr


# Inside a user namespace whose max_user_namespaces is 0, the wall cannot be built.
NO_USERNS = ["unshare", "-U", "-r", "--", "/bin/sh", "-c", 'echo 0 > /proc/sys/user/max_user_namespaces && exec "$@"', "sh"]


def test_required_denies_when_namespaces_are_unavailable(e2e, gap):
    token, policies = gap
    cursor = e2e.journald.cursor()
    res = run_as_user(e2e, policies["required"], "uptime", prefix=NO_USERNS)
    assert res.returncode == 77 and b"sandbox.unavailable" in res.stderr
    assert res.stdout == b""
    rec = e2e.journald.records_since(cursor, expect=1)[-1]
    assert rec["DIAG_DECISION"] == "deny" and rec["DIAG_CODE"] == "sandbox.unavailable"


def test_auto_falls_back_with_a_journal_note(e2e, gap):
    token, policies = gap
    cursor = e2e.journald.cursor()
    res = run_as_user(e2e, policies["auto"], "uptime", prefix=NO_USERNS)
    assert res.returncode == 0 and b"load average" in res.stdout
    rec = e2e.journald.records_since(cursor, expect=1)[-1]
    assert rec["DIAG_DECISION"] == "allow"
    assert "sandbox-unavailable" in rec["DIAG_LAYERS"].split(",")
    assert "kernel wall unavailable" in rec["DIAG_REASON"]
    assert rec["PRIORITY"] == "4"  # an allow without the wall is a warning for the operator


def test_the_wall_also_covers_bind_mounted_second_names(e2e, gap):
    root = e2e.work / "bindtest"
    secret = root / "parent" / "secret"
    secret.mkdir(parents=True, exist_ok=True)
    (secret / "token").write_text(SECRET + "\n")
    (root / "parent" / "public.txt").write_text("public\n")
    for d in (root / "b1", root / "b2"):
        d.mkdir(exist_ok=True)
    for p in (root, root / "parent", secret, root / "b1", root / "b2"):
        p.chmod(0o755)
    for p in (secret / "token", root / "parent" / "public.txt"):
        p.chmod(0o644)
    policy = e2e.policy.parent / "bind-auto.toml"
    policy.write_text(
        f'include = ["{e2e.policy}"]\n[settings]\nsandbox = "auto"\n'
        f'search_path = ["{e2e.work / "gap-bin"}", "/usr/bin", "/bin"]\n'
        f'[[deny]]\npath = "{secret}"\nwhy = "planted test secret"\n'
        '[commands.gapcat]\nargs = [{ name = "X", type = "pattern", min = 1, max = 1 }]\n'
    )
    policy.chmod(0o644)
    mounts = [(secret, root / "b1"), (root / "parent", root / "b2")]
    try:
        for src, dst in mounts:
            assert e2e.ns.run(["mount", "--bind", str(src), str(dst)]).returncode == 0
        for name in (root / "b1" / "token", root / "b2" / "secret" / "token"):
            res = run_as_user(e2e, policy, f"gapcat {name}")
            assert SECRET.encode() not in res.stdout + res.stderr, name
            assert res.returncode != 0
            # ...and the path checks alone (identity) refuse the same names when typed as paths
            assert run_as_user(e2e, policy, f"cat {name}").returncode == 77
        res = run_as_user(e2e, policy, f"gapcat {root / 'b2' / 'public.txt'}")
        assert res.returncode == 0 and res.stdout == b"public\n"
    finally:
        for _, dst in reversed(mounts):
            e2e.ns.run(["umount", str(dst)])


def _journal_file(e2e) -> str:
    found = sorted(e2e.ns.path("/run/log/journal").glob("*/system.journal"))
    assert found, "journald keeps no volatile journal here"
    return "/" + str(found[0].relative_to(e2e.ns.path("/")))


def test_the_journal_files_are_behind_the_wall_for_everything_but_journalctl(e2e, gap):
    # cat/grep -a of a .journal file would hand over every field of every record; the path
    # checks refuse it, and the wall hides it from any other program (a typing gap here)
    _, policies = gap
    journal = _journal_file(e2e)
    res = run_as_user(e2e, policies["auto"], f"cat {journal}")
    assert res.returncode == 77 and b"path.denied" in res.stderr and res.stdout == b""
    res = run_as_user(e2e, policies["auto"], f"gapcat {journal}")
    assert res.returncode != 0 and b"MESSAGE=" not in res.stdout and b"LPKSHHRH" not in res.stdout
    res = run_as_user(e2e, policies["off"], f"gapcat {journal}")  # the control: without the wall
    assert res.returncode == 0 and res.stdout.startswith(b"LPKSHHRH")  # the journal file magic
    # journalctl, which the entry exempts from the wall, still reads the journal there
    res = run_as_user(e2e, policies["auto"], "journalctl -n 3 -o cat")
    assert res.returncode == 0 and res.stdout.strip()
