# NixOS VM test: a client and a web-02-like server with the diag channel.
#
#   nix-build nix/tests/web-02.nix            (or: nix build .#checks.x86_64-linux.web-02)
#
# The server imports nix/hosts/web-02.nix exactly as web-02 does, keeps its
# SSH host key under /persist (impermanence), bind-mounted onto /etc/ssh, and
# has planted synapse / n8n / mautrix secrets; /var/lib/n8n and the host key are
# bind mounts from /persist, as impermanence makes them. The client's ssh
# configuration is nix/client.nix's; it uses the nixpkgs test key pair from
# nixos/tests/ssh-keys.nix as the "diag key".
{
  pkgs ? import <nixpkgs> { },
  diagPackage ? pkgs.callPackage ../package.nix { },
}:

let
  sshKeys = import "${pkgs.path}/nixos/tests/ssh-keys.nix" pkgs;
  planted = "PLANTED-SECRET-4b1d";
  # The client's ssh configuration comes from nix/client.nix, evaluated with a stand-in
  # for home-manager 26.05's programs.ssh (a NixOS test node has no home-manager) and
  # written as home-manager writes ~/.ssh/config.
  hmSsh = import ./hm-ssh.nix {
    inherit (pkgs) lib;
    release = "26.05";
  };
  clientConfig =
    (pkgs.lib.evalModules {
      modules = [
        hmSsh.module
        ../client.nix
        {
          programs.diagClient = {
            enable = true;
            identityFile = "/root/.ssh/diag";
            hosts.server.hostname = "server";
          };
          # what the agent's machine has besides: a broad block with a personal key
          programs.ssh.settings.personal = {
            header = "Host * !server !web-02 !web-02.cloonar.com";
            IdentityFile = "/root/.ssh/id_personal";
          };
        }
      ];
    }).config;
  failedClientAssertions = map (a: a.message) (pkgs.lib.filter (a: !a.assertion) clientConfig.assertions);
