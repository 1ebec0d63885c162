{
  description = "diag-wrapper: read-only SSH ForceCommand wrapper, NixOS module and home-manager client";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (pkgs: rec {
        diag-wrapper = pkgs.callPackage ./nix/package.nix { };
        default = diag-wrapper;
      });

      nixosModules = {
        default = ./nix/module.nix;
        web-02 = ./nix/hosts/web-02.nix;
      };

      # home-manager's current name for modules (homeManagerModules: the older one, kept)
      homeModules.default = ./nix/client.nix;
      homeManagerModules = self.homeModules;

      # pkgs.diag-wrapper for hosts that build it from their own nixpkgs
      overlays.default = final: _prev: {
        diag-wrapper = final.callPackage ./nix/package.nix { };
      };

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        web-02 = import ./nix/tests/web-02.nix {
          inherit pkgs;
          diagPackage = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      });
    };
}
