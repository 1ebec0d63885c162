# home-manager module: route the diag hosts to the diag user and key.
#
#   imports = [ <diag-wrapper>/nix/client.nix ];
#   programs.diagClient = {
#     enable = true;
#     identityFile = "<path of the deployed diag private key>";
#   };
#
# web-02 (-> web-02.cloonar.com) is always included; more hosts can be added
# under `hosts`.
#
# Each host becomes a block `Host <alias> <hostname>` with `User diag`, its Port, the
# diag IdentityFile, `IdentitiesOnly yes`, `IdentityAgent none`, `PKCS11Provider none`,
# `ControlMaster no`, `ControlPath none`, `ProxyJump none` and `ProxyCommand none` (a
# master made as another user, or a jump, would carry or authenticate the agent's
# connection otherwise), `CanonicalizeHostname no`, `PreferredAuthentications publickey`
# (no GSSAPI, host-based, password or keyboard-interactive), `ClearAllForwardings yes`,
# no agent or X11 forwarding, `EnableEscapeCommandline no`, `PermitLocalCommand no` and
# `KnownHostsCommand none`, ordered before every other block (both are DAGs in home-manager): `programs.ssh.settings`
# with ssh's own directive names where that option exists (home-manager 26.05, which
# deprecates matchBlocks with a warning), `programs.ssh.matchBlocks` before (25.11).
#
# What real ssh does with several matching blocks (ssh_config(5)): for most keywords
# the first value obtained wins (so our block, first, decides all of the above), but
# IdentityFile, CertificateFile and SendEnv accumulate over every matching block. So
# the module reads the ~/.ssh/config home-manager renders (nix/ssh-config-check.nix)
# and refuses, as an assertion, deny by default: in any block that may reach a diag
# host (Host or Match, and what comes before every block), a keyword that is neither
# pinned by our block (before it: only with our value) nor known harmless there; an
# IdentityFile or CertificateFile; an Include (its files are not visible at
# evaluation; `allowIncludes` accepts them); a line ssh could read differently from
# the check; a diag block that does not say exactly the above; and a home.file that
# would put another file at ~/.ssh/config. Then `ssh -G web-02` lists
# exactly the diag key, which scripts/post-deploy-check verifies on the real client
# (the system-wide /etc/ssh/ssh_config, read after ~/.ssh/config, is outside
# home-manager's view and is covered only by that check).
#
# home-manager 25.05+ warns unless programs.ssh.enableDefaultConfig is set;
# it is set false here by default where the option exists (its built-in
# `Host *` defaults are deprecated upstream).
{
  config,
  lib,
  options,
  ...
}:

let
  inherit (lib) mkOption types;
  cfg = config.programs.diagClient;
  ssh = config.programs.ssh;
  # home-manager 26.05+: programs.ssh.settings; 25.11: programs.ssh.matchBlocks
  useSettings = options.programs.ssh ? settings;
  blocks = if useSettings then ssh.settings else ssh.matchBlocks;
  otherBlocks = lib.attrNames (removeAttrs blocks (lib.attrNames cfg.hosts));
  # the file home-manager deploys must be that text: not another source, target or off,
  # and no other home.file entry may put something at ~/.ssh/config (a directory
  # linked at ~/.ssh or ~, a target spelled `.ssh//config`)
  sshFile = config.home.file.".ssh/config" or null;
  targetParts = t: lib.filter (p: p != "" && p != ".") (lib.splitString "/" t);
  reachesConfig =
    t:
    let
      p = targetParts t;
    in
    lib.hasPrefix "/" t || lib.elem ".." p || lib.take (builtins.length p) [ ".ssh" "config" ] == p;
  otherFiles = lib.attrNames (
    lib.filterAttrs (n: f: n != ".ssh/config" && (f.enable or true) && reachesConfig (f.target or n)) (config.home.file or { })
  );
  fileIsText =
    sshFile != null
    && (sshFile.enable or true)
    && targetParts (sshFile.target or ".ssh/config") == [ ".ssh" "config" ]
    && (!(sshFile ? source) || (builtins.isAttrs sshFile.source && (sshFile.source.text or null) == sshFile.text));
  check = import ./ssh-config-check.nix { inherit lib; };
  findings = check.findings {
    text = if sshFile != null && sshFile.text != null then sshFile.text else "";
    hosts = lib.mapAttrs (_: h: {
      inherit (h) hostname;
      port = portOf h;
    }) cfg.hosts;
    inherit (cfg) user identityFile allowIncludes;
  };
  portOf = h: if h.port == null then 22 else h.port;
  headerOf = name: h: lib.concatStringsSep " " (lib.unique [ name h.hostname ]);
  # one word, as ssh reads an IdentityFile argument
  plainPath = p: builtins.match "(/|~/)[^[:space:]\"'#\\]+" p != null;

  hostModule =
    { name, ... }:
    {
      options = {
        hostname = mkOption {
          type = types.str;
          default = name;
          description = "Real host name or address to connect to (HostName).";
        };
        port = mkOption {
          type = types.nullOr types.port;
          default = null;
          description = "SSH port, if not 22.";
        };
      };
    };
