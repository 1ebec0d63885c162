# Evaluate nix/module.nix, nix/hosts/web-02.nix and nix/client.nix with
# nixpkgs' lib.evalModules, without nixpkgs itself: the NixOS / home-manager
# options they touch are declared here as stand-ins with the same names and
# types as upstream, and `pkgs` is a stub.
#
#   NIXPKGS_LIB=/path/to/nixpkgs.lib nix-instantiate --eval --strict --json tests/nix/harness.nix
#
# NIXPKGS_LIB may point at a checkout of nix-community/nixpkgs.lib (which has
# lib/ inside) or at nixpkgs' lib/ directory itself. The result is JSON:
# { ok, failures, scenarios }; every check below must hold (failures == []).
{
  nixpkgsLib ? builtins.getEnv "NIXPKGS_LIB",
}:

let
  lib =
    if nixpkgsLib == "" then
      throw "set NIXPKGS_LIB to a checkout of nixpkgs' lib"
    else if builtins.pathExists (nixpkgsLib + "/lib/default.nix") then
      import (nixpkgsLib + "/lib")
    else
      import nixpkgsLib;

  inherit (lib)
    mkOption
    types
    concatMapStrings
    concatMapStringsSep
    concatStringsSep
    ;

  # ------------------------------------------------------------------ stub pkgs

  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };

  stubPackage = fakeDrv "diag-wrapper-0.1.0";
  storePrefix = "${stubPackage.outPath}";

  inherit (import ../../nix/tests/toml.nix { inherit lib; }) renderTable;

  pkgs = {
    inherit lib;
    callPackage = _fn: _args: stubPackage;
    # stands in for the build step: the script is kept, so a check can see what it runs
    runCommand = name: _env: script: fakeDrv name // { inherit script; };
    iproute2 = fakeDrv "iproute2-6.17.0";
    coreutils = fakeDrv "coreutils-9.8";
    podman = fakeDrv "podman-5.6.2";
    nftables = fakeDrv "nftables-1.1.5";
    redis = fakeDrv "redis-8.2.1";
    bashInteractive = fakeDrv "bash-interactive-5.2" // {
      shellPath = "/bin/bash";
    };
    formats.toml =
      { }:
      {
        type = types.attrsOf types.anything;
        generate =
          name: value:
          fakeDrv name
          // {
            text = renderTable [ ] value;
            inherit value;
          };
      };
  };

  # ------------------------------------------------------ NixOS stand-in options

  # nixos/lib/systemd-unit-options.nix: checkUnitConfig'ed atoms, or lists of them
  unitOption = types.oneOf [
    types.bool
    types.int
    types.str
    (types.listOf (types.oneOf [ types.bool types.int types.str ]))
  ];

  # systemd.<kind>: the options every unit has that the module sets, and the kind's own
  unitsOption =
    own:
    mkOption {
      default = { };
      type = types.attrsOf (types.submodule {
        options = {
          description = mkOption { type = types.singleLineStr; default = ""; };
          wantedBy = mkOption { type = types.listOf types.str; default = [ ]; };
          unitConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
        } // own;
      });
    };

  # sshd.nix: AllowUsers, DenyUsers, AllowGroups, DenyGroups
  accessList = mkOption {
    type = types.nullOr (types.listOf types.str);
    default = null;
  };

  nixosStandIns =
    { lib, ... }:
    {
      options = {
        assertions = mkOption {
          type = types.listOf types.unspecified;
          default = [ ];
        };
        warnings = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };

        security.allowUserNamespaces = mkOption {
          type = types.bool;
          default = true;
        };
        # nixos/modules/security/misc.nix
        security.unprivilegedUsernsClone = mkOption {
          type = types.bool;
          default = false;
        };
        # nixos/modules/config/sysctl.nix: flat quoted names, bool/str/int/null values
        boot.kernel.sysctl = mkOption {
          type = types.submodule { freeformType = types.attrsOf (types.nullOr (types.oneOf [ types.bool types.str types.int ])); };
          default = { };
        };
        # nixos/modules/system/boot/kernel.nix: the package set (raw); only kernel.version is read
        boot.kernelPackages = mkOption {
          type = types.raw;
          default = { kernel.version = "6.12.8"; };
        };

        # nixos/modules/system/boot/systemd/tmpfiles.nix
        systemd.tmpfiles.rules = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        # nixos/modules/system/boot/systemd.nix and lib/systemd-unit-options.nix: the
        # parts of a socket / service unit the module sets; unitOption atoms or lists
        systemd.package = mkOption {
          type = types.package;
          default = fakeDrv "systemd-258.2";
        };
        systemd.sockets = unitsOption {
          listenStreams = mkOption { type = types.listOf types.str; default = [ ]; };
          socketConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
        };
        systemd.services = unitsOption {
          serviceConfig = mkOption { type = types.attrsOf unitOption; default = { }; };
        };
        # nix-community/impermanence: environment.persistence.<root>, directories and
        # files given as strings or as { directory; } / { file; } (coerced to those)
        environment.persistence = mkOption {
          default = { };
          type = types.attrsOf (types.submodule ({ name, ... }: {
            options = {
              enable = mkOption { type = types.bool; default = true; };
              persistentStoragePath = mkOption { type = types.str; default = name; };
              directories = mkOption {
                type = types.listOf (types.coercedTo types.str (d: { directory = d; }) (types.submodule {
                  options.directory = mkOption { type = types.str; };
                }));
                default = [ ];
              };
              files = mkOption {
                type = types.listOf (types.coercedTo types.str (f: { file = f; }) (types.submodule {
                  options.file = mkOption { type = types.str; };
                }));
                default = [ ];
              };
            };
          }));
        };
        # what the built-in reports look at (virtualisation/podman, networking/nftables,
        # databases/postgresql, databases/redis)
        virtualisation.podman.enable = mkOption { type = types.bool; default = false; };
        networking.nftables.enable = mkOption { type = types.bool; default = false; };
        services.postgresql.enable = mkOption { type = types.bool; default = false; };
        services.postgresql.package = mkOption { type = types.package; default = fakeDrv "postgresql-17.6"; };
        services.redis.package = mkOption { type = types.package; default = pkgs.redis; };
        services.redis.servers = mkOption {
          default = { };
          type = types.attrsOf (types.submodule ({ name, ... }: {
            options = {
              enable = mkOption { type = types.bool; default = false; };
              user = mkOption { type = types.str; default = "redis" + lib.optionalString (name != "") "-${name}"; };
              unixSocket = mkOption {
                type = types.nullOr types.path;
                default = "/run/redis" + lib.optionalString (name != "") "-${name}" + "/redis.sock";
              };
            };
          }));
        };

        users.users = mkOption {
          default = { };
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                options = {
                  name = mkOption {
                    type = types.passwdEntry types.str;
                    default = name;
                  };
                  description = mkOption {
                    type = types.passwdEntry types.str;
                    default = "";
                  };
                  isSystemUser = mkOption {
                    type = types.bool;
                    default = false;
                  };
                  isNormalUser = mkOption {
                    type = types.bool;
                    default = false;
                  };
                  group = mkOption {
                    type = types.str;
                    default = "";
                  };
                  extraGroups = mkOption {
                    type = types.listOf types.str;
                    default = [ ];
                  };
                  shell = mkOption {
                    type = types.nullOr (types.either types.shellPackage (types.passwdEntry types.path));
                    default = null;
                  };
                  home = mkOption {
                    type = types.passwdEntry types.path;
                    default = "/var/empty";
                  };
                  createHome = mkOption {
                    type = types.bool;
                    default = false;
                  };
                  hashedPassword = mkOption {
                    type = types.nullOr (types.passwdEntry types.str);
                    default = null;
                  };
                  openssh.authorizedKeys.keys = mkOption {
                    type = types.listOf types.singleLineStr;
                    default = [ ];
                  };
                  openssh.authorizedKeys.keyFiles = mkOption {
                    type = types.listOf types.path;
                    default = [ ];
                  };
                };
              }
            )
          );
        };

        users.groups = mkOption {
          default = { };
          type = types.attrsOf (
            types.submodule {
              options = {
                gid = mkOption {
                  type = types.nullOr types.int;
                  default = null;
                };
                members = mkOption {
                  type = types.listOf types.str;
                  default = [ ];
                };
              };
            }
          );
        };

        services.openssh = {
          enable = mkOption {
            type = types.bool;
            default = false;
          };
          extraConfig = mkOption {
            type = types.lines;
            default = "";
          };
          settings = mkOption {
            default = { };
            type = types.submodule {
              freeformType = types.attrsOf types.anything;
              options = {
                # as nixpkgs' sshd.nix declares them: AcceptEnv is not declared there and
                # falls to the freeform atom type; the four access lists are nullOr (listOf str)
                AcceptEnv = mkOption {
                  type = types.nullOr (types.oneOf [ types.bool types.int types.float types.str ]);
                  default = null;
                };
                AllowUsers = accessList;
                DenyUsers = accessList;
                AllowGroups = accessList;
                DenyGroups = accessList;
                UsePAM = mkOption {
                  type = types.bool;
                  default = true;
                };
              };
            };
          };
        };

        environment.etc = mkOption {
          default = { };
          type = types.attrsOf (
            types.submodule (
              { name, ... }:
              {
                options = {
                  target = mkOption {
                    type = types.str;
                    default = name;
                  };
                  source = mkOption { type = types.path; };
                  text = mkOption {
                    type = types.nullOr types.lines;
                    default = null;
                  };
                  mode = mkOption {
                    type = types.str;
                    default = "symlink";
                  };
                };
              }
            )
          );
        };
      };

      # What nixpkgs' sshd module itself puts into extraConfig (at mkOrder 0).
      config.services.openssh.extraConfig = lib.mkOrder 0 ''
        AddressFamily any
        Port 22
        Subsystem sftp /nix/store/00000000000000000000000000000000-openssh/libexec/sftp-server
      '';
    };

  # ------------------------------------------------ home-manager stand-in options

  hmFor = release: import ../../nix/tests/hm-ssh.nix { inherit lib release; };
  sshCheck = import ../../nix/ssh-config-check.nix { inherit lib; };

  # ---------------------------------------------------------------- evaluation

  # public half of a throw-away key generated for these tests (private half discarded)
  testKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP1fey244fXvnPpbRGopu1pKU5iTg8yAeubJyOMxdJx6 diag-test";

  evalNixos =
    modules:
    (lib.evalModules {
      modules = [
        nixosStandIns
        { _module.args.pkgs = pkgs; }
        ../../nix/module.nix
      ]
      ++ modules;
    }).config;

  base = {
    services.openssh.enable = true;
    services.diag.enable = true;
    services.diag.authorizedKeys = [ testKey ];
  };

  failedAssertions = cfg: map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);

  summary =
    cfg:
    let
      u = cfg.users.users.diag or null;
      etc = cfg.environment.etc."diag-wrapper/policy.toml" or null;
      json = cfg.environment.etc."diag-wrapper/policy.json" or null;
    in
    {
      failedAssertions = failedAssertions cfg;
      inherit (cfg) warnings;
      user =
        if u == null then
          null
        else
          {
            inherit (u)
              isSystemUser
              isNormalUser
              group
              extraGroups
              home
              hashedPassword
              ;
            shell = if u.shell == null then null else u.shell.shellPath or (toString u.shell);
            shellIsPackage = u.shell != null && u.shell ? shellPath;
            keys = u.openssh.authorizedKeys.keys;
          };
      groups = builtins.attrNames cfg.users.groups;
      sshdConfig = cfg.services.openssh.extraConfig;
      policyText = if etc == null then null else etc.source.text;
      policyValue = if etc == null then null else etc.source.value;
      policyJsonScript = if json == null then null else json.source.script;
      hostPolicy = cfg.services.diag.hostPolicy;
      # the layer files the module includes (services.diag.policy), as the TOML stand-in writes them
      layers = lib.imap1 (i: l: {
        path = "/nix/store/00000000000000000000000000000000-diag-wrapper-policy-layer-${toString i}.toml";
        text = renderTable [ ] l;
      }) cfg.services.diag.policy;
      tmpfiles = cfg.systemd.tmpfiles.rules;
    };

  forceCommand = "${storePrefix}/bin/diag-wrapper --policy /etc/diag-wrapper/policy.json";
  lines = s: lib.filter (l: l != "") (map lib.trim (lib.splitString "\n" s));
  indexOf =
    x: xs:
    let
      found = lib.lists.findFirst (i: builtins.elemAt xs i == x) null (lib.range 0 (builtins.length xs - 1));
    in
    if found == null then -1 else found;
  mentions = needle: msgs: lib.any (m: lib.hasInfix needle m) msgs;

  # --- scenarios

  basic = summary (evalNixos [
    base
    {
      services.diag.extraDenyPaths = [
        "/var/lib/n8n"
        "/var/lib/mautrix-*"
      ];
      # a host's own global sshd line at default priority: must stay before the Match block
      services.openssh.extraConfig = "PermitRootLogin prohibit-password";
    }
  ]);
  basicLines = lines basic.sshdConfig;
  matchAt = indexOf "Match User diag" basicLines;
  matchBody = lib.sublist (matchAt + 1) (indexOf "Match all" basicLines - matchAt - 1) basicLines;

  disabled = summary (evalNixos [
    {
      services.openssh.enable = true;
    }
  ]);

  # what web-02 runs, as far as the built-in reports look
  web02Host = {
    # web-02's services as their nixpkgs modules declare their directories
    systemd.services = {
      matrix-synapse.serviceConfig = { StateDirectory = "matrix-synapse"; RuntimeDirectory = "matrix-synapse"; };
      mautrix-telegram.serviceConfig.StateDirectory = "mautrix-telegram";
      matrix-authentication-service.serviceConfig.StateDirectory = "matrix-authentication-service";
      n8n.serviceConfig = { DynamicUser = true; StateDirectory = "n8n"; CacheDirectory = "n8n"; };
      zammad-web.serviceConfig.StateDirectory = "zammad";
      postgresql.serviceConfig = { StateDirectory = "postgresql postgresql/17"; RuntimeDirectory = "postgresql"; };
      redis-zammad.serviceConfig = { StateDirectory = "redis-zammad"; RuntimeDirectory = "redis-zammad"; };
      nginx.serviceConfig = { LogsDirectory = "nginx"; ConfigurationDirectory = "nginx"; CacheDirectory = "nginx"; };
      nscd.serviceConfig.RuntimeDirectory = "nscd";
      acme-example.serviceConfig = { StateDirectory = "acme/example.org:acme/.lego/example.org"; };
    };
    environment.persistence."/persist".directories = [ "/var/lib" "/var/log" { directory = "/var/lib/containers"; } ];
    environment.persistence."/persist".files = [ "/etc/machine-id" "/var/lib/dbus/machine-id" ];
    virtualisation.podman.enable = true;
    networking.nftables.enable = true;
    services.postgresql.enable = true;
    services.redis.servers.zammad.enable = true;
  };
  web02Config = evalNixos [
    base
    ../../nix/hosts/web-02.nix
    web02Host
  ];
  web02 = summary web02Config;
  web02Reports = web02.policyValue.reports or { };
  basicConfig = evalNixos [ base ];
  ownReport = evalNixos [
    base
    {
      services.diag.builtinReports = false;
      services.diag.reports.uptime = {
        description = "uptime";
        command = [ "/run/current-system/sw/bin/uptime" "100%" "$HOME" ];
      };
    }
  ];
  offReport = evalNixos [ base web02Host { services.diag.reports.firewall.enable = false; } ];
  web02Deny = map (d: d.path) (web02.policyValue.deny or [ ]);

  withDeny =
    paths:
    summary (evalNixos [
      base
      { services.diag.extraDenyPaths = paths; }
    ]);
  badDenyPaths = [
    "var/lib/n8n"
    "/var/lib/../etc/shadow"
    "/var//lib"
    "/var/lib/"
    "/var/lib/./n8n"
    "/var/lib/n8n?"
    "/var/lib/[ab]"
    "/var/lib/{a,b}"
  ];
  badDenyResults = map (p: {
    path = p;
    failed = failedAssertions' (withDeny [ p ]);
  }) badDenyPaths;
  failedAssertions' = s: s.failedAssertions;
  goodDeny = withDeny [
    "/"
    "/home/*/.ssh"
    "/etc/ssh/ssh_host_*_key"
    "/proc/*/environ"
  ];

  variant = m: summary (evalNixos [ base m ]);
  wheel = variant { users.users.diag.extraGroups = [ "wheel" ]; };
  acceptOk = variant { services.openssh.settings.AcceptEnv = "LANG LC_*"; };
  acceptStar = variant { services.openssh.settings.AcceptEnv = "*"; };
  acceptBash = variant { services.openssh.settings.AcceptEnv = "LANG BASH_*"; };
  acceptNix = variant { services.openssh.settings.AcceptEnv = "NIX_PYTHON?ATH"; };
  acceptSsh = variant { services.openssh.settings.AcceptEnv = "LC_* SSH_*"; };
  acceptInExtraConfig = variant { services.openssh.extraConfig = "AcceptEnv LANG\n  acceptenv LD_PRELOAD\n"; };
  acceptOkInExtraConfig = variant { services.openssh.extraConfig = "AcceptEnv LANG LC_*\n"; };
  denyUsersDiag = variant { services.openssh.settings.DenyUsers = [ "d*g@10.0.0.*" ]; };
  denyUsersOther = variant { services.openssh.settings.DenyUsers = [ "guest" ]; };
  allowUsersPattern = variant { services.openssh.settings.AllowUsers = [ "root" "di?g@127.0.0.1" ]; };
  allowGroupsMissing = variant { services.openssh.settings.AllowGroups = [ "wheel" ]; };
  allowGroupsJournal = variant { services.openssh.settings.AllowGroups = [ "wheel" "systemd-journal" ]; };
  denyGroupsDiag = variant { services.openssh.settings.DenyGroups = [ "systemd-*" ]; };
  allowUsersMissing = variant { services.openssh.settings.AllowUsers = [ "root" ]; };
  allowUsersOk = variant {
    services.openssh.settings.AllowUsers = [
      "root"
      "diag"
    ];
  };
  keyWithOptions = variant { services.diag.authorizedKeys = lib.mkForce [ ''from="10.0.0.1" ${testKey}'' ]; };
  noKeys = variant { services.diag.authorizedKeys = lib.mkForce [ ]; };
  pinnedKey = variant {
    services.diag.authorizedKeys = lib.mkForce [ ];
    services.diag.keys.agent = {
      key = testKey;
      from = [ "10.0.0.5" "fd00::/8" "!10.0.0.9" ];
    };
  };
  pinnedAndBare = variant { services.diag.keys.agent.key = testKey; };
  pinnedBadFrom = variant {
    services.diag.keys.agent = {
      key = testKey;
      from = [ ''10.0.0.5",command="/bin/sh'' ];
    };
  };
  pinnedEmptyFrom = variant {
    services.diag.keys.agent = {
      key = testKey;
      from = [ ];
    };
  };
  wrappersPath = variant { services.diag.searchPath = "/run/wrappers/bin"; };
  relativeHostPolicy = variant { services.diag.hostPolicy = "policy/fleet.toml"; };
  noSshd = variant { services.openssh.enable = lib.mkForce false; };
  sandboxRequired = variant { services.diag.sandbox = "required"; };
  sandboxNoUserns = variant {
    services.diag.sandbox = "required";
    security.allowUserNamespaces = false;
  };
  sandboxSysctlOff = variant {
    services.diag.sandbox = "required";
    boot.kernel.sysctl."user.max_user_namespaces" = 0;
  };
  sandboxHardened = variant {
    services.diag.sandbox = "required";
    boot.kernelPackages = { kernel.version = "6.12.8-hardened1"; };
  };
  sandboxHardenedClone = variant {
    services.diag.sandbox = "required";
    boot.kernelPackages = { kernel.version = "6.12.8-hardened1"; };
    security.unprivilegedUsernsClone = true;
  };
  sandboxAutoHardened = variant {
    services.diag.sandbox = "auto";
    boot.kernelPackages = { kernel.version = "6.12.8-hardened1"; };
    boot.kernel.sysctl."kernel.unprivileged_userns_clone" = false;
  };
  sandboxAutoNoUserns = variant {
    services.diag.sandbox = "auto";
    security.allowUserNamespaces = false;
  };
  web02NoUserns = summary (evalNixos [
    base
    ../../nix/hosts/web-02.nix
    { security.allowUserNamespaces = false; }
  ]);
  foreignMatch = variant {
    services.openssh.extraConfig = ''
      Match Group admins
        AllowTcpForwarding yes
    '';
  };
  extraCommands = variant {
    services.diag.extraCommands.uptime = {
      summary = "how long the system has been running";
      options = [
        {
          names = [ "-p" ];
        }
      ];
    };
  };

  # nix/client.nix under home-manager 25.11 (matchBlocks) and 26.05 (settings)
  releases = [ "25.11" "26.05" ];
  diagKey = "/run/secrets/diag-ssh-key-for-tests";
  evalClient =
    release: modules:
    (lib.evalModules {
      modules = [
        (hmFor release).module
        ../../nix/client.nix
        {
          programs.diagClient = {
            enable = true;
            identityFile = diagKey;
            hosts.extra-host.hostname = "extra.example.invalid";
          };
        }
      ]
      ++ modules;
    }).config;
  clientFailed = c: map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  # the hostile and the harmless configurations, per release (tests/nix/client-cases.nix)
  clientCases = import ./client-cases.nix;
  clientResults = lib.genAttrs releases (
    release:
    lib.mapAttrs (
      _: c:
      let
        cfg = evalClient release c.modules.${release};
      in
      {
        inherit (c) refused;
        notTheText = c.notTheText or false;
        unshowable = c.unshowable or false;
        failed = clientFailed cfg;
        inherit (cfg) warnings;
        text = cfg.home.file.".ssh/config".text;
      }
    ) clientCases
  );
  client = evalClient "26.05" [ ];
  client2511 = evalClient "25.11" [ ];
  clientWrong = lib.concatLists (
    lib.mapAttrsToList (
      release: cases:
      lib.concatLists (
        lib.mapAttrsToList (
          name: r:
          lib.optional (
            if r.refused == null then r.failed != [ ] else !(mentions r.refused r.failed)
          ) "${release}/${name}"
        ) cases
      )
    ) clientResults
  );

  # ------------------------------------------------- package.nix, with stubs
  # buildPythonApplication returns its arguments, so the recipe itself can be
  # inspected; `src` is never forced (it would copy the repo to the store).

  pyStub = extra: {
    buildPythonApplication = attrs: attrs;
    setuptools = fakeDrv "setuptools";
    bashlex = fakeDrv "bashlex";
    structlog = fakeDrv "structlog";
    pytestCheckHook = fakeDrv "pytest-check-hook";
    python = fakeDrv "python3-3.13" // {
      interpreter = "/nix/store/00000000000000000000000000000000-python3-3.13/bin/python3.13";
      sitePackages = "lib/python3.13/site-packages";
    };
    hypothesis = fakeDrv "hypothesis";
  } // extra;
  callPackageRecipe =
    ps:
    import ../../nix/package.nix {
      inherit lib;
      python3Packages = ps;
      bashInteractive = pkgs.bashInteractive;
    };
  recipe = callPackageRecipe (pyStub { systemd-python = fakeDrv "systemd-python"; });
  recipeOld = callPackageRecipe (pyStub { systemd = fakeDrv "systemd-old"; });
  depNames = r: map (d: d.name) r.dependencies;

  # ---------------------------------------------------------------- checks

  checks = {
    # user
    "user exists" = basic.user != null;
    "user is a system user" = basic.user.isSystemUser && !basic.user.isNormalUser;
    "user has its own group" = basic.user.group == "diag" && lib.elem "diag" basic.groups;
    "user is in systemd-journal only" = basic.user.extraGroups == [ "systemd-journal" ];
    "user has a real login shell (bash package)" = basic.user.shellIsPackage && basic.user.shell == "/bin/bash";
    "user has no password" = basic.user.hashedPassword == "*";
    "user has a home sshd can chdir to" = basic.user.home == "/var/empty";
    "key is restricted to the wrapper" =
      basic.user.keys == [ ''restrict,command="${forceCommand}" ${testKey}'' ];

    # sshd
    "Match block present" = matchAt >= 0;
    "Match block after the sshd module's own lines" =
      matchAt > indexOf "Port 22" basicLines && matchAt > indexOf "AddressFamily any" basicLines;
    "Match block after the host's own global lines" =
      matchAt > indexOf "PermitRootLogin prohibit-password" basicLines;
    "Match block closed with Match all at the end" = lib.last basicLines == "Match all";
    "ForceCommand is the wrapper" = lib.elem "ForceCommand ${forceCommand}" matchBody;
    "policy.json is rendered from policy.toml by the wrapper itself" =
      lib.hasInfix "${storePrefix}/bin/diag-wrapper render --policy /nix/store/" basic.policyJsonScript
      && lib.hasInfix "diag-wrapper-policy.toml > $out" basic.policyJsonScript;
    "Match block turns everything off" = lib.all (d: lib.elem d matchBody) [
      "AllowTcpForwarding no"
      "AllowAgentForwarding no"
      "AllowStreamLocalForwarding no"
      "X11Forwarding no"
      "PermitTTY no"
      "PermitTunnel no"
      "PermitUserRC no"
      "ExposeAuthInfo yes"
      "AuthenticationMethods publickey"
    ];
    "no sudo / setuid in sshd config" = !(lib.hasInfix "sudo" basic.sshdConfig) && !(lib.hasInfix "/run/wrappers" basic.sshdConfig);
    "no assertion fails in the basic config" = basic.failedAssertions == [ ];
    "no warning in the basic config" = basic.warnings == [ ];

    # policy
    "policy includes the fleet policy from the package" =
      basic.policyValue.include == [ "${storePrefix}/share/diag-wrapper/policy/fleet.toml" ];
    "policy search path is the system profile" =
      basic.policyValue.settings.search_path == [ "/run/current-system/sw/bin" ];
    "policy carries extraDenyPaths as deny entries" =
      map (d: d.path) basic.policyValue.deny == [
        "/var/lib/n8n"
        "/var/lib/mautrix-*"
      ];
    "policy text has the deny entries" =
      lib.hasInfix "[[deny]]" basic.policyText && lib.hasInfix ''path = "/var/lib/mautrix-*"'' basic.policyText;
    "policy text has no commands table without extraCommands" = !(basic.policyValue ? commands);
    "sandbox unset: the host policy's setting stands" = !(basic.policyValue.settings ? sandbox);
    "sandbox set: rendered into the policy's settings" =
      sandboxRequired.policyValue.settings.sandbox == "required" && sandboxRequired.failedAssertions == [ ];
    "sandbox required without user namespaces is refused" =
      mentions "allowUserNamespaces" sandboxNoUserns.failedAssertions;
    "sandbox auto without user namespaces is fine" = sandboxAutoNoUserns.failedAssertions == [ ];
    "sandbox required with user.max_user_namespaces = 0 is refused" =
      mentions "max_user_namespaces" sandboxSysctlOff.failedAssertions;
    "sandbox required on a hardened kernel without unprivilegedUsernsClone is refused" =
      mentions "hardened kernel" sandboxHardened.failedAssertions;
    "sandbox required on a hardened kernel with unprivilegedUsernsClone is fine" =
      sandboxHardenedClone.failedAssertions == [ ];
    "sandbox auto on a hardened kernel is fine" = sandboxAutoHardened.failedAssertions == [ ];
    "extraCommands land in the policy" =
      extraCommands.policyValue.commands.uptime.summary == "how long the system has been running";

    # disabled
    "disabled: no user" = disabled.user == null;
    "disabled: no policy file" = disabled.policyText == null;
    "disabled: no Match block" = !(lib.hasInfix "Match User diag" disabled.sshdConfig);

    # assertions
    "every malformed extraDenyPaths entry fails an assertion" = lib.all (
      r: mentions "extraDenyPaths" r.failed && mentions r.path r.failed
    ) badDenyResults;
    "well-formed extraDenyPaths pass" = goodDeny.failedAssertions == [ ];
    "wheel is refused" = mentions "wheel" wheel.failedAssertions;
    "AcceptEnv LANG LC_* is fine" = acceptOk.failedAssertions == [ ];
    "AcceptEnv * is refused" = mentions "AcceptEnv" acceptStar.failedAssertions;
    "AcceptEnv BASH_* is refused" = mentions "BASH_*" acceptBash.failedAssertions;
    "AcceptEnv NIX_PYTHON?ATH is refused" = mentions "NIX_PYTHON?ATH" acceptNix.failedAssertions;
    "AcceptEnv SSH_* is refused (a forged SSH_USER_AUTH)" = mentions "SSH_*" acceptSsh.failedAssertions;
    "AcceptEnv as nixpkgs types it (one string) evaluates and passes" = acceptOk.failedAssertions == [ ];
    "AcceptEnv lines in extraConfig are checked too" = mentions "LD_PRELOAD" acceptInExtraConfig.failedAssertions;
    "harmless AcceptEnv in extraConfig is fine" = acceptOkInExtraConfig.failedAssertions == [ ];
    "DenyUsers matching diag (user@host pattern) is refused" = mentions "DenyUsers" denyUsersDiag.failedAssertions;
    "DenyUsers of others is fine" = denyUsersOther.failedAssertions == [ ];
    "AllowUsers admitting diag by a pattern is fine" = allowUsersPattern.failedAssertions == [ ];
    "AllowGroups without a diag group is refused" = mentions "AllowGroups" allowGroupsMissing.failedAssertions;
    "AllowGroups with systemd-journal is fine" = allowGroupsJournal.failedAssertions == [ ];
    "DenyGroups matching a diag group is refused" = mentions "DenyGroups" denyGroupsDiag.failedAssertions;
    "the state directory is made by tmpfiles, writable by the diag group" =
      lib.elem "d /run/diag-wrapper 0770 root diag -" basic.tmpfiles;
    "AllowUsers without diag is refused" = mentions "AllowUsers" allowUsersMissing.failedAssertions;
    "AllowUsers with diag is fine" = allowUsersOk.failedAssertions == [ ];
    "keys with their own options are refused" = mentions "bare public keys" keyWithOptions.failedAssertions;
    "no keys is refused" = mentions "are empty" noKeys.failedAssertions;
    "a named key is pinned to its sources with from=" =
      pinnedKey.failedAssertions == [ ]
      && pinnedKey.user.keys == [ ''restrict,from="10.0.0.5,fd00::/8,!10.0.0.9",command="${builtins.head (lib.splitString "\"" (lib.removePrefix "restrict,command=\"" (builtins.head basic.user.keys)))}" ${testKey}'' ];
    "a named key without from joins the bare ones" =
      pinnedAndBare.failedAssertions == [ ] && builtins.length pinnedAndBare.user.keys == 2;
    "a from= that could end the option is refused" = mentions "keys.<name>.from" pinnedBadFrom.failedAssertions;
    "an empty from= is refused" = mentions "keys.<name>.from" pinnedEmptyFrom.failedAssertions;
    "/run/wrappers search path is refused" = mentions "/run/wrappers" wrappersPath.failedAssertions;
    "relative hostPolicy is refused" = mentions "hostPolicy" relativeHostPolicy.failedAssertions;
    "sshd must be enabled" = mentions "openssh.enable" noSshd.failedAssertions;
    "another Match block warns" = lib.length foreignMatch.warnings == 1 && mentions "Match Group admins" foreignMatch.warnings;

    # web-02
    "web-02: no assertion fails" = web02.failedAssertions == [ ];
    "web-02: the fleet policy from the package, then web-02's layer from its configuration" =
      web02.hostPolicy == "${storePrefix}/share/diag-wrapper/policy/fleet.toml"
      && web02Config.services.diag.policy == [ (import ../../nix/hosts/web-02-policy.nix) ]
      && web02.policyValue.include == [ web02.hostPolicy (lib.head web02.layers).path ];
    "policy: layers stack in order after the base" =
      let c = summary (evalNixos [ base { services.diag.policy = [ { examples = [ ]; } { deny = [ { path = "/srv/x"; why = "x"; } ]; } ]; } ]); in
      map (l: l.path) c.layers == lib.tail c.policyValue.include && lib.length c.layers == 2;
    "web-02: deny entries derived from its services, also under /persist" = lib.all (p: lib.elem p web02Deny && lib.elem "/persist${p}" web02Deny) [
      "/var/lib/matrix-synapse"
      "/var/lib/mautrix-telegram"
      "/var/lib/matrix-authentication-service"
      "/var/lib/n8n"
      "/var/lib/private/n8n"
      "/var/cache/n8n"
      "/var/cache/private/n8n"
      "/var/lib/zammad"
      "/var/lib/postgresql"
      "/var/lib/postgresql/17"
      "/var/lib/redis-zammad"
      "/var/lib/acme/example.org"
      "/var/lib/acme/.lego/example.org"
      "/var/lib/containers"
      "/var/lib/dbus/machine-id"
      "/var/cache/nginx"
    ];
    "web-02: runtime directories denied, not under /persist" =
      lib.all (p: lib.elem p web02Deny && !(lib.elem "/persist${p}" web02Deny)) [ "/run/matrix-synapse" "/run/postgresql" "/run/redis-zammad" ];
    "web-02: logs, configuration, /var/lib itself and the sockets commands use stay readable" =
      lib.all (p: !(lib.elem p web02Deny)) [ "/var/log/nginx" "/etc/nginx" "/var/lib" "/var/log" "/persist/var/lib" "/run/nscd" ];
    "web-02: each derived entry says where it came from" =
      let w = p: (lib.findFirst (d: d.path == p) { why = ""; } web02.policyValue.deny).why; in
      w "/var/lib/private/n8n" == "StateDirectory of n8n.service (DynamicUser)"
      && w "/persist/var/lib/zammad" == "StateDirectory of zammad-web.service, its copy under /persist"
      && w "/var/lib/containers" == "persisted by environment.persistence.\"/persist\"";
    "web-02: the persistence roots reach the policy" = web02.policyValue.settings.persist_roots == [ "/persist" ];
    "web-02: no hand-written deny entries in the host file (policy/web-02.toml has them)" =
      !(lib.any (d: d.why == "services.diag.extraDenyPaths") web02.policyValue.deny);
    "deny: an operator opens a derived entry deliberately" =
      let c = summary (evalNixos [ base web02Host { services.diag.readableStateDirectories = [ "/var/lib/zammad" ]; } ]);
          ps = map (d: d.path) c.policyValue.deny; in
      !(lib.elem "/var/lib/zammad" ps) && lib.elem "/persist/var/lib/zammad" ps && lib.elem "/var/lib/n8n" ps;
    "deny: off, nothing derived" =
      ((summary (evalNixos [ base web02Host { services.diag.denyStateDirectories = false; } ])).policyValue.deny or [ ]) == [ ];
    "web-02: built-in reports for what the host runs" =
      builtins.attrNames web02Reports == [ "containers" "disk-usage" "firewall" "listening" "postgres-activity" "redis-info" ];
    "reports: a host without podman, nftables, databases gets listening and disk-usage" =
      builtins.attrNames basicConfig.services.diag.reports == [ "disk-usage" "listening" ];
    "reports: a disabled built-in has no units and no policy entry" =
      !(offReport.systemd.sockets ? diag-report-firewall) && offReport.systemd.sockets ? diag-report-listening
      && !((summary offReport).policyValue.reports ? firewall);
    "reports: each a socket for the diag group only, one instance per connection" =
      let s = web02Config.systemd.sockets.diag-report-containers; in
      s.listenStreams == [ "/run/diag-reports/containers.sock" ] && s.socketConfig.Accept
      && s.socketConfig.SocketGroup == "diag" && s.socketConfig.SocketMode == "0660"
      && s.socketConfig.MaxConnections == 2 && s.socketConfig ? TriggerLimitBurst
      && s.unitConfig.OnFailure == "diag-reports-reopen@diag-report-containers.service";
    "reports: the service reads nothing, writes to the socket, is hardened" =
      let c = web02Config.systemd.services."diag-report-postgres-activity@".serviceConfig; in
      c.StandardInput == "null" && c.StandardOutput == "socket" && c.User == "postgres"
      && c.ProtectSystem == "strict" && c.ProtectHome && c.PrivateTmp && c.NoNewPrivileges
      && c.CapabilityBoundingSet == "" && c.RestrictAddressFamilies == "AF_UNIX" && c.RuntimeMaxSec == 15;
    "reports: no address family at all is \"none\", not an empty list" =
      web02Config.systemd.services."diag-report-disk-usage@".serviceConfig.RestrictAddressFamilies == "none";
    "reports: the collector runs the fixed argv, % and $ escaped for systemd" =
      (ownReport.systemd.services."diag-report-uptime@".serviceConfig.ExecStart)
      == "${storePrefix}/bin/diag-wrapper collect uptime --timeout 30 --max-output 1048576 -- \"/run/current-system/sw/bin/uptime\" \"100%%\" \"$$HOME\"";
    "reports: own reports only when builtinReports = false" =
      builtins.attrNames ownReport.services.diag.reports == [ "uptime" ]
      && (summary ownReport).policyValue.reports.uptime.socket == "/run/diag-reports/uptime.sock";
    "reports: the reopen template restarts the socket after a rest" =
      let c = web02Config.systemd.services."diag-reports-reopen@".serviceConfig; in
      c.ExecStart == "/nix/store/00000000000000000000000000000000-systemd-258.2/bin/systemctl start %i.socket"
      && lib.hasSuffix "sleep 30" c.ExecStartPre;
    "reports: none at all, no reopen unit and no [reports]" =
      (evalNixos [ base { services.diag.builtinReports = false; } ]).systemd.services == { };
    "web-02: the kernel wall is required" = web02.policyValue.settings.sandbox == "required";
    "web-02: ... which a host without user namespaces is told" =
      mentions "allowUserNamespaces" web02NoUserns.failedAssertions;

    # package
    "package: pyproject build with setuptools" = recipe.pyproject && depNames { dependencies = recipe.build-system; } == [ "setuptools" ];
    "package: version from pyproject.toml" = recipe.version == (lib.importTOML ../../pyproject.toml).project.version;
    "package: runtime dependencies" = depNames recipe == [ "bashlex" "structlog" "systemd-python" ];
    "package: older channels fall back to ps.systemd" = lib.last (depNames recipeOld) == "systemd-old";
    "package: tests run with pytest + hypothesis" =
      lib.all (n: lib.elem n (map (d: d.name) recipe.nativeCheckInputs)) [ "pytest-check-hook" "hypothesis" ];
    "package: root/e2e suites excluded" =
      recipe.disabledTestMarks == [ "e2e" "root" ]
      && lib.all (p: lib.elem p [ "tests/e2e" "tests/root" "tests/nix" ]) recipe.disabledTestPaths
      && lib.elem "tests/nix" recipe.disabledTestPaths;
    "package: policies installed to share/diag-wrapper/policy" =
      lib.hasInfix ''install -Dm444 -t "$out/share/diag-wrapper/policy" policy/*.toml'' recipe.postInstall;
    "package: wrapper unsets the NIX_PYTHON* variables" =
      lib.all (v: lib.elem v recipe.makeWrapperArgs) [ "NIX_PYTHONPATH" "NIX_PYTHONEXECUTABLE" "NIX_PYTHONPREFIX" ];
    "package: tests get an isolated-capable interpreter" =
      lib.hasInfix "NIX_PYTHONEXECUTABLE=" recipe.preCheck && lib.hasInfix "nix-check-inputs.pth" recipe.preCheck;
    "package: shebang gets -I and is verified" =
      lib.hasInfix "\\1 -I|" recipe.postFixup && lib.hasInfix "does not run python -I" recipe.postFixup;

    # client
    "client: every case refused or passed as it should, in 25.11 and 26.05" = clientWrong == [ ];
    "client: 26.05 writes settings with ssh's names, the diag block first" =
      client.programs.ssh.settings.web-02.data == sshCheck.pins // {
        header = "Host web-02 web-02.cloonar.com";
        HostName = "web-02.cloonar.com";
        Port = 22;
        User = "diag";
        IdentityFile = diagKey;
      }
      && client.programs.ssh.matchBlocks == { };
    "client: 25.11 writes matchBlocks" =
      client2511.programs.ssh.matchBlocks.web-02.data.user == "diag"
      && client2511.programs.ssh.matchBlocks.web-02.data.extraOptions.IdentityAgent == "none"
      && client2511.programs.ssh.matchBlocks.extra-host.data.hostname == "extra.example.invalid";
    "client: no home-manager warning in either release" = lib.all (r: r.plain.warnings == [ ] && r.broad.warnings == [ ]) (lib.attrValues clientResults);
    "client: the default config is opted out of" = !client.programs.ssh.enableDefaultConfig && !client2511.programs.ssh.enableDefaultConfig;
    "client: diag blocks come before every other block" =
      map (e: e.name) ((hmFor "26.05").dagTopoSort (evalClient "26.05" clientCases.broad.modules."26.05").programs.ssh.settings) == [ "extra-host" "web-02" "a-web-*" "other" ];
    "client: an identity file that ssh would split is refused" = lib.all (
      p: mentions "one absolute or ~/ path" (clientFailed (evalClient "26.05" [ { programs.diagClient.identityFile = lib.mkForce p; } ]))
    ) [ "/run/secrets/a key" "/run/secrets/a\\b" "/run/secrets/\"k\"" "relative/key" ];
    "client: the reader: a block after ours may set User, not IdentityFile" =
      sshCheck.findings {
        text =
          "Host web-02\n User diag\n HostName h\n Port 22\n IdentityFile /k\n"
          + lib.concatStrings (lib.mapAttrsToList (k: v: " ${k} ${v}\n") sshCheck.pins)
          + "Host *\n User bob\n ControlMaster auto\n ProxyJump bastion\n GSSAPIAuthentication yes\n";
        hosts.web-02 = "h";
        user = "diag";
        identityFile = "/k";
      } == [ ];
    "client: the reader: quoting it does not model is refused, not guessed at" =
      let
        opaque = t: builtins.length (sshCheck.findings { text = "Host web-02\n User diag\n${t}\n"; hosts.web-02 = "web-02"; user = "diag"; identityFile = "/k"; });
      in
      lib.all (t: opaque t > opaque "") [ "I\"dentityFile\" x" "\"User\"=x" "\"\" IdentityFile x" "==User x" (builtins.fromJSON "\"User\\u000bx\"") ];
    "client: the reader: a quoted word, '=' and a comment" =
      map (l: [ l.kw l.args ]) (lib.concatMap (b: b.lines) (sshCheck.blocksOf "IdentityFile \"~/a b\" # c\n=User=bob\n# IdentityFile x\n"))
      == [ [ "identityfile" [ "~/a b" ] ] [ "user" [ "bob" ] ] ];
  };

  failures = builtins.attrNames (lib.filterAttrs (_: ok: !ok) checks);
in
{
  ok = failures == [ ];
  inherit failures;
  checkCount = builtins.length (builtins.attrNames checks);
  scenarios = {
    # policy/web-02.toml as scripts/render-host-policy writes it: the fleet include, web-02's
    # layer and the [reports] the module renders for web-02
    web02PolicyToml =
      "# GENERATED by scripts/render-host-policy from nix/hosts/web-02-policy.nix and the reports\n"
      + "# nix/hosts/web-02.nix gets (nix/reports.nix); edit those, then re-render. What the\n"
      + "# module installs on web-02 is the same: fleet.toml, then this layer.\n"
      + renderTable [ ] ({ include = [ "fleet.toml" ]; } // import ../../nix/hosts/web-02-policy.nix // { reports = web02Reports; });
    web02Units =
      let
        plain = lib.mapAttrs (_: u: removeAttrs u [ "_module" ]);
      in
      {
        sockets = plain web02Config.systemd.sockets;
        services = plain web02Config.systemd.services;
      };
    inherit
      basic
      pinnedKey
      disabled
      web02
      goodDeny
      extraCommands
      ;
    badDeny = badDenyResults;
    inherit clientResults diagKey;
  };
}
