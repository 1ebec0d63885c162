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
# Each host becomes a `programs.ssh.matchBlocks` entry with `User diag`, the
# diag IdentityFile, `IdentitiesOnly yes` and `IdentityAgent none`, ordered
# before every other block (matchBlocks is a DAG in home-manager).
#
# What real ssh does with several matching blocks (ssh_config(5)): for most
# keywords the first value obtained wins (so our block, first, decides User
# and HostName), but IdentityFile and CertificateFile accumulate over every
# matching block, and IdentitiesOnly only keeps the agent's other keys away.
# So the module also refuses (an assertion) any other block whose pattern
# matches a diag alias or its host name and sets an identity or certificate,
# and an IdentityFile in extraOptionOverrides or extraConfig (which apply to
# every host): then `ssh -G web-02` lists exactly the diag key, which
# scripts/post-deploy-check verifies on the real client.
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

  # a Host line is an ssh_config(5) pattern-list ('*', '?', commas, '!')
  matchesHost = (import ./ssh-patterns.nix { inherit lib; }).matchesList;
  # a block's value: a DAG entry (home-manager) or, in older releases, the block itself
  blockOf = b: b.data or b;
  diagNames = lib.concatLists (lib.mapAttrsToList (n: h: [ n h.hostname ]) cfg.hosts);
  otherBlocks = lib.filterAttrs (n: _: !(cfg.hosts ? ${n})) ssh.matchBlocks;
  identities = b: lib.toList (b.identityFile or [ ]) ++ lib.toList (b.certificateFile or [ ]);
  leaking = lib.filterAttrs (
    _: b:
    let
      d = blockOf b;
    in
    identities d != [ ] && lib.any (n: matchesHost n (d.host or "")) diagNames
  ) otherBlocks;
  hasIdentityKey = attrs: lib.any (k: lib.elem (lib.toLower k) [ "identityfile" "certificatefile" ]) (lib.attrNames attrs);
  globalIdentity =
    hasIdentityKey (ssh.extraOptionOverrides or { })
    || lib.any (l: builtins.match "[[:space:]]*([Ii][Dd][Ee][Nn][Tt][Ii][Tt][Yy]|[Cc][Ee][Rr][Tt][Ii][Ff][Ii][Cc][Aa][Tt][Ee])[Ff][Ii][Ll][Ee]([[:space:]=].*)?" l != null) (
      lib.splitString "\n" (ssh.extraConfig or "")
    );

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

    hosts = mkOption {
      type = types.attrsOf (types.submodule hostModule);
      default = { };
      example = {
        web-02.hostname = "web-02.cloonar.com";
      };
      description = "Host aliases that reach the diag channel, with their real host names.";
    };
  };

  config = lib.mkIf cfg.enable (lib.mkMerge [
  {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.identityFile || lib.hasPrefix "~/" cfg.identityFile;
        message = "programs.diagClient.identityFile must be a path (absolute or ~/...)";
      }
      {
        assertion = leaking == { };
        message = "programs.ssh.matchBlocks ${lib.concatStringsSep ", " (lib.attrNames leaking)} match a diag host (${lib.concatStringsSep " " diagNames}) and set IdentityFile or CertificateFile: ssh adds them to the diag key for that host; narrow the pattern (e.g. Host * !web-02)";
      }
      {
        assertion = !globalIdentity;
        message = "programs.ssh.extraOptionOverrides or extraConfig sets IdentityFile/CertificateFile for every host, so ssh would offer it to the diag hosts too; move it into a matchBlock that excludes them";
      }
    ];

    # The microVM this channel was extended to (ADR-0005 amendment).
    programs.diagClient.hosts.web-02.hostname = lib.mkDefault "web-02.cloonar.com";

    programs.ssh.enable = lib.mkDefault true;
  }
  (lib.optionalAttrs (options.programs.ssh ? enableDefaultConfig) {
    programs.ssh.enableDefaultConfig = lib.mkDefault false;
  })
  {
    # Each diag block first: a DAG entry before every other block.
    programs.ssh.matchBlocks = lib.mapAttrs (name: h: {
      data = {
        host = name;
        inherit (h) hostname;
        inherit (cfg) user identityFile;
        identitiesOnly = true;
        forwardAgent = false;
        forwardX11 = false;
        extraOptions.IdentityAgent = "none";
      }
      // lib.optionalAttrs (h.port != null) { inherit (h) port; };
      before = lib.attrNames otherBlocks;
      after = [ ];
    }) cfg.hosts;
  }
  ]);
}