in
{
  options.programs.diagClient = {
    enable = lib.mkEnableOption "SSH client entries for the read-only diag channel";

    user = mkOption {
      type = types.str;
      default = "diag";
      description = "Remote user of the diag channel.";
    };

    identityFile = mkOption {
      type = types.str;
      description = "Path of the diag private key on this machine (deployed as a secret; never in the store).";
    };

    allowIncludes = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Accept `programs.ssh.includes` (and Include lines) that apply to the diag hosts.
        ssh reads those files at run time, so this module cannot see whether they set
        another identity or user for them; set this once scripts/post-deploy-check
        passes on the machine.
      '';
    };

    hosts = mkOption {
      type = types.attrsOf (types.submodule hostModule);
      default = { };
      example = {
        web-02.hostname = "web-02.cloonar.com";
      };
      description = "Host aliases that reach the diag channel, with their real host names.";
    };
  };

  config = lib.mkIf cfg.enable (
    lib.mkMerge [
      {
        assertions = [
          {
            assertion = plainPath cfg.identityFile;
            message = "programs.diagClient.identityFile must be one absolute or ~/ path without spaces, quotes, backslashes or '#' (ssh reads it as one word): ${cfg.identityFile}";
          }
          {
            assertion = fileIsText;
            message = "programs.diagClient: home.file.\".ssh/config\" is disabled, has another target, or its source is not the text programs.ssh renders, so what ssh reads is not what this module checked; configure ssh through programs.ssh";
          }
          {
            assertion = otherFiles == [ ];
            message = "programs.diagClient: home.file ${lib.concatStringsSep ", " otherFiles} could put another file at ~/.ssh/config (a target of ~, ~/.ssh, an absolute path or one with '..'); ssh would read that instead of what this module checked";
          }
          {
            assertion = findings == [ ];
            message = "programs.diagClient: ~/.ssh/config would let ssh give a diag host more than the diag key (another identity, user, host, connection, forward or local data):\n  ${lib.concatStringsSep "\n  " findings}";
          }
        ];

        # The microVM this channel was extended to (ADR-0005 amendment).
        programs.diagClient.hosts.web-02.hostname = lib.mkDefault "web-02.cloonar.com";

        programs.ssh.enable = lib.mkDefault true;
      }
      (lib.optionalAttrs (options.programs.ssh ? enableDefaultConfig) {
        programs.ssh.enableDefaultConfig = lib.mkDefault false;
      })
      # Each diag block first: a DAG entry before every other block.
      (
        if useSettings then
          {
            programs.ssh.settings = lib.mapAttrs (name: h: {
              # the pins as ssh spells them (nix/ssh-config-check.nix says why each)
              data = check.pins // {
                header = "Host ${headerOf name h}";
                Port = portOf h;
                User = cfg.user;
                HostName = h.hostname;
                IdentityFile = cfg.identityFile;
              };
              before = otherBlocks;
              after = [ ];
            }) cfg.hosts;
          }
        else
          {
            programs.ssh.matchBlocks = lib.mapAttrs (name: h: {
              # the pins as extraOptions (25.11 warns about none of them)
              data = {
                host = headerOf name h;
                port = portOf h;
                inherit (h) hostname;
                inherit (cfg) user identityFile;
                extraOptions = check.pins;
              };
              before = otherBlocks;
              after = [ ];
            }) cfg.hosts;
          }
      )
    ]
  );
}
