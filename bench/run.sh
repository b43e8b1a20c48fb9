#!/usr/bin/env bash
# Every speed comparison of imgbuild against the single-purpose tool that does the same
# work, in one run: each figure is the median of RUNS runs (default 3), the peer timed in
# the same run on the same input, and one table at the end with the ratio and its goal.
#
#   bench/run.sh                 # everything (about 20 minutes on 2 cores)
#   RUNS=1 bench/run.sh          # one run of each
#   SKIP_DEBIAN=1 bench/run.sh   # only the exports (no cold Debian builds)
#   SKIP_RSS=1 bench/run.sh      # without the 2 GiB peak-memory export
#   SKIP_EXPORTS=1 bench/run.sh  # without the exports of a synthetic tree
#
# Installs its peers (mmdebstrap, e2fsprogs >= 1.47.1, cpio, zstd, GNU time, qemu-utils)
# and builds imgbuild in release mode (IMGBUILD_BIN=/path/to/imgbuild to time another
# build). Needs root (mmdebstrap --mode=root, mke2fs of a tree with its owners) and
# deb.debian.org. Wall times depend on the machine's load: `uptime` is printed first.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
runs=${RUNS:-3}
tree_mb=${BENCH_TREE_MB:-341}
big_mb=${BENCH_BIG_MB:-2048}
mirror=http://deb.debian.org/debian

need=()
for tool in mmdebstrap:mmdebstrap cpio:cpio zstd:zstd /usr/bin/time:time bc:bc \
    qemu-img:qemu-utils python3:python3; do
    command -v "${tool%%:*}" > /dev/null || need+=("${tool#*:}")
done
if ! mke2fs -V 2>&1 | grep -qE 'mke2fs 1\.(4[7-9]\.[1-9]|4[8-9]|[5-9])'; then
    bash scripts/install-runtime-deps.sh > /dev/null
