# nix/client.nix's cases: each a configuration in each home-manager release's vocabulary
# ({ "25.11" = modules; "26.05" = modules; }) and whether the module must refuse it (with
# a word of the message). tests/nix/harness.nix evaluates them with the stand-ins,
# tests/nix/test_client_ssh.py reads every rendered text with the real `ssh -G`, and
# tests/nix/test_hm_upstream.py evaluates them with a real home-manager checkout.
let
  both = m: {
    "25.11" = m;
    "26.05" = m;
  };
  perRelease = old: new: {
    "25.11" = old;
    "26.05" = new;
  };
in
{
  plain = {
    modules = both [ ];
    refused = null;
  };
  # a broad block sorting before web-02 by name, with its own user: ours still comes first
  broad = {
    modules = perRelease [
      {
        programs.ssh.matchBlocks."a-web-*" = { host = "web-* extra-*"; user = "alice"; };
        programs.ssh.matchBlocks.other = { host = "* !web-02 !web-02.cloonar.com !extra-host !extra.example.invalid"; identityFile = "~/.ssh/id_personal"; };
      }
    ] [
      {
        programs.ssh.settings."a-web-*" = { header = "Host web-* extra-*"; User = "alice"; };
        programs.ssh.settings.other = { header = "Host * !web-02 !web-02.cloonar.com !extra-host !extra.example.invalid"; IdentityFile = "~/.ssh/id_personal"; };
      }
    ];
    refused = null;
  };
  # a Match block that names another host keeps its key
  matchOther = {
    modules = perRelease [ { programs.ssh.matchBlocks.gh = { match = "host github.com exec \"true\""; identityFile = "~/.ssh/id_gh"; }; } ] [
      { programs.ssh.settings."Match host github.com exec \"true\"".IdentityFile = "~/.ssh/id_gh"; }
    ];
    refused = null;
  };
  star = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".identityFile = "~/.ssh/id_personal"; } ] [
      { programs.ssh.settings."*".IdentityFile = "~/.ssh/id_personal"; }
    ];
    refused = "in `Host *`";
  };
  # upstream's `host` is null unless set: the block is written as `Host <name>`
  namedPattern = {
    modules = both [ { programs.ssh.matchBlocks."web-*".identityFile = "~/.ssh/id_personal"; } ];
    refused = "in `Host web-*`";
  };
  certificate = {
    modules = perRelease [ { programs.ssh.matchBlocks.webs = { host = "web-0?"; certificateFile = "~/.ssh/c.pub"; }; } ] [
      { programs.ssh.settings."web-0?".CertificateFile = "~/.ssh/c.pub"; }
    ];
    refused = "CertificateFile ~/.ssh/c.pub";
  };
  negatedOtherCase = {
    # ssh lowercases the host name, not the patterns: `!WEB-02` excludes nothing
    modules = perRelease [ { programs.ssh.matchBlocks.up = { host = "* !WEB-02 !EXTRA-HOST"; identityFile = "~/.ssh/id_personal"; }; } ] [
      { programs.ssh.settings."* !WEB-02 !EXTRA-HOST".IdentityFile = "~/.ssh/id_personal"; }
    ];
    refused = "!WEB-02";
  };
  matchAll = {
    modules = perRelease [ { programs.ssh.matchBlocks.m = { match = "all"; identityFile = "~/.ssh/id_m"; }; } ] [
      { programs.ssh.settings."Match all".IdentityFile = "~/.ssh/id_m"; }
    ];
    refused = "in `Match all`";
  };
  matchNegatedHost = {
    modules = perRelease [ { programs.ssh.matchBlocks.m = { match = "!host github.com"; identityFile = "~/.ssh/id_m"; }; } ] [
      { programs.ssh.settings."Match !host github.com".IdentityFile = "~/.ssh/id_m"; }
    ];
    refused = "Match !host github.com";
  };
  globalIdentity = {
    modules = both [ { programs.ssh.extraOptionOverrides.IdentityFile = "~/.ssh/id_personal"; } ];
    refused = "before any Host block";
  };
  globalUser = {
    modules = both [ { programs.ssh.extraOptionOverrides.User = "bob"; } ];
    refused = "User bob";
  };
  globalNoIdentitiesOnly = {
    modules = both [ { programs.ssh.extraOptionOverrides.IdentitiesOnly = "no"; } ];
    refused = "IdentitiesOnly no";
  };
  globalHarmless = {
    modules = both [ { programs.ssh.extraOptionOverrides = { IdentitiesOnly = "yes"; ServerAliveInterval = "30"; }; } ];
    refused = null;
  };
  extraConfig = {
    modules = perRelease [
      {
        programs.ssh.matchBlocks."*".forwardAgent = false;
        programs.ssh.extraConfig = "identityfile ~/.ssh/id_personal";
      }
    ] [
      {
        programs.ssh.settings."*".ForwardAgent = false;
        programs.ssh.extraConfig = "identityfile ~/.ssh/id_personal";
      }
    ];
    refused = "identityfile ~/.ssh/id_personal";
  };
  includes = {
    modules = both [ { programs.ssh.includes = [ "~/.ssh/config.d/*" ]; } ];
    refused = "allowIncludes";
  };
  includesAllowed = {
    modules = both [
      {
        programs.ssh.includes = [ "~/.ssh/config.d/*" ];
        programs.diagClient.allowIncludes = true;
      }
    ];
    refused = null;
  };
  # a value with a newline writes lines of its own
  newline = {
    modules = perRelease [ { programs.ssh.matchBlocks.foo.user = "x\nHost web-02\n  IdentityFile ~/.ssh/inj"; } ] [
      { programs.ssh.settings.foo.User = "x\nHost web-02\n  IdentityFile ~/.ssh/inj"; }
    ];
    refused = "IdentityFile ~/.ssh/inj";
  };
  # a `Host` directive inside a freeform block starts a block of its own
  nestedHost = {
    modules = perRelease [ { programs.ssh.matchBlocks.foo.extraOptions = { Host = "web-02"; IdentityFile = "~/.ssh/nested"; }; } ] [
      { programs.ssh.settings.foo = { Host = "web-02"; IdentityFile = "~/.ssh/nested"; }; }
    ];
    refused = "IdentityFile ~/.ssh/nested";
  };
  # home-manager 26.05 still takes matchBlocks (with its warning) and converts them
  legacyMatchBlocks = {
    modules = both [ { programs.ssh.matchBlocks.webs = { host = "web-*"; identityFile = "~/.ssh/id_personal"; }; } ];
    refused = "in `Host web-*`";
  };
  ownBlockCertificate = {
    modules = perRelease [ { programs.ssh.matchBlocks.web-02.certificateFile = "~/.ssh/c.pub"; } ] [
      { programs.ssh.settings.web-02.CertificateFile = "~/.ssh/c.pub"; }
    ];
    refused = "CertificateFile ~/.ssh/c.pub";
  };
  # readconf's obsolete spelling of IdentityFile
  identityFile2 = {
    modules = perRelease [ { programs.ssh.extraOptionOverrides.IdentityFile2 = "~/.ssh/personal"; } ] [
      { programs.ssh.settings."*".IdentityFile2 = "~/.ssh/personal"; }
    ];
    refused = "IdentityFile2 ~/.ssh/personal";
  };
  # readconf splits Match criteria at '=' too
  matchEquals = {
    modules = perRelease [ { programs.ssh.matchBlocks.work = { match = "host = *.cloonar.com"; identityFile = "~/.ssh/work"; }; } ] [
      { programs.ssh.settings."Match host = *.cloonar.com".IdentityFile = "~/.ssh/work"; }
    ];
    refused = "IdentityFile ~/.ssh/work";
  };
  # connection sharing and canonical names for every host: ours say no first
  sharingForOthers = {
    modules = perRelease [
      {
        programs.ssh.matchBlocks."*" = { controlMaster = "auto"; controlPath = "~/.ssh/cm-%h-%p"; controlPersist = "10m"; extraOptions.CanonicalizeHostname = "yes"; };
      }
    ] [
      {
        programs.ssh.settings."*" = { ControlMaster = "auto"; ControlPath = "~/.ssh/cm-%h-%p"; ControlPersist = "10m"; CanonicalizeHostname = true; };
      }
    ];
    refused = null;
  };
  globalSharing = {
    modules = both [ { programs.ssh.extraOptionOverrides = { ControlMaster = "auto"; ControlPath = "~/.ssh/cm-%h-%p"; }; } ];
    refused = "ControlMaster auto";
  };
  globalCanonical = {
    modules = both [ { programs.ssh.extraOptionOverrides.CanonicalizeHostname = "yes"; } ];
    refused = "CanonicalizeHostname yes";
  };
  # quoting ssh reads differently from a plain split: a header that may match anything
  singleQuotes = {
    modules = perRelease [ { programs.ssh.matchBlocks.q = { host = "'web-02'"; identityFile = "~/.ssh/q"; }; } ] [
      { programs.ssh.settings."'web-02'".IdentityFile = "~/.ssh/q"; }
    ];
    refused = "in `Host 'web-02'`";
  };
  quoteInKeyword = {
    modules = both [ { programs.ssh.extraOptionOverrides."U\"ser\"" = "root"; } ];
    refused = "could read its keyword differently";
  };
  # what ssh reads is the deployed file: it must be the rendered text
  fileSource = {
    modules = both [ { home.file.".ssh/config".source = "/elsewhere/ssh_config"; } ];
    refused = "its source is not the text";
    notTheText = true;
  };
  fileDisabled = {
    modules = both [ { home.file.".ssh/config".enable = false; } ];
    refused = "is disabled";
    notTheText = true;
  };
  # the typed options beyond the diag block's, and extraOptions, as each release writes them
  legacyRich = {
    modules = both [
      {
        programs.ssh.matchBlocks.gh = {
          host = "github.com";
          user = "git";
          serverAliveInterval = 60;
          proxyJump = "bastion";
          controlMaster = "auto";
          controlPath = "~/.ssh/cm-%r@%h";
          checkHostIP = false;
          sendEnv = [ "LANG" "LC_*" ];
          addressFamily = "inet";
          extraOptions.PubkeyAcceptedAlgorithms = "+ssh-rsa";
        };
      }
    ];
    refused = null;
  };
  # readconf keeps the '=' after a quoted keyword as part of the first word: `=!web-02`
  # is a plain pattern there, and the block matches
  quotedKeyword = {
    modules = both [
      {
        programs.ssh.extraOptionOverrides = {
          "\"Host\"" = "=!web-02 !web-02.cloonar.com !extra-host !extra.example.invalid *";
          User = "root";
        };
      }
    ];
    refused = "could read its keyword differently";
  };
  # ssh splits only at space and tab; a vertical tab is part of the word there
  verticalTab = {
    modules = perRelease [
      { programs.ssh.matchBlocks.gh = { match = "host *,${builtins.fromJSON "\"\\u000b\""}host${builtins.fromJSON "\"\\u000b\""}github.com"; identityFile = "~/.ssh/gh"; }; }
    ] [
      { programs.ssh.settings.gh = { header = "Match host *,${builtins.fromJSON "\"\\u000b\""}host${builtins.fromJSON "\"\\u000b\""}github.com"; IdentityFile = "~/.ssh/gh"; }; }
    ];
    refused = "could read its keyword differently";
  };
  # before our block only exactly our value is harmless: an agent socket named NONE is not none
  globalAgentCase = {
    modules = both [ { programs.ssh.extraOptionOverrides.IdentityAgent = "NONE"; } ];
    refused = "IdentityAgent NONE";
  };
  globalJump = {
    modules = both [ { programs.ssh.extraOptionOverrides.ProxyJump = "root@web-02.cloonar.com"; } ];
    refused = "ProxyJump root@web-02.cloonar.com";
  };
  globalToken = {
    modules = both [ { programs.ssh.extraOptionOverrides.PKCS11Provider = "/run/opensc-pkcs11.so"; } ];
    refused = "PKCS11Provider";
  };
  globalPort = {
    modules = both [ { programs.ssh.extraOptionOverrides.Port = "2222"; } ];
    refused = "Port 2222";
  };
  # after our block, jumps, proxies, tokens and quoting elsewhere are the user's own
  othersJumpAndQuote = {
    modules = perRelease [
      {
        programs.ssh.matchBlocks."*" = { proxyJump = "bastion"; extraOptions.PKCS11Provider = "/run/opensc-pkcs11.so"; };
        programs.ssh.matchBlocks.corp = { match = "host github.com exec \"grep -q 'corp' /etc/hostname\""; identityFile = "~/.ssh/corp"; };
      }
    ] [
      {
        programs.ssh.settings."*" = { ProxyJump = "bastion"; PKCS11Provider = "/run/opensc-pkcs11.so"; };
        programs.ssh.settings.corp = { header = "Match host github.com exec \"grep -q 'corp' /etc/hostname\""; IdentityFile = "~/.ssh/corp"; };
      }
    ];
    refused = null;
  };
  # a directory linked at ~/.ssh, or the target spelled another way
  fileDirectory = {
    modules = both [ { home.file.".ssh" = { source = "/elsewhere/dot-ssh"; recursive = true; }; } ];
    refused = "could put another file at ~/.ssh/config";
    notTheText = true;
  };
  fileOtherSpelling = {
    modules = both [ { home.file."!ssh" = { target = ".ssh//config"; text = "Host *\n  User root\n"; }; } ];
    refused = "could put another file at ~/.ssh/config";
    notTheText = true;
  };
  # readconf takes ProxyJump and ProxyCommand as the rest of the line: `none #x` is a host
  globalJumpComment = {
    modules = both [ { programs.ssh.extraOptionOverrides.ProxyJump = "none #x"; } ];
    refused = "ProxyJump none #x";
  };
  # Kerberos, other authentications and forwards in a later block: ours say no first
  othersAuthAndForwards = {
    modules = perRelease [
      {
        programs.ssh.matchBlocks."*".extraOptions = {
          GSSAPIAuthentication = "yes";
          GSSAPIDelegateCredentials = "yes";
          PasswordAuthentication = "yes";
          RemoteForward = "/tmp/fwd.sock /tmp/agent.sock";
        };
      }
    ] [
      {
        programs.ssh.settings."*" = {
          GSSAPIAuthentication = true;
          GSSAPIDelegateCredentials = true;
          PasswordAuthentication = true;
          RemoteForward = "/tmp/fwd.sock /tmp/agent.sock";
        };
      }
    ];
    refused = null;
  };
  # Kerberos key exchange cannot be pinned (only patched ssh knows the keyword)
  kerberosKex = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".extraOptions.GSSAPIKeyExchange = "yes"; } ] [
      { programs.ssh.settings."*".GSSAPIKeyExchange = true; }
    ];
    refused = "GSSAPIKeyExchange yes";
  };
  # X11 before our block, and the escape command line
  globalX11 = {
    modules = both [ { programs.ssh.extraOptionOverrides = { ForwardX11 = "yes"; ForwardX11Trusted = "yes"; }; } ];
    refused = "ForwardX11 yes";
  };
  globalEscape = {
    modules = both [ { programs.ssh.extraOptionOverrides.EnableEscapeCommandline = "yes"; } ];
    refused = "EnableEscapeCommandline yes";
  };
  # environment values are sent wherever the block matches
  sendToken = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".sendEnv = [ "GITHUB_TOKEN" "AWS_*" ]; } ] [
      { programs.ssh.settings."*".SendEnv = [ "GITHUB_TOKEN" "AWS_*" ]; }
    ];
    refused = "SendEnv GITHUB_TOKEN AWS_*";
  };
  setEnv = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".extraOptions.SetEnv = "TOKEN=hunter2"; } ] [
      { programs.ssh.settings."*".SetEnv.TOKEN = "hunter2"; }
    ];
    refused = "TOKEN";
  };
  # the locale and the terminal may go along
  sendLocale = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".sendEnv = [ "LANG" "LC_*" "TERM" ]; } ] [
      { programs.ssh.settings."*".SendEnv = [ "LANG" "LC_*" "TERM" ]; }
    ];
    refused = null;
  };
  # deny by default: a keyword the check does not know to be harmless (a new one, say)
  unknownKeyword = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".extraOptions.SendSecretsSomehow = "yes"; } ] [
      { programs.ssh.settings."*".SendSecretsSomehow = true; }
    ];
    refused = "SendSecretsSomehow";
    # this ssh does not know the keyword either (it refuses the file or, under
    # IgnoreUnknown, skips the line): what a newer one would do, ssh -G cannot show here
    unshowable = true;
  };
  # an ordinary laptop's global settings pass
  laptop = {
    modules = both [
      {
        programs.ssh.extraOptionOverrides = {
          IgnoreUnknown = "UseKeychain";
          UseKeychain = "yes";
          AddKeysToAgent = "yes";
          ServerAliveInterval = "60";
          HashKnownHosts = "yes";
          StrictHostKeyChecking = "accept-new";
        };
      }
    ];
    refused = null;
  };
  # a local command with the connection could log in again with another key
  localCommandForOthers = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".extraOptions = { PermitLocalCommand = "yes"; LocalCommand = "rsync -a ~/dotfiles/ %h:"; }; } ] [
      { programs.ssh.settings."*" = { PermitLocalCommand = true; LocalCommand = "rsync -a ~/dotfiles/ %h:"; }; }
    ];
    refused = null;
  };
  globalLocalCommand = {
    modules = both [ { programs.ssh.extraOptionOverrides = { PermitLocalCommand = "yes"; LocalCommand = "rsync -a ~/dotfiles/ %h:"; }; } ];
    refused = "PermitLocalCommand yes";
  };
  # old and ignored keywords an ordinary Host * still carries
  oldKeywords = {
    modules = perRelease [
      { programs.ssh.matchBlocks."*".extraOptions = { Protocol = "2"; UseRoaming = "no"; KeepAlive = "yes"; SetEnv = "TERM=xterm-256color"; }; }
    ] [
      { programs.ssh.settings."*" = { Protocol = 2; UseRoaming = false; KeepAlive = true; SetEnv.TERM = "xterm-256color"; }; }
    ];
    refused = null;
  };
  # a Match exec runs its command for every connection it is evaluated for
  execFirst = {
    modules = perRelease [ { programs.ssh.matchBlocks.corp = { match = "exec \"test -f ~/.corp\" host github.com"; identityFile = "~/.ssh/corp"; }; } ] [
      { programs.ssh.settings.corp = { header = "Match exec \"test -f ~/.corp\" host github.com"; IdentityFile = "~/.ssh/corp"; }; }
    ];
    refused = "its command runs for them";
    # ssh -G shows settings, not that a command ran
    unshowable = true;
  };
  # SetEnv writes a value: an LC_ name that is no locale category is refused
  setEnvLcSecret = {
    modules = perRelease [ { programs.ssh.matchBlocks."*".extraOptions.SetEnv = "LC_GITHUB_TOKEN=ghp_x"; } ] [
      { programs.ssh.settings."*".SetEnv.LC_GITHUB_TOKEN = "ghp_x"; }
    ];
    refused = "LC_GITHUB_TOKEN";
  };
}
