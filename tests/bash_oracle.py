"""Ask real /bin/bash what argv it would hand to execve for a command string.

A recorder script is linked into an otherwise empty directory under the name
of the command; bash runs with PATH set to that directory only and an empty
environment, so the recorder receives exactly the argv bash built.  A prefix
line disables any builtin of that name (so bash executes the file instead),
and turns on ``failglob`` and ``nounset`` so that a glob or a variable bash
would expand makes the run fail rather than pass through literally.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

BASH = "/bin/bash"
RECORDER = "#!/bin/bash\nprintf '%s\\0' \"$0\" \"$@\" > \"$ORACLE_OUT\"\n"


class OracleSkip(Exception):
    """The command name cannot be installed as a file (contains '/', too long, ...)."""


def _run_bash(root: Path, command: str, names: tuple[str, ...], recorder_text: str, env: dict[str, str],
              stdout: int = subprocess.DEVNULL) -> tuple[Path, subprocess.CompletedProcess]:
    """``command`` under bash, with ``recorder_text`` installed under every name in ``names``
    in an otherwise empty PATH directory under ``root``, the builtins of those names
    disabled, ``failglob`` and ``nounset`` on; (that directory, the finished run). Its output
    is discarded unless ``stdout`` says otherwise (a command bash runs may print for 20 s)."""
    for name in names:
        if not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise OracleSkip(name)
    bindir, work = root / "bin", root / "work"
    bindir.mkdir()
    work.mkdir()
    recorder = root / "recorder"
    recorder.write_text(recorder_text)
    recorder.chmod(0o755)
    for name in set(names):
        try:
            os.symlink(recorder, bindir / name)
        except (OSError, UnicodeEncodeError) as exc:
            raise OracleSkip(name) from exc
    disable = " ".join(shlex.quote(n) for n in sorted(set(names)))
    prefix = f"shopt -s failglob extglob; set -u; enable -n -- {disable} 2>/dev/null\n"
    done = subprocess.run(
        [BASH, "--norc", "--noprofile", "-c", prefix + command],
        env={"PATH": str(bindir), **env}, cwd=work, stdin=subprocess.DEVNULL, stdout=stdout,
        stderr=subprocess.DEVNULL, timeout=20, check=False,
    )
    return bindir, done


def _records(data: bytes) -> list[str]:
    fields = data.split(b"\0")
    assert fields[-1] == b"", "recorder output not NUL-terminated"
    return [f.decode("utf-8", "surrogateescape") for f in fields[:-1]]


def bash_argv(command: str, argv0: str) -> tuple[str, ...] | None:
    """Run ``command`` under bash with a recorder installed as ``argv0``.

    Returns the recorded argv[1:] (None if the recorder did not run, e.g. bash
    refused the command).  Raises OracleSkip if ``argv0`` cannot be a file name.
    """
    with tempfile.TemporaryDirectory(prefix="bash-oracle-") as tmp:
        out = Path(tmp) / "argv.out"
        bindir, _ = _run_bash(Path(tmp), command, (argv0,), RECORDER, {"ORACLE_OUT": str(out)})
        if not out.exists():
            return None
        recorded = _records(out.read_bytes())
        assert recorded[0] == str(bindir / argv0), f"bash ran {recorded[0]!r}, not the recorder for {argv0!r}"
        return tuple(recorded[1:])


# Each stage copies what the stages before it recorded, then adds its own record: what
# comes out of the pipeline is every stage's argv, in order (stage 1 reads /dev/null).
PIPE_RECORDER = "#!/bin/bash\n\"$ORACLE_CAT\"\nprintf '%s\\0' \"$0\" \"$@\"\nprintf '\\1'\n"


def bash_pipeline_argvs(command: str, names: tuple[str, ...]) -> tuple[tuple[str, ...], ...] | None:
    """What bash hands to execve for each stage of the pipeline ``command`` (argv[1:] each),
    with a recorder installed under every name in ``names``; None if bash ran none."""
    with tempfile.TemporaryDirectory(prefix="bash-oracle-") as tmp:
        bindir, done = _run_bash(Path(tmp), command, names, PIPE_RECORDER,
                                 {"ORACLE_CAT": shutil.which("cat") or "/bin/cat"}, subprocess.PIPE)
        if not done.stdout:
            return None
        stages = []
        for rec in done.stdout.split(b"\1")[:-1]:
            words = _records(rec)
            assert words[0].startswith(str(bindir) + "/"), f"bash ran {words[0]!r}, not a recorder"
            stages.append(tuple(words))
        return tuple((s[0].rsplit("/", 1)[1], *s[1:]) for s in stages)
