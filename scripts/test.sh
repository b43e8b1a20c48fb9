#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the tools the tests use, then checks
# formatting and lints, runs each fuzz target briefly, then every test.
# Usage: scripts/test.sh [nextest filter args]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "cargo not found: install Rust >= 1.89 (https://rustup.rs)" >&2; exit 1; }

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# Each fuzz target briefly (nightly toolchain and cargo-fuzz; see docs/fuzzing.md).
bash scripts/fuzz.sh 10
cargo test --workspace --locked --doc
# The full suite last, so its summary closes the run.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
