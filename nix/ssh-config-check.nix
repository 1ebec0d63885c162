# What the real ssh would offer the diag hosts, read from the ~/.ssh/config text that
# home-manager renders (25.11 and 26.05 alike), not from the options that produced it:
# a value with a newline, a `Host` key inside a block, extraOptions, extraConfig and
# includes all end up in that one text, so one reader covers them all.
#
# ssh_config(5) and readconf.c, as far as they matter here:
#   - a line is `keyword args` or `keyword=args` (one '=' and whitespace may surround
#     the keyword, which may be quoted); keywords are case-insensitive; '#' starts a
#     comment line, or ends the arguments when it begins one;
#   - `Host` takes whitespace-separated patterns, '!' negates one; the host name is
#     lowercased, the patterns are not;
#   - `Match` takes criteria, each maybe negated; `host` and `originalhost` take a
#     comma-separated pattern list; `all`, `canonical` and `final` take no argument;
#   - for most keywords the first value obtained wins; IdentityFile and CertificateFile
#     accumulate over every matching block; Include reads files this module cannot see.
#
# findings { text, hosts = { alias = hostname; }, user, identityFile, allowIncludes }
# lists, per diag alias, every line that could give it another identity, user or host,
# and what its own block lacks; [ ] means `ssh -G alias` shows exactly the diag key.
{ lib }:

