#!/usr/bin/env bash
# Installs every tool the test suite and benchmarks use, on Debian bookworm or newer (and Ubuntu).
# Idempotent: safe to run again. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)

# What imgbuild itself needs (and the apt sources it needs them from) first.
bash "$(dirname "$0")/install-runtime-deps.sh"

# Validators and peers: OCI (skopeo, umoci), disks (sgdisk, fsck.fat, e2fsck, qemu-img),
# a registry, boot tests (qemu, OVMF), Debian tooling (dpkg-dev, gpg, mmdebstrap), rootless (uidmap),
# bsdtar (libarchive-tools) to extract exports with a second tar implementation, ssh and
# ssh-keygen (openssh-client) for `imgbuild run --exec`.
$SUDO "${APT[@]}" install --no-install-recommends \
  skopeo umoci docker-registry apache2-utils openssl \
  gdisk dosfstools mtools libarchive13 syslinux syslinux-common syslinux-efi \
  dpkg-dev gpg gpgv debian-archive-keyring mmdebstrap uidmap \
  zstd cpio busybox-static python3 ca-certificates curl gcc libc6-dev libarchive-tools \
  openssh-client
