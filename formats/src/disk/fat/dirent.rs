//! FAT directory entry encoding: 32-byte short (8.3) entries, VFAT long file
//! name entries and DOS date/time stamps (fatgen103 §6 "Directory
//! Structure", §6.1 date/time format, §7 "Long File Name Implementation").

use imgbuild_store::oci::civil_from_days;

/// Attribute: directory.
pub(crate) const ATTR_DIRECTORY: u8 = 0x10;
/// Attribute: archive (set on regular files).
pub(crate) const ATTR_ARCHIVE: u8 = 0x20;
/// Attribute: volume label.
pub(crate) const ATTR_VOLUME_ID: u8 = 0x08;
/// Attribute combination marking an LFN entry.
const ATTR_LONG_NAME: u8 = 0x0F;
/// Size of one directory entry.
pub(crate) const DIRENT_SIZE: usize = 32;

/// A DOS timestamp: `(date, time, tenths)` where tenths is the 10 ms count
/// (0..=199) of `CrtTimeTenth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DosTime {
    pub(crate) date: u16,
    pub(crate) time: u16,
    pub(crate) tenths: u8,
}

impl DosTime {
    /// Converts Unix seconds (UTC) to a DOS stamp, clamped to the
    /// representable range 1980-01-01 ..= 2107-12-31 23:59:58.
    pub(crate) fn from_unix(secs: i64) -> DosTime {
        const MIN: i64 = 315_532_800; // 1980-01-01T00:00:00Z
        const MAX: i64 = 4_354_819_198; // 2107-12-31T23:59:58Z
        let secs = secs.clamp(MIN, MAX);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let date = (((y - 1980) as u16) << 9) | ((m as u16) << 5) | d as u16;
        let (h, min, s) = (sod / 3600, (sod / 60) % 60, sod % 60);
        let time = ((h as u16) << 11) | ((min as u16) << 5) | (s / 2) as u16;
        DosTime {
            date,
            time,
            tenths: ((s % 2) * 100) as u8,
        }
    }
}

/// A short (8.3) directory entry.
pub(crate) fn short_entry(
    name: &[u8; 11],
    attr: u8,
    case_flags: u8,
    cluster: u32,
    size: u32,
    t: DosTime,
) -> [u8; DIRENT_SIZE] {
    let mut e = [0u8; DIRENT_SIZE];
    e[0..11].copy_from_slice(name);
    e[11] = attr;
    e[12] = case_flags;
    e[13] = t.tenths;
    e[14..16].copy_from_slice(&t.time.to_le_bytes());
    e[16..18].copy_from_slice(&t.date.to_le_bytes());
    e[18..20].copy_from_slice(&t.date.to_le_bytes());
    e[20..22].copy_from_slice(&((cluster >> 16) as u16).to_le_bytes());
    e[22..24].copy_from_slice(&t.time.to_le_bytes());
    e[24..26].copy_from_slice(&t.date.to_le_bytes());
    e[26..28].copy_from_slice(&(cluster as u16).to_le_bytes());
    e[28..32].copy_from_slice(&size.to_le_bytes());
    e
}

/// Checksum of an 11-byte short name, stored in each of its LFN entries.
pub(crate) fn short_name_checksum(name: &[u8; 11]) -> u8 {
    name.iter().fold(0u8, |sum, &b| {
        ((sum & 1) << 7).wrapping_add(sum >> 1).wrapping_add(b)
    })
}

/// Number of LFN entries for a name of `units` UTF-16 code units.
pub(crate) fn lfn_entry_count(units: usize) -> usize {
    units.div_ceil(13)
}

/// The LFN entries for `name`, in on-disk order (highest ordinal first, so
/// they directly precede the short entry).
pub(crate) fn lfn_entries(name: &[u16], checksum: u8) -> Vec<[u8; DIRENT_SIZE]> {
    let count = lfn_entry_count(name.len());
    let mut out = Vec::with_capacity(count);
    for ord in (1..=count).rev() {
        let mut chars = [0xFFFFu16; 13];
        for (i, c) in chars.iter_mut().enumerate() {
            let idx = (ord - 1) * 13 + i;
            match idx.cmp(&name.len()) {
                std::cmp::Ordering::Less => *c = name[idx],
                std::cmp::Ordering::Equal => *c = 0,
                std::cmp::Ordering::Greater => {}
            }
        }
        let mut e = [0u8; DIRENT_SIZE];
        e[0] = ord as u8 | if ord == count { 0x40 } else { 0 };
        e[11] = ATTR_LONG_NAME;
        e[13] = checksum;
        let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (c, off) in chars.iter().zip(offsets) {
            e[off..off + 2].copy_from_slice(&c.to_le_bytes());
        }
        out.push(e);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_time() {
        // 2024-02-29T13:37:43Z
        let t = DosTime::from_unix(1_709_213_863);
        assert_eq!(t.date, (44 << 9) | (2 << 5) | 29);
        assert_eq!(t.time, (13 << 11) | (37 << 5) | 21);
        assert_eq!(t.tenths, 100);
        let t0 = DosTime::from_unix(0);
        assert_eq!(t0.date, (1 << 5) | 1);
        assert_eq!(t0.time, 0);
    }

    #[test]
    fn checksum_and_lfn_layout() {
        let sum = short_name_checksum(b"VMLINU~1   ");
        let name: Vec<u16> = "vmlinuz-6.1.0-18-amd64".encode_utf16().collect();
        let e = lfn_entries(&name, sum);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][0], 0x42);
        assert_eq!(e[1][0], 0x01);
        assert_eq!(e[1][1], b'v');
        assert!(e.iter().all(|x| x[13] == sum && x[11] == 0x0F));
    }
}
