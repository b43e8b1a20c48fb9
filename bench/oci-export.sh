#!/usr/bin/env bash
# Benchmark: export a ~300 MB tree of many small and large files as an OCI image, against
# `tar -c | zstd -T0 -3 | sha256sum` of the same tree, measured in the same run.
# Usage: bench/oci-export.sh [TOTAL_MB]   (needs zstd and GNU time; builds imgbuild in
# release mode, or uses IMGBUILD_BIN=/path/to/imgbuild to compare builds)
# Wall times depend on the machine's load (printed first); CPU times (user+sys) less so.
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-300}
if [[ -n ${IMGBUILD_BIN:-} ]]; then
    bin=$IMGBUILD_BIN
else
    cargo build --release --quiet
    bin=$PWD/target/release/imgbuild
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/gen-tree.py "$work/src/tree" "$mb" >&2
printf '[image]\nname = "bench"\n[[step]]\ncopy = "tree"\nto = "/data"\n' > "$work/src/bench.toml"
sync

# Runs a command under GNU time; appends "wall cpu" (seconds) to $work/times.
timed() {
    /usr/bin/time -f '%e %U %S' -o "$work/t" "$@"
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$work/t" >> "$work/times"
}
# Warm the page cache the same way for both.
tar -C "$work/src/tree" -cf - . > /dev/null

uptime >&2
timed bash -c 'tar -C "$1" -cf - . | zstd -T0 -3 -q | sha256sum > /dev/null' - "$work/src/tree"
timed "$bin" build "$work/src/bench.toml" --store "$work/store" -o "$work/out" --format oci 2> /dev/null
timed "$bin" build "$work/src/bench.toml" --store "$work/store" -o "$work/out2" --format oci 2> /dev/null

mapfile -t t < "$work/times"
read -r peer peer_cpu <<< "${t[0]}"
read -r ours ours_cpu <<< "${t[1]}"
read -r warm warm_cpu <<< "${t[2]}"
size=$(du -sm "$work/src/tree" | cut -f1)
printf 'tree: %s MiB\n' "$size"
printf 'tar | zstd -T0 -3 | sha256sum:  %6.2f s (cpu %6.2f s)\n' "$peer" "$peer_cpu"
printf 'imgbuild build --format oci:    %6.2f s (cpu %6.2f s, cold store)\n' "$ours" "$ours_cpu"
printf 'imgbuild rebuild (all cached):  %6.2f s (cpu %6.2f s)\n' "$warm" "$warm_cpu"
printf 'ratio imgbuild/peer:            %6.2f (cpu %.2f)\n' "$(echo "$ours / $peer" | bc -l)" "$(echo "$ours_cpu / $peer_cpu" | bc -l)"
