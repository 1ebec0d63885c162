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
# diag IdentityFile and `IdentitiesOnly yes`, so `ssh web-02 '<cmd>'` offers
# only the diag key and never the agent's personal key (nor anything loaded
# in an ssh-agent), and never falls through to the `Host *` defaults for
# user or key.
{ config, lib, ... }:

let
  inherit (lib) mkOption types;
  cfg = config.programs.diagClient;

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

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = lib.hasPrefix "/" cfg.identityFile || lib.hasPrefix "~/" cfg.identityFile;
        message = "programs.diagClient.identityFile must be a path (absolute or ~/...)";
      }
    ];

    # The microVM this channel was extended to (ADR-0005 amendment).
    programs.diagClient.hosts.web-02.hostname = lib.mkDefault "web-02.cloonar.com";

    programs.ssh.enable = lib.mkDefault true;

    programs.ssh.matchBlocks = lib.mapAttrs (
      name: h:
      {
        host = name;
        inherit (h) hostname;
        inherit (cfg) user identityFile;
        identitiesOnly = true;
        forwardAgent = false;
        forwardX11 = false;
      }
      // lib.optionalAttrs (h.port != null) { inherit (h) port; }
    ) cfg.hosts;
  };
}
