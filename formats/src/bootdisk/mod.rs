//! Bootable disks (`--format raw`, `--format qcow2`) from an image's merged layers, with no
//! root, no loop devices and no mounting.
//!
//! Layout (512-byte sectors, partitions 1 MiB aligned):
//!
//! | partition | type | content |
//! |---|---|---|
//! | 1 `esp`  | EFI system, legacy-BIOS-bootable for BIOS | FAT32 by [`crate::disk::fat`]: the kernel and initrd under `/imgbuild/`, systemd-boot (`EFI/BOOT/BOOTX64.EFI` or `BOOTAA64.EFI`, `loader/`) and/or syslinux (`syslinux.cfg`, `ldlinux.c32`, `ldlinux.sys`) |
//! | 2 `root` | Linux root (x86-64 or arm64) | ext4 by [`crate::disk::ext4`] (`mke2fs -d tar`) from the merged layers, `/etc/fstab` replaced |
//!
//! The MBR carries syslinux's `gptmbr.bin` when the disk boots under BIOS. The kernel finds
//! its root by `root=PARTUUID=`; `/etc/fstab` names it by filesystem `UUID=`.
//!
//! Reproducibility: every GUID and UUID is [`crate::disk::guid::guid_from_seed`] of the
//! manifest digest and a role, every timestamp is the image's epoch, the ext4 hash seed is
//! fixed, and the FAT writer and mke2fs are deterministic given those. The bootloader
//! binaries come from Debian packages ([`BootAssets`]), never from the host.
//!
//! - [`arch`]: what differs between amd64 and arm64 disks (arm64: UEFI only);
//! - [`options`]: what the caller chooses (firmware, size, command line) and provides
//!   (bootloader binaries);
//! - [`kernel`]: finding the image's kernel and initrd in `/boot`;
//! - [`layout`]: partition sizes, checked before anything is written;
//! - [`rootfs`]: the root filesystem's tar stream with `/etc/fstab` injected;
//! - [`esp`]: the EFI system partition and the bootloaders;
//! - [`grow`]: `[disk] grow`, the root partition and ext4 grown on first boot;
//! - [`raw`]: putting it together into one raw disk file.

pub mod arch;
pub mod esp;
pub mod grow;
pub mod kernel;
pub mod layout;
pub mod options;
pub mod raw;
pub mod rootfs;

pub use arch::DiskArch;
pub use options::{BootAssets, DiskOptions, Firmware, SyslinuxAssets};
