"""Loopback probes: curl asks only the host policy's endpoints, openssl s_client only
loopback, both against real servers on 127.0.0.1 run by the test.

Every other ability of curl and openssl is a row of DENIED, refused with its code.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading

import pytest

from diag_wrapper.model import ALLOW, DENY
from diag_wrapper.plan import plan
from diag_wrapper.policy import PolicyError, load

sys.path.insert(0, os.path.dirname(__file__))
from conftest import POLICY_DIR  # noqa: E402

PROBE = "http://127.0.0.1:8008/health"

DENIED = [
    # not a probe endpoint: other paths, hosts, schemes, ports; a webhook that runs work
    ("curl http://127.0.0.1:5678/webhook/x", "match.bad-value"),
    ("curl http://127.0.0.1:5678/webhook-test/x", "match.bad-value"),
    ("curl http://127.0.0.1:9200/_search", "match.bad-value"),
    ("curl 'http://127.0.0.1:9200/_search?q=*'", "match.bad-value"),
    ("curl http://127.0.0.1:8008/health/", "match.bad-value"),
    ("curl http://127.0.0.1:8009/health", "match.bad-value"),
    ("curl https://127.0.0.1:8008/health", "match.bad-value"),
    ("curl http://192.0.2.1:8008/health", "match.bad-value"),
    ("curl http://example.org/", "match.bad-value"),
    ("curl file:///etc/shadow", "match.bad-value"),
    ("curl ftp://127.0.0.1/x", "match.bad-value"),
    ("curl gopher://127.0.0.1:6379/_INFO", "match.bad-value"),
    ("curl dict://127.0.0.1:6379/info", "match.bad-value"),
    ("curl http://user:pw@127.0.0.1:8008/health", "match.bad-value"),
    ("curl", "match.too-few-args"),
    (f"curl {PROBE} {PROBE}", "match.too-many-args"),
    # write files
    (f"curl -o /tmp/x {PROBE}", "match.bad-value"),
    (f"curl -o /dev/stdout -o /tmp/x {PROBE}", "match.bad-value"),
    (f"curl --output=/tmp/x {PROBE}", "match.bad-value"),
    (f"curl -O {PROBE}", "match.unknown-option"),
    (f"curl --remote-name-all {PROBE}", "match.unknown-option"),
    (f"curl --output-dir /tmp {PROBE}", "match.unknown-option"),
    (f"curl --create-dirs {PROBE}", "match.unknown-option"),
    (f"curl -D /tmp/h {PROBE}", "match.unknown-option"),
    (f"curl --dump-header /tmp/h {PROBE}", "match.unknown-option"),
    (f"curl -c /tmp/jar {PROBE}", "match.unknown-option"),
    (f"curl --cookie-jar /tmp/jar {PROBE}", "match.unknown-option"),
    (f"curl --etag-save /tmp/e {PROBE}", "match.unknown-option"),
    (f"curl --hsts /tmp/h {PROBE}", "match.unknown-option"),
    (f"curl --alt-svc /tmp/a {PROBE}", "match.unknown-option"),
    (f"curl --trace /tmp/t {PROBE}", "match.unknown-option"),
    (f"curl --trace-ascii /tmp/t {PROBE}", "match.unknown-option"),
    (f"curl --stderr /tmp/e {PROBE}", "match.unknown-option"),
    (f"curl --libcurl /tmp/c {PROBE}", "match.unknown-option"),
    (f"curl -w '%output{{/tmp/x}}' {PROBE}", "match.bad-value"),
    (f"curl -w '%output{{>>/tmp/x}}%{{json}}' {PROBE}", "match.bad-value"),
    # headers printed without their names slip past the redaction net (Set-Cookie)
    (f"curl -w '%header{{set-cookie}}' {PROBE}", "match.bad-value"),
    (f"curl -w '%{{header_json}}' {PROBE}", "match.bad-value"),
    (f"curl -w '%{{json}}' {PROBE}", "match.bad-value"),
    (f"curl -w '%{{stderr}}' {PROBE}", "match.bad-value"),
    # read files
    (f"curl -K /etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl --config /etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl -w @/etc/shadow {PROBE}", "match.bad-value"),
    (f"curl -b /etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl --cookie x=1 {PROBE}", "match.unknown-option"),
    (f"curl -d @/etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl --data-binary @/etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl --json @/etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl -F f=@/etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl -T /etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl --upload-file /etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl --variable %HOME {PROBE}", "match.unknown-option"),
    (f"curl --variable x@/etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl -E /etc/ssl/private/key.pem {PROBE}", "match.unknown-option"),
    (f"curl --cert /etc/ssl/private/key.pem {PROBE}", "match.unknown-option"),
    (f"curl --key /etc/ssl/private/key.pem {PROBE}", "match.unknown-option"),
    (f"curl --cacert /etc/shadow {PROBE}", "match.unknown-option"),
    (f"curl -n {PROBE}", "match.unknown-option"),
    (f"curl --netrc-file /root/.netrc {PROBE}", "match.unknown-option"),
    # anything but GET/HEAD, and sending what the agent writes
    (f"curl -X DELETE {PROBE}", "match.unknown-option"),
    (f"curl --request=POST {PROBE}", "match.unknown-option"),
    (f"curl -d x=1 {PROBE}", "match.unknown-option"),
    (f"curl -H 'Authorization: Bearer x' {PROBE}", "match.unknown-option"),
    (f"curl --header 'Host: other' {PROBE}", "match.unknown-option"),
    (f"curl -u admin:admin {PROBE}", "match.unknown-option"),
    (f"curl --oauth2-bearer x {PROBE}", "match.unknown-option"),
    (f"curl -A x {PROBE}", "match.unknown-option"),
    (f"curl -e http://x {PROBE}", "match.unknown-option"),
    # reach another host or URL
    (f"curl -L {PROBE}", "match.unknown-option"),
    (f"curl --location {PROBE}", "match.unknown-option"),
    (f"curl -x http://192.0.2.1:3128 {PROBE}", "match.unknown-option"),
    (f"curl --proxy socks5://192.0.2.1 {PROBE}", "match.unknown-option"),
    (f"curl --connect-to 127.0.0.1:8008:192.0.2.1:80 {PROBE}", "match.unknown-option"),
    (f"curl --resolve 127.0.0.1:8008:192.0.2.1 {PROBE}", "match.unknown-option"),
    (f"curl --interface eth0 {PROBE}", "match.unknown-option"),
    (f"curl --unix-socket /run/docker.sock {PROBE}", "match.unknown-option"),
    (f"curl --abstract-unix-socket x {PROBE}", "match.unknown-option"),
    (f"curl --url http://192.0.2.1/ {PROBE}", "match.unknown-option"),
    (f"curl {PROBE} --next http://192.0.2.1/", "match.unknown-option"),
    (f"curl {PROBE} -: http://192.0.2.1/", "match.unknown-option"),
    (f"curl -Z {PROBE}", "match.unknown-option"),
    (f"curl --retry 1000 {PROBE}", "match.unknown-option"),
    # the forced limits cannot be overridden (curl takes the last one given)
    (f"curl -m 3600 {PROBE}", "match.unknown-option"),
    (f"curl --max-time 3600 {PROBE}", "match.unknown-option"),
    (f"curl --max-filesize 0 {PROBE}", "match.unknown-option"),
    (f"curl --proto =all {PROBE}", "match.unknown-option"),
    (f"curl --max-redirs 50 {PROBE}", "match.unknown-option"),
    (f"curl -g {PROBE}", "match.unknown-option"),
    # openssl: loopback s_client only, no files, no code loaded
    ("openssl s_client -connect 192.0.2.1:443", "match.bad-value"),
    ("openssl s_client -connect example.org:443", "match.bad-value"),
    ("openssl s_client -connect 127.0.0.1:443 -proxy 192.0.2.1:3128", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -key /etc/ssl/private/k.pem", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -cert /etc/ssl/x.pem", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -CAfile /etc/shadow", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -sess_out /tmp/s", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -sess_in /tmp/s", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -keylogfile /tmp/k", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -msgfile /tmp/m", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -writerand /tmp/r", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -engine /tmp/evil.so", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -provider-path /tmp -provider evil", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -reconnect", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -psk 00", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 -starttls ldap", "match.bad-value"),
    ("openssl s_client 192.0.2.1:443", "match.too-many-args"),
    ("openssl req -new -key /etc/ssl/private/k.pem", "match.unknown-option"),
    ("openssl genpkey -algorithm ed25519", "match.unknown-option"),
    ("openssl enc -d -in /etc/shadow", "match.unknown-option"),
    ("openssl x509 -in /etc/ssl/x.pem", "match.unknown-option"),
    ("openssl s_server", "match.unknown-subcommand"),
    ("openssl s_client -connect 127.0.0.1:443 | openssl x509 -in /etc/ssl/private/k.pem", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 | openssl x509 -out /tmp/x", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 | openssl x509 -signkey /etc/ssl/private/k.pem", "match.unknown-option"),
    ("openssl s_client -connect 127.0.0.1:443 | openssl req -text", "match.unknown-subcommand"),
    ("openssl s_client -connect 127.0.0.1:443 | openssl x509 -noout /etc/ssl/x.pem", "match.too-many-args"),
]


@pytest.mark.parametrize("command,code", DENIED)
def test_denied(web02, command, code):
    p = plan(command.encode(), web02)
    assert (p.decision, p.code) == (DENY, code), p.reason


def test_every_probe_of_the_host_policy_can_be_asked_and_nothing_else(web02):
    urls = [p.url for s in web02.services.values() for p in s.probes]
    assert PROBE in urls and len(urls) >= 10
    for url in urls:
        p = plan(f"curl -sS '{url}'".encode(), web02)
        assert p.allowed, p.reason
        assert p.exec_argv[1] == "-q"  # before anything else, or curl reads .curlrc
        assert ("--max-redirs", "0") == p.exec_argv[p.exec_argv.index("--max-redirs"):][:2]
    assert not any("webhook" in u or "_search" in u for u in urls)


def test_a_probe_with_an_own_name_is_pinned_to_loopback(web02):
    for extra in ("", "-6 ", "-- "):
        p = plan(f"curl -sS -I {extra}https://matrix.example.org/_matrix/client/versions".encode(), web02)
        assert p.allowed, p.reason
        # right after the forced words, before anything of the agent's (`--` would make it a URL)
        i = p.exec_argv.index("--connect-to")
        assert p.exec_argv[i + 1] == "matrix.example.org:443:127.0.0.1:443"
        assert p.exec_argv[i + 2] == "-sS"
        assert "--resolve" not in p.exec_argv


@pytest.mark.parametrize("probe,says", [
    ('"http://192.0.2.1/health"', "not loopback"),
    ('"https://matrix.example.org/x"', "not loopback"),
    ('{ url = "https://matrix.example.org/x", connect = "192.0.2.1" }', "connect pins"),
    ('{ url = "http://127.0.0.1/x", connect = "127.0.0.1" }', "connect pins"),
    ('"file:///etc/shadow"', "not an http"),
    ('"http://127.0.0.1:8008"', "not an http"),
    ('{ url = "http://127.0.0.1/x", via = "y" }', "unknown key"),
])
def test_the_loader_refuses_a_probe_that_could_leave_the_host(tmp_path, probe, says):
    path = tmp_path / "p.toml"
    path.write_text(f'[services.x]\nsummary = "x"\nprobes = [{probe}]\n')
    with pytest.raises(PolicyError, match=says):
        load(str(path))


# --------------------------------------------------------------------------- the real curl and openssl


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/away":
            self.send_response(302)
            self.send_header("Location", "http://192.0.2.1/")
            self.end_headers()
            return
        body = f"ok {self.path} host={self.headers.get('Host')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _real(tmp_path, names, extra):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for name in names:
        real = shutil.which(name, path="/usr/bin:/bin")
        if real is None:
            pytest.skip(f"{name} is not installed here")
        os.symlink(real, bindir / name)
    path = tmp_path / "p.toml"
    path.write_text(f'include = ["{POLICY_DIR / "fleet.toml"}"]\n{extra}\n[settings]\nsearch_path = ["{bindir}"]\n'
                    'sandbox = "off"\n')
    return load(str(path))


def _run(p, stdin=subprocess.DEVNULL):
    return subprocess.run([p.executable, *p.exec_argv[1:]], capture_output=True, timeout=30, stdin=stdin,
                          env=dict(p.env))


def test_real_curl_asks_the_probe_and_follows_nowhere(tmp_path, server):
    pol = _real(tmp_path, ["curl"], f'[services.t]\nsummary = "t"\nprobes = ["http://127.0.0.1:{server}/health",'
                f' "http://127.0.0.1:{server}/away", {{ url = "http://diag-probe.example.org:{server}/own",'
                ' connect = "127.0.0.1" }]\n')
    home = tmp_path / "home"
    home.mkdir()
    (home / ".curlrc").write_text("output = /tmp/diag-curlrc-was-read\n")
    p = plan(f"curl -sS -w '%{{http_code}}\\n' http://127.0.0.1:{server}/health".encode(), pol)
    assert p.allowed, p.reason
    out = subprocess.run([p.executable, *p.exec_argv[1:]], capture_output=True, timeout=30,
                         stdin=subprocess.DEVNULL, env={**p.env, "HOME": str(home), "CURL_HOME": str(home)})
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"ok /health host=127.0.0.1:%d\n200\n" % server  # -q: the .curlrc was not read
    assert not os.path.exists("/tmp/diag-curlrc-was-read")
    # a redirect elsewhere is not followed
    out = _run(plan(f"curl -sS -i http://127.0.0.1:{server}/away".encode(), pol))
    assert out.returncode == 0 and b"302" in out.stdout and b"Location: http://192.0.2.1/" in out.stdout
    # the host's own name, which resolves nowhere here, is pinned to loopback by --connect-to
    out = _run(plan(f"curl -sS http://diag-probe.example.org:{server}/own".encode(), pol))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"ok /own host=diag-probe.example.org:%d\n" % server


def test_real_openssl_reads_the_served_certificate_and_ends(tmp_path):
    openssl = shutil.which("openssl", path="/usr/bin:/bin")
    if openssl is None:
        pytest.skip("openssl is not installed here")
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=diag-probe.example.org"],
                   check=True, capture_output=True)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-key", key, "-cert", crt,
                               "-naccept", "2", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        pol = _real(tmp_path, ["openssl"], "")
        import time

        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        p = plan(f"openssl s_client -connect 127.0.0.1:{port} -servername diag-probe.example.org"
                 f" | openssl x509 -noout -subject -enddate".encode(), pol)
        assert p.allowed and len(p.filters) == 1, p.reason
        first = _run(p)  # stdin is /dev/null: s_client prints the certificate and ends at EOF
        assert first.returncode == 0, first.stderr
        assert b"-----BEGIN CERTIFICATE-----" in first.stdout
        f = p.filters[0]
        second = subprocess.run([f.executable, *f.exec_argv[1:]], input=first.stdout, capture_output=True,
                                timeout=30)
        assert second.returncode == 0, second.stderr
        assert b"CN = diag-probe.example.org" in second.stdout and b"notAfter=" in second.stdout
    finally:
        server.kill()
        server.wait()
