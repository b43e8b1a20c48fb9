//! The EFI system partition: the kernel and initrd under `/imgbuild/`, and the bootloaders
//! the firmware choice asks for.
//!
//! - UEFI: systemd-boot as `EFI/BOOT/BOOTX64.EFI` (`BOOTAA64.EFI` on arm64: the
//!   removable-media path every UEFI firmware tries), `loader/loader.conf` (boot the one entry at once) and
//!   `loader/entries/imgbuild.conf`.
//! - BIOS: `syslinux.cfg` and `ldlinux.c32` at the root; [`install_syslinux`] then runs
//!   the packaged installer on the finished disk file to add `ldlinux.sys` and the FAT
//!   boot sector code.

use super::arch::DiskArch;
use super::kernel::KernelFiles;
use super::options::{BootAssets, Firmware};
use crate::disk::fat::{FatImage, FatOptions, FileData};
use crate::disk::gpt::Partition;
use crate::ExportError;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// 1980-01-01, the first time FAT can store; mtools turns earlier times into 2098.
const FAT_EPOCH: u64 = 315_532_800;

/// What goes into the ESP besides the bootloader binaries.
#[derive(Debug)]
pub struct EspContent<'a> {
    /// The kernel's files in the image.
    pub kernel: &'a KernelFiles,
    /// Their bytes, by image path (the kernel as the ESP holds it: see
    /// [`DiskArch::esp_kernel`]).
    pub files: &'a BTreeMap<String, Vec<u8>>,
    /// The full kernel command line.
    pub cmdline: &'a str,
    /// The entry's title.
    pub title: &'a str,
    /// `[disk] grow` on an image that can: the `repart.d` definition at the root.
    pub grow: bool,
    /// The image's architecture (the bootloader's path, the root type for grow).
    pub arch: DiskArch,
}

/// Writes the ESP's FAT32 volume into `disk` at the partition.
pub fn write_esp(
    disk: &Path,
    part: &Partition,
    firmware: Firmware,
    assets: &BootAssets,
    content: &EspContent<'_>,
    seed: &[u8],
    epoch: u64,
) -> Result<(), ExportError> {
    let mut opts = FatOptions::new(part.byte_len(), seed, i64::try_from(epoch).unwrap_or(0));
    opts.label = Some("ESP".into());
    opts.hidden_sectors = u32::try_from(part.first_lba).unwrap_or(u32::MAX);
    let mut fat = FatImage::new(opts)?;
    let k = content.kernel;
    let kernel = format!("/imgbuild/vmlinuz-{}", k.version);
    let initrd = format!("/imgbuild/initrd.img-{}", k.version);
    let bytes = |p: &str| content.files.get(p).cloned().unwrap_or_default();
    fat.add_file(&kernel, FileData::Bytes(bytes(&k.kernel)))?;
    if let Some(i) = &k.initrd {
        fat.add_file(&initrd, FileData::Bytes(bytes(i)))?;
    }
    let initrd_line = |keyword: &str| {
        k.initrd
            .as_ref()
            .map(|_| format!("{keyword} {initrd}\n"))
            .unwrap_or_default()
    };
    if firmware.uefi() {
        let efi = assets
            .systemd_boot
            .clone()
            .ok_or(ExportError::MissingBootAssets {
                what: "systemd-boot (package systemd-boot-efi)",
            })?;
        fat.add_file(content.arch.efi_boot_path(), FileData::Bytes(efi))?;
        fat.add_file(
            "loader/loader.conf",
            FileData::Bytes(b"default imgbuild.conf\ntimeout 0\nconsole-mode keep\n".to_vec()),
        )?;
        let entry = format!(
            "title {}\nlinux {kernel}\n{}options {}\n",
            content.title,
            initrd_line("initrd"),
            content.cmdline
        );
        fat.add_file(
            "loader/entries/imgbuild.conf",
            FileData::Bytes(entry.into_bytes()),
        )?;
    }
    if firmware.bios() {
        let s = assets
            .syslinux
            .as_ref()
            .ok_or(ExportError::MissingBootAssets {
                what: "syslinux (packages syslinux and syslinux-common)",
            })?;
        fat.add_file("ldlinux.c32", FileData::Bytes(s.ldlinux_c32.clone()))?;
        let cfg = format!(
            "SERIAL 0 115200\nPROMPT 0\nTIMEOUT 0\nDEFAULT imgbuild\n\
             LABEL imgbuild\n  MENU LABEL {}\n  LINUX {kernel}\n  {}  APPEND {}\n",
            content.title,
            initrd_line("INITRD"),
            content.cmdline
        );
        fat.add_file("syslinux.cfg", FileData::Bytes(cfg.into_bytes()))?;
    }
    if content.grow {
        fat.add_file(
            super::grow::REPART_FILE,
            FileData::Bytes(super::grow::repart_definition(content.arch.root_type()).into_bytes()),
        )?;
    }
    let mut f = fs_err::OpenOptions::new().write(true).open(disk)?;
    fat.write_to(&mut f, part.byte_offset())?;
    Ok(())
}

/// Runs syslinux's installer (the packaged binary, never the host's) on `disk`: it adds
/// `ldlinux.sys` to the FAT at the partition and writes the boot sector code.
/// `SOURCE_DATE_EPOCH` pins the timestamp mtools gives `ldlinux.sys`.
pub fn install_syslinux(
    disk: &Path,
    part: &Partition,
    installer: &[u8],
    epoch: u64,
) -> Result<(), ExportError> {
    let dir = tempfile::Builder::new()
        .prefix("imgbuild-syslinux-")
        .tempdir()?;
    let bin = dir.path().join("syslinux");
    fs_err::write(&bin, installer)?;
    fs_err::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let out = Command::new(&bin)
        .args(["--install", "--offset", &part.byte_offset().to_string()])
        .arg(disk)
        .env("SOURCE_DATE_EPOCH", epoch.max(FAT_EPOCH).to_string())
        .env("HOME", dir.path())
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .output()
        .map_err(|e| ExportError::Bootloader {
            reason: format!(
                "running the packaged syslinux installer failed: {e}; it needs the host's \
                 mtools (Debian package mtools)"
            ),
        })?;
    if !out.status.success() {
        return Err(ExportError::Bootloader {
            reason: format!(
                "syslinux --install failed ({}): {}{}; it needs the host's mtools (Debian \
                 package mtools)",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            ),
        });
    }
    Ok(())
}
