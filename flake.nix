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

      homeManagerModules.default = ./nix/client.nix;

      checks = forAllSystems (pkgs: {
        package = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        web-02 = import ./nix/tests/web-02.nix {
          inherit pkgs;
          diagPackage = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        };
      });
    };
}
