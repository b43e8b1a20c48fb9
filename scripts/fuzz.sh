#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time; see docs/fuzzing.md.
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 20 s, all targets)
# Exits non-zero on the first crash, hang or out-of-memory, naming the input that does it.
# New inputs the fuzzer finds go to a temporary directory; fuzz/corpus/ is only read.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
[[ $seconds =~ ^[0-9]+$ ]] || { echo "fuzz.sh: SECONDS_PER_TARGET must be a number, got '$seconds'" >&2; exit 2; }

export PATH="$HOME/.cargo/bin:$PATH"
command -v rustup >/dev/null || { echo "fuzz.sh: rustup not found; install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz.sh: the nightly Rust toolchain is missing (cargo-fuzz needs it);" >&2
  echo "         install it with: rustup toolchain install nightly --profile minimal" >&2
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Release build with debug assertions and overflow checks (an overflow on untrusted input
# is a bug too). No sanitizer: the targets are safe Rust and cargo-fuzz does not
# instrument the C decompressors anyway; 16 codegen units keep the build short.
build=(--release --debug-assertions --sanitizer none --codegen-units 16)
start=$SECONDS
cargo +nightly fuzz build "${build[@]}"
echo "fuzz.sh: built ${#targets[@]} targets in $((SECONDS - start)) s"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "$work/$t" "fuzz/corpus/$t"
  log="$work/$t.log"
  echo "fuzz.sh: $t for ${seconds} s"
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: 2 GiB is an OOM.
  if ! cargo +nightly fuzz run "${build[@]}" "$t" "$work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    artifact=$(sed -n 's/.*Test unit written to \(\S*\).*/\1/p' "$log" | tail -n 1)
    echo >&2
    echo "fuzz.sh: target '$t' failed; the input that does it: ${artifact:-(none written; see the log above)}" >&2
    [[ -n $artifact ]] && echo "fuzz.sh: reproduce with: cargo +nightly fuzz run ${build[*]} $t $artifact" >&2
    exit 1
  fi
  grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr -s ' \n' ' ' | sed "s/^/fuzz.sh: $t: /"
  echo
done
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds} s each without a crash"
