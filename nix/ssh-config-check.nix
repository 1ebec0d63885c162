# What the real ssh would offer the diag hosts, read from the ~/.ssh/config text that
# home-manager renders (25.11 and 26.05 alike), not from the options that produced it:
# a value with a newline, a `Host` key inside a block, extraOptions, extraConfig and
# includes all end up in that one text, so one reader covers them all.
#
# ssh_config(5) and readconf.c, as far as they matter here:
#   - a line is `keyword args` or `keyword=args` (one '=' and whitespace may surround
#     the keyword); keywords are case-insensitive; '#' starts a comment line, or ends
#     the arguments when it begins one;
#   - `Host` takes whitespace-separated patterns, '!' negates one; the host name is
#     lowercased, the patterns are not;
#   - `Match` takes criteria, each maybe negated; `host` and `originalhost` take a
#     comma-separated pattern list; `all`, `canonical` and `final` take no argument;
#   - for most keywords the first value obtained wins; IdentityFile and CertificateFile
#     accumulate over every matching block; Include reads files this module cannot see.
#
# findings { text, hosts = { alias = hostname or { hostname, port ? 22 }; }, user,
#            identityFile, allowIncludes }
# lists every line that could give a diag host another identity, user, host, port,
# connection, forward or local data (deny by default: a keyword not known harmless
# where it may apply is such a line), and what a diag block lacks; [ ] means
# `ssh -G alias` shows exactly the diag block's settings.
{ lib }:

