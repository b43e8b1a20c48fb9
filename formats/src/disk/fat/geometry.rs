//! FAT32 volume geometry: cluster size, FAT size and region offsets
//! (Microsoft FAT Specification, "fatgen103", §3.5 and §4; the cluster-count
//! rule that decides the FAT type is §3.5 "FAT Type Determination").

use super::FatError;

/// Bytes per sector; the only size this writer produces.
pub(crate) const SECTOR: u64 = 512;
/// Smallest cluster count of a FAT32 volume. With fewer clusters the type
/// determination rule says FAT16, so fsck.fat and some firmware reject the
/// volume as FAT32.
pub const MIN_CLUSTERS: u64 = 65_525;
/// Largest cluster count FAT32 can address (28-bit entries minus reserved
/// values).
pub(crate) const MAX_CLUSTERS: u64 = 0x0FFF_FFF5 - 2;
/// Default reserved sectors (boot sector, FSInfo, backups, free room for a
/// boot loader), the value mkfs.fat and Windows use.
pub const DEFAULT_RESERVED_SECTORS: u16 = 32;
/// Number of FAT copies.
pub(crate) const NUM_FATS: u64 = 2;

/// The computed layout of a FAT32 volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatGeometry {
    /// Sectors in the volume.
    pub total_sectors: u32,
    /// Sectors per cluster (a power of two, 1..=64).
    pub sectors_per_cluster: u8,
    /// Reserved sectors before the first FAT.
    pub reserved_sectors: u16,
    /// Sectors per FAT copy.
    pub fat_sectors: u32,
    /// Number of data clusters (numbered 2..cluster_count+2).
    pub cluster_count: u32,
}

impl FatGeometry {
    /// Lays out a volume of `size_bytes` (rounded down to whole sectors).
    ///
    /// The cluster size follows the fatgen103 table (512 B up to 260 MiB,
    /// 4 KiB up to 8 GiB, 8 KiB up to 16 GiB, 16 KiB up to 32 GiB, 32 KiB
    /// beyond), halved as needed to keep at least [`MIN_CLUSTERS`] clusters.
    pub fn compute(size_bytes: u64, reserved_sectors: u16) -> Result<FatGeometry, FatError> {
        let min = min_volume_size(reserved_sectors);
        let total = size_bytes / SECTOR;
        if total > u64::from(u32::MAX) {
            return Err(FatError::VolumeTooLarge { size: size_bytes });
        }
        if size_bytes < min {
            return Err(FatError::VolumeTooSmall {
                size: size_bytes,
                min,
            });
        }
        let mib = 1024 * 1024;
        let mut spc: u64 = match size_bytes {
            s if s <= 260 * mib => 1,
            s if s <= 8 * 1024 * mib => 8,
            s if s <= 16 * 1024 * mib => 16,
            s if s <= 32 * 1024 * mib => 32,
            _ => 64,
        };
        loop {
            let g = Self::with_cluster_size(total, reserved_sectors, spc);
            if u64::from(g.cluster_count) >= MIN_CLUSTERS {
                if u64::from(g.cluster_count) > MAX_CLUSTERS {
                    return Err(FatError::VolumeTooLarge { size: size_bytes });
                }
                return Ok(g);
            }
            if spc == 1 {
                return Err(FatError::VolumeTooSmall {
                    size: size_bytes,
                    min,
                });
            }
            spc /= 2;
        }
    }

    fn with_cluster_size(total: u64, reserved: u16, spc: u64) -> FatGeometry {
        let avail = total.saturating_sub(u64::from(reserved));
        // Smallest FAT size F with (avail - 2F) / spc + 2 <= 128 F entries:
        // F >= (avail + 2 spc) / (128 spc + 2), then fix up rounding.
        let entries_per_sector = SECTOR / 4;
        let mut fat_sectors = (avail + 2 * spc).div_ceil(entries_per_sector * spc + NUM_FATS);
        let clusters = |fat: u64| avail.saturating_sub(NUM_FATS * fat) / spc;
        while clusters(fat_sectors) + 2 > fat_sectors * entries_per_sector {
            fat_sectors += 1;
        }
        FatGeometry {
            total_sectors: total as u32,
            sectors_per_cluster: spc as u8,
            reserved_sectors: reserved,
            fat_sectors: fat_sectors as u32,
            cluster_count: clusters(fat_sectors) as u32,
        }
    }

    /// Bytes per cluster.
    pub fn cluster_bytes(&self) -> u64 {
        u64::from(self.sectors_per_cluster) * SECTOR
    }

    /// Byte offset (within the volume) of FAT copy `index`.
    pub fn fat_offset(&self, index: u64) -> u64 {
        (u64::from(self.reserved_sectors) + index * u64::from(self.fat_sectors)) * SECTOR
    }

    /// Byte offset (within the volume) of cluster `cluster` (≥ 2).
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        self.fat_offset(NUM_FATS) + u64::from(cluster - 2) * self.cluster_bytes()
    }

    /// Volume size in bytes.
    pub fn volume_bytes(&self) -> u64 {
        u64::from(self.total_sectors) * SECTOR
    }
}

/// Smallest volume size (bytes) that holds [`MIN_CLUSTERS`] 512-byte
/// clusters with `reserved_sectors` reserved: 34,089,472 bytes (≈ 32.5 MiB)
/// with the default 32 reserved sectors. Use at least 33 MiB for an ESP.
pub fn min_volume_size(reserved_sectors: u16) -> u64 {
    let fat_sectors = ((MIN_CLUSTERS + 2) * 4).div_ceil(SECTOR);
    (u64::from(reserved_sectors) + NUM_FATS * fat_sectors + MIN_CLUSTERS) * SECTOR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_is_exactly_enough() {
        let min = min_volume_size(DEFAULT_RESERVED_SECTORS);
        assert_eq!(min, 34_089_472);
        let g = FatGeometry::compute(min, DEFAULT_RESERVED_SECTORS).unwrap();
        assert!(u64::from(g.cluster_count) >= MIN_CLUSTERS, "{g:?}");
        assert!(FatGeometry::compute(min - 512, DEFAULT_RESERVED_SECTORS).is_err());
    }

    #[test]
    fn fat_covers_all_clusters() {
        for mib in [33u64, 64, 100, 260, 261, 300, 1024, 9000, 40_000] {
            let g = FatGeometry::compute(mib * 1024 * 1024, 32).unwrap();
            assert!(u64::from(g.cluster_count) >= MIN_CLUSTERS, "{mib}: {g:?}");
            assert!(u64::from(g.fat_sectors) * 128 >= u64::from(g.cluster_count) + 2);
            let end = g.cluster_offset(2) + u64::from(g.cluster_count) * g.cluster_bytes();
            assert!(end <= g.volume_bytes());
        }
    }
}
