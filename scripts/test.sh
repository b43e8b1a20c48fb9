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
# On a failure, each failing test's panic message is printed again last, where a log's
# tail shows it, with the disk's free space (the suite writes several GiB of stores and disks).
if cargo nextest --version >/dev/null 2>&1; then
  log="${CARGO_TARGET_DIR:-target}/nextest.log"
  status=0
  cargo nextest run --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "== why the failing tests failed ==" >&2
    awk '/panicked at/ {p=1} p {print} /^note: run with/ {p=0}' "$log" | cut -c1-400 | tail -n 200 >&2 || true
    df -h / /tmp >&2 || true
  fi
  exit "$status"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
