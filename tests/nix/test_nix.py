"""Checks of the Nix side that run without nixpkgs.

* every .nix file in the repository parses (``nix-instantiate --parse``);
* with NIXPKGS_LIB pointing at a checkout of nixpkgs' lib
  (nix-community/nixpkgs.lib), tests/nix/harness.nix evaluates nix/module.nix,
  nix/hosts/web-02.nix and nix/client.nix with lib.evalModules and stand-in
  option declarations, and every check in it holds;
* the rendered policy is TOML that the real policy loader accepts, and the
  rendered sshd Match block is accepted by a real sshd, which applies it to
  the diag user only.

Skipped (not failed) where nix-instantiate, NIXPKGS_LIB or sshd is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from nix_harness import NIX_INSTANTIATE, REPO, harness  # noqa: F401  (harness: the fixture)

STUB_STORE = "/nix/store/00000000000000000000000000000000-diag-wrapper-0.1.0"

needs_nix = pytest.mark.skipif(NIX_INSTANTIATE is None, reason="needs nix-instantiate (Debian: nix-bin)")


def _nix_files() -> list[Path]:
    skip = {".git", "node_modules", "result", ".venv", "__pycache__"}
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith("result-")]
        out += [Path(root, f) for f in files if f.endswith(".nix")]
    return sorted(out)


def test_there_are_nix_files() -> None:
    names = {p.relative_to(REPO).as_posix() for p in _nix_files()}
    for required in ("nix/package.nix", "nix/module.nix", "nix/client.nix", "nix/hosts/web-02.nix",
                     "nix/tests/web-02.nix", "tests/nix/harness.nix"):
        assert required in names


@needs_nix
@pytest.mark.parametrize("path", _nix_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_nix_file_parses(path: Path) -> None:
    r = subprocess.run([NIX_INSTANTIATE, "--parse", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- harness


def test_harness_checks_hold(harness: dict) -> None:
    assert harness["failures"] == []
    assert harness["ok"] is True
    assert harness["checkCount"] >= 40


def test_rendered_policy_is_the_toml_of_its_value(harness: dict) -> None:
    for name in ("basic", "web02", "extraCommands"):
        s = harness["scenarios"][name]
        assert tomllib.loads(s["policyText"]) == s["policyValue"], name


def test_malformed_deny_paths_each_name_the_entry(harness: dict) -> None:
    bad = harness["scenarios"]["badDeny"]
    assert len(bad) >= 8
    for r in bad:
        assert any(r["path"] in m for m in r["failed"]), r


def _policy_for_repo(text: str, tmp_path: Path, layers: list | None = None) -> Path:
    """The rendered policy, with the stub store path replaced by the repo's policy/, and the
    layer files (services.diag.policy) written out where it includes them."""
    text = text.replace(f"{STUB_STORE}/share/diag-wrapper/policy", str(REPO / "policy"))
    for i, layer in enumerate(layers or []):
        f = tmp_path / f"layer-{i}.toml"
        f.write_text(layer["text"])
        text = text.replace(layer["path"], str(f))
    p = tmp_path / "policy.toml"
    p.write_text(text)
    return p


def _needs_policy(name: str) -> None:
    if not (REPO / "policy" / name).exists():
        pytest.skip(f"policy/{name} not there yet")


@pytest.mark.parametrize("scenario,base", [("basic", "fleet.toml"), ("web02", "web-02.toml")])
def test_rendered_policy_loads_with_the_real_loader(harness: dict, tmp_path: Path, scenario: str, base: str) -> None:
    _needs_policy(base)
    policy = pytest.importorskip("diag_wrapper.policy")
    s = harness["scenarios"][scenario]
    loaded = policy.load(str(_policy_for_repo(s["policyText"], tmp_path, s["layers"])))
    paths = [d.path for d in loaded.deny]
    for extra in s["policyValue"].get("deny", []):
        assert extra["path"] in paths
    assert tuple(loaded.settings.search_path) == ("/run/current-system/sw/bin",)


WEB02_DENIED = [
    "cat /var/lib/matrix-synapse/homeserver.signing.key",
    "cat /persist/var/lib/matrix-synapse/homeserver.signing.key",
    "cat /var/lib/n8n/.n8n/config",
    "cat /persist/var/lib/n8n/.n8n/config",
    "head /var/lib/mautrix-whatsapp/config.yaml",
    "tail /var/lib/matrix-authentication-service/config.yaml",
    "cat /var/lib/zammad/config/database.yml",
    "cat /persist/etc/ssh/ssh_host_ed25519_key",
    "cat /etc/ssh/ssh_host_ed25519_key",
    # derived from the host's services (StateDirectory=, CacheDirectory=, DynamicUser), in no list
    "cat /var/lib/acme/.lego/example.org/certificates/example.org.key",
    "ls /persist/var/cache/private/n8n",
    "cat /run/redis-zammad/redis.sock",
]


@pytest.mark.parametrize("command", WEB02_DENIED)
def test_web02_rendered_policy_denies_the_secrets(harness: dict, tmp_path: Path, command: str) -> None:
    _needs_policy("web-02.toml")
    pytest.importorskip("diag_wrapper.cli")
    p = _policy_for_repo(harness["scenarios"]["web02"]["policyText"], tmp_path, harness["scenarios"]["web02"]["layers"])
    r = subprocess.run(
        [sys.executable, "-m", "diag_wrapper", "check", "--policy", str(p), "--json", "--", command],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["decision"] == "deny"


# --------------------------------------------------------------------------- sshd


def _sshd() -> str:
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None)
    if sshd is None:
        pytest.skip("needs OpenSSH sshd")
    return sshd


def _run_sshd(sshd: str, args: list[str]) -> subprocess.CompletedProcess:
    """Run sshd -t/-T; it insists on /run/sshd, so give it a private /run if that is missing."""
    if os.path.isdir("/run/sshd"):
        return subprocess.run([sshd, *args], capture_output=True, text=True)
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("no /run/sshd and no unshare to make a private one")
    script = 'mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec "$@"'
    r = subprocess.run([unshare, "-m", "sh", "-c", script, "sh", sshd, *args], capture_output=True, text=True)
    if r.returncode != 0 and "unshare" in r.stderr:
        pytest.skip(f"cannot make a private /run: {r.stderr.strip()}")
    return r


@pytest.fixture()
def sshd_config(harness: dict, tmp_path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hostkey")], check=True)
    body = harness["scenarios"]["basic"]["sshdConfig"]
    # the stand-in sftp-server path does not exist here
    body = "\n".join(line for line in body.splitlines() if not line.startswith("Subsystem "))
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {tmp_path / 'hostkey'}\nUsePAM no\n{body}\n")
    return cfg


def _effective(sshd: str, cfg: Path, user: str) -> dict[str, str]:
    r = _run_sshd(sshd, ["-T", "-f", str(cfg), "-C", f"user={user},host=client.invalid,addr=192.0.2.7"])
    assert r.returncode == 0, r.stderr
    out: dict[str, str] = {}
    for line in r.stdout.splitlines():
        k, _, v = line.partition(" ")
        out.setdefault(k, v)
    return out


@pytest.mark.root  # sshd -t/-T needs root
def test_sshd_accepts_the_rendered_config(sshd_config: Path) -> None:
    sshd = _sshd()
    r = _run_sshd(sshd, ["-t", "-f", str(sshd_config)])
    assert r.returncode == 0, r.stderr


@pytest.mark.root  # sshd -t/-T needs root
def test_sshd_applies_the_match_block_to_diag_only(sshd_config: Path) -> None:
    sshd = _sshd()
    diag = _effective(sshd, sshd_config, "diag")
    assert diag["forcecommand"] == f"{STUB_STORE}/bin/diag-wrapper --policy /etc/diag-wrapper/policy.json"
    for key, value in {
        "permittty": "no",
        "allowtcpforwarding": "no",
        "allowagentforwarding": "no",
        "allowstreamlocalforwarding": "no",
        "x11forwarding": "no",
        "permittunnel": "no",
        "permituserrc": "no",
        "disableforwarding": "yes",
        "exposeauthinfo": "yes",
        "authenticationmethods": "publickey",
    }.items():
        assert diag[key] == value, key
    other = _effective(sshd, sshd_config, "alice")
    assert other["forcecommand"] == "none"
    assert other["permittty"] == "yes"


def test_authorized_keys_line_is_valid(harness: dict, tmp_path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    keys = harness["scenarios"]["basic"]["user"]["keys"]
    assert len(keys) == 1
    assert keys[0].startswith('restrict,command="')
    ak = tmp_path / "authorized_keys"
    ak.write_text(keys[0] + "\n")
    r = subprocess.run(["ssh-keygen", "-l", "-f", str(ak)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "ED25519" in r.stdout


def test_a_pinned_keys_line_is_valid_with_its_from(harness: dict, tmp_path: Path) -> None:
    """services.diag.keys.<name>.from: the line ssh reads has from= before command=."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("needs ssh-keygen")
    (line,) = harness["scenarios"]["pinnedKey"]["user"]["keys"]
    assert line.startswith('restrict,from="10.0.0.5,fd00::/8,!10.0.0.9",command="')
    ak = tmp_path / "authorized_keys"
    ak.write_text(line + "\n")
    r = subprocess.run(["ssh-keygen", "-l", "-f", str(ak)], capture_output=True, text=True)
    assert r.returncode == 0 and "ED25519" in r.stdout, r.stderr