let
  inherit (import ./ssh-patterns.nix { inherit lib; }) matches;

  # arguments as readconf's argv_split sees them: quoted strings whole, '#' ends them
  argsOf =
    rest:
    let
      tokens = lib.filter builtins.isList (builtins.split "(\"[^\"]*\"|[^[:space:]\"]+)" rest);
      words = map (t: lib.removeSuffix "\"" (lib.removePrefix "\"" (builtins.head t))) tokens;
      upToComment =
        ws:
        if ws == [ ] || lib.hasPrefix "#" (builtins.head ws) then [ ] else [ (builtins.head ws) ] ++ upToComment (builtins.tail ws);
    in
    upToComment words;

  parseLine =
    n: line:
    let
      m = builtins.match "[[:space:]]*=?[[:space:]]*\"?([^[:space:]=\"]*)\"?[[:space:]]*=?[[:space:]]*(.*)" line;
      kw = lib.toLower (builtins.elemAt m 0);
    in
    if m == null || kw == "" || lib.hasPrefix "#" kw then
      null
    else
      {
        inherit n kw;
        args = argsOf (builtins.elemAt m 1);
        text = line;
      };

  # [ { header = null (the lines before any block) | line; lines = [ line ]; } ]
  blocksOf =
    text:
    let
      lines = lib.filter (l: l != null) (lib.imap1 parseLine (lib.splitString "\n" text));
      step =
        acc: l:
        if l.kw == "host" || l.kw == "match" then
          acc ++ [ { header = l; lines = [ ]; } ]
        else
          lib.init acc ++ [ ((lib.last acc) // { lines = (lib.last acc).lines ++ [ l ]; }) ];
    in
    builtins.foldl' step [ { header = null; lines = [ ]; } ] lines;

  # `Host` patterns: one accepting a candidate and no negated one; the positive
  # patterns are lowercased (matching more than ssh would), the negated ones are not.
  hostLineAccepts =
    args: name:
    let
      neg = map (lib.removePrefix "!") (lib.filter (lib.hasPrefix "!") args);
      pos = lib.filter (p: !(lib.hasPrefix "!" p)) args;
    in
    lib.any (p: matches name (lib.toLower p)) pos && !(lib.any (matches name) neg);

  # a `Match host` pattern list (match_hostname lowercases both sides)
  listAccepts =
    list: name:
    let
      ps = lib.splitString "," (lib.toLower list);
      neg = map (lib.removePrefix "!") (lib.filter (lib.hasPrefix "!") ps);
      pos = lib.filter (p: !(lib.hasPrefix "!" p)) ps;
    in
    lib.any (matches name) pos && !(lib.any (matches name) neg);

  # The host criteria of a Match line: only a positive `host`/`originalhost` that
  # accepts no candidate rules the block out; anything else (exec, user, all, an
  # unknown criterion, a negated host) may match.
  matchHostLists =
    args:
    if args == [ ] then
      [ ]
    else
      let
        t = builtins.head args;
        kv = builtins.match "([^=]*)=(.*)" t;
        k = lib.toLower (if kv != null then builtins.elemAt kv 0 else t);
        bare = lib.elem (lib.removePrefix "!" k) [ "all" "canonical" "final" ];
        takes = kv == null && !bare;
        arg = if kv != null then builtins.elemAt kv 1 else if takes && builtins.length args > 1 then builtins.elemAt args 1 else "*";
        rest = builtins.genList (i: builtins.elemAt args (i + (if takes then 2 else 1))) (
          lib.max 0 (builtins.length args - (if takes then 2 else 1))
        );
      in
      lib.optional (lib.elem k [ "host" "originalhost" ]) arg ++ matchHostLists rest;

  mayMatch =
    block: names:
    let
      h = block.header;
    in
    if h == null then
      true
    else if h.kw == "host" then
      lib.any (hostLineAccepts h.args) names
    else
      lib.all (list: lib.any (listAccepts list) names) (matchHostLists h.args);

  show = l: "line ${toString l.n} `${lib.trim l.text}`";
  headerText = b: if b.header == null then "before any Host block" else "in `${lib.trim b.header.text}`";
  values = kw: b: map (l: lib.concatStringsSep " " l.args) (lib.filter (l: l.kw == kw) b.lines);

  # keywords that add an identity (or files with more configuration)
  adding = [ "identityfile" "certificatefile" "include" ];
  # keywords whose first value decides who we are and what we may offer
  deciding = [ "user" "hostname" "identitiesonly" "identityagent" ];

  findingsFor =
    {
      blocks,
      alias,
      hostname,
      user,
      identityFile,
      allowIncludes,
    }:
    let
      names = lib.unique (map lib.toLower [ alias hostname ]);
      indexed = lib.imap0 (i: b: b // { inherit i; }) blocks;
      owns = lib.filter (b: b.header != null && b.header.kw == "host" && map lib.toLower b.header.args == [ (lib.toLower alias) ]) indexed;
      own = if owns == [ ] then null else builtins.head owns;
      ownAt = if own == null then builtins.length blocks else own.i;
      expected = {
        user = [ user ];
        hostname = [ hostname ];
        identitiesonly = [ "yes" ];
        identityagent = [ "none" ];
        identityfile = [ identityFile ];
      };
      harmless = l: (l.kw == "identitiesonly" && map lib.toLower l.args == [ "yes" ]) || (l.kw == "identityagent" && map lib.toLower l.args == [ "none" ]);
      # { at, alias, kind } where `at` names the line and its block
      flag =
        b: l:
        lib.optional (!(l.kw == "include" && allowIncludes)) {
          at = "${show l} ${headerText b}";
          inherit alias;
          kind =
            if l.kw == "include" then
              "include"
            else if b.header == null then
              "global"
            else if own != null && b.i == own.i then
              "own"
            else
              "block";
        };
      before = lib.concatMap (
        b: lib.concatMap (l: lib.optionals (lib.elem l.kw (adding ++ deciding) && !harmless l) (flag b l)) b.lines
      ) (lib.filter (b: b.i < ownAt && mayMatch b names) indexed);
      after = lib.concatMap (b: lib.concatMap (l: lib.optionals (lib.elem l.kw adding) (flag b l)) b.lines) (
        lib.filter (b: b.i > ownAt && mayMatch b names) indexed
      );
      ownLacks = lib.optionals (own != null) (
        lib.concatLists (
          lib.mapAttrsToList (
            kw: want:
            let
              got = values kw own;
            norm = vs: if lib.elem kw [ "identitiesonly" "identityagent" ] then map lib.toLower vs else vs;
            in
            lib.optional (norm got != want) {
              at = "the diag block `Host ${alias}` has ${kw} ${builtins.toJSON got}";
              inherit alias;
              kind = "want ${builtins.toJSON want}";
            }
          ) expected
        )
        ++ lib.concatMap (l: lib.optionals (lib.elem l.kw [ "certificatefile" "include" ]) (flag own l)) own.lines
      );
    in
    lib.optional (own == null) {
      at = "no `Host ${alias}` block in ~/.ssh/config";
      inherit alias;
      kind = "missing";
    }
    ++ before
    ++ ownLacks
    ++ after;
in
{
  inherit blocksOf mayMatch;

  findings =
    {
      text,
      hosts,
      user,
      identityFile,
      allowIncludes ? false,
    }:
    let
      blocks = blocksOf text;
      all = lib.concatLists (
      lib.mapAttrsToList (
        alias: hostname:
        findingsFor {
          inherit
            blocks
            alias
            hostname
            user
            identityFile
            allowIncludes
            ;
        }
      ) hosts
      );
      # one finding per line, naming every diag host it reaches
      byLine = lib.groupBy (f: f.at) all;
    in
    map (
      at:
      let
        fs = byLine.${at};
        aliases = map (f: f.alias) fs;
        kind = (builtins.head fs).kind;
        advice =
          if kind == "include" then
            "ssh reads that file for them too, and this module cannot see what it sets; set programs.diagClient.allowIncludes once post-deploy-check passes"
          else if kind == "global" then
            "it applies to every host; move it into a block that excludes them"
          else if kind == "own" then
            "remove it from the diag block"
          else if kind == "missing" then
            "programs.diagClient writes it; was it overridden?"
          else if kind == "block" then
            "exclude them from that block (e.g. `Host * ${lib.concatMapStringsSep " " (a: "!${a}") aliases}`)"
          else
            lib.removePrefix "want " kind;
      in
      "${at}: ${if lib.hasPrefix "want " kind then "it must be" else "ssh would use it for ${lib.concatStringsSep ", " aliases};"} ${advice}"
    ) (lib.unique (map (f: f.at) all));
}