fi
if ((${#need[@]})); then
    DEBIAN_FRONTEND=noninteractive apt-get -y -q install --no-install-recommends "${need[@]}" > /dev/null
fi
if [[ -n ${IMGBUILD_BIN:-} ]]; then
    bin=$IMGBUILD_BIN
else
    cargo build --release --locked --quiet
    bin=$repo/target/release/imgbuild
fi

work=$(mktemp -d /var/tmp/imgbuild-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
results=$work/results
: > "$results"
uptime >&2

# Runs a command quietly and prints its wall time in seconds; a failure stops the bench.
timed() {
    local start end
    start=$(date +%s.%N)
    if ! "$@" > "$work/last.log" 2>&1; then
        echo "bench: failed: $*" >&2
        tail -20 "$work/last.log" >&2
        exit 1
    fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l
}

# The median of the numbers on stdin.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# Records one row: WORK OURS PEER_NAME PEER GOAL (GOAL: "x0.8" for a ratio to the peer,
# "0.3s" for an absolute limit; PEER "-" when there is none).
row() {
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$results"
}

# RUNS trials of FUNCTION (which prints "ours peer"); records the medians.
measure() {
    local work_name=$1 peer_name=$2 goal=$3 fn=$4 i ours=() peer=()
    echo "bench: $work_name ($runs runs)" >&2
    for ((i = 1; i <= runs; i++)); do
        read -r o p < <("$fn" "$i") || true
        if [[ -z ${o:-} || -z ${p:-} ]]; then
            echo "bench: $work_name: a run failed" >&2
            exit 1
        fi
        ours+=("$o")
        peer+=("$p")
    done
    row "$work_name" "$(printf '%s\n' "${ours[@]}" | median)" "$peer_name" \
        "$(printf '%s\n' "${peer[@]}" | median)" "$goal"
}

b() { "$bin" build "$@"; }

# --- Cold Debian: a fresh store against mmdebstrap on the same mirror -------------------
cold_minbase() {
    local ours peer
    rm -rf "$work/st" "$work/o" "$work/mm.tar"
    ours=$(timed b recipes/debian-minimal.toml --locked --store "$work/st" -o "$work/o")
    peer=$(timed mmdebstrap --quiet --variant=minbase --mode=root bookworm "$work/mm.tar" "$mirror")
    echo "$ours $peer"
}

cold_vm() {
    local ours peer
    rm -rf "$work/vmst" "$work/vm" "$work/mm.tar"
    ours=$(timed b recipes/debian-vm.toml --locked --store "$work/vmst" -o "$work/vm" --format qcow2)
    peer=$(timed mmdebstrap --quiet --variant=minbase --mode=root \
        --include=linux-image-amd64,systemd-sysv bookworm "$work/mm.tar" "$mirror")
    echo "$ours $peer"
}

noop_vm() {
    echo "$(timed b recipes/debian-vm.toml --locked --store "$work/vmst" -o "$work/vm" --format qcow2) -"
}

# The VM recipe with its hostname step changed: that step and the ones after it run again.
one_step_vm() {
    rm -rf "$work/changed"
    cp -a recipes "$work/changed"
    sed -i "s/^content = \"debian-vm\\\\n\"/content = \"debian-vm-$1-$RANDOM\\\\n\"/" \
        "$work/changed/debian-vm.toml"
    grep -q "debian-vm-$1-" "$work/changed/debian-vm.toml"
    echo "$(timed b "$work/changed/debian-vm.toml" --locked --store "$work/vmst" -o "$work/vm" --format qcow2) -"
}

if [[ -z ${SKIP_DEBIAN:-} ]]; then
    measure "cold minbase (recipes/debian-minimal.toml)" "mmdebstrap --variant=minbase" x0.8 cold_minbase
    measure "cold debian-vm to a bootable qcow2" "mmdebstrap minbase+kernel+systemd-sysv to a tar" x0.7 cold_vm
    measure "no-op rebuild, debian-vm qcow2 in place" - 0.3s noop_vm
    measure "one step changed, debian-vm qcow2" - 2s one_step_vm
fi

# --- Exports of a synthetic tree, against the peer on the same tree on disk -------------
# The image is the tree at /data plus a stand-in kernel and /sbin/init (the disk and
# initramfs exporters want them; nothing boots); the peers get the same tree on disk.
make_tree() {
    local src=$1 mb=$2 name=$3
    python3 bench/gen-tree.py "$src/root/data" "$mb" >&2
    mkdir -p "$src/root/boot" "$src/root/sbin"
    head -c $((8 << 20)) /dev/urandom > "$src/root/boot/vmlinuz-6.1.0-bench-amd64"
    printf '#!/bin/sh\n' > "$src/root/sbin/init" && chmod 755 "$src/root/sbin/init"
    printf '[image]\nname = "%s"\n' "$name" > "$src/$name.toml"
    for d in data boot sbin; do
        printf '[[step]]\ncopy = "root/%s"\nto = "/%s"\n' "$d" "$d" >> "$src/$name.toml"
    done
}
if [[ -z ${SKIP_EXPORTS:-} ]]; then
make_tree "$work/tree/src" "$tree_mb" bench
tree=$work/tree/src/root
recipe=$work/tree/src/bench.toml
sync

# Exports into a fresh directory, the previous one removed first, so that the store has
# no output to copy from and the export is really done.
export_to() {
    local format=$1 dir=$2
    rm -rf "$work/x" && mkdir -p "$work/x"
    timed b "$recipe" --store "$work/treest" -o "$work/x/$dir" --format "$format"
}

# Import the tree and fetch the bootloaders once, so that only exports are timed.
b "$recipe" --store "$work/treest" -o "$work/warm" --format raw > /dev/null 2>&1
rm -rf "$work/warm"

raw_disk() {
    local ours peer size
    ours=$(export_to raw r)
    size=$(stat -c %s "$work/x/r/bench.raw")
    rm -f "$work/peer.ext4"
    peer=$(timed mke2fs -q -F -t ext4 -d "$tree" "$work/peer.ext4" $((size / 1024))k)
    echo "$ours $peer"
}

qcow2_disk() {
    local raw qcow2
    raw=$(export_to raw r)
    qcow2=$(export_to qcow2 q)
    echo "$qcow2 $raw"
}

initramfs() {
    local ours peer
    ours=$(export_to initramfs i)
    peer=$(timed bash -c 'cd "$1" && find . | cpio -o -H newc --quiet | zstd -T0 -q > "$2"' \
        - "$tree" "$work/peer.cpio.zst")
    echo "$ours $peer"
}

oci_cold() {
    local ours peer
    rm -rf "$work/ocist" "$work/oci"
    ours=$(timed b "$recipe" --store "$work/ocist" -o "$work/oci/a" --format oci)
    peer=$(timed bash -c 'tar -C "$1" -cf - . | zstd -T0 -3 -q | sha256sum > /dev/null' - "$tree")
    echo "$ours $peer"
}

oci_new_out() {
    echo "$(timed b "$recipe" --store "$work/ocist" -o "$work/oci/new-$1" --format oci) -"
}

measure "raw disk, ${tree_mb} MiB tree" "mke2fs -t ext4 -d DIR" x0.8 raw_disk
measure "qcow2 disk, ${tree_mb} MiB tree" "imgbuild raw disk" x1.0 qcow2_disk
measure "initramfs, ${tree_mb} MiB tree" "find | cpio -H newc | zstd -T0" x1.0 initramfs
measure "OCI layout, ${tree_mb} MiB tree, cold" "tar | zstd -T0 -3 | sha256sum" x1.0 oci_cold
measure "OCI layout, cached, to a new -o" - 0.2s oci_new_out
fi

# --- The debian-vm root filesystem as a raw disk, against mke2fs -d of the same tree ------
if [[ -z ${SKIP_DEBIAN:-} ]]; then
    b recipes/debian-vm.toml --locked --store "$work/vmst" -o "$work/vmtar" --format tar > /dev/null 2>&1
    mkdir -p "$work/vmroot"
    tar -C "$work/vmroot" --numeric-owner -xpf "$work/vmtar/debian-vm.rootfs.tar"
    rm -rf "$work/vmtar"
    vm_raw() {
        local ours peer size
        rm -rf "$work/vmraw" "$work/vm"
        ours=$(timed b recipes/debian-vm.toml --locked --store "$work/vmst" -o "$work/vmraw" --format raw)
        size=$(stat -c %s "$work/vmraw/debian-vm.raw")
        rm -f "$work/peer.ext4"
        peer=$(timed mke2fs -q -F -t ext4 -d "$work/vmroot" "$work/peer.ext4" $((size / 1024))k)
        echo "$ours $peer"
    }
    measure "raw disk of the debian-vm rootfs (whole build, all cached)" "mke2fs -t ext4 -d DIR" x0.8 vm_raw
    rm -rf "$work/vmroot"
fi

# --- Peak memory: a big image exported to every format ----------------------------------
if [[ -z ${SKIP_RSS:-} ]]; then
    echo "bench: peak RSS exporting a ${big_mb} MiB image to every format" >&2
    big=$work/big/src
    make_tree "$big" "$big_mb" big
    rm -rf "$work/tree" "$work/x" "$work/oci"
    formats=()
    for f in oci oci-archive docker-archive tar raw qcow2 vmdk vhd vhdx gce initramfs; do
        formats+=(--format "$f")
    done
    /usr/bin/time -f '%M' -o "$work/rss" "$bin" build "$big/big.toml" --store "$work/bigst" \
        -o "$work/bigout" "${formats[@]}" > /dev/null 2> "$work/last.log" \
        || { tail -20 "$work/last.log" >&2; exit 1; }
    row "peak RSS (MiB), ${big_mb} MiB image to every format" \
        "$(awk '{ printf "%.0f", $1 / 1024 }' "$work/rss")" - - 256MiB
fi

# --- The table ---------------------------------------------------------------------------
echo
printf '%-58s %9s  %-48s %9s %7s %7s  %s\n' work imgbuild peer "peer" ratio goal met
awk -F'\t' '
{
    work = $1; ours = $2; peer_name = $3; peer = $4; goal = $5
    ratio = "-"; met = "?"
    if (goal ~ /^x/) {
        limit = substr(goal, 2) + 0
        r = ours / peer
        ratio = sprintf("%.2f", r)
        met = (r <= limit) ? "yes" : "no"
    } else if (goal ~ /MiB$/) {
        met = (ours + 0 < goal + 0) ? "yes" : "no"
    } else {
        met = (ours + 0 <= goal + 0) ? "yes" : "no"
    }
    unit = (goal ~ /MiB$/) ? "" : "s"
    printf "%-58s %8.2f%s  %-48s %9s %7s %7s  %s\n", work, ours, unit, peer_name,
        (peer == "-" ? "-" : sprintf("%.2fs", peer)), ratio, goal, met
}' "$results"
echo
echo "medians of $runs runs; $(nproc) cores; $(uname -r); imgbuild $("$bin" --version | awk '{ print $2 }')"
