# A stand-in for home-manager's programs.ssh (modules/programs/ssh.nix), typed like
# upstream where nix/client.nix touches it, and the ~/.ssh/config it writes. Used by the
# Nix harness (tests/nix/harness.nix) and the VM test's client (nix/tests/web-02.nix),
# which cannot import home-manager itself.
{ lib }:

let
  inherit (lib) mkOption types;

  # home-manager modules/programs/ssh.nix: matchBlocks is `hm.types.dagOf matchBlockModule`
  # (a plain block is coerced to an entry with no ordering; an entry is { data, before,
  # after }), the config is written extraOptionOverrides first, then the blocks in DAG
  # order, then `Host *` (the built-in defaults while enableDefaultConfig, 25.05+).
  isDagEntry = e: builtins.isAttrs e && e ? data && e ? before && e ? after;
  matchBlockModule = types.submodule (
    { dagName, ... }:
    {
      options = {
        host = mkOption { type = types.nullOr types.str; default = dagName; };
        hostname = mkOption { type = types.nullOr types.str; default = null; };
        user = mkOption { type = types.nullOr types.str; default = null; };
        port = mkOption { type = types.nullOr types.port; default = null; };
        identityFile = mkOption {
          type = types.either (types.listOf types.str) (types.nullOr types.str);
          default = [ ];
          apply = p: if p == null then [ ] else lib.toList p;
        };
        certificateFile = mkOption {
          type = types.either (types.listOf types.str) (types.nullOr types.str);
          default = [ ];
          apply = p: if p == null then [ ] else lib.toList p;
        };
        identitiesOnly = mkOption { type = types.bool; default = false; };
        forwardAgent = mkOption { type = types.nullOr types.bool; default = null; };
        forwardX11 = mkOption { type = types.bool; default = false; };
        extraOptions = mkOption { type = types.attrsOf types.str; default = { }; };
      };
    }
  );
  dagEntryOf =
    elemType:
    let
      entry = types.submodule (
        { name, ... }:
        {
          options = {
            data = mkOption { type = elemType; };
            before = mkOption { type = types.listOf types.str; default = [ ]; };
            after = mkOption { type = types.listOf types.str; default = [ ]; };
          };
          config.data._module.args.dagName = name; # as upstream: the block's default host
        }
      );
    in
    lib.mkOptionType {
      name = "dagEntryOf";
      description = "DAG entry of ${elemType.description}";
      check = builtins.isAttrs;
      merge = loc: defs: entry.merge loc (map (d: d // { value = if isDagEntry d.value then d.value else { data = d.value; }; }) defs);
      getSubOptions = entry.getSubOptions;
      getSubModules = elemType.getSubModules;
      substSubModules = m: dagEntryOf (elemType.substSubModules m);
    };
  dagTopoSort =
    dag:
    let
      entries = lib.mapAttrsToList (name: e: e // { inherit name; }) dag;
      sorted = lib.toposort (a: b: lib.elem b.name a.before || lib.elem a.name b.after) entries;
    in
    sorted.result or (throw "dependency cycle in matchBlocks");
  yn = b: if b then "yes" else "no";
  sshBlockText =
    b:
    lib.concatStringsSep "\n" (
      [ "Host ${b.host}" ]
      ++ lib.optional (b.port != null) "  Port ${toString b.port}"
      ++ lib.optional (b.forwardAgent != null) "  ForwardAgent ${yn b.forwardAgent}"
      ++ lib.optional b.identitiesOnly "  IdentitiesOnly yes"
      ++ lib.optional (b.user != null) "  User ${b.user}"
      ++ lib.optional (b.hostname != null) "  HostName ${b.hostname}"
      ++ map (f: "  IdentityFile ${f}") b.identityFile
      ++ map (f: "  CertificateFile ${f}") b.certificateFile
      ++ lib.mapAttrsToList (n: v: "  ${n} ${v}") b.extraOptions
    );
  sshConfigText =
    cfg:
    let
      s = cfg.programs.ssh;
    in
    lib.concatStringsSep "\n" (
      lib.mapAttrsToList (n: v: "${n} ${v}") s.extraOptionOverrides
      ++ map (e: sshBlockText e.data) (dagTopoSort s.matchBlocks)
      ++ [ "Host *" ]
      ++ lib.optionals s.enableDefaultConfig [ "  ForwardAgent no" "  Compression no" ]
      ++ map (l: "  ${l}") (lib.splitString "\n" s.extraConfig)
    )
    + "\n";

in
{
  inherit dagTopoSort sshConfigText;

  module = {
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      programs.ssh.enable = mkOption {
        type = types.bool;
        default = false;
      };
      programs.ssh.enableDefaultConfig = mkOption {
        type = types.bool;
        default = true;
      };
      programs.ssh.extraOptionOverrides = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      programs.ssh.extraConfig = mkOption {
        type = types.lines;
        default = "";
      };
      programs.ssh.matchBlocks = mkOption {
        default = { };
        type = types.attrsOf (dagEntryOf matchBlockModule);
      };
    };
  };
}
