# Fixed reports (services.diag.reports): root-only facts from argument-free
# collectors the agent asks for by name (`report NAME`).
#
# The trust boundary: the operator chooses each command here, in the host's
# configuration; the agent chooses only which report runs. Nothing the client
# sends is read (StandardInput=null, and the wrapper sends nothing), no
# argument reaches the command, and the output goes back through the
# wrapper's supervisor (its cap, closing record and redaction net).
#
# This file is data and functions only (lib, no pkgs of its own), so the
# module (module.nix) and the end-to-end test (tests/e2e/test_reports_e2e.py,
# which renders the same attrsets to unit files for a booted systemd) use one
# definition of the units: they cannot drift.
{ lib }:

let
  socketDir = "/run/diag-reports";

  # As nixpkgs' utils.escapeSystemdExecArg: a JSON string is a valid
  # systemd-quoted word; `%` (specifiers) and `$` (variables) doubled.
  escapeArg = arg: lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON (toString arg));
  escapeArgs = args: lib.concatMapStringsSep " " escapeArg args;
in
{
  inherit socketDir escapeArgs;

  socketPath = name: "${socketDir}/${name}.sock";

  # The reports web-02 (and any host) gets when services.diag.builtinReports
  # is on, each only where its service exists on the host. `pkgs` and the
  # host's `config` give the programs and what exists.
  builtin =
    { pkgs, config }:
    let
      pg = config.services.postgresql or { enable = false; };
      redisServers = lib.filterAttrs (_: s: s.enable or false) (config.services.redis.servers or { });
      podman = config.virtualisation.podman.enable or false;
      nftables = config.networking.nftables.enable or false;
      redisReport = n: if lib.length (lib.attrNames redisServers) == 1 then "redis-info" else "redis-${n}-info";
      redisName = n: "redis" + lib.optionalString (n != "") "-${n}"; # as nixpkgs' redis module
      redisPackage = config.services.redis.package or pkgs.redis;
    in
    {
      # Which process of which user owns each listening socket (`ss -p` shows no process
      # for other users' sockets unless the reader may look into their /proc/PID/fd).
      # Safe: ss only reads socket tables (netlink sock_diag) and /proc; no address
      # family but netlink and unix, no capability but reading other processes' fd tables.
      listening = {
        description = "listening TCP and UDP sockets with the process and user that own each (ss as root)";
        command = [
          "${pkgs.iproute2}/bin/ss"
          "--tcp"
          "--udp"
          "--listening"
          "--numeric"
          "--processes"
        ];
        timeout = 10;
        maxOutputBytes = 262144;
        addressFamilies = [
          "AF_NETLINK"
          "AF_UNIX"
        ];
        capabilities = [
          "CAP_SYS_PTRACE"
          "CAP_DAC_READ_SEARCH"
        ];
      };

      # Sizes of the state directories the deny list hides (one line each, sizes and
      # names only): what is filling /persist. Safe: du reads directory entries and
      # inode sizes, never file contents; it may traverse everything (CAP_DAC_READ_SEARCH)
      # and nothing else; no network at all. --count-links: a file is counted in every
      # place it appears (without it du counts an inode once per run, and a directory
      # bind-mounted from /persist would show as empty in one of its places).
      disk-usage = {
        description = "size of each directory in /var/lib and /var/log (DynamicUser state is in /var/lib/private), 1 MiB or more, in MiB (du as root)";
        command = [
          "${pkgs.coreutils}/bin/du"
          "--max-depth=1"
          "--count-links"
          "--block-size=1M"
          "--threshold=1M"
          "--"
          "/var/lib"
          "/var/log"
        ];
        timeout = 120;
        maxOutputBytes = 65536;
        addressFamilies = [ ];
        capabilities = [ "CAP_DAC_READ_SEARCH" ];
        privateNetwork = true;
      };
    }
    // lib.optionalAttrs podman {
      # The containers' state, never `inspect` (it prints the environment, i.e. the
      # companion's secret key) and never the environment: names, image, status
      # (with health), age. `podman ps` reads libpod's database; it also takes its
      # locks and syncs container states into its database (in /run/libpod and the
      # storage), so it needs those writable and the shared-memory locks in /dev/shm
      # (no private /dev; DevicePolicy=closed still keeps block devices away). What it
      # writes is podman's own bookkeeping, as any `podman ps` by root does.
      containers = {
        description = "podman containers: name, image, status with health, age (podman ps --all as root; never inspect or the environment)";
        command = [
          "${pkgs.podman}/bin/podman"
          "ps"
          "--all"
          "--format"
          "table {{.Names}}\\t{{.Image}}\\t{{.Status}}\\t{{.RunningFor}}"
        ];
        timeout = 20;
        maxOutputBytes = 65536;
        addressFamilies = [ "AF_UNIX" ];
        capabilities = [
          "CAP_DAC_OVERRIDE"
          "CAP_SYS_ADMIN"
        ];
        privateDevices = false;
        readWritePaths = [
          "-/run/libpod"
          "-/run/containers"
          "-/var/lib/containers/storage"
        ];
      };
    }
    // lib.optionalAttrs nftables {
      # The ruleset as the kernel has it. Safe: `nft list` only reads (netlink); the
      # ruleset holds addresses and ports, no secrets.
      firewall = {
        description = "the nftables ruleset (nft list ruleset as root)";
        command = [
          "${pkgs.nftables}/bin/nft"
          "list"
          "ruleset"
        ];
        timeout = 10;
        maxOutputBytes = 1048576;
        addressFamilies = [ "AF_NETLINK" ];
        capabilities = [ "CAP_NET_ADMIN" ];
      };
    }
    // lib.optionalAttrs (pg.enable or false) {
      # Connections by database, user, state and wait type, with the oldest transaction
      # and the longest time in one state: the pool question. Never the query text, the
      # client address or application names. Safe: as the postgres user over the local
      # socket (peer authentication), -X (no psqlrc), one read-only SELECT of counts.
      postgres-activity = {
        description = "PostgreSQL connections: counts by database, user, state and wait type, oldest transaction and longest time in a state (never query text)";
        command = [
          "${pg.package}/bin/psql"
          "-X"
          "--no-password"
          "--dbname=postgres"
          "--no-align"
          "--field-separator=\t" # a tab: psql does not unescape -F
          "--pset=footer=off"
          "--command=SELECT current_setting('max_connections') AS max_connections, count(*) AS connections FROM pg_stat_activity"
          "--command=SELECT datname, usename, state, wait_event_type, count(*) AS n, max(date_trunc('second', now() - xact_start)) AS oldest_xact, max(date_trunc('second', now() - state_change)) AS longest_in_state FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2, 3, 4 ORDER BY n DESC"
        ];
        user = "postgres";
        timeout = 10;
        maxOutputBytes = 65536;
        addressFamilies = [ "AF_UNIX" ];
        capabilities = [ ];
      };
    }
    // lib.mapAttrs' (
      n: s:
      lib.nameValuePair (redisReport n) {
        # INFO's sections of counters (keyspace: key counts per database, no key names).
        # Safe: as the server's own user over its unix socket; INFO only reads. A server
        # with a password needs AUTH, which this report does not do (it would need the
        # secret on a command line): it then answers NOAUTH.
        description = "Redis ${if n == "" then "" else "'${n}' "}INFO: server, clients, memory, persistence, stats, replication, cpu, keyspace counts";
        command = [
          "${redisPackage}/bin/redis-cli"
          "-s"
          (toString s.unixSocket)
          "INFO"
          "server"
          "clients"
          "memory"
          "persistence"
          "stats"
          "replication"
          "cpu"
          "keyspace"
        ];
        user = s.user or (redisName n);
        timeout = 10;
        maxOutputBytes = 65536;
        addressFamilies = [ "AF_UNIX" ];
        capabilities = [ ];
      }
    ) (lib.filterAttrs (_: s: (s.unixSocket or null) != null) redisServers);

  # One report's units, as values of NixOS' systemd.sockets.<name> and
  # systemd.services.<name>: a socket only the diag group may connect to, one
  # service instance per connection (Accept=yes), hardened, rate-limited.
  #   collect: the command prefix that runs diag-wrapper's collector
  #   group:   who may connect (the diag user's group)
  units =
    {
      name,
      report,
      collect,
      group,
    }:
    let
      unit = "diag-report-${name}";
      path = "${socketDir}/${name}.sock";
      families = report.addressFamilies or [ "AF_UNIX" ];
    in
    {
      socketName = unit;
      socket = {
        description = "diag report ${name}: ${report.description}";
        wantedBy = [ "sockets.target" ];
        listenStreams = [ path ];
        unitConfig.OnFailure = "diag-reports-reopen@${unit}.service";
        socketConfig = {
          Accept = true;
          SocketUser = "root";
          SocketGroup = group;
          SocketMode = "0660";
          DirectoryMode = "0755";
          RemoveOnStop = true;
          # Rate limits: a few runs at once (more connections are closed at once, the
          # client says "busy"); polls of the listening socket paced (systemd >= 255;
          # older ones ignore the keys with a warning); a flood beyond that stops the
          # socket (trigger-limit-hit), and OnFailure reopens it after a rest.
          MaxConnections = report.maxConnections or 2;
          Backlog = 8;
          PollLimitIntervalSec = "1s";
          PollLimitBurst = 10;
          # (above the 20 in 10 s one key's rate_per_minute allows the wrapper)
          TriggerLimitIntervalSec = "10s";
          TriggerLimitBurst = 50;
        };
      };
      serviceName = "${unit}@";
      service = {
        description = "diag report ${name} (one run)";
        serviceConfig = {
          ExecStart = "${collect} ${name} --timeout ${toString report.timeout} --max-output ${toString report.maxOutputBytes} -- ${escapeArgs report.command}";
          User = report.user or "root";
          # Nothing the client sends is read; the reply is the collector's frames.
          StandardInput = "null";
          StandardOutput = "socket";
          StandardError = "journal";
          SyslogIdentifier = unit;
          # The collector stops the command at its timeout; this stops the collector.
          RuntimeMaxSec = report.timeout + 5;
          KillMode = "control-group";
          # Read-only everywhere but what the report must lock, no homes, a private /tmp.
          ProtectSystem = "strict";
          ProtectHome = true;
          PrivateTmp = true;
          PrivateDevices = report.privateDevices or true;
          ReadWritePaths = report.readWritePaths or [ ];
          NoNewPrivileges = true;
          # Only the capabilities the command needs ("" is the empty set) and no more
          # address families than it uses ("none": no sockets at all).
          CapabilityBoundingSet = lib.concatStringsSep " " (report.capabilities or [ ]);
          RestrictAddressFamilies = if families == [ ] then "none" else lib.concatStringsSep " " families;
          PrivateNetwork = report.privateNetwork or false;
          DevicePolicy = "closed"; # /dev/null, zero, random and the like; no block devices
          SystemCallFilter = "@system-service";
          LimitCORE = 0; # a crashing collector leaves no core with what it read
          TimeoutStopSec = "5s";
          Nice = 19;
          IOSchedulingClass = "idle";
          ProtectKernelTunables = true;
          ProtectKernelModules = true;
          ProtectKernelLogs = true;
          ProtectControlGroups = true;
          ProtectClock = true;
          ProtectHostname = true;
          RestrictNamespaces = true;
          RestrictRealtime = true;
          RestrictSUIDSGID = true;
          LockPersonality = true;
          SystemCallArchitectures = "native";
          UMask = "0077";
          MemoryMax = "256M";
          TasksMax = 32;
        };
      };
      # The policy's [reports.NAME] table: what the wrapper asks and how long it waits.
      policy = {
        summary = report.description;
        socket = path;
        inherit (report) timeout;
        max_output_bytes = report.maxOutputBytes;
      };
    };

  # Restarts a report's socket that stopped at its trigger limit (OnFailure above),
  # after reopenAfter seconds of rest.
  reopen =
    { systemctl, sleep, reopenAfter ? 30 }:
    {
      description = "reopen the diag report socket %i after a rest";
      serviceConfig = {
        Type = "oneshot";
        ExecStartPre = "${sleep} ${toString reopenAfter}";
        ExecStart = "${systemctl} start %i.socket";
      };
    };
}
