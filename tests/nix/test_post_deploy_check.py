"""scripts/post-deploy-check against a fake ssh that plays the diag channel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "post-deploy-check"
SECRET = "TOPSECRET-c0ffee"

# A fake `ssh`: `-G HOST` prints client config; otherwise the last argument is
# the remote command. MODE=good refuses like the wrapper; MODE=leaky lets
# `cat` through; MODE=personal routes to the wrong user; MODE=twokeys lists a
# second identity file (an IdentityFile in `Host *`); MODE=cert lists a certificate;
# MODE=shared a ControlPath (connection sharing); MODE=jump an agent and a ProxyJump.
FAKE_SSH = r"""#!/usr/bin/env bash
if [ "$1" = -G ]; then
    if [ "$MODE" = personal ]; then echo "user alice"; echo "identitiesonly no"
    else echo "hostname web-02.cloonar.com"; echo "user diag"; echo "identitiesonly yes"; fi
    echo "identityfile /keys/diag"
    if [ "$MODE" = twokeys ]; then echo "identityfile /home/a/.ssh/id_personal"; fi
    if [ "$MODE" = cert ]; then echo "certificatefile /home/a/.ssh/id_personal-cert.pub"; fi
    if [ "$MODE" = shared ]; then echo "controlmaster auto"; echo "controlpath /home/a/.ssh/cm-%h"
    else echo "controlmaster false"; fi
    if [ "$MODE" = jump ]; then echo "identityagent /run/agent.sock"; echo "proxyjump root@bastion"
    else echo "identityagent none"; fi
    exit 0
fi
cmd="${@: -1}"
echo "$cmd" >> "$LOG"
case "$cmd" in
    "systemctl status "*|help) echo "ok: $cmd"; exit 0 ;;
    "cat "*) if [ "$MODE" = leaky ]; then echo "SECRET_VALUE"; exit 0; fi ;;
esac
echo "diag-wrapper: denied: not allowed here [rule x]" >&2
exit 77
"""


@pytest.fixture()
def fake(tmp_path: Path):
    ssh = tmp_path / "ssh"
    ssh.write_text(FAKE_SSH.replace("SECRET_VALUE", SECRET))
    ssh.chmod(0o755)
    log = tmp_path / "log"

    def run(mode: str, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ, SSH=str(ssh), MODE=mode, LOG=str(log))
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env)

    run.log = log  # type: ignore[attr-defined]
    return run


def test_passes_against_a_refusing_wrapper(fake) -> None:
    r = fake("good")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FAIL" not in r.stdout
    sent = fake.log.read_text().splitlines()
    assert "systemctl status nginx.service" in sent
    assert "cat /var/lib/matrix-synapse/homeserver.signing.key" in sent
    assert "cat /var/lib/n8n/.n8n/config" in sent
    assert "cat /persist/etc/ssh/ssh_host_ed25519_key" in sent
    assert "systemctl stop diag-post-deploy-check.service" in sent


def test_fails_without_leaking_when_a_secret_is_readable(fake) -> None:
    r = fake("leaky")
    assert r.returncode == 1
    assert "FAIL  denied:  cat /var/lib/n8n/.n8n/config" in r.stdout
    assert SECRET not in r.stdout + r.stderr


def test_fails_when_the_client_offers_the_wrong_user(fake) -> None:
    r = fake("personal")
    assert r.returncode == 1
    assert "FAIL  client:" in r.stdout


def test_options(fake) -> None:
    r = fake("good", "-s", "podman-invidious.service", "-d", "/var/lib/zammad/x", "web-02")
    assert r.returncode == 0, r.stdout + r.stderr
    sent = fake.log.read_text().splitlines()
    assert "systemctl status podman-invidious.service" in sent
    assert "cat /var/lib/zammad/x" in sent
    assert "cat /var/lib/n8n/.n8n/config" not in sent


def test_usage(fake) -> None:
    assert fake("good", "a", "b").returncode == 2


def test_fails_when_ssh_would_offer_another_identity_too(fake) -> None:
    r = fake("twokeys")
    assert r.returncode == 1
    assert "FAIL  client: web-02 -> identity files: /keys/diag /home/a/.ssh/id_personal" in r.stdout


def test_fails_when_ssh_would_offer_a_certificate(fake) -> None:
    r = fake("cert")
    assert r.returncode == 1
    assert "FAIL  client: web-02 -> certificate files: /home/a/.ssh/id_personal-cert.pub" in r.stdout
    assert "PASS  client: web-02 -> no certificate" in fake("good").stdout


def test_fails_when_ssh_would_share_a_connection(fake) -> None:
    r = fake("shared")
    assert r.returncode == 1
    assert "FAIL  client: web-02 -> ControlMaster 'auto', ControlPath '/home/a/.ssh/cm-%h'" in r.stdout
    assert "PASS  client: web-02 -> no shared connection" in fake("good").stdout


def test_fails_when_ssh_would_use_an_agent_or_a_jump(fake) -> None:
    r = fake("jump")
    assert r.returncode == 1
    assert "FAIL  client: web-02 -> IdentityAgent '/run/agent.sock', proxyjump root@bastion" in r.stdout
    assert "PASS  client: web-02 -> no agent, token, jump or proxy" in fake("good").stdout


def test_the_identity_must_be_the_diag_key_when_named(fake) -> None:
    assert fake("good", "-k", "/keys/diag").returncode == 0
    r = fake("good", "-k", "/keys/other")
    assert r.returncode == 1 and "want exactly /keys/other" in r.stdout
    assert "PASS  client: web-02 -> the one identity /keys/diag" in fake("good").stdout
