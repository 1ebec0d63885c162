# A stand-in for home-manager's programs.ssh (modules/programs/ssh.nix) in its two
# supported shapes, typed like upstream where nix/client.nix and the tests touch it, and
# rendering ~/.ssh/config (home.file.".ssh/config".text) as upstream does:
#
#   release = "25.11": matchBlocks (a DAG of typed blocks); extraOptionOverrides, then
#     Include, then the blocks in DAG order, then `Host *`, then extraConfig indented.
#   release = "26.05": settings (a DAG of freeform blocks with ssh's directive names and
#     a `header`), matchBlocks kept as a deprecated alias converted into settings (with
#     a warning); blocks joined by blank lines, directives in attribute-name order.
#
# Both: enableDefaultConfig (default true) adds mkDefault values to `*` and a warning.
# Used by the Nix harness (tests/nix/harness.nix) and the VM test's client
# (nix/tests/web-02.nix), which cannot import home-manager itself;
# tests/nix/test_hm_upstream.py compares it with a real home-manager checkout.
{
  lib,
  release ? "26.05",
}:

let
  inherit (lib) mkOption types;
  v2605 = release == "26.05";
  yn = b: if b then "yes" else "no";

  # ---------------------------------------------------- home-manager's lib.hm.dag
  # An entry is { data, before, after } (no defaults upstream); any other value becomes
  # an entry with no ordering. A submodule payload gets the entry's name as `dagName`.
  isEntry = e: builtins.isAttrs e && e ? data && e ? after && e ? before;
  dagEntryOf =
    elemType:
    let
      entry = types.submodule (
        { name, ... }:
        {
          options = {
            data = mkOption { type = elemType; };
            after = mkOption { type = types.listOf types.str; };
            before = mkOption { type = types.listOf types.str; };
          };
          config = lib.mkIf (elemType.name == "submodule") { data._module.args.dagName = name; };
        }
      );
    in
    lib.mkOptionType {
      name = "dagEntryOf";
      description = "DAG entry of ${elemType.description}";
      merge =
        loc: defs:
        entry.merge loc (
          map (d: {
            inherit (d) file;
            value =
              if isEntry d.value then
                d.value
              else
                {
                  data = d.value;
                  before = [ ];
                  after = [ ];
                };
          }) defs
        );
    };
  dagOf =
    elemType:
    let
      attrs = types.attrsOf (dagEntryOf elemType);
    in
    lib.mkOptionType {
      name = "dagOf";
      description = "DAG of ${elemType.description}";
      inherit (attrs) check merge emptyValue;
      getSubOptions = prefix: elemType.getSubOptions (prefix ++ [ "<name>" ]);
      inherit (elemType) getSubModules;
      substSubModules = m: dagOf (elemType.substSubModules m);
    };
  # [ { name, data } ] in dependency order (upstream: lib.toposort over `after` plus
  # every entry naming this one in its `before`)
  dagTopoSort =
    dag:
    let
      named = lib.mapAttrsToList (n: e: {
        name = n;
        inherit (e) data;
        after = e.after ++ lib.attrNames (lib.filterAttrs (_: o: lib.elem n o.before) dag);
      }) dag;
      sorted = lib.toposort (a: b: lib.elem a.name b.after) named;
    in
    map (e: { inherit (e) name data; }) (sorted.result or (abort "Dependency cycle in SSH match blocks"));

  # ---------------------------------------------------- the typed (legacy) block
  listOrNull = mkOption {
    type = types.either (types.listOf types.str) (types.nullOr types.str);
    default = [ ];
    apply = p: if p == null then [ ] else lib.toList p;
  };
  nullOr = t: mkOption {
    type = types.nullOr t;
    default = null;
  };
  matchBlockModule = types.submodule {
    options = {
      host = nullOr types.str;
      match = nullOr types.str;
      port = nullOr types.port;
      forwardAgent = nullOr types.bool;
      forwardX11 = mkOption { type = types.bool; default = false; };
      forwardX11Trusted = mkOption { type = types.bool; default = false; };
      addressFamily = nullOr (types.enum [ "any" "inet" "inet6" ]);
      sendEnv = mkOption { type = types.listOf types.str; default = [ ]; };
      checkHostIP = mkOption { type = types.bool; default = true; };
      proxyCommand = nullOr types.str;
      proxyJump = nullOr types.str;
      identitiesOnly =
        if v2605 then nullOr types.bool else mkOption { type = types.bool; default = false; };
      identityFile = listOrNull;
      identityAgent = listOrNull;
      certificateFile = listOrNull;
      user = nullOr types.str;
      hostname = nullOr types.str;
      serverAliveInterval = nullOr types.int;
      serverAliveCountMax = nullOr types.ints.positive;
      compression = nullOr types.bool;
      addKeysToAgent = nullOr types.str;
      hashKnownHosts = nullOr types.bool;
      userKnownHostsFile = nullOr types.str;
      controlMaster = nullOr (types.enum [ "yes" "no" "ask" "auto" "autoask" ]);
      controlPath = nullOr types.str;
      controlPersist = nullOr types.str;
      extraOptions = mkOption { type = types.attrsOf types.str; default = { }; };
    };
  };
  defaults2511 = {
    forwardAgent = lib.mkDefault false;
    addKeysToAgent = lib.mkDefault "no";
    compression = lib.mkDefault false;
    serverAliveInterval = lib.mkDefault 0;
    serverAliveCountMax = lib.mkDefault 3;
    hashKnownHosts = lib.mkDefault false;
    userKnownHostsFile = lib.mkDefault "~/.ssh/known_hosts";
    controlMaster = lib.mkDefault "no";
    controlPath = lib.mkDefault "~/.ssh/master-%r@%n:%p";
    controlPersist = lib.mkDefault "no";
  };

  # 25.11's block text: this order, `Host <host or name>` unless `match` is set
  block2511 =
    name: b:
    let
      opt = c: s: lib.optional c "  ${s}";
      val = k: v: opt (v != null) "${k} ${if builtins.isBool v then yn v else toString v}";
    in
    lib.concatStringsSep "\n" (
      [ (if b.match != null then "Match ${b.match}" else "Host ${if b.host != null then b.host else name}") ]
      ++ val "Port" b.port
      ++ val "ForwardAgent" b.forwardAgent
      ++ opt b.forwardX11 "ForwardX11 yes"
      ++ opt b.forwardX11Trusted "ForwardX11Trusted yes"
      ++ opt b.identitiesOnly "IdentitiesOnly yes"
      ++ val "User" b.user
      ++ val "HostName" b.hostname
      ++ val "AddressFamily" b.addressFamily
      ++ opt (b.sendEnv != [ ]) "SendEnv ${lib.concatStringsSep " " b.sendEnv}"
      ++ val "ServerAliveInterval" b.serverAliveInterval
      ++ val "ServerAliveCountMax" b.serverAliveCountMax
      ++ val "Compression" b.compression
      ++ opt (!b.checkHostIP) "CheckHostIP no"
      ++ val "ProxyCommand" b.proxyCommand
      ++ val "ProxyJump" b.proxyJump
      ++ val "AddKeysToAgent" b.addKeysToAgent
      ++ val "HashKnownHosts" b.hashKnownHosts
      ++ val "UserKnownHostsFile" b.userKnownHostsFile
      ++ val "ControlMaster" b.controlMaster
      ++ val "ControlPath" b.controlPath
      ++ val "ControlPersist" b.controlPersist
      ++ map (f: "  IdentityFile ${f}") b.identityFile
      ++ map (f: "  IdentityAgent ${f}") b.identityAgent
      ++ map (f: "  CertificateFile ${f}") b.certificateFile
      ++ lib.mapAttrsToList (n: v: "  ${n} ${v}") b.extraOptions
    );
  text2511 =
    s:
    let
      dflt = s.matchBlocks."*" or null;
    in
    ''
      ${lib.concatStringsSep "\n" (
        lib.mapAttrsToList (n: v: "${n} ${v}") s.extraOptionOverrides
        ++ lib.optional (s.includes != [ ]) ''
          Include ${lib.concatStringsSep " " s.includes}
        ''
        ++ map (e: block2511 e.name e.data) (dagTopoSort (removeAttrs s.matchBlocks [ "*" ]))
      )}

      ${if dflt != null then block2511 "*" dflt.data else ""}
        ${lib.replaceStrings [ "\n" ] [ "\n  " ] s.extraConfig}
    '';

  # ---------------------------------------------------- 26.05's freeform block
  headerOf = name: if lib.hasPrefix "Host " name || lib.hasPrefix "Match " name then name else "Host ${name}";
  settingsBlock = types.submodule (
    { dagName, ... }:
    {
      freeformType = types.attrsOf types.anything;
      options.header = mkOption {
        type = types.str;
        default = headerOf dagName;
      };
    }
  );
  # matchBlocks as 26.05 converts them: ssh's names, unset values left out
  legacySettings =
    b:
    lib.filterAttrs (_: v: v != null && v != [ ] && v != { }) {
      header = lib.head (
        lib.optional (b.match != null) "Match ${b.match}" ++ lib.optional (b.host != null) "Host ${b.host}" ++ [ null ]
      );
      Port = b.port;
      ForwardAgent = b.forwardAgent;
      ForwardX11 = if b.forwardX11 then true else null;
      ForwardX11Trusted = if b.forwardX11Trusted then true else null;
      IdentitiesOnly = b.identitiesOnly;
      IdentityFile = b.identityFile;
      IdentityAgent = b.identityAgent;
      User = b.user;
      HostName = b.hostname;
      ServerAliveInterval = b.serverAliveInterval;
      ServerAliveCountMax = b.serverAliveCountMax;
      SendEnv = b.sendEnv;
      Compression = b.compression;
      CheckHostIP = if b.checkHostIP then null else false;
      ProxyCommand = b.proxyCommand;
      ProxyJump = b.proxyJump;
      CertificateFile = b.certificateFile;
      AddressFamily = b.addressFamily;
      AddKeysToAgent = b.addKeysToAgent;
      HashKnownHosts = b.hashKnownHosts;
      UserKnownHostsFile = b.userKnownHostsFile;
      ControlMaster = b.controlMaster;
      ControlPath = b.controlPath;
      ControlPersist = b.controlPersist;
      __hmSshBlockExtraOptions = b.extraOptions;
    };
  render = v: if builtins.isBool v then yn v else toString v;
  # a list is one line per value, except the directives that take a list on one line
  commaLists = [ "IgnoreUnknown" "KexAlgorithms" "Ciphers" "MACs" "ProxyJump" "PreferredAuthentications" "HostKeyAlgorithms" ];
  spaceLists = [ "SendEnv" "UserKnownHostsFile" "GlobalKnownHostsFile" "CanonicalDomains" ];
  directive =
    indent: k: v:
    if v == null || v == [ ] || v == { } then
      [ ]
    else if k == "SetEnv" then
      [ "${indent}SetEnv ${lib.concatStringsSep " " (lib.mapAttrsToList (n: x: "${n}=\"${lib.escape [ "\"" "\\" ] (toString x)}\"") v)}" ]
    else if lib.elem k commaLists then
      [ "${indent}${k} ${lib.concatMapStringsSep "," render (lib.toList v)}" ]
    else if lib.elem k spaceLists then
      [ "${indent}${k} ${lib.concatMapStringsSep " " render (lib.toList v)}" ]
    else
      map (x: "${indent}${k} ${render x}") (lib.toList v);
  # a settings block's own `extraOptions` is refused (an assertion) and not written;
  # converted matchBlocks' extraOptions follow the directives, one "  key value\n" each
  block2605 =
    b:
    let
      extra = b.__hmSshBlockExtraOptions or { };
      s = removeAttrs b [ "header" "extraOptions" "__hmSshBlockExtraOptions" ];
      names = lib.optional (s ? IgnoreUnknown) "IgnoreUnknown" ++ lib.filter (n: n != "IgnoreUnknown") (lib.attrNames s);
    in
    lib.concatStringsSep "\n" (
      [ b.header ]
      ++ lib.concatMap (n: directive "  " n s.${n}) names
      ++ lib.optional (extra != { }) (lib.concatStrings (lib.mapAttrsToList (n: v: "  ${n} ${v}\n") extra))
    );
  text2605 =
    s:
    let
      dflt = s.settings."*" or null;
      global =
        lib.concatLists (lib.mapAttrsToList (directive "") s.extraOptionOverrides)
        ++ lib.optional (s.includes != [ ]) "Include ${lib.concatStringsSep " " s.includes}";
      sections =
        lib.optional (global != [ ]) (lib.concatStringsSep "\n" global)
        ++ map (e: block2605 e.data) (dagTopoSort (removeAttrs s.settings [ "*" ]))
        ++ lib.optional (dflt != null) (block2605 dflt.data)
        ++ lib.optional (s.extraConfig != "") ("  " + lib.replaceStrings [ "\n" ] [ "\n  " ] (lib.removeSuffix "\n" s.extraConfig));
    in
    lib.optionalString (sections != [ ]) (lib.concatStringsSep "\n\n" sections + "\n");

  # home-manager's file type, as far as a text file goes: `source` defaults to the
  # text written to the store (nixpkgs' writeTextFile keeps `text` on the derivation)
  homeFile = mkOption {
    type = types.attrsOf (
      types.submodule (
        { name, config, ... }:
        {
          options = {
            enable = mkOption { type = types.bool; default = true; };
            target = mkOption { type = types.str; default = name; };
            text = mkOption { type = types.nullOr types.lines; default = null; };
            source = mkOption { type = types.unspecified; };
            recursive = mkOption { type = types.bool; default = false; };
          };
          config.source = lib.mkIf (config.text != null) (
            lib.mkDefault {
              type = "derivation";
              name = "hm_${lib.replaceStrings [ "/" ] [ "" ] name}";
              outPath = "/nix/store/00000000000000000000000000000000-hm-file";
              inherit (config) text;
            }
          );
        }
      )
    );
    default = { };
  };

  # the options of home-manager's own modules that programs.ssh writes to
  homeOptions = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };
    home.file = homeFile;
  };

  module =
    { config, ... }:
    let
      s = config.programs.ssh;
    in
    {
      options = homeOptions // {
        programs.ssh = {
          enable = mkOption {
            type = types.bool;
            default = false;
          };
          enableDefaultConfig = mkOption {
            type = types.bool;
            default = true;
          };
          extraOptionOverrides = mkOption {
            type = if v2605 then types.attrsOf types.anything else types.attrsOf types.str;
            default = { };
          };
          includes = mkOption {
            type = types.listOf types.str;
            default = [ ];
          };
          extraConfig = mkOption {
            type = types.lines;
            default = "";
          };
          matchBlocks = mkOption {
            type = dagOf matchBlockModule;
            default = { };
          };
        }
        // lib.optionalAttrs v2605 {
          settings = mkOption {
            type = dagOf settingsBlock;
            default = { };
          };
        };
      };

      config = lib.mkIf s.enable (
        lib.mkMerge [
          {
            home.file.".ssh/config".text = if v2605 then text2605 s else text2511 s;
            assertions = [
              {
                assertion = s.extraConfig != "" -> (if v2605 then s.settings else s.matchBlocks) ? "*";
                message = "Cannot set `programs.ssh.extraConfig` if the default host block `*` is not declared.";
              }
            ];
          }
          (lib.optionalAttrs v2605 {
            assertions = [
              {
                assertion = lib.all (e: (e.data.extraOptions or { }) == { }) (lib.attrValues s.settings);
                message = "`programs.ssh.settings.*.extraOptions` is not supported.";
              }
            ];
            programs.ssh.settings = lib.mapAttrs (_: e: e // { data = legacySettings e.data; }) s.matchBlocks;
            warnings =
              lib.optional (s.matchBlocks != { }) "`programs.ssh.matchBlocks` is deprecated. Use `programs.ssh.settings`."
              ++ lib.mapAttrsToList (n: _: "`programs.ssh.matchBlocks.${n}.extraOptions` is deprecated.") (
                lib.filterAttrs (_: e: e.data.extraOptions != { }) s.matchBlocks
              );
          })
          (lib.mkIf s.enableDefaultConfig {
            warnings = [ "`programs.ssh` default values will be removed in the future." ];
            programs.ssh = if v2605 then { settings."*" = lib.mapAttrs' (n: lib.nameValuePair (lib.toUpper (lib.substring 0 1 n) + lib.substring 1 (-1) n)) defaults2511; } else { matchBlocks."*" = defaults2511; };
          })
        ]
      );
    };
in
{
  inherit dagTopoSort module homeOptions;
  sshConfigText = cfg: cfg.home.file.".ssh/config".text;
}
