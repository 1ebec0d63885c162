# ssh_config(5) and sshd_config(5) PATTERNS, for module.nix (AcceptEnv, AllowUsers,
# AllowGroups, DenyUsers, DenyGroups) and ssh-config-check.nix (the client's Host and
# Match patterns): '*' any run of characters, '?' one, everything else literal.
{ lib }:

rec {
  toRegex =
    pat:
    lib.concatMapStrings (
      c:
      if c == "*" then
        ".*"
      else if c == "?" then
        "."
      else
        lib.escapeRegex c
    ) (lib.stringToCharacters pat);

  matches = name: pat: builtins.match (toRegex pat) name != null;

  # A pattern-list (a Host line): patterns separated by spaces or commas, '!' negates;
  # it matches when one plain pattern does and no negated one.
  matchesList =
    name: list:
    let
      ps = lib.filter (p: p != "") (lib.splitString " " (lib.replaceStrings [ "," "\t" ] [ " " " " ] list));
      neg = map (lib.removePrefix "!") (lib.filter (lib.hasPrefix "!") ps);
      pos = lib.filter (p: !(lib.hasPrefix "!" p)) ps;
    in
    lib.any (matches name) pos && !(lib.any (matches name) neg);
}
