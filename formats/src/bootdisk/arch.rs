//! What a disk's layout depends on the image's architecture (its config's `architecture`):
//!
//! | | amd64 | arm64 |
//! |---|---|---|
//! | firmware | UEFI and/or BIOS | UEFI only |
//! | systemd-boot on the ESP | `EFI/BOOT/BOOTX64.EFI` | `EFI/BOOT/BOOTAA64.EFI` |
//! | root partition type | `4f68bce3-…` (root x86-64) | `b921b045-…` (root arm64) |
//! | serial console | `ttyS0` | `ttyAMA0` (PL011 of QEMU's `virt`) |
//! | kernel on the ESP | `vmlinuz` as is | `vmlinuz` gunzipped |
//!
//! An arm64 `vmlinuz` may be a gzip-compressed `Image` (Debian's bookworm kernels up to
//! some point; bookworm's 6.1.0-50 ships it uncompressed), which systemd-boot cannot
//! start; the uncompressed `Image` is a PE/COFF EFI stub, so the ESP gets that.

use crate::disk::guid::Guid;
use crate::ExportError;
use std::io::Read;

/// The architecture a disk is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskArch {
    /// x86-64 (`amd64`).
    Amd64,
    /// 64-bit ARM (`arm64`).
    Arm64,
}

impl DiskArch {
    /// The architecture of an OCI `architecture` value.
    pub fn from_oci(architecture: &str) -> Result<Self, ExportError> {
        match architecture {
            "amd64" => Ok(Self::Amd64),
            "arm64" => Ok(Self::Arm64),
            other => Err(ExportError::DiskArchitecture {
                architecture: other.to_owned(),
            }),
        }
    }

    /// The OCI (and Debian) name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    /// Whether legacy BIOS can boot it.
    pub fn has_bios(self) -> bool {
        self == Self::Amd64
    }

    /// Where systemd-boot goes on the ESP: the removable-media path UEFI firmware tries.
    pub fn efi_boot_path(self) -> &'static str {
        match self {
            Self::Amd64 => "EFI/BOOT/BOOTX64.EFI",
            Self::Arm64 => "EFI/BOOT/BOOTAA64.EFI",
        }
    }

    /// The root partition's type (Discoverable Partitions Specification), which
    /// `systemd-gpt-auto-generator` and `systemd-repart` match.
    pub fn root_type(self) -> Guid {
        match self {
            Self::Amd64 => Guid::LINUX_ROOT_X86_64,
            Self::Arm64 => Guid::LINUX_ROOT_ARM64,
        }
    }

    /// The default kernel command line: the serial console of a QEMU guest.
    pub fn default_cmdline(self) -> &'static str {
        match self {
            Self::Amd64 => "console=ttyS0",
            Self::Arm64 => "console=ttyAMA0",
        }
    }

    /// True when [`Self::esp_kernel`] may change the kernel's size (arm64 only).
    pub fn may_unpack_kernel(self) -> bool {
        self == Self::Arm64
    }

    /// The kernel as the ESP holds it: an arm64 `vmlinuz` that is gzip-compressed is
    /// decompressed (`path` names it in errors); anything else is returned as is.
    pub fn esp_kernel(self, path: &str, vmlinuz: Vec<u8>) -> Result<Vec<u8>, ExportError> {
        if self != Self::Arm64 || !vmlinuz.starts_with(&[0x1f, 0x8b]) {
            return Ok(vmlinuz);
        }
        let mut image = Vec::with_capacity(vmlinuz.len() * 4);
        flate2::read::GzDecoder::new(vmlinuz.as_slice())
            .read_to_end(&mut image)
            .map_err(|source| ExportError::Kernel {
                path: path.to_owned(),
                source,
            })?;
        Ok(image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn arm64_has_its_own_root_type_boot_path_and_console() {
        let arm = DiskArch::from_oci("arm64").unwrap();
        assert_eq!(
            arm.root_type().to_string().to_lowercase(),
            "b921b045-1df0-41c3-af44-4c6f280d3fae"
        );
        assert_eq!(arm.efi_boot_path(), "EFI/BOOT/BOOTAA64.EFI");
        assert_eq!(arm.default_cmdline(), "console=ttyAMA0");
        assert!(!arm.has_bios());
        let x86 = DiskArch::from_oci("amd64").unwrap();
        assert_eq!(x86.root_type(), Guid::LINUX_ROOT_X86_64);
        assert_eq!(x86.efi_boot_path(), "EFI/BOOT/BOOTX64.EFI");
        let err = DiskArch::from_oci("riscv64").unwrap_err().to_string();
        assert!(err.contains("riscv64"), "{err}");
    }

    #[test]
    fn an_arm64_kernel_is_gunzipped_and_an_amd64_one_kept() {
        let image = b"MZ\0\0ARM\x64 kernel image".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&image).unwrap();
        let vmlinuz = gz.finish().unwrap();
        let arm = DiskArch::Arm64.esp_kernel("boot/vmlinuz-x", vmlinuz.clone());
        assert_eq!(arm.unwrap(), image);
        assert_eq!(
            DiskArch::Amd64
                .esp_kernel("boot/vmlinuz-x", vmlinuz.clone())
                .unwrap(),
            vmlinuz
        );
        // Already uncompressed: kept.
        assert_eq!(
            DiskArch::Arm64.esp_kernel("k", image.clone()).unwrap(),
            image
        );
        let mut broken = vmlinuz;
        broken.truncate(20);
        let err = DiskArch::Arm64
            .esp_kernel("boot/vmlinuz-x", broken)
            .unwrap_err();
        assert!(err.to_string().contains("boot/vmlinuz-x"), "{err}");
    }
}
