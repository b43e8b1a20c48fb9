#!/usr/bin/env bash
# Benchmark: what emulation costs. Cold builds (fresh store, packages from the lock) of
# recipes/multiarch.toml for amd64 and for arm64 (its `packages` and `run` steps and the
# bootstrap's maintainer scripts under qemu-user), and, with `--vm`, of the debian-vm
# recipes for both architectures as qcow2. Prints each time and the arm64/amd64 ratios.
# Needs qemu-user-static with a registered aarch64 binfmt handler
# (scripts/install-test-deps.sh sets it up). RUNS=N repeats each build (median taken).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/imgbuild
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
runs=${RUNS:-1}
now() { date +%s.%N; }

# Median wall time of $runs cold builds: cold RECIPE PLATFORM FORMAT
cold() {
  local times=()
  for i in $(seq "$runs"); do
    rm -rf "$work/store" "$work/out"
    local t0 t1
    t0=$(now)
    "$bin" build "$1" --locked --platform "$2" -f "$3" --store "$work/store" -o "$work/out" 2> /dev/null
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc -l)")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

report() {
  local what=$1 amd=$2 arm=$3
  printf '%-28s amd64 %7.2f s   arm64 %7.2f s   arm64/amd64 %5.2f\n' \
    "$what" "$amd" "$arm" "$(echo "$arm / $amd" | bc -l)"
}

amd=$(cold recipes/multiarch.toml linux/amd64 oci)
arm=$(cold recipes/multiarch.toml linux/arm64 oci)
report "minbase + package + run:" "$amd" "$arm"
if [ "${1:-}" = --vm ]; then
  amd=$(cold recipes/debian-vm.toml linux/amd64 qcow2)
  arm=$(cold recipes/debian-vm-arm64.toml linux/arm64 qcow2)
  report "debian-vm qcow2:" "$amd" "$arm"
fi
