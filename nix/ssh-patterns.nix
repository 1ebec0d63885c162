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

  # Patterns of which '!' negates one: they accept a name when one plain pattern
  # matches it and no negated one.
  accepts =
    pats: name:
    let
      neg = map (lib.removePrefix "!") (lib.filter (lib.hasPrefix "!") pats);
      pos = lib.filter (p: !(lib.hasPrefix "!" p)) pats;
    in
    lib.any (matches name) pos && !(lib.any (matches name) neg);

  # A pattern-list: patterns separated by spaces or commas.
  matchesList =
    name: list: accepts (lib.filter (p: p != "") (lib.splitString " " (lib.replaceStrings [ "," "\t" ] [ " " " " ] list))) name;
}