def test_policy_web02_toml_is_the_rendering_of_the_nix_layer(harness: dict) -> None:
    # one source: nix/hosts/web-02-policy.nix; policy/web-02.toml is written from it
    # (scripts/render-host-policy), so the package's example and the host cannot drift
    assert (REPO / "policy" / "web-02.toml").read_text() == harness["scenarios"]["web02PolicyToml"]


def test_the_layered_rendering_loads_to_the_same_policy_as_web02_toml(harness: dict, tmp_path: Path) -> None:
    policy = pytest.importorskip("diag_wrapper.policy")
    s = harness["scenarios"]["web02"]
    layered = policy.load(str(_policy_for_repo(s["policyText"], tmp_path, s["layers"])))
    shipped = policy.load(str(REPO / "policy" / "web-02.toml"))
    same = ("commands", "filters", "services", "instead", "reports", "redact")
    assert all(getattr(layered, f) == getattr(shipped, f) for f in same)
    assert {e.path for e in shipped.deny} <= {e.path for e in layered.deny}  # plus the derived entries
    assert [e.command for e in layered.examples] == [e.command for e in shipped.examples]


def test_web02_reports_in_the_policy_are_what_the_module_renders(harness: dict) -> None:
    # policy/web-02.toml is the rendered example: its [reports] are exactly the tables the
    # module writes for web-02 (nix/hosts/web-02.nix with podman, nftables, PostgreSQL, Redis)
    shipped = tomllib.loads((REPO / "policy" / "web-02.toml").read_text())["reports"]
    assert harness["scenarios"]["web02"]["policyValue"]["reports"] == shipped


def test_every_report_unit_is_hardened_the_same_way(harness: dict) -> None:
    units = harness["scenarios"]["web02Units"]
    services = {n: u["serviceConfig"] for n, u in units["services"].items() if n.startswith("diag-report-")}
    assert len(services) == 6
    for name, c in services.items():
        assert name.endswith("@") and c["StandardInput"] == "null" and c["StandardOutput"] == "socket", name
        for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "RestrictNamespaces",
                    "RestrictSUIDSGID", "ProtectKernelTunables", "ProtectKernelModules", "LockPersonality"):
            assert c[key] in (True, "strict"), (name, key)
        assert isinstance(c["CapabilityBoundingSet"], str) and isinstance(c["RestrictAddressFamilies"], str), name
        assert c["RuntimeMaxSec"] > 0 and " -- " in c["ExecStart"], name
    for name, s in units["sockets"].items():
        assert s["socketConfig"]["SocketMode"] == "0660" and s["socketConfig"]["SocketGroup"] == "diag", name
        assert s["listenStreams"] == [f"/run/diag-reports/{name.removeprefix('diag-report-')}.sock"], name


