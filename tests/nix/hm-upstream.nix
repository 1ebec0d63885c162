# nix/client.nix with a real home-manager checkout's programs.ssh (not the stand-in),
# for every case in client-cases.nix: tests/nix/test_hm_upstream.py compares the text,
# warnings and refusals with the stand-in's (nix/tests/hm-ssh.nix). Runs where
# HOME_MANAGER points at a checkout (25.11 or 26.05); nothing of it is kept here.
{ nixpkgsLib, homeManager }:

let
  nixpkgs = import nixpkgsLib;
  # a lib-only checkout has no maintainer list; home-manager's lib adds to it
  withMaintainers =
    if builtins.pathExists (nixpkgsLib + "/../maintainers/maintainer-list.nix") then
      nixpkgs
    else
      nixpkgs.extend (_: _: { maintainers = { }; });
  lib = import (homeManager + "/modules/lib/stdlib-extended.nix") withMaintainers;
  inherit (lib) mkOption types;

  # the parts of home-manager's own modules that programs.ssh writes to: the
  # stand-in's (assertions, warnings, home.file's file type), and what the real
  # module also touches
  base = {
    imports = [ { options = (import ../../nix/tests/hm-ssh.nix { inherit lib; }).homeOptions; } ];
    options = {
      meta = mkOption { type = types.attrsOf types.unspecified; default = { }; };
      home.packages = mkOption { type = types.listOf types.unspecified; default = [ ]; };
    };
    config._module.args.pkgs = { };
  };
  evalClient =
    modules:
    (lib.evalModules {
      modules = [
        base
        (homeManager + "/modules/programs/ssh.nix")
        ../../nix/client.nix
        {
          programs.diagClient = {
            enable = true;
            identityFile = "/run/secrets/diag-ssh-key-for-tests";
            hosts.extra-host.hostname = "extra.example.invalid";
          };
        }
      ]
      ++ modules;
    });
  release = if (evalClient [ ]).options.programs.ssh ? settings then "26.05" else "25.11";
in
{
  inherit release;
  cases = lib.mapAttrs (
    _: c:
    let
      cfg = (evalClient c.modules.${release}).config;
    in
    {
      inherit (c) refused;
      notTheText = c.notTheText or false;
      unshowable = c.unshowable or false;
      failed = map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
      inherit (cfg) warnings;
      text = cfg.home.file.".ssh/config".text;
    }
  ) (import ./client-cases.nix);
}
