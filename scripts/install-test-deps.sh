#!/usr/bin/env bash
# Installs every tool the test suite and benchmarks use, on Debian bookworm or newer (and Ubuntu).
# Idempotent: safe to run again. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)

. /etc/os-release
# e2fsprogs >= 1.47.1 (mke2fs -d from a tarball) and a qemu-system-x86 that matches the
# preinstalled qemu-utils come from bookworm-backports on bookworm.
if [ "${VERSION_CODENAME:-}" = bookworm ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/imgbuild-backports.list >/dev/null
fi
$SUDO "${APT[@]}" update

BACKPORTS=()
if [ "${VERSION_CODENAME:-}" = bookworm ]; then BACKPORTS=(-t bookworm-backports); fi

# Validators and peers: OCI (skopeo, umoci), disks (sgdisk, fsck.fat, e2fsck, qemu-img),
# a registry, boot tests (qemu, OVMF), Debian tooling (dpkg-dev, gpg, mmdebstrap), rootless (uidmap).
$SUDO "${APT[@]}" install --no-install-recommends \
  skopeo umoci docker-registry apache2-utils openssl \
  gdisk dosfstools mtools libarchive13 syslinux syslinux-common syslinux-efi \
  dpkg-dev gpg gpgv debian-archive-keyring mmdebstrap uidmap \
  zstd cpio busybox-static python3 ca-certificates curl
$SUDO "${APT[@]}" install --no-install-recommends "${BACKPORTS[@]}" \
  e2fsprogs qemu-utils qemu-system-x86 ovmf
