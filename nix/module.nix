# NixOS module: the read-only `diag` SSH channel (ADR-0005, amended by
# ADR-0005-amendment.md).
#
# What it does when services.diag.enable = true:
#   * a system user `diag` (own group, member of systemd-journal, a real login
#     shell because sshd runs the forced command through it, no password, not
#     in wheel, no sudo rule, no setuid wrapper);
#   * /etc/diag-wrapper/policy.toml, rendered from the host policy plus
#     extraDenyPaths (deny entries are concatenated by the loader; nothing can
#     remove one), and /etc/diag-wrapper/policy.json, the same policy with its
#     includes resolved, made at build time by `diag-wrapper render` (which
#     refuses an invalid policy); the wrapper reads the JSON (no tomllib at
#     every command's start-up);
#   * each authorized key as `restrict,command="<wrapper> --policy ..." <key>`;
#   * a `Match User diag` block at the end of sshd_config that forces the same
#     command and turns every forwarding / tty / tunnel / rc feature off.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    types
    ;

  cfg = config.services.diag;
  reportsLib = import ./reports.nix { inherit lib; };
  enabledReports = lib.filterAttrs (_: r: r.enable) cfg.reports;
  reportUnits = lib.mapAttrs (
    name: report:
    reportsLib.units {
      inherit name report;
      collect = "${cfg.package}/bin/diag-wrapper collect";
      group = userName;
    }
  ) enabledReports;
  sshd = config.services.openssh;
  # Unprivileged user namespaces off by other means than security.allowUserNamespaces: the
  # sysctls themselves, or a hardened kernel (its unprivileged_userns_clone patch defaults to
  # 0; security.unprivilegedUsernsClone turns it on, and only there).
  sysctl = config.boot.kernel.sysctl;
  sysctlOff = name: lib.elem (sysctl.${name} or null) [ 0 false "0" ];
  hardenedKernel = lib.hasInfix "hardened" (config.boot.kernelPackages.kernel.version or "");
  usernsOffBy =
    lib.optional (sysctlOff "user.max_user_namespaces") "boot.kernel.sysctl.\"user.max_user_namespaces\" = 0"
    ++ lib.optional (sysctlOff "kernel.unprivileged_userns_clone") "boot.kernel.sysctl.\"kernel.unprivileged_userns_clone\" = 0"
    ++ lib.optional (hardenedKernel && !config.security.unprivilegedUsernsClone)
      "a hardened kernel without security.unprivilegedUsernsClone = true";

  userName = "diag";
  policyEtcPath = "diag-wrapper/policy.json";
  policyPath = "/etc/${policyEtcPath}";

  forceCommand = "${cfg.package}/bin/diag-wrapper --policy ${policyPath}";

  tomlFormat = pkgs.formats.toml { };

  # Same rules as diag_wrapper.deny.validate_entry: absolute, normalised,
  # '*' only inside a component, no other glob characters, no '.' or '..'.
  isValidDenyPath =
    p:
    builtins.match "/([^/]+(/[^/]+)*)?" p != null
    && builtins.match ".*[]?[{}\\\\].*" p == null
    && builtins.match "(.*/)?\\.{1,2}(/.*)?" p == null;

  # An OpenSSH public key line without options (we add our own).
  isBareKey = k: builtins.match "(ssh-|ecdsa-|sk-)[^ ]+ [A-Za-z0-9+/=]+( .*)?" k != null;
  # from= patterns: addresses, host patterns, CIDR, '!'-negation; nothing that ends the option
  isFromPattern = p: builtins.match "!?[A-Za-z0-9.:*?/_-]+" p != null;
  namedKeys = lib.mapAttrsToList (name: k: k // { inherit name; }) cfg.keys;
  allKeys = map (k: { key = k; from = null; name = null; }) cfg.authorizedKeys ++ namedKeys;
  keyLine =
    k:
    let
      from = lib.optionalString (k.from != null) ''from="${lib.concatStringsSep "," k.from}",'';
    in
    ''restrict,${from}command="${forceCommand}" ${k.key}'';

  # Environment variables that would let a client change what the login
  # shell (bash -c), the dynamic loader or the interpreter does before the
  # wrapper's own checks run.
  dangerousEnv = [
    "BASH_ENV"
    "ENV"
    "SHELLOPTS"
    "BASHOPTS"
    "PS4"
    "BASH_FUNC_x%%"
    "LD_PRELOAD"
    "LD_LIBRARY_PATH"
    "LD_AUDIT"
    # nixpkgs' Python honours these in its sitecustomize even under -I
    "NIX_PYTHONPATH"
    "NIX_PYTHONEXECUTABLE"
    "NIX_PYTHONPREFIX"
    # what sshd itself sets for the session: a client must not forge the audit's login key
    # (SSH_USER_AUTH) or the command the wrapper decides on
    "SSH_USER_AUTH"
    "SSH_ORIGINAL_COMMAND"
    "SSH_CONNECTION"
    "SSH_CLIENT"
  ];
  # AcceptEnv and the access lists take sshd_config(5) patterns ('*', '?')
  sshPatterns = import ./ssh-patterns.nix { inherit lib; };
  # In nixpkgs AcceptEnv is a freeform settings atom (nullOr (oneOf [bool int float str])):
  # one string, patterns separated by spaces ("LANG LC_*"). A list is accepted too, should a
  # module declare it so. sshd also takes AcceptEnv lines from extraConfig; each adds patterns.
  words = str: lib.filter (w: w != "") (lib.splitString " " (lib.replaceStrings [ "\t" "," ] [ " " " " ] str));
  acceptEnv = sshd.settings.AcceptEnv or null;
  acceptEnvSettings =
    if acceptEnv == null then
      [ ]
    else if builtins.isList acceptEnv then
      lib.concatMap words acceptEnv
    else
      words (toString acceptEnv);
  configLines = map lib.trim (lib.splitString "\n" sshd.extraConfig);
  keywordLines =
    kw: lib.filter (l: lib.toLower (builtins.head (words l ++ [ "" ])) == lib.toLower kw) configLines;
  acceptEnvExtra = lib.concatMap (l: builtins.tail (words l)) (keywordLines "AcceptEnv");
  acceptEnvList = acceptEnvSettings ++ acceptEnvExtra;
  dangerousAccepted = lib.filter (
    pat: pat != "" && lib.any (v: sshPatterns.matches v pat) dangerousEnv
  ) acceptEnvList;

  # AllowUsers/DenyUsers/AllowGroups/DenyGroups (nixpkgs: nullOr (listOf str)); a user
  # pattern may be USER@HOST, where only the user part is about who logs in.
  allowUsers = sshd.settings.AllowUsers or null;
  denyUsers = sshd.settings.DenyUsers or null;
  allowGroups = sshd.settings.AllowGroups or null;
  denyGroups = sshd.settings.DenyGroups or null;
  userPart = pat: builtins.head (lib.splitString "@" pat);
  matchesName = sshPatterns.matches;
  diagGroups = [ userName ] ++ config.users.users.${userName}.extraGroups;
  userAllowed = allowUsers == null || lib.any (p: matchesName userName (userPart p)) allowUsers;
  userDenied = denyUsers != null && lib.any (p: matchesName userName (userPart p)) denyUsers;
  groupAllowed = allowGroups == null || lib.any (p: lib.any (g: matchesName g p) diagGroups) allowGroups;
  groupDenied = denyGroups != null && lib.any (p: lib.any (g: matchesName g p) diagGroups) denyGroups;

  # --- the deny list from the host itself (ADR "derived deny list"): every service's
  # StateDirectory=, CacheDirectory= (and their /var/lib/private, /var/cache/private forms
  # under DynamicUser) and RuntimeDirectory=, and every path impermanence persists under
  # /var/lib or /var/cache, each with its twin under every persistence root. Not
  # LogsDirectory= (the logs are what the agent reads), nor ConfigurationDirectory=.
  persistence = lib.filterAttrs (_: p: p.enable or true) (config.environment.persistence or { });
  persistRoots = lib.unique (lib.mapAttrsToList (name: p: p.persistentStoragePath or name) persistence);
  dirsOf = v: lib.concatMap (w: lib.splitString ":" w) (lib.concatMap words (lib.toList v));
  serviceEntries = lib.concatLists (
    lib.mapAttrsToList (
      unit: s:
      let
        c = s.serviceConfig or { };
        dynamic = c.DynamicUser or false;
        entries =
          key: base: private:
          lib.concatMap (
            d:
            [
              {
                path = "${base}/${d}";
                why = "${key} of ${unit}.service";
              }
            ]
            ++ lib.optional (dynamic && private != null) {
              path = "${private}/${d}";
              why = "${key} of ${unit}.service (DynamicUser)";
            }
          ) (dirsOf (c.${key} or [ ]));
      in
      entries "StateDirectory" "/var/lib" "/var/lib/private"
      ++ entries "CacheDirectory" "/var/cache" "/var/cache/private"
      ++ entries "RuntimeDirectory" "/run" null
    ) config.systemd.services
  );
  isStatePath = p: lib.hasPrefix "/var/lib/" p || lib.hasPrefix "/var/cache/" p;
  persistedEntries = lib.concatLists (
    lib.mapAttrsToList (
      name: p:
      map (path: {
        inherit path;
        why = "persisted by environment.persistence.\"${name}\"";
      }) (lib.filter isStatePath (map (d: d.directory or d) (p.directories or [ ]) ++ map (f: f.file or f) (p.files or [ ])))
    ) persistence
  );
  twins =
    e:
    [ e ]
    ++ lib.optionals (lib.hasPrefix "/var/" e.path) (
      map (root: {
        path = root + e.path;
        why = "${e.why}, its copy under ${root}";
      }) persistRoots
    );
  derivedDeny = lib.filter (e: isValidDenyPath e.path && !(lib.elem e.path cfg.readableStateDirectories)) (
    lib.concatMap twins (serviceEntries ++ persistedEntries)
  );
  # one entry per path (listToAttrs keeps the first reason), ordered by path
  dedupe = entries: builtins.attrValues (builtins.listToAttrs (map (e: lib.nameValuePair e.path e) entries));
  denyEntries =
    map (p: {
      path = p;
      why = "services.diag.extraDenyPaths";
    }) cfg.extraDenyPaths
    ++ lib.optionals cfg.denyStateDirectories (dedupe derivedDeny);

  # services.diag.policy: layers of Nix data, each rendered to a file of its own and
  # included after the base in order (a later layer's table replaces an earlier one's
  # of the same name; deny entries and examples of every layer concatenate).
  layerFiles = lib.imap1 (i: layer: tomlFormat.generate "diag-wrapper-policy-layer-${toString i}.toml" layer) cfg.policy;

  policyValue = {
    include = [ cfg.hostPolicy ] ++ map toString layerFiles;
    settings = {
      search_path = [ cfg.searchPath ];
    }
    // lib.optionalAttrs (cfg.sandbox != null) { inherit (cfg) sandbox; }
    // lib.optionalAttrs (persistRoots != [ ]) { persist_roots = persistRoots; };
  }
  // lib.optionalAttrs (denyEntries != [ ]) {
    deny = denyEntries;
  }
  // lib.optionalAttrs (cfg.extraCommands != { }) {
    commands = cfg.extraCommands;
  }
  // lib.optionalAttrs (reportUnits != { }) {
    reports = lib.mapAttrs (_: u: u.policy) reportUnits;
  };

  policyToml = tomlFormat.generate "diag-wrapper-policy.toml" policyValue;
  # The build fails here if the policy is invalid: the same loader, at build time.
  policyFile = pkgs.runCommand "diag-wrapper-policy.json" { } ''
    ${cfg.package}/bin/diag-wrapper render --policy ${policyToml} > $out
  '';

  matchBlock = ''
    # services.diag: the diag user only ever runs the wrapper.
    Match User ${userName}
      ForceCommand ${forceCommand}
      AuthenticationMethods publickey
      AllowAgentForwarding no
      AllowStreamLocalForwarding no
      AllowTcpForwarding no
      DisableForwarding yes
      PermitListen none
      PermitOpen none
      PermitTTY no
      PermitTunnel no
      PermitUserRC no
      X11Forwarding no
      ExposeAuthInfo yes
    Match all
  '';

  ourMatchLines = [
    "Match User ${userName}"
    "Match all"
  ];
  foreignMatchLines = lib.filter (
    l:
    builtins.match "[[:space:]]*[Mm][Aa][Tt][Cc][Hh][[:space:]].*" l != null
    && !(lib.elem (lib.trim l) ourMatchLines)
  ) (lib.splitString "\n" sshd.extraConfig);
