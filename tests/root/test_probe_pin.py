"""A probe with one of the host's own names never leaves loopback, whatever the agent adds.

The name resolves, in a private mount namespace whose /etc/hosts the test writes, to
::1, where a second server stands in for "somewhere else"; the pin says 127.0.0.1. The
real curl runs the planned argv: with ``-6``, after ``--``, and plain. A ``--resolve`` pin
loses in the first two cases (it seeds a DNS cache that -6 discards; after ``--`` it is a
URL); ``--connect-to`` before every agent word must not.
"""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading

import pytest

from diag_wrapper.plan import plan
from diag_wrapper.policy import load

POLICY_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "policy")


def _server(family: int, host: str, port: int, body: bytes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        address_family = family

    srv = Server((host, port), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def servers():
    """The same port on 127.0.0.1 and ::1, so only the address decides which one answers."""
    v4 = _server(socket.AF_INET, "127.0.0.1", 0, b"loopback-v4\n")
    port = v4.server_address[1]
    try:
        v6 = _server(socket.AF_INET6, "::1", port, b"ELSEWHERE\n")
    except OSError:
        v4.shutdown()
        pytest.skip("::1 is not usable here")
    yield port
    for s in (v4, v6):
        s.shutdown()
        s.server_close()


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("unshare") is None, reason="needs curl, unshare")
@pytest.mark.parametrize("extra", ["", "-6", "--", "-4"])
def test_a_pinned_probe_reaches_loopback_only(tmp_path, servers, extra):
    port = servers
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(shutil.which("curl"), bindir / "curl")
    url = f"http://probe.example.org:{port}/health"
    path = tmp_path / "p.toml"
    path.write_text(f'include = ["{os.path.abspath(POLICY_DIR)}/fleet.toml"]\n[services.t]\nsummary = "t"\n'
                    f'probes = [{{ url = "{url}", connect = "127.0.0.1" }}]\n[settings]\nsearch_path = ["{bindir}"]\n'
                    'sandbox = "off"\n')
    p = plan(f"curl -sS {extra} {url}".encode(), load(str(path)))
    assert p.allowed, p.reason
    hosts = tmp_path / "hosts"
    hosts.write_text("::1 probe.example.org\n")
    script = f'{shutil.which("mount")} --bind "$0" /etc/hosts && exec "$@"'
    out = subprocess.run([shutil.which("unshare"), "-m", "/bin/sh", "-c", script, str(hosts), p.executable,
                          *p.exec_argv[1:]],
                         capture_output=True, timeout=30, env=dict(p.env))
    assert b"ELSEWHERE" not in out.stdout, (extra, out.stdout, out.stderr)
    if extra == "-6":
        assert out.returncode != 0  # 127.0.0.1 has no IPv6 form: curl fails, it does not look elsewhere
    else:
        assert out.stdout == b"loopback-v4\n", (extra, out.stdout, out.stderr)
