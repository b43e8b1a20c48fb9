//! Partition and disk sizes, computed from metadata alone so that a disk too small for its
//! content fails before anything is written.
//!
//! - ESP: `max(2 × (kernel + initrd + bootloader files) + 8 MiB, 33 MiB)`, rounded up to
//!   a MiB. Twice the boot files leaves room for a kernel update beside the current one;
//!   33 MiB is the smallest size that keeps FAT32's 65,525-cluster minimum
//!   ([`min_volume_size`] is about 32.5 MiB with 512-byte clusters).
//! - root: [`estimate_size`] of the merged tree's file bytes and entry count (its own
//!   headroom included), or everything left when `[disk] size` is given.
//! - disk: 1 MiB before the first partition (MBR, GPT), the partitions, and 1 MiB at the
//!   end for the backup GPT.

use crate::disk::align::{align_up_mib, MIB};
use crate::disk::ext4::estimate_size;
use crate::disk::fat::{min_volume_size, DEFAULT_RESERVED_SECTORS};
use crate::ExportError;

/// The sizes of a disk and its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLayout {
    /// Whole disk, a multiple of 1 MiB.
    pub disk_size: u64,
    /// The EFI system partition.
    pub esp_size: u64,
    /// The smallest root partition that holds the content.
    pub root_min: u64,
    /// Inodes for the root filesystem.
    pub root_inodes: u64,
}

/// Lays out a disk for `boot_bytes` of ESP files and a root tree of `file_bytes` in
/// `entries` entries; `requested` is `[disk] size`.
pub fn plan(
    boot_bytes: u64,
    file_bytes: u64,
    entries: u64,
    requested: Option<u64>,
) -> Result<DiskLayout, ExportError> {
    let esp_min = align_up_mib(min_volume_size(DEFAULT_RESERVED_SECTORS)).unwrap_or(33 * MIB);
    let esp_size = align_up_mib(boot_bytes.saturating_mul(2).saturating_add(8 * MIB))
        .unwrap_or(u64::MAX)
        .max(esp_min);
    let root = estimate_size(file_bytes, entries);
    let needed = esp_size
        .saturating_add(root.size_bytes)
        .saturating_add(2 * MIB);
    let disk_size = match requested {
        None => needed,
        Some(size) => {
            let size = size - size % MIB;
            if size < needed {
                return Err(ExportError::DiskTooSmall {
                    requested: size,
                    needed,
                });
            }
            size
        }
    };
    Ok(DiskLayout {
        disk_size,
        esp_size,
        root_min: root.size_bytes,
        root_inodes: root.inodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_keeps_fat32_minimum_and_doubles_boot_files() {
        let small = plan(1024, 0, 10, None).unwrap();
        assert_eq!(small.esp_size, 33 * MIB);
        let big = plan(60 * MIB, 0, 10, None).unwrap();
        assert_eq!(big.esp_size, 128 * MIB);
        assert_eq!(big.disk_size % MIB, 0);
    }

    #[test]
    fn a_requested_size_below_the_content_fails_with_both_sizes() {
        let err = plan(10 * MIB, 500 * MIB, 1000, Some(100 * MIB)).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&(100 * MIB).to_string()), "{text}");
        assert!(matches!(err, ExportError::DiskTooSmall { .. }));
        let ok = plan(10 * MIB, 500 * MIB, 1000, Some(4096 * MIB)).unwrap();
        assert_eq!(ok.disk_size, 4096 * MIB);
    }
}