in
{
  options.services.diag = {
    enable = mkEnableOption "the read-only `diag` SSH channel (diag-wrapper as ForceCommand)";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The diag-wrapper package. Its bin/diag-wrapper must run Python isolated (-I).";
    };

    authorizedKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA... diag" ];
      description = ''
        Public keys allowed to log in as `diag`: bare key lines (type, base64,
        optional comment). The module prefixes each with
        `restrict,command="..."`; options of your own are rejected.
      '';
    };

    keys = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            key = mkOption {
              type = types.singleLineStr;
              description = "A bare public key line (type, base64, optional comment).";
            };
            from = mkOption {
              type = types.nullOr (types.listOf types.str);
              default = null;
              example = [ "10.0.0.5" "fd00::5" ];
              description = ''
                Source addresses or patterns the key may log in from (sshd's
                `from=`, patterns as in `ssh_config(5)` PATTERNS: `*`, `?`, `!`,
                CIDR); `null`: from anywhere sshd listens.
              '';
            };
          };
        }
      );
      default = { };
      example = lib.literalExpression ''{ agent = { key = "ssh-ed25519 AAAA... agent"; from = [ "10.0.0.5" ]; }; }'';
      description = ''
        Named keys allowed to log in as `diag`, each optionally pinned to source
        addresses with `from=`; they join `authorizedKeys`.
      '';
    };

    hostPolicy = mkOption {
      type = types.str;
      default = "${cfg.package}/share/diag-wrapper/policy/fleet.toml";
      defaultText = lib.literalExpression ''"''${config.services.diag.package}/share/diag-wrapper/policy/fleet.toml"'';
      example = lib.literalExpression ''"''${config.services.diag.package}/share/diag-wrapper/policy/web-02.toml"'';
      description = ''
        Absolute path of the base policy the rendered policy includes (the
        allowlist and the base denylist). Anything added here only widens
        the denylist; it cannot remove an entry of the included policy.
      '';
    };

    policy = mkOption {
      type = types.listOf tomlFormat.type;
      default = [ ];
      example = lib.literalExpression "[ (import ./hosts/web-02-policy.nix) ]";
      description = ''
        Policy layers as Nix data, in the policy format (`deny`, `services`,
        `commands`, `instead`, `examples`, ...), stacked in order on
        `hostPolicy`: a host's own content comes from its configuration, so a
        new host needs no new build of the package. Deny entries of all layers
        concatenate; no layer can remove one.
      '';
    };

    extraDenyPaths = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "/var/lib/n8n"
        "/var/lib/mautrix-*"
      ];
      description = ''
        More paths the wrapper refuses to read: absolute, normalised, `*`
        allowed within one path component. Each is also denied at its
        realpath (so a symlink into /persist is caught from both names).
      '';
    };

    extraCommands = mkOption {
      type = tomlFormat.type;
      default = { };
      example = lib.literalExpression ''
        { uptime = { summary = "show uptime"; options = [ ]; }; }
      '';
      description = ''
        Extra `[commands.<name>]` tables, written into the rendered policy
        after the include, so a name given here replaces the included
        definition. Same format as policy/*.toml; the wrapper validates it
        and denies every command if it is invalid. The denylist still wins.
      '';
    };

    sandbox = mkOption {
      type = types.nullOr (
        types.enum [
          "required"
          "auto"
          "off"
        ]
      );
      default = null;
      example = "required";
      description = ''
        The kernel wall: each allowed command runs in a new user + mount
        namespace where every deny entry is covered. `"required"` refuses
        every command when that namespace cannot be set up; `"auto"` goes on
        with the path checks alone and says so in the audit record; `"off"`
        never sets it up. `null` keeps the host policy's setting (the fleet
        policy says `"auto"`). `"required"` needs
        `security.allowUserNamespaces` (on by default), and on a hardened
        kernel `security.unprivilegedUsernsClone = true`; the sysctls
        `user.max_user_namespaces` and `kernel.unprivileged_userns_clone`
        must not be 0.
      '';
    };

    denyStateDirectories = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Deny, from the host's own configuration, every systemd service's
        StateDirectory=, CacheDirectory= (with their DynamicUser `private/`
        forms) and RuntimeDirectory=, and every path environment.persistence
        persists under /var/lib or /var/cache, each with its twin under every
        persistence root; the rendered policy gives each entry's origin. A
        service added later is covered without editing a list.
      '';
    };

    readableStateDirectories = mkOption {
      type = types.listOf types.str;
      default = [
        # sockets the allowed commands talk through (systemctl over D-Bus, getent
        # through nscd, resolvectl and networkctl), and no secret in them
        "/run/dbus"
        "/run/nscd"
        "/run/systemd/resolve"
        "/run/systemd/netif"
      ];
      example = [ "/var/lib/nixos" ];
      description = ''
        Derived deny entries to leave out deliberately (exact paths, e.g. a
        state directory that holds nothing secret and that the agent needs).
        Entries of the base policy and extraDenyPaths are not affected.
      '';
    };

    reports = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            enable = mkOption {
              type = types.bool;
              default = true;
              description = "Whether this report's socket and service exist (a built-in one is turned off here).";
            };
            description = mkOption {
              type = types.singleLineStr;
              description = "What the report shows; the agent reads it in `report` and `help`.";
            };
            command = mkOption {
              type = types.nonEmptyListOf types.str;
              example = lib.literalExpression ''[ "''${pkgs.iproute2}/bin/ss" "--tcp" "--listening" "--processes" ]'';
              description = ''
                The fixed command, as argv (no shell); its first word an absolute path.
                It runs as `user` for every request, with no argument of the agent's.
              '';
            };
            user = mkOption {
              type = types.str;
              default = "root";
              description = "Who runs the command.";
            };
            timeout = mkOption {
              type = types.ints.between 1 600;
              default = 30;
              description = "Seconds the command may run; then SIGTERM, SIGKILL a second later.";
            };
            maxOutputBytes = mkOption {
              type = types.ints.between 1 1073741824;
              default = 1048576;
              description = "Bytes of output the command may print before it is stopped.";
            };
            maxConnections = mkOption {
              type = types.ints.between 1 16;
              default = 2;
              description = "Runs at once; more connections are closed at once (the agent is told it is busy).";
            };
            capabilities = mkOption {
              type = types.listOf (types.strMatching "CAP_[A-Z_]+");
              default = [ ];
              description = "The capability bounding set of the run (empty: none at all).";
            };
            addressFamilies = mkOption {
              type = types.listOf (types.strMatching "AF_[A-Z0-9]+");
              default = [ "AF_UNIX" ];
              description = "RestrictAddressFamilies of the run (empty: no sockets).";
            };
            privateDevices = mkOption {
              type = types.bool;
              default = true;
              description = "PrivateDevices of the run.";
            };
            privateNetwork = mkOption {
              type = types.bool;
              default = false;
              description = "PrivateNetwork of the run (for a command that needs no network at all).";
            };
            readWritePaths = mkOption {
              type = types.listOf types.str;
              default = [ ];
              description = "What the run may write besides its private /tmp (lock files a reader must take).";
            };
          };
        }
      );
      default = { };
      description = ''
        Fixed reports: root-only facts the agent asks for with `report NAME`. Each
        becomes a socket (`/run/diag-reports/NAME.sock`, group diag, mode 0660,
        Accept=yes) and a hardened templated service that runs `command` and reads
        nothing the client sends; the rendered policy names the socket.
      '';
    };

    builtinReports = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Add the shipped reports (nix/reports.nix) whose services exist on this host:
        `listening` and `disk-usage` always, `containers` with podman, `firewall` with
        nftables, `postgres-activity` with PostgreSQL, `redis-info` per Redis server.
        Each attribute is a default: a host may change or disable one.
      '';
    };

    reopenAfter = mkOption {
      type = types.ints.between 1 3600;
      default = 30;
      description = "Seconds a report socket that stopped at its trigger limit (a flood) rests before it reopens.";
    };

    searchPath = mkOption {
      type = types.str;
      default = "/run/current-system/sw/bin";
      description = ''
        The only directory binaries are executed from. Never /run/wrappers/bin
        (setuid wrappers).
      '';
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.all isValidDenyPath cfg.extraDenyPaths;
        message = "services.diag.extraDenyPaths: every entry must be an absolute, normalised path ('*' only within a component, no '.', '..', '?', '[', '{'); got: ${
          lib.concatStringsSep ", " (lib.filter (p: !isValidDenyPath p) cfg.extraDenyPaths)
        }";
      }
      {
        assertion = lib.hasPrefix "/" cfg.hostPolicy;
        message = "services.diag.hostPolicy must be an absolute path, got ${cfg.hostPolicy}";
      }
      {
        assertion = lib.hasPrefix "/" cfg.searchPath && !(lib.hasPrefix "/run/wrappers" cfg.searchPath);
        message = "services.diag.searchPath must be absolute and must not be /run/wrappers (setuid wrappers), got ${cfg.searchPath}";
      }
      {
        assertion = lib.all (r: lib.hasPrefix "/" (lib.head r.command)) (lib.attrValues enabledReports);
        message = "services.diag.reports.<name>.command: the first word must be an absolute path (no shell, no PATH lookup)";
      }
      {
        assertion = allKeys != [ ];
        message = "services.diag.authorizedKeys and services.diag.keys are empty: nobody could use the diag channel";
      }
      {
        assertion = lib.all (k: isBareKey k.key) allKeys;
        message = "services.diag.authorizedKeys: give bare public keys (\"ssh-ed25519 AAAA... comment\"); the module adds restrict,command=... itself";
      }
      {
        assertion = lib.all (k: k.from == null || (k.from != [ ] && lib.all isFromPattern k.from)) namedKeys;
        message = "services.diag.keys.<name>.from: give addresses or patterns (10.0.0.5, 10.0.0.0/24, *.example.org, !10.0.0.9), at least one, or null";
      }
      {
        assertion = cfg.sandbox != "required" || config.security.allowUserNamespaces;
        message = "services.diag.sandbox = \"required\" needs security.allowUserNamespaces = true, or every diag command is refused";
      }
      {
        assertion = cfg.sandbox != "required" || usernsOffBy == [ ];
        message = "services.diag.sandbox = \"required\" needs unprivileged user namespaces, which ${lib.concatStringsSep " and " usernsOffBy} turns off: every diag command would be refused";
      }
      {
        assertion = sshd.enable;
        message = "services.diag needs services.openssh.enable = true";
      }
      {
        assertion = !(lib.elem "wheel" config.users.users.${userName}.extraGroups);
        message = "users.users.diag must not be in wheel";
      }
      {
        assertion = dangerousAccepted == [ ];
        message = "services.openssh.settings.AcceptEnv accepts ${lib.concatStringsSep " " dangerousAccepted}, which lets an SSH client change the diag login shell or loader before the wrapper runs";
      }
      {
        assertion = userAllowed;
        message = "services.openssh.settings.AllowUsers is set and no pattern in it admits diag: diag could not log in";
      }
      {
        assertion = !userDenied;
        message = "services.openssh.settings.DenyUsers has a pattern that matches diag: diag could not log in";
      }
      {
        assertion = groupAllowed;
        message = "services.openssh.settings.AllowGroups is set and admits none of diag's groups (${lib.concatStringsSep ", " diagGroups}): diag could not log in";
      }
      {
        assertion = !groupDenied;
        message = "services.openssh.settings.DenyGroups matches one of diag's groups (${lib.concatStringsSep ", " diagGroups}): diag could not log in";
      }
    ];

    warnings = lib.optional (foreignMatchLines != [ ]) ''
      services.diag: sshd_config has other Match blocks (${lib.concatStringsSep "; " foreignMatchLines}).
      For a keyword, the first matching block wins; make sure none of them
      applies to the diag user with ForceCommand or forwarding settings.
    '';

    users.groups.${userName} = { };

    users.users.${userName} = {
      description = "read-only diagnostics (diag-wrapper)";
      isSystemUser = true;
      group = userName;
      extraGroups = [ "systemd-journal" ];
      # sshd runs a forced command as `$SHELL -c '<command>'`; nologin would refuse it.
      shell = pkgs.bashInteractive;
      # sshd chdirs here; the wrapper resolves relative paths from it.
      home = "/var/empty";
      createHome = false;
      # No password. "*" rather than "!": OpenSSH treats a "!"-prefixed hash
      # as a locked account (and refuses even key logins) when UsePAM is off.
      hashedPassword = "*";
      openssh.authorizedKeys.keys = map keyLine allKeys;
    };

    environment.etc.${policyEtcPath}.source = policyFile;
    # What the JSON was rendered from, for people and `diag-wrapper lint --policy`.
    environment.etc."diag-wrapper/policy.toml".source = policyToml;

    # The wrapper's state (settings.state_dir): lock slots that bound concurrent commands
    # and the per-key rate counters. Root makes it; the diag group writes in it (only the
    # wrapper runs as diag, and the commands it runs cannot write files: RLIMIT_FSIZE 0).
    systemd.tmpfiles.rules = [ "d /run/diag-wrapper 0770 root ${userName} -" ];

    services.diag.reports = lib.mkIf cfg.builtinReports (
      lib.mapAttrs (_: lib.mapAttrs (_: lib.mkDefault)) (reportsLib.builtin { inherit pkgs config; })
    );
    systemd.sockets = lib.mapAttrs' (_: u: lib.nameValuePair u.socketName u.socket) reportUnits;
    systemd.services =
      lib.mapAttrs' (_: u: lib.nameValuePair u.serviceName u.service) reportUnits
      // lib.optionalAttrs (reportUnits != { }) {
        "diag-reports-reopen@" = reportsLib.reopen {
          systemctl = "${config.systemd.package}/bin/systemctl";
          sleep = "${pkgs.coreutils}/bin/sleep";
          inherit (cfg) reopenAfter;
        };
      };

    # After the sshd module's own lines (mkOrder 0) and after every
    # default-priority extraConfig, so no global keyword lands in our block;
    # `Match all` closes it for anything appended later.
    services.openssh.extraConfig = lib.mkAfter matchBlock;
  };
}
