#!/usr/bin/env bash
# The main job on a fresh Debian or Ubuntu machine: install what imgbuild uses, build it,
# and build the shipped Debian VM as a bootable qcow2. Needs Rust >= 1.89 (rustup.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-runtime-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
./target/release/imgbuild build recipes/debian-vm.toml --format qcow2
cat <<'MSG'

Boot it (serial console here; Ctrl-A X quits, root has no password):
  ./target/release/imgbuild run out/debian-vm.qcow2
MSG
