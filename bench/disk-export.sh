#!/usr/bin/env bash
# Benchmark: bootable exports against their peers on the same rootfs, in one run.
#   raw       vs  mke2fs -t ext4 -d DIR (an ext4 image of the same size, alone)
#   qcow2     vs  imgbuild's own raw export (issue 14), and its conversion step
#             (qcow2 build - raw build) vs qemu-img convert -O qcow2
#   initramfs vs  find | cpio -o -H newc | zstd -T0
# Goals (issue 14): raw/mke2fs at most 0.8, qcow2/raw at most 1.0, initramfs at most 1.0.
# Usage: bench/disk-export.sh [TOTAL_MB]   (needs e2fsprogs >= 1.47.1, qemu-utils, cpio, zstd,
# and deb.debian.org for the bootloader packages; builds imgbuild in release mode)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-300}
cargo build --release --quiet
bin=$PWD/target/release/imgbuild
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree=$work/src/tree
python3 bench/gen-tree.py "$tree" "$mb" >&2
# A stand-in kernel: the exporters copy it, nothing boots it here.
mkdir -p "$tree/boot" "$tree/sbin"
head -c $((8 << 20)) /dev/urandom > "$tree/boot/vmlinuz-6.1.0-bench-amd64"
printf '#!/bin/sh\n' > "$tree/sbin/init" && chmod 755 "$tree/sbin/init"
tar -C "$tree" -cf "$work/src/root.tar" .
printf '[image]\nname = "bench"\n[from]\nrootfs = "root.tar"\n' > "$work/src/bench.toml"
sync

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
b() { "$bin" build "$work/src/bench.toml" --store "$work/store" "$@" 2> /dev/null; }

# Import the rootfs and fetch the bootloaders once, so that only the exports are timed.
b -o "$work/warm" --format raw
rm -rf "$work/warm"

t0=$(now); b -o "$work/raw" --format raw; t1=$(now)
raw_s=$(secs "$t0" "$t1")
size=$(stat -c %s "$work/raw/bench.raw")
t0=$(now)
mke2fs -q -F -t ext4 -d "$tree" "$work/peer.ext4" $((size / 1024))k
t1=$(now)
mke2fs_s=$(secs "$t0" "$t1")

t0=$(now); b -o "$work/qcow2" --format qcow2; t1=$(now)
qcow2_s=$(secs "$t0" "$t1")
t0=$(now); qemu-img convert -O qcow2 "$work/raw/bench.raw" "$work/peer.qcow2"; t1=$(now)
convert_s=$(secs "$t0" "$t1")
ours_convert=$(echo "$qcow2_s - $raw_s" | bc -l)

t0=$(now); b -o "$work/initramfs" --format initramfs; t1=$(now)
initramfs_s=$(secs "$t0" "$t1")
t0=$(now)
(cd "$tree" && find . | cpio -o -H newc --quiet | zstd -T0 -q > "$work/peer.cpio.zst")
t1=$(now)
cpio_s=$(secs "$t0" "$t1")

printf 'tree: %s MiB, disk: %s MiB\n' "$(du -sm "$tree" | cut -f1)" $((size >> 20))
printf '%-44s %7.2f s\n' "imgbuild --format raw" "$raw_s"
printf '%-44s %7.2f s\n' "mke2fs -t ext4 -d DIR" "$mke2fs_s"
printf '%-44s %7.2f s\n' "imgbuild --format qcow2 (minus raw)" "$ours_convert"
printf '%-44s %7.2f s\n' "qemu-img convert -O qcow2" "$convert_s"
printf '%-44s %7.2f s\n' "imgbuild --format initramfs" "$initramfs_s"
printf '%-44s %7.2f s\n' "find | cpio -o -H newc | zstd -T0" "$cpio_s"
printf 'ratio raw/mke2fs:          %5.2f (goal <= 0.8)\n' "$(echo "$raw_s / $mke2fs_s" | bc -l)"
printf 'ratio qcow2/raw:           %5.2f (goal <= 1.0)\n' "$(echo "$qcow2_s / $raw_s" | bc -l)"
printf 'ratio conversion/qemu-img: %5.2f\n' "$(echo "$ours_convert / $convert_s" | bc -l)"
printf 'ratio initramfs/cpio|zstd: %5.2f (goal <= 1.0)\n' "$(echo "$initramfs_s / $cpio_s" | bc -l)"
printf 'sizes: qcow2 %s vs qemu-img %s bytes; initramfs %s vs %s bytes\n' \
  "$(stat -c %s "$work/qcow2/bench.qcow2")" "$(stat -c %s "$work/peer.qcow2")" \
  "$(stat -c %s "$work/initramfs/bench.initramfs.cpio.zst")" "$(stat -c %s "$work/peer.cpio.zst")"
