//! Sizing an ext4 filesystem for a given payload (4 KiB blocks, 256-byte
//! inodes, 5 % root reserve, as [`super::Ext4Options::new`] sets up).

const MIB: u64 = 1024 * 1024;

/// Suggested size and inode count for [`super::Ext4Options`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Estimate {
    /// Filesystem size in bytes (a multiple of 1 MiB).
    pub size_bytes: u64,
    /// Inode count to pass as [`super::Ext4Options::inodes`].
    pub inodes: u64,
}

/// Estimates the filesystem size for `total_file_bytes` of file data in
/// `inode_count` inodes (files, directories, symlinks, devices), with
/// headroom: 3 KiB per inode for partial blocks and directory blocks,
/// 25 % spare inodes, the journal mke2fs picks for that size, ~2 % other
/// metadata, the 5 % root reserve, then 10 % on top; at least 16 MiB.
pub fn estimate_size(total_file_bytes: u64, inode_count: u64) -> Ext4Estimate {
    let inodes = (inode_count + inode_count / 4 + 256).max(1024);
    let data = total_file_bytes.saturating_add(inode_count.saturating_mul(3 * 1024));
    let base = data.saturating_add(inodes * 256);
    let journal = match base {
        b if b < 128 * MIB => 4 * MIB,
        b if b < 1024 * MIB => 16 * MIB,
        b if b < 2048 * MIB => 32 * MIB,
        b if b < 16 * 1024 * MIB => 64 * MIB,
        b if b < 32 * 1024 * MIB => 128 * MIB,
        b if b < 128 * 1024 * MIB => 256 * MIB,
        _ => 1024 * MIB,
    };
    let meta = base / 50 + 2 * MIB;
    let needed = base.saturating_add(journal).saturating_add(meta);
    let with_reserve = needed.saturating_mul(100) / 95;
    let with_headroom = with_reserve.saturating_add(with_reserve / 10);
    let size = with_headroom
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .max(16 * MIB);
    Ext4Estimate {
        size_bytes: size,
        inodes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_payload() {
        let small = estimate_size(0, 10);
        assert_eq!(small.size_bytes, 16 * MIB);
        let big = estimate_size(2 * 1024 * MIB, 50_000);
        assert!(big.size_bytes > 2 * 1024 * MIB + 150 * MIB, "{big:?}");
        assert!(big.size_bytes < 3 * 1024 * MIB, "{big:?}");
        assert_eq!(big.inodes, 62_756);
        assert_eq!(big.size_bytes % MIB, 0);
    }
}
