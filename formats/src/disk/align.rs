//! Alignment helpers for disk layouts.
//!
//! Partitions start on 1 MiB boundaries (the convention of parted, sgdisk
//! and Windows since Vista), which is a multiple of every common physical
//! sector, RAID stripe and flash erase-block size.

/// Logical sector size used by every writer in [`crate::disk`].
pub const SECTOR_SIZE: u64 = 512;

/// One mebibyte, the default partition alignment.
pub const MIB: u64 = 1024 * 1024;

/// Rounds `value` up to a multiple of `align` (`align` must be non-zero).
/// Returns `None` on overflow.
pub fn align_up(value: u64, align: u64) -> Option<u64> {
    if align == 0 {
        return None;
    }
    let rem = value % align;
    if rem == 0 {
        Some(value)
    } else {
        value.checked_add(align - rem)
    }
}

/// Rounds `value` down to a multiple of `align` (`align` must be non-zero).
pub fn align_down(value: u64, align: u64) -> u64 {
    if align == 0 {
        value
    } else {
        value - value % align
    }
}

/// Rounds a byte count up to a whole number of MiB.
pub fn align_up_mib(bytes: u64) -> Option<u64> {
    align_up(bytes, MIB)
}

/// Rounds an LBA (in 512-byte sectors) up to the next 1 MiB boundary.
pub fn align_lba_mib(lba: u64) -> Option<u64> {
    align_up(lba, MIB / SECTOR_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns() {
        assert_eq!(align_up(0, 8), Some(0));
        assert_eq!(align_up(1, 8), Some(8));
        assert_eq!(align_up(8, 8), Some(8));
        assert_eq!(align_up(u64::MAX, 8), None);
        assert_eq!(align_up(5, 0), None);
        assert_eq!(align_down(9, 8), 8);
        assert_eq!(align_lba_mib(34), Some(2048));
        assert_eq!(align_lba_mib(2048), Some(2048));
        assert_eq!(align_up_mib(1), Some(MIB));
    }
}
