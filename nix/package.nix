# diag-wrapper as a Nix package.
#
#   pkgs.callPackage ./nix/package.nix { }
#
# The installed bin/diag-wrapper runs its interpreter isolated (`python -I`):
# ForceCommand mode refuses to run (setup.not-isolated) otherwise, because
# PYTHON* variables from the SSH session must not change what code runs.
{
  lib,
  python3Packages,
  bashInteractive,
}:

let
  ps = python3Packages;
  fs = lib.fileset;
  pyproject = lib.importTOML ../pyproject.toml;
in
ps.buildPythonApplication {
  pname = "diag-wrapper";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build and the tests need; editing nix/ does not rebuild.
  src = fs.toSource {
    root = ../.;
    fileset = fs.unions [
      ../pyproject.toml
      ../diag_wrapper
      ../policy
      (fs.maybeMissing ../tests)
      (fs.maybeMissing ../README.md)
      # tests/test_incidents.py replays docs/incidents.md's transcripts
      (fs.maybeMissing ../docs)
      # tests/test_bashlex_cache.py regenerates the shipped tables with it and compares
      (fs.maybeMissing ../scripts/gen_bashlex_tables.py)
    ];
  };

  # The parser's bash-oracle property test asks /bin/bash, which the build
  # sandbox does not have (the test would skip); point it at bash from the store.
  postPatch = ''
    if [ -f tests/bash_oracle.py ]; then
      sed -i "s|/bin/bash|${bashInteractive}/bin/bash|g" tests/bash_oracle.py
    fi
  '';

  build-system = [ ps.setuptools ];

  dependencies = [
    ps.bashlex
    ps.structlog
    # nixpkgs renamed `systemd` to `systemd-python`; older channels only have the former.
    (ps.systemd-python or ps.systemd)
  ];

  nativeCheckInputs = [
    ps.pytestCheckHook
    ps.hypothesis
    bashInteractive
  ];

  # Suites that need root, a real sshd or a real journald cannot run in the
  # build sandbox; the VM test (nix/tests/web-02.nix) covers that path.
  # tests/nix checks the Nix files and scripts/, which are not in `src`.
  # (older pytestCheckHooks abort on a path that does not exist, hence the filter)
  disabledTestPaths = lib.filter (p: builtins.pathExists (../. + "/${p}")) [
    "tests/e2e"
    "tests/root"
    "tests/nix"
  ];
  # Same exclusion by marker (nixpkgs >= 25.05; an unknown attribute is a
  # harmless environment variable on older channels).
  disabledTestMarks = [
    "e2e"
    "root"
  ];

  # Tests start `sys.executable -I ...` (the isolation the ForceCommand needs).
  # -I ignores PYTHONPATH, which is how the build hands the check its inputs,
  # so give the tests an interpreter that finds them without it: a venv whose
  # .pth lists $out and the inputs. nixpkgs' sitecustomize makes it
  # sys.executable of the test process (NIX_PYTHONEXECUTABLE).
  preCheck = ''
    venv="$NIX_BUILD_TOP/check-venv"
    ${ps.python.interpreter} -m venv --without-pip "$venv"
    purelib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    { echo "$out/${ps.python.sitePackages}"; tr ':' '\n' <<<"''${PYTHONPATH-}"; } >"$purelib/nix-check-inputs.pth"
    export NIX_PYTHONEXECUTABLE="$venv/bin/python"
  '';

  # nixpkgs' Python reads NIX_PYTHONPATH / NIX_PYTHONEXECUTABLE / NIX_PYTHONPREFIX
  # in its sitecustomize even under -I; never let them reach the interpreter.
  makeWrapperArgs = [
    "--unset"
    "NIX_PYTHONPATH"
    "--unset"
    "NIX_PYTHONEXECUTABLE"
    "--unset"
    "NIX_PYTHONPREFIX"
  ];

  pythonImportsCheck = [ "diag_wrapper" ];

  # setuptools installs only the Python package; the policies are data.
  postInstall = ''
    install -Dm444 -t "$out/share/diag-wrapper/policy" policy/*.toml
  '';

  # wrapPythonPrograms (run by buildPythonPackage's postFixup, before this)
  # leaves bin/diag-wrapper as a makeWrapper shell script that execs
  # bin/.diag-wrapper-wrapped, a Python script whose shebang is the bare
  # interpreter and whose preamble adds the dependencies with
  # site.addsitedir() (which works in isolated mode, unlike PYTHONPATH).
  # Append -I to every such shebang, then prove it.
  postFixup = ''
    for f in "$out"/bin/.*-wrapped "$out"/bin/*; do
      [ -f "$f" ] || continue
      if head -n1 "$f" | grep -Eq '^#! ?/nix/store/[^ ]+/bin/python[0-9.]*$'; then
        sed -i -E '1 s|^(#! ?/nix/store/[^ ]+/bin/python[0-9.]*)$|\1 -I|' "$f"
      fi
    done
    target="$out/bin/diag-wrapper"
    if [ -f "$out/bin/.diag-wrapper-wrapped" ]; then
      target="$out/bin/.diag-wrapper-wrapped"
    fi
    if ! head -n1 "$target" | grep -Eq '/bin/python[0-9.]* -I$'; then
      echo "diag-wrapper: $target does not run python -I:" >&2
      head -n1 "$target" >&2
      exit 1
    fi
  '';

  # Smoke test of the installed program (runs after the pytest suite).
  postCheck = ''
    "$out/bin/diag-wrapper" help --policy "$out/share/diag-wrapper/policy/fleet.toml" >/dev/null
  '';

  meta = {
    description = "Read-only SSH ForceCommand wrapper: bashlex parsing, typed allowlist, path denylist, journal audit";
    license = lib.licenses.mit;
    mainProgram = "diag-wrapper";
    platforms = lib.platforms.linux;
  };
}
