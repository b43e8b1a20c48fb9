#!/usr/bin/env bash
# Benchmark: a cold minbase bootstrap by imgbuild (fresh store, packages from the lock)
# against `mmdebstrap --variant=minbase` on the same mirror, in one run, plus imgbuild's
# warm rebuild. Needs mmdebstrap and root (or a subuid range).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=$PWD/target/release/imgbuild
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mirror=http://deb.debian.org/debian
now() { date +%s.%N; }

t0=$(now)
mmdebstrap --quiet --variant=minbase --mode=root bookworm "$work/mm.tar" "$mirror"
t1=$(now)
"$bin" build recipes/debian-minimal.toml --locked --store "$work/store" -o "$work/out" 2> /dev/null
t2=$(now)
"$bin" build recipes/debian-minimal.toml --locked --store "$work/store" -o "$work/out" 2> /dev/null
t3=$(now)

peer=$(echo "$t1 - $t0" | bc -l)
cold=$(echo "$t2 - $t1" | bc -l)
warm=$(echo "$t3 - $t2" | bc -l)
printf 'mmdebstrap --variant=minbase:            %6.2f s\n' "$peer"
printf 'imgbuild cold (minbase + one run step):  %6.2f s\n' "$cold"
printf 'imgbuild warm rebuild (all cached):      %6.2f s\n' "$warm"
printf 'ratio cold imgbuild/mmdebstrap:          %6.2f\n' "$(echo "$cold / $peer" | bc -l)"
