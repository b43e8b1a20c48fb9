//! What a bootable disk is built from besides the image: the caller's choices and the
//! bootloader binaries (taken from Debian packages by the builder, never from the host).

/// The firmware a disk boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// UEFI only (systemd-boot).
    Uefi,
    /// Legacy BIOS only (syslinux).
    Bios,
    /// Both from one disk (the default).
    Hybrid,
}

impl Firmware {
    /// True when the disk boots under UEFI.
    pub fn uefi(self) -> bool {
        matches!(self, Self::Uefi | Self::Hybrid)
    }

    /// True when the disk boots under legacy BIOS.
    pub fn bios(self) -> bool {
        matches!(self, Self::Bios | Self::Hybrid)
    }

    /// The name used in recipes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Uefi => "uefi",
            Self::Bios => "bios",
            Self::Hybrid => "hybrid",
        }
    }
}

/// How to lay out a disk.
#[derive(Debug, Clone)]
pub struct DiskOptions {
    /// Total size in bytes; `None` sizes the disk to its content plus headroom.
    pub size: Option<u64>,
    /// Which firmware it boots with.
    pub firmware: Firmware,
    /// Kernel command line; `root=PARTUUID=... ro` is put in front of it.
    pub cmdline: String,
    /// qcow2 with compressed clusters.
    pub compress: bool,
    /// The root partition and its ext4 grow to fill a larger disk on first boot (with
    /// systemd's `systemd-repart` and `x-systemd.growfs`; nothing on images without them).
    pub grow: bool,
}

impl DiskOptions {
    /// The defaults for a disk of `arch`: arm64 boots under UEFI only, on `ttyAMA0`.
    pub fn for_arch(arch: super::DiskArch) -> Self {
        Self {
            firmware: if arch.has_bios() {
                Firmware::Hybrid
            } else {
                Firmware::Uefi
            },
            cmdline: arch.default_cmdline().into(),
            ..Self::default()
        }
    }
}

impl Default for DiskOptions {
    fn default() -> Self {
        Self {
            size: None,
            firmware: Firmware::Hybrid,
            cmdline: "console=ttyS0".into(),
            compress: false,
            grow: true,
        }
    }
}

/// The syslinux pieces for legacy BIOS boot, from Debian's `syslinux` and
/// `syslinux-common` packages.
#[derive(Clone)]
pub struct SyslinuxAssets {
    /// `/usr/lib/syslinux/mbr/gptmbr.bin`: the MBR boot code for GPT disks.
    pub gptmbr: Vec<u8>,
    /// `/usr/lib/syslinux/modules/bios/ldlinux.c32`: the loader's second half.
    pub ldlinux_c32: Vec<u8>,
    /// `/usr/bin/syslinux`: the installer, run on the disk file with `--offset` (it
    /// writes `ldlinux.sys` and the FAT boot sector; it calls the host's mtools).
    pub installer: Vec<u8>,
}

impl std::fmt::Debug for SyslinuxAssets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyslinuxAssets")
            .field("gptmbr", &self.gptmbr.len())
            .field("ldlinux_c32", &self.ldlinux_c32.len())
            .field("installer", &self.installer.len())
            .finish()
    }
}

/// Bootloader binaries. The builder fills this from Debian packages fetched into the store
/// (`imgbuild_builder::boot_assets`).
#[derive(Debug, Clone, Default)]
pub struct BootAssets {
    /// `systemd-bootx64.efi` (or `systemd-bootaa64.efi` for arm64) from
    /// `systemd-boot-efi`, installed as `EFI/BOOT/BOOTX64.EFI` (`BOOTAA64.EFI`).
    pub systemd_boot: Option<Vec<u8>>,
    /// syslinux, for BIOS boot.
    pub syslinux: Option<SyslinuxAssets>,
}

impl BootAssets {
    /// Total bytes of the bootloader files that go into the ESP.
    pub fn esp_bytes(&self) -> u64 {
        let efi = self.systemd_boot.as_ref().map_or(0, Vec::len);
        // ldlinux.sys is about the size of ldlinux.c32's loader; count 128 KiB for it.
        let bios = self
            .syslinux
            .as_ref()
            .map_or(0, |s| s.ldlinux_c32.len() + 128 * 1024);
        (efi + bios) as u64
    }
}
