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
{ ... }:

{
  imports = [ ../module.nix ];

  services.diag = {
    enable = true;

    # The fleet policy the package ships (hostPolicy's default), then web-02's
    # own layer from this configuration: its deny entries, service recipes,
    # [instead] and examples (policy/web-02.toml is the same, rendered).
    policy = [ (import ./web-02-policy.nix) ];

    # web-02 holds the most secrets and runs NixOS with unprivileged user
    # namespaces: nothing runs unless the kernel wall is up.
    sandbox = "required";

    # web-02's hand-written deny entries are in web-02-policy.nix only. On top
    # of them the module derives entries from this host's own configuration
    # (services.diag.denyStateDirectories): every service's StateDirectory=,
    # CacheDirectory=, RuntimeDirectory= (synapse, the mautrix bridges, MAS,
    # n8n under DynamicUser, zammad, PostgreSQL, Redis, ...) and what
    # environment.persistence keeps under /var/lib, each also under /persist,
    # so a service added later is denied without editing a list.
  };
}
