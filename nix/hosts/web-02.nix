# What web-02's guest config adds to get the read-only diag channel.
#
# Import this from web-02's microVM configuration next to the shared diag
# settings that provide the already-committed diag public key:
#
#   imports = [ <diag-wrapper>/nix/hosts/web-02.nix ];
#   services.diag.authorizedKeys = [ <the committed diag public key> ];
#
# No new secret: only the public key is referenced, the private key already
# exists on the agent's host.
{ config, ... }:

{
  imports = [ ../module.nix ];

  services.diag = {
    enable = true;

    # policy/web-02.toml: the fleet policy plus web-02's entries, with
    # examples that `diag-wrapper lint` checks.
    hostPolicy = "${config.services.diag.package}/share/diag-wrapper/policy/web-02.toml";

    # web-02 holds the most secrets and runs NixOS with unprivileged user
    # namespaces: nothing runs unless the kernel wall is up.
    sandbox = "required";

    # web-02's hand-written deny entries are in policy/web-02.toml only. On top
    # of them the module derives entries from this host's own configuration
    # (services.diag.denyStateDirectories): every service's StateDirectory=,
    # CacheDirectory=, RuntimeDirectory= (synapse, the mautrix bridges, MAS,
    # n8n under DynamicUser, zammad, PostgreSQL, Redis, ...) and what
    # environment.persistence keeps under /var/lib, each also under /persist,
    # so a service added later is denied without editing a list.
  };
}
