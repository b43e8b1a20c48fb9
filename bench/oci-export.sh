#!/usr/bin/env bash
# Benchmark: export a ~300 MB tree of many small and large files as an OCI image, against
# `tar -c | zstd -T0 -3 | sha256sum` of the same tree, measured in the same run.
# Usage: bench/oci-export.sh [TOTAL_MB]   (needs zstd; builds imgbuild in release mode)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-300}
cargo build --release --quiet
bin=$PWD/target/release/imgbuild
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen-tree.py "$work/src/tree" "$mb" >&2
printf '[image]\nname = "bench"\n[[step]]\ncopy = "tree"\nto = "/data"\n' > "$work/src/bench.toml"
sync

now() { date +%s.%N; }
# Warm the page cache the same way for both.
tar -C "$work/src/tree" -cf - . > /dev/null

t0=$(now)
tar -C "$work/src/tree" -cf - . | zstd -T0 -3 -q | sha256sum > /dev/null
t1=$(now)
"$bin" build "$work/src/bench.toml" --store "$work/store" -o "$work/out" --format oci 2> /dev/null
t2=$(now)
"$bin" build "$work/src/bench.toml" --store "$work/store" -o "$work/out2" --format oci 2> /dev/null
t3=$(now)

peer=$(echo "$t1 - $t0" | bc -l)
ours=$(echo "$t2 - $t1" | bc -l)
warm=$(echo "$t3 - $t2" | bc -l)
size=$(du -sm "$work/src/tree" | cut -f1)
printf 'tree: %s MiB\n' "$size"
printf 'tar | zstd -T0 -3 | sha256sum:  %6.2f s\n' "$peer"
printf 'imgbuild build --format oci:    %6.2f s (cold store)\n' "$ours"
printf 'imgbuild rebuild (all cached):  %6.2f s\n' "$warm"
printf 'ratio imgbuild/peer:            %6.2f\n' "$(echo "$ours / $peer" | bc -l)"