in
assert failedClientAssertions == [ ];
assert clientConfig.warnings == [ ];
pkgs.testers.runNixOSTest {
  name = "diag-wrapper-web-02";

  nodes.server =
    { ... }:
    {
      imports = [ ../hosts/web-02.nix ];

      services.openssh = {
        enable = true;
        settings.PasswordAuthentication = false;
        # web-02 keeps its host keys on the impermanence volume
        hostKeys = [
          {
            path = "/persist/etc/ssh/ssh_host_ed25519_key";
            type = "ed25519";
          }
        ];
      };

      services.diag = {
        package = diagPackage;
        authorizedKeys = [ sshKeys.snakeOilPublicKey ];
      };

      # What the built-in reports look for (nix/reports.nix): each becomes a report.
      virtualisation.podman.enable = true;
      networking.nftables.enable = true;
      networking.firewall.enable = true;
      services.postgresql.enable = true;

      # Something for `systemctl status` to look at, named like a web-02 unit.
      systemd.services.invidious-companion = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
      };
    };

  nodes.client =
    { ... }:
    {
      # nix/client.nix's blocks (diag first, only the diag key), then the test's own options
      programs.ssh.extraConfig = hmSsh.sshConfigText clientConfig + ''
        Host server
          StrictHostKeyChecking no
          UserKnownHostsFile /dev/null
          BatchMode yes
          LogLevel ERROR
      '';
    };

  testScript = ''
    import json
    import shlex

    PLANTED = "${planted}"
    DENIED_PREFIX = "diag-wrapper: denied:"

    start_all()

    # --- server: secrets where web-02 keeps them, host key only under /persist
    server.wait_for_unit("sshd.service")
    server.wait_for_unit("invidious-companion.service")
    server.succeed(
        "install -d -m 700 /var/lib/matrix-synapse /var/lib/n8n/.n8n /var/lib/mautrix-whatsapp /persist/var/lib",
        f"echo 'signing_key: {PLANTED}' > /var/lib/matrix-synapse/homeserver.signing.key",
        f"echo '{{\"encryptionKey\": \"{PLANTED}\"}}' > /var/lib/n8n/.n8n/config",
        f"echo 'as_token: {PLANTED}' > /var/lib/mautrix-whatsapp/config.yaml",
        # world-readable on purpose: only the wrapper may stand in the way
        "chmod -R a+rX /var/lib/matrix-synapse /var/lib/n8n /var/lib/mautrix-whatsapp",
        # impermanence as the module does it: the persisted directory bind-mounted into place,
        # and the host key bind-mounted onto its /etc/ssh name
        "mv /var/lib/n8n /persist/var/lib/n8n && install -d -m 700 /var/lib/n8n",
        "mount --bind /persist/var/lib/n8n /var/lib/n8n",
        "test -f /persist/etc/ssh/ssh_host_ed25519_key",
        "touch /etc/ssh/ssh_host_ed25519_key && mount --bind /persist/etc/ssh/ssh_host_ed25519_key /etc/ssh/ssh_host_ed25519_key",
        "findmnt /var/lib/n8n && findmnt /etc/ssh/ssh_host_ed25519_key",
        "touch /tmp/keep-me",
    )
    # the planted files are readable by diag at the file-system level
    server.succeed("su -s /bin/sh diag -c 'cat /var/lib/n8n/.n8n/config' | grep -q " + PLANTED)

    # --- client: the diag key
    client.succeed(
        "install -D -m 600 ${sshKeys.snakeOilPrivateKey} /root/.ssh/diag",
    )
    client.wait_until_succeeds("ssh server help", timeout=120)
    # nix/client.nix: the only identity offered to the diag host is the diag key
    ids = [l.split(" ", 1)[1] for l in client.succeed("ssh -G server").splitlines() if l.startswith("identityfile ")]
    assert ids == ["/root/.ssh/diag"], ids


    def diag(command):
        """Run `command` over the diag channel; return (status, stdout, stderr)."""
        status, out = client.execute(
            f"ssh server {shlex.quote(command)} 2>/tmp/stderr"
        )
        err = client.succeed("cat /tmp/stderr")
        return status, out, err


    def allowed(command, expect_in=None):
        status, out, err = diag(command)
        assert status == 0, f"{command!r}: exit {status}, stderr {err!r}"
        assert DENIED_PREFIX not in err, err
        if expect_in is not None:
            assert expect_in in out, f"{command!r}: {expect_in!r} not in {out!r}"
        return out


    def denied(command):
        status, out, err = diag(command)
        assert status == 77, f"{command!r}: exit {status}, want 77; stdout {out!r} stderr {err!r}"
        assert err.startswith(DENIED_PREFIX), f"{command!r}: stderr {err!r}"
        assert PLANTED not in out and PLANTED not in err
        assert "PRIVATE KEY" not in out
        return err


    with subtest("allowed read-only commands run"):
        allowed("systemctl status invidious-companion.service", "invidious-companion.service")
        allowed("journalctl -u sshd.service -n 5")
        allowed("df -h")
        allowed("help")

    with subtest("web-02 secrets are refused with the wrapper's message"):
        denied("cat /var/lib/matrix-synapse/homeserver.signing.key")
        denied("cat /var/lib/n8n/.n8n/config")
        denied("cat /persist/var/lib/n8n/.n8n/config")
        denied("head /var/lib/mautrix-whatsapp/config.yaml")
        denied("ls -R /var/lib/mautrix-whatsapp")

    with subtest("SSH host keys are refused at /persist and through /etc/ssh"):
        denied("cat /persist/etc/ssh/ssh_host_ed25519_key")
        denied("cat /etc/ssh/ssh_host_ed25519_key")
        denied("grep -r PRIVATE /persist/etc/ssh")

    with subtest("mutating and shell constructs are refused and change nothing"):
        denied("systemctl stop invidious-companion.service")
        denied("rm -f /tmp/keep-me")
        denied("touch /tmp/diag-was-here")
        denied("ls; id")
        denied("cat $(echo /etc/shadow)")
        server.succeed("systemctl is-active invidious-companion.service")
        server.succeed("test -e /tmp/keep-me")
        server.fail("test -e /tmp/diag-was-here")

    with subtest("fixed reports: root-only facts by name, nothing else"):
        server.wait_for_unit("postgresql.service")
        server.wait_for_unit("sockets.target")
        listing = allowed("report")
        for name in ("containers", "disk-usage", "firewall", "listening", "postgres-activity"):
            assert name in listing, listing
        # sshd's listening socket is root's: only the report names its process
        allowed("report listening", 'users:(("sshd"')
        allowed("report containers", "NAMES")
        allowed("report firewall", "table inet")
        allowed("report postgres-activity", "max_connections\tconnections")  # a real tab
        disk = allowed("report disk-usage", "/var/lib")
        assert PLANTED not in disk
        status, _, err = diag("report shell")
        assert status == 77 and "(report.unknown)" in err, err
        status, _, err = diag("report containers inspect")
        assert status == 77 and "(match.too-many-args)" in err, err
        # the socket is the diag group's: another user cannot connect at all
        server.fail(
            "su -s /bin/sh nobody -c '${pkgs.socat}/bin/socat -u UNIX-CONNECT:/run/diag-reports/listening.sock -'"
        )
        server.succeed("stat -c '%a %G' /run/diag-reports/listening.sock | grep -qx '660 diag'")

    with subtest("no interactive shell, no pty, no forwarding"):
        status, _, _ = diag("")
        assert status == 64, f"empty command: exit {status}, want 64"
        # a pty request is refused (the command still goes through the wrapper)
        client.succeed("ssh -tt server help 2>&1 | grep -q 'PTY allocation request failed'")
        # a local forward is set up client-side, but the server refuses the channel:
        # nothing arrives from the server's port 22 through it
        client.succeed(
            "(ssh -N -L 9999:127.0.0.1:22 server >/dev/null 2>&1 & echo $! > /tmp/forward.pid)"
        )
        client.wait_for_open_port(9999)
        client.fail(
            "timeout 10 bash -c 'exec 3<>/dev/tcp/127.0.0.1/9999 && head -c 4 <&3' | grep -q SSH-"
        )
        client.succeed("kill $(cat /tmp/forward.pid)")

    with subtest("NIX_PYTHON* cannot inject code into the isolated interpreter"):
        # nixpkgs' sitecustomize honours NIX_PYTHONPATH even under -I; the
        # installed bin/diag-wrapper unsets it before Python starts.
        server.succeed(
            "install -d -m 755 /tmp/evil",
            "echo 'import os; open(\"/tmp/pwned\", \"w\").close()' > /tmp/evil/evil.pth",
            "chmod 644 /tmp/evil/evil.pth",
        )
        inject = "NIX_PYTHONPATH=/tmp/evil PYTHONPATH=/tmp/evil SSH_ORIGINAL_COMMAND=help"
        # control: the bare interpreter script does load it
        server.execute(
            f"su -s /bin/sh diag -c '{inject} ${diagPackage}/bin/.diag-wrapper-wrapped --policy /etc/diag-wrapper/policy.json'"
        )
        server.succeed("test -e /tmp/pwned && rm /tmp/pwned")
        # the installed entry point does not
        server.succeed(
            f"su -s /bin/sh diag -c '{inject} ${diagPackage}/bin/diag-wrapper --policy /etc/diag-wrapper/policy.json'"
        )
        server.fail("test -e /tmp/pwned")

    with subtest("the server's journal holds one record per decision"):
        records = [
            json.loads(line)
            for line in server.succeed(
                "journalctl -t diag-wrapper -o json --no-pager"
            ).splitlines()
            if line.strip()
        ]
        decisions = [r.get("DIAG_DECISION") for r in records]
        assert "allow" in decisions, decisions
        assert decisions.count("deny") >= 13, decisions
        commands = [r.get("DIAG_COMMAND") for r in records]
        assert "cat /var/lib/n8n/.n8n/config" in commands, commands
        assert "systemctl stop invidious-companion.service" in commands, commands
        assert all(r.get("DIAG_USER") == "diag" for r in records if "DIAG_USER" in r)
        # the installed wrapper ran isolated (python -I) every time
        assert not any("not-isolated" in json.dumps(r) for r in records)
        assert not any(PLANTED in json.dumps(r) for r in records)
        # systemctl and journalctl ran inside the kernel wall (user + mount
        # namespace; NixOS allows unprivileged user namespaces) and still
        # answered above: systemd over D-Bus, the journal through the group
        for cmd in ("systemctl status invidious-companion.service", "journalctl -u sshd.service -n 5"):
            rec = next(r for r in records if r.get("DIAG_COMMAND") == cmd)
            assert rec["DIAG_DECISION"] == "allow", rec
            assert rec["DIAG_LAYERS"].split(",")[-1] == "sandbox", rec
            # and each ran under the supervisor: a closing record with its exit status
            end = next(r for r in records if r.get("DIAG_DECISION") == "end"
                       and r.get("DIAG_INVOCATION") == rec["DIAG_INVOCATION"])
            assert end["DIAG_EXIT_STATUS"].isdigit() and end["DIAG_TREE"] == "pidns", end
  '';
}
