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

let
  # Each service state directory is denied at its usual place and at its
  # impermanence copy under /persist; the wrapper also denies every entry at
  # its realpath, so a bind mount or symlink between the two is caught from
  # either name.
  withPersist = paths: paths ++ map (p: "/persist${p}") paths;
in
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

    # The same entries again, here, so this host keeps them even if
    # hostPolicy is ever switched back to fleet.toml. Deny entries from all
    # layers are concatenated; a duplicate is harmless and nothing removes one.
    extraDenyPaths = withPersist [
      # Matrix synapse: signing key, registration/macaroon/form secrets, media store
      "/var/lib/matrix-synapse"
      # mautrix-* bridges: as/hs tokens, bridge databases, puppet sessions
      "/var/lib/mautrix-*"
      # matrix-authentication-service: signing keys, encryption secret, client secrets
      "/var/lib/matrix-authentication-service"
      # n8n: encryptionKey (.n8n/config) and stored workflow credentials;
      # the NixOS service uses DynamicUser, so the real directory is under private/
      "/var/lib/n8n"
      "/var/lib/private/n8n"
      # zammad: secrets, database config, attachments
      "/var/lib/zammad"
      # podman containers (Invidious, invidious-companion): each container's
      # config.json carries its environment, i.e. the companion/HMAC secret keys
      "/var/lib/containers"
      # databases behind synapse, mas, zammad, invidious: raw data files
      "/var/lib/postgresql"
      "/var/lib/redis-*"
    ] ++ [
      # web-02 keeps its SSH host keys on the impermanence volume; /etc/ssh
      # entries are only links to these (fleet.toml denies both; repeated here).
      "/persist/etc/ssh/ssh_host_*_key"
      "/etc/ssh/ssh_host_*_key"
    ];
  };
}
