{
  description = "imgbuild: declarative, reproducible image builds";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: rec {
        imgbuild = pkgs.rustPlatform.buildRustPackage {
          pname = "imgbuild";
          version = "0.1.0";
          src = pkgs.lib.cleanSource ./.;
          cargoLock.lockFile = ./Cargo.lock;
          nativeBuildInputs = [ pkgs.pkg-config ];
          buildInputs = [ pkgs.xz ];
          # The end-to-end tests need skopeo, umoci, qemu and a network mirror: run them
          # with scripts/test.sh outside the sandbox.
          cargoTestFlags = [ "--workspace" "--lib" ];
          meta = {
            description = "Declarative, reproducible image builds from one TOML recipe";
            mainProgram = "imgbuild";
            license = pkgs.lib.licenses.asl20;
          };
        };
        default = imgbuild;
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          inputsFrom = [ self.packages.${pkgs.system}.imgbuild ];
          packages = with pkgs; [
            cargo rustc clippy rustfmt cargo-nextest
            skopeo umoci e2fsprogs dosfstools mtools gptfdisk qemu cpio zstd
            syslinux OVMF docker-distribution apacheHttpd openssl
          ];
        };
      });
    };
}
