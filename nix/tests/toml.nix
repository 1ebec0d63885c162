# A small TOML writer standing in for pkgs.formats.toml (remarshal), for code that
# cannot build with nixpkgs: the Nix harness (tests/nix/harness.nix) and
# scripts/render-host-policy, which writes policy/web-02.toml from
# nix/hosts/web-02-policy.nix. Tables as [a.b], lists of tables as [[a.b]], nested
# values inline.
{ lib }:

let
  inherit (lib) concatMapStrings concatMapStringsSep concatStringsSep;

  tomlKey = k: if builtins.match "[A-Za-z0-9_-]+" k != null then k else builtins.toJSON k;
  tomlValue =
    v:
    if builtins.isString v then
      builtins.toJSON v # JSON string escapes are valid TOML basic-string escapes
    else if builtins.isBool v then
      (if v then "true" else "false")
    else if builtins.isInt v || builtins.isFloat v then
      toString v
    else if builtins.isList v then
      "[" + concatMapStringsSep ", " tomlValue v + "]"
    else if builtins.isAttrs v then
      "{ " + concatStringsSep ", " (lib.mapAttrsToList (k: x: "${tomlKey k} = ${tomlValue x}") v) + " }"
    else
      throw "toTOML: cannot write a ${builtins.typeOf v}";
  isTableList = v: builtins.isList v && v != [ ] && lib.all builtins.isAttrs v;
  keyValues =
    attrs: names: concatMapStrings (n: "${tomlKey n} = ${tomlValue attrs.${n}}\n") names;
  renderTable =
    path: attrs:
    let
      names = builtins.attrNames attrs;
      scalars = lib.filter (n: !(builtins.isAttrs attrs.${n}) && !(isTableList attrs.${n})) names;
      tables = lib.filter (n: builtins.isAttrs attrs.${n}) names;
      tableLists = lib.filter (n: isTableList attrs.${n}) names;
      dotted = p: concatMapStringsSep "." tomlKey p;
    in
    (if path == [ ] then "" else "[${dotted path}]\n")
    + keyValues attrs scalars
    + "\n"
    + concatMapStrings (n: renderTable (path ++ [ n ]) attrs.${n}) tables
    + concatMapStrings (
      n:
      concatMapStrings (t: "[[${dotted (path ++ [ n ])}]]\n" + keyValues t (builtins.attrNames t) + "\n") attrs.${n}
    ) tableLists;

in
{
  inherit renderTable;
}