let
  inherit (import ./ssh-patterns.nix { inherit lib; }) accepts;

  # A line as readconf reads it: an optional '=', the keyword, spaces/tabs or '=', then
  # the arguments: whole words or whole "double-quoted" words; an unquoted word
  # starting with '#' ends them. Where ssh could read the keyword differently (a quoted
  # keyword, whose '=' ssh keeps as part of the next word; control characters other
  # than tab, which Nix's [[:space:]] would split at and ssh does not; an empty keyword)
  # the line is `opaque` and refused. Where only the arguments could read differently
  # (single quotes, backslashes, a quote inside a word) it is `fuzzy`: a header that
  # may match anything, a value that equals nothing.
  ws = "[ \t]";
  parseLine =
    n: line:
    let
      m = builtins.match "${ws}*(=${ws}*)?([^ \t=\"]*)(${ws}*=${ws}*|${ws}+|$)(.*)" line;
      kw = lib.toLower (builtins.elemAt m 1);
      rest = builtins.elemAt m 3;
      pieces = builtins.split "(\"[^\"]*\"|[^ \t\"]+)" rest;
      seps = lib.filter builtins.isString pieces;
      words = map (t: builtins.head t) (lib.filter builtins.isList pieces);
      interior = if builtins.length seps > 2 then lib.sublist 1 (builtins.length seps - 2) seps else [ ];
      plainRest =
        !(lib.hasInfix "'" rest || lib.hasInfix "\\" rest)
        && lib.all (x: builtins.match "${ws}*" x != null) seps
        && lib.all (x: x != "") interior;
      upToComment =
        ws: if ws == [ ] || lib.hasPrefix "#" (builtins.head ws) then [ ] else [ (builtins.head ws) ] ++ upToComment (builtins.tail ws);
      # the words before the first one this check could misread (for a Match line,
      # whose criteria all must hold: a criterion among them that fails is enough)
      clean =
        i:
        let
          w = builtins.elemAt words i;
          sep = builtins.elemAt seps i;
          quoted = lib.hasPrefix "\"" w;
        in
        !(lib.hasInfix "'" w || lib.hasInfix "\\" w)
        && builtins.match "${ws}*" sep != null
        && (i == 0 || sep != "")
        # nothing glued to its end either (a stray quote)
        && builtins.match "${ws}*" (builtins.elemAt seps (i + 1)) != null
        && !(!quoted && (lib.hasInfix "=" w || lib.hasPrefix "#" w));
      cleanCount = lib.findFirst (i: !clean i) (builtins.length words) (lib.range 0 (builtins.length words - 1));
      unquote = w: if lib.hasPrefix "\"" w then lib.removeSuffix "\"" (lib.removePrefix "\"" w) else w;
      blank = builtins.match "${ws}*" line != null;
      control = builtins.match ".*[[:cntrl:]].*" (lib.replaceStrings [ "\t" ] [ "" ] line) != null;
      opaque = {
        inherit n;
        kw = null;
        opaque = true;
        text = line;
      };
    in
    if blank then
      null
    else if control || m == null then
      opaque
    else if lib.hasPrefix "#" kw then
      null
    else if kw == "" then
      opaque
    else
      {
        inherit n;
        # the obsolete spellings readconf still accepts
        kw = { identityfile2 = "identityfile"; smartcarddevice = "pkcs11provider"; }.${kw} or kw;
        opaque = false;
        fuzzy = !plainRest;
        args = map unquote (upToComment words);
        # what follows the keyword, as readconf hands ProxyJump and ProxyCommand over
        # (no quote or comment handling)
        raw = lib.trim rest;
        cleanArgs = map unquote (lib.take cleanCount words);
        text = line;
      };

  isHeader = l: l.kw == "host" || l.kw == "match";

  # [ { header = null (the lines before any block) | line; lines = [ line ]; } ], in
  # one pass over the lines
  blocksOf =
    text:
    let
      lines = lib.filter (l: l != null) (lib.imap1 parseLine (lib.splitString "\n" text));
      count = builtins.length lines;
      at = builtins.elemAt lines;
      heads = lib.filter (i: isHeader (at i)) (lib.range 0 (count - 1));
      starts = [ (-1) ] ++ heads;
      ends = heads ++ [ count ];
    in
    lib.imap0 (
      k: start:
      {
        header = if start < 0 then null else at start;
        lines = builtins.genList (j: at (start + 1 + j)) (builtins.elemAt ends k - start - 1);
      }
    ) starts;

  # `Host` patterns: the positive ones lowercased (matching more than ssh would), the
  # negated ones not (ssh lowercases the name, not the patterns)
  hostLineAccepts = args: accepts (map (p: if lib.hasPrefix "!" p then p else lib.toLower p) args);

  # a `Match host` pattern list (match_hostname lowercases both sides)
  listAccepts = list: accepts (lib.splitString "," (lib.toLower list));

  # A Match line's criteria in order, { k (lowercased, '!' kept), arg }: `all`,
  # `canonical` and `final` take no argument, every other criterion the next word
  # (no word here has an unquoted '=': cleanArgs stops before one).
  criteria =
    args:
    if args == [ ] then
      [ ]
    else
      let
        k = lib.toLower (builtins.head args);
        takes = !(lib.elem (lib.removePrefix "!" k) [ "all" "canonical" "final" ]);
      in
      [
        {
          inherit k;
          arg = if takes && builtins.length args > 1 then builtins.elemAt args 1 else "*";
        }
      ]
      ++ criteria (lib.drop (if takes then 2 else 1) args);

  # Only a positive `host`/`originalhost` that accepts no candidate rules a Match block
  # out; anything else (exec, user, all, an unknown criterion, a negated host) may match.
  excludes = names: c: lib.elem c.k [ "host" "originalhost" ] && !(lib.any (listAccepts c.arg) names);

  mayMatch =
    block: names:
    let
      h = block.header;
    in
    if h == null then
      true
    else if h.kw == "host" then
      h.fuzzy || lib.any (hostLineAccepts h.args) names
    else
      # the criteria read before anything unclear (readconf also splits them at '=');
      # one that excludes every name rules the block out
      !(lib.any (excludes names) (criteria h.cleanArgs));

  # Does a Match line run its `exec` command for a connection to one of `names`? ssh
  # evaluates the criteria in order and skips an exec once one has failed, so only a
  # positive host/originalhost that accepts none of the names, read before the exec,
  # keeps it from running; where the line is unclear after that, any `exec` counts.
  execRuns =
    names: h:
    let
      first = lib.findFirst (c: lib.removePrefix "!" c.k == "exec" || excludes names c) null (criteria h.cleanArgs);
    in
    h.kw == "match"
    && (
      if first != null then
        lib.removePrefix "!" first.k == "exec"
      else
        h.cleanArgs != h.args && lib.hasInfix "exec" (lib.toLower h.raw)
    );

  show = l: "line ${toString l.n} `${lib.trim l.text}`";
  headerText = b: if b.header == null then "before any Host block" else "in `${lib.trim b.header.text}`";
  # a flag as its words (ssh reads yes/no in any case), anything else as written
  values =
    kw: b:
    map (l: if l.fuzzy then "<unreadable: ${l.text}>" else if lib.elem kw flags then lib.concatStringsSep " " l.args else l.raw) (
      lib.filter (l: l.kw == kw) b.lines
    );

  # keywords that add an identity (or files with more configuration)
  adding = [ "identityfile" "certificatefile" "include" ];
  # Everything else a block that may reach a diag host says must be known harmless
  # there (deny by default: a keyword this list does not know, say a new one, is
  # refused): local behaviour, host-key policy, algorithms, timeouts, and what the
  # diag block's pins make moot (forwards under ClearAllForwardings, other methods
  # under PreferredAuthentications publickey, AddKeysToAgent without an agent,
  # ControlPersist without a ControlPath, the Canonical* knobs without
  # CanonicalizeHostname, ProxyUseFdpass without a ProxyCommand, LocalCommand without
  # PermitLocalCommand; and keywords ssh ignores or that fail closed). Not RemoteCommand:
  # it would run instead of nothing, with local %-tokens (user, home) in it.
  benign = [
    "addkeystoagent" "addressfamily" "batchmode" "bindaddress" "bindinterface"
    "canonicaldomains" "canonicalizefallbacklocal" "canonicalizemaxdots" "canonicalizepermittedcnames"
    "casignaturealgorithms" "channeltimeout" "checkhostip" "ciphers" "compression"
    "connectionattempts" "connecttimeout" "controlpersist" "dynamicforward" "enablesshkeysign"
    "escapechar" "exitonforwardfailure" "fingerprinthash" "forkafterauthentication"
    "forwardx11timeout" "gatewayports" "globalknownhostsfile" "gssapiauthentication" "gssapikexalgorithms"
    "gssapiclientidentity" "gssapidelegatecredentials" "gssapirenewalforcesrekey" "gssapiserveridentity"
    "gssapitrustdns" "hashknownhosts" "hostbasedacceptedalgorithms" "hostbasedauthentication"
    "hostbasedkeytypes" "hostkeyalgorithms" "hostkeyalias" "ignoreunknown" "ipqos" "keepalive"
    "challengeresponseauthentication" "protocol" "useroaming" "refuseconnection"
    "kbdinteractiveauthentication" "kbdinteractivedevices" "kexalgorithms"
    "localcommand" "localforward" "loglevel" "logverbose" "macs" "nohostauthenticationforlocalhost"
    "numberofpasswordprompts" "obscurekeystroketiming" "passwordauthentication"
    "permitremoteopen" "proxyusefdpass" "pubkeyacceptedalgorithms" "pubkeyacceptedkeytypes"
    "pubkeyauthentication" "rekeylimit" "remoteforward" "requesttty"
    "requiredrsasize" "revokedhostkeys" "securitykeyprovider" "serveralivecountmax"
    "serveraliveinterval" "sessiontype" "stdinnull" "streamlocalbindmask" "streamlocalbindunlink"
    "stricthostkeychecking" "syslogfacility" "tag" "tcpkeepalive" "tunnel" "tunneldevice"
    "updatehostkeys" "usekeychain" "userknownhostsfile" "verifyhostkeydns" "visualhostkey"
    "warnweakcrypto" "xauthlocation"
  ];
  # and what is harmless with one value only: Kerberos key exchange off (a patch some
  # distributions carry, so the diag block cannot pin it), no version addendum
  # (OpenSSH 10 sends it in the clear, ${ENV} expanded), and of the environment only
  # the locale and the terminal (SendEnv adds up over every block; any LC_ name goes,
  # as Debian's default `SendEnv LANG LC_*` sends)
  localeEnv = "-?(LANG|LANGUAGE|LC_[A-Z_]*[*]?|TERM|COLORTERM|TZ)";
  # SetEnv writes a value: only under the names locale(7) defines
  localeNames = "LANG|LANGUAGE|LC_(ALL|CTYPE|COLLATE|MESSAGES|MONETARY|NUMERIC|TIME|PAPER|NAME|ADDRESS|TELEPHONE|MEASUREMENT|IDENTIFICATION)";
  benignWith = {
    gssapikeyexchange = l: !l.fuzzy && asFlag l.args == [ "no" ];
    versionaddendum = l: !l.fuzzy && l.raw == "none";
    sendenv = l: !l.fuzzy && lib.all (w: builtins.match localeEnv w != null) l.args;
    # a literal value of the same names, as home-manager writes it (TERM="xterm-256color");
    # no '$' or '%', which a newer ssh might expand
    setenv = l: builtins.match "((${localeNames}|TERM|COLORTERM|TZ)=(\"[^\"\\$%]*\"|[^ \t\"'\\$%]*)[ \t]*)+" l.raw != null;
  };
  isBenign = l: lib.elem l.kw benign || (benignWith ? ${l.kw} && benignWith.${l.kw} l);
  # keywords whose first value decides who we are, what we may offer, and which
  # connection carries it: the diag block sets each, so only a line before it counts
  # The diag block pins these, with ssh's spelling (nix/client.nix writes them as they
  # are here, for both home-manager releases); `ours` is the same, keyed as readconf
  # compares keywords.
  pins = {
    IdentitiesOnly = "yes";
    IdentityAgent = "none";
    # token keys are offered before every IdentityFile, IdentitiesOnly or not
    PKCS11Provider = "none";
    # a shared master (ControlMaster/ControlPath) would carry the diag host's commands
    # over a connection made earlier as another user; so would a ProxyCommand using
    # one, and a ProxyJump authenticates to its own host (which may be the diag host)
    ControlMaster = "no";
    ControlPath = "none";
    ProxyJump = "none";
    ProxyCommand = "none";
    # a canonical name would be matched again against every block
    CanonicalizeHostname = "no";
    # the key and nothing else: no Kerberos ticket (and its delegation), no host key,
    # no password or keyboard-interactive prompt (ssh tries only the methods listed)
    PreferredAuthentications = "publickey";
    # no forwarding of any kind, not even a RemoteForward of the agent's socket; the
    # agent and X11 are not forwardings to ClearAllForwardings, nor are the forwards
    # the escape command line (~C) adds at run time
    ClearAllForwardings = "yes";
    ForwardAgent = "no";
    ForwardX11 = "no";
    ForwardX11Trusted = "no";
    EnableEscapeCommandline = "no";
    # no local command run with the connection's %-tokens (it could open a second
    # connection to the host with another key) or before authentication
    PermitLocalCommand = "no";
    KnownHostsCommand = "none";
  };
  ours = lib.mapAttrs' (k: lib.nameValuePair (lib.toLower k)) pins;
  pinned = [ "user" "hostname" "port" ] ++ lib.attrNames ours;
  # flags: yes/no/true/false in any case, as ssh reads them; everything else exactly
  flags = [
    "identitiesonly"
    "controlmaster"
    "canonicalizehostname"
    "clearallforwardings"
    "forwardagent"
    "forwardx11"
    "forwardx11trusted"
    "enableescapecommandline"
    "permitlocalcommand"
  ];
  asFlag = map (v: { true = "yes"; false = "no"; }.${lib.toLower v} or (lib.toLower v));
  normFor = kw: if lib.elem kw flags then asFlag else lib.id;

  findingsFor =
    {
      blocks,
      alias,
      hostname,
      port,
      user,
      identityFile,
      allowIncludes,
    }:
    let
      names = lib.unique (map lib.toLower [ alias hostname ]);
      indexed = lib.imap0 (i: b: b // { inherit i; }) blocks;
      # `Host alias` or `Host alias hostname` (so `ssh hostname` gets the diag block too)
      # (as written: ssh does not lowercase the patterns, so `Host WEB-02` is not ours)
      ownHeaders = [ [ alias ] (lib.unique [ alias hostname ]) ];
      owns = lib.filter (b: b.header != null && b.header.kw == "host" && !b.header.fuzzy && lib.elem b.header.args ownHeaders) indexed;
      own = if owns == [ ] then null else builtins.head owns;
      ownAt = if own == null then builtins.length blocks else own.i;
      expected = {
        user = [ user ];
        hostname = [ hostname ];
        port = [ (toString port) ];
        identityfile = [ identityFile ];
      }
      // lib.mapAttrs (_: v: [ v ]) ours;
      # before our block, a line saying what ours says changes nothing
      harmless = l: ours ? ${l.kw} && !l.fuzzy && normFor l.kw (values l.kw { lines = [ l ]; }) == [ ours.${l.kw} ];
      # { at, alias, kind } where `at` names the line and its block
      flag =
        b: l:
        lib.optional (!(l.kw == "include" && allowIncludes)) {
          at = "${show l} ${headerText b}";
          inherit alias hostname;
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
      # every line of every block that may reach this host, ours included
      reaching = lib.filter (b: mayMatch b names) indexed;
      wrong =
        b: l:
        if l.opaque then
          false # refused on its own, once
        else if lib.elem l.kw adding then
          !(own != null && b.i == own.i && l.kw == "identityfile") # ours: compared below
        else if lib.elem l.kw pinned then
          b.i < ownAt && !harmless l # after our block the first value is ours
        else
          !isBenign l;
      lines = lib.concatMap (b: lib.concatMap (l: lib.optionals (wrong b l) (flag b l)) b.lines) reaching;
      # a Match exec runs a local command with the connection's tokens (%h, %r): it
      # could log in to the host again with another key
      execs = lib.concatMap (
        b:
        lib.optional (b.header != null && !b.header.opaque && execRuns names b.header) {
          at = "${show b.header}";
          inherit alias hostname;
          kind = "exec";
        }
      ) indexed;
      ownLacks = lib.optionals (own != null) (
        lib.concatLists (
          lib.mapAttrsToList (
            kw: want:
            let
              got = values kw own;
            in
            lib.optional (normFor kw got != want) {
              at = "the diag block `Host ${alias}` has ${kw} ${builtins.toJSON got}";
              inherit alias hostname;
              kind = "want ${builtins.toJSON want}";
            }
          ) expected
        )
      );
    in
    lib.optional (own == null) {
      at = "no `Host ${alias}` block in ~/.ssh/config";
      inherit alias hostname;
      kind = "missing";
    }
    ++ lines
    ++ execs
    ++ ownLacks;
in
{
  inherit blocksOf mayMatch pins;

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
        alias: h:
        let
          host = if builtins.isString h then { hostname = h; } else h;
        in
        findingsFor {
          inherit (host) hostname;
          port = host.port or 22;
          inherit
            blocks
            alias
            user
            identityFile
            allowIncludes
            ;
        }
      ) hosts
      );
      opaque = map (l: "${show l}: ssh could read its keyword differently from this check (a quoted keyword, a control character, no keyword); write it plainly") (
        lib.filter (l: l.opaque) (lib.concatMap (b: lib.optional (b.header != null) b.header ++ b.lines) blocks)
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
          else if kind == "exec" then
            "its command runs for them with their %h and %r (it could log in again with another key); put a host criterion that leaves them out before `exec` (e.g. `Match host github.com exec …`)"
          else if kind == "missing" then
            "programs.diagClient writes it; was it overridden?"
          else if kind == "block" then
            "exclude them from that block (e.g. `Host * ${lib.concatStringsSep " " (lib.unique (lib.concatMap (f: [ "!${f.alias}" "!${f.hostname}" ]) fs))}`; the host name counts too: ssh matches it when it parses the configuration again)"
          else
            lib.removePrefix "want " kind;
      in
      "${at}: ${if lib.hasPrefix "want " kind then "it must be" else "ssh would use it for ${lib.concatStringsSep ", " aliases};"} ${advice}"
    ) (lib.unique (map (f: f.at) all))
    ++ opaque;
}
