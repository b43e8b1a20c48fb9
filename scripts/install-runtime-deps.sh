#!/usr/bin/env bash
# Installs what imgbuild itself uses at run time, on Debian bookworm or newer (and Ubuntu):
# the Debian archive keyring (to verify InRelease), e2fsprogs >= 1.47.1 and libarchive
# (`mke2fs -d tarball` for disk images), mtools (syslinux's installer), newuidmap (rootless
# builds), and QEMU with OVMF for amd64 and AAVMF for arm64 (`imgbuild run`). Idempotent. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)

. /etc/os-release
# On bookworm, e2fsprogs >= 1.47.1 and a qemu-system-x86 that matches a backported
# qemu-utils come from bookworm-backports.
BACKPORTS=()
if [ "${VERSION_CODENAME:-}" = bookworm ]; then
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/imgbuild-backports.list >/dev/null
  fi
  BACKPORTS=(-t bookworm-backports)
fi
$SUDO "${APT[@]}" update
$SUDO "${APT[@]}" install --no-install-recommends \
  debian-archive-keyring ca-certificates libarchive13 mtools uidmap zstd
$SUDO "${APT[@]}" install --no-install-recommends "${BACKPORTS[@]}" \
  e2fsprogs qemu-utils qemu-system-x86 ovmf qemu-system-arm qemu-efi-aarch64
