//! Fixed VHD (Microsoft "Virtual Hard Disk Image Format Specification", the
//! fixed hard disk image): the guest bytes as they are, followed by a 512-byte
//! footer. What Azure imports; its virtual size must be a whole MiB.
//!
//! The raw disk is turned into a VHD in place: it is padded with zeros to a
//! whole MiB (imgbuild's disks already are) and the footer is appended, so
//! holes stay holes and nothing is copied. The footer is deterministic: its
//! timestamp is the image's epoch and its UUID is given by the caller.
//!
//! The disk geometry is the maximum (65535 cylinders, 16 heads, 255 sectors),
//! as `qemu-img convert -o subformat=fixed,force_size` writes: readers that
//! size a disk by its geometry (QEMU for creators it does not know) then take
//! the footer's current size instead, which Hyper-V and Azure always do.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::align::MIB;

/// Bytes in the footer.
pub const FOOTER_SIZE: u64 = 512;
/// Seconds from the Unix epoch to the VHD epoch (2000-01-01 00:00:00 UTC).
const VHD_EPOCH: u64 = 946_684_800;
/// Disk type 2: fixed hard disk.
const DISK_TYPE_FIXED: u32 = 2;

/// Errors while turning a raw disk into a fixed VHD.
#[derive(Debug, thiserror::Error)]
pub enum VhdError {
    /// Opening, extending or appending to the disk failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The disk file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What [`raw_to_fixed_vhd`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhdSummary {
    /// The guest (virtual) size: the raw size rounded up to a MiB.
    pub virtual_size: u64,
    /// Size of the VHD file: `virtual_size` plus the footer.
    pub file_size: u64,
}

/// The 512-byte footer of a fixed VHD of `virtual_size` bytes, stamped
/// `unix_time` (clamped to the VHD epoch) and identified by `uuid`.
pub fn footer(virtual_size: u64, unix_time: u64, uuid: [u8; 16]) -> [u8; 512] {
    let mut f = [0u8; 512];
    let stamp = u32::try_from(unix_time.saturating_sub(VHD_EPOCH)).unwrap_or(u32::MAX);
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes()); // features: reserved bit, always set
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // file format version 1.0
    f[16..24].copy_from_slice(&u64::MAX.to_be_bytes()); // data offset: none (fixed)
    f[24..28].copy_from_slice(&stamp.to_be_bytes());
    f[28..32].copy_from_slice(b"imgb"); // creator application
    f[32..36].copy_from_slice(&0x0001_0000u32.to_be_bytes()); // creator version
    f[36..40].copy_from_slice(b"Wi2k"); // creator host OS, as QEMU writes
    f[40..48].copy_from_slice(&virtual_size.to_be_bytes()); // original size
    f[48..56].copy_from_slice(&virtual_size.to_be_bytes()); // current size
    f[56..58].copy_from_slice(&65535u16.to_be_bytes()); // cylinders
    f[58] = 16; // heads
    f[59] = 255; // sectors per track
    f[60..64].copy_from_slice(&DISK_TYPE_FIXED.to_be_bytes());
    f[68..84].copy_from_slice(&uuid);
    let sum = f.iter().fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
    f[64..68].copy_from_slice(&(!sum).to_be_bytes());
    f
}

/// Turns the raw disk at `path` into a fixed VHD in place: pads it with zeros
/// (a hole) to a whole MiB and appends the [`footer`].
pub fn raw_to_fixed_vhd(
    path: &Path,
    unix_time: u64,
    uuid: [u8; 16],
) -> Result<VhdSummary, VhdError> {
    let err = |source| VhdError::File {
        path: path.to_owned(),
        source,
    };
    let mut f = fs_err::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(err)?;
    let size = f.metadata().map_err(err)?.len();
    let virtual_size = size.div_ceil(MIB) * MIB;
    f.set_len(virtual_size).map_err(err)?;
    f.seek(SeekFrom::Start(virtual_size)).map_err(err)?;
    f.write_all(&footer(virtual_size, unix_time, uuid))
        .map_err(err)?;
    f.sync_all().map_err(err)?;
    Ok(VhdSummary {
        virtual_size,
        file_size: virtual_size + FOOTER_SIZE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testutil::{run_ok, s};

    #[test]
    fn footer_checksum_and_fields() {
        let f = footer(3 * MIB, VHD_EPOCH + 7, [9; 16]);
        let stored = u32::from_be_bytes(f[64..68].try_into().unwrap());
        let mut zeroed = f;
        zeroed[64..68].fill(0);
        let sum = zeroed
            .iter()
            .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)));
        assert_eq!(stored, !sum);
        assert_eq!(&f[24..28], &7u32.to_be_bytes());
        // Before the VHD epoch: clamped, not wrapped.
        assert_eq!(&footer(MIB, 0, [0; 16])[24..28], &[0; 4]);
    }

    #[test]
    fn qemu_reads_a_fixed_vhd_as_the_raw_disk() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        // Not a whole MiB: the VHD is padded, and compares equal (zeros).
        let size = 5 * MIB + 4096;
        {
            let mut f = std::fs::File::create(&raw).unwrap();
            f.set_len(size).unwrap();
            f.write_all(&[0xAB; 512]).unwrap();
            f.seek(SeekFrom::Start(size - 5)).unwrap();
            f.write_all(b"tail!").unwrap();
        }
        let vhd = dir.path().join("disk.vhd");
        std::fs::copy(&raw, &vhd).unwrap();
        let sum = raw_to_fixed_vhd(&vhd, 1_700_000_000, [1; 16]).unwrap();
        assert_eq!(sum.virtual_size, 6 * MIB);
        assert_eq!(std::fs::metadata(&vhd).unwrap().len(), 6 * MIB + 512);

        let info = run_ok("qemu-img", "qemu-utils", &["info", "-f", "vpc", s(&vhd)]);
        assert!(
            info.contains("file format: vpc") && info.contains(&format!("({} bytes)", 6 * MIB)),
            "{info}"
        );
        // `qemu-img check` has no checks for vpc (it exits 63 saying so).
        let out = run_ok(
            "qemu-img",
            "qemu-utils",
            &["compare", "-f", "raw", "-F", "vpc", s(&raw), s(&vhd)],
        );
        assert!(out.contains("Images are identical"), "{out}");
        // A guest write lands in the data, not in the footer.
        let _ = run_ok(
            "qemu-io",
            "qemu-utils",
            &["-f", "vpc", "-c", "write -P 0x55 0 512", s(&vhd)],
        );
        let bytes = std::fs::read(&vhd).unwrap();
        assert_eq!(bytes[0], 0x55);
        assert_eq!(&bytes[(6 * MIB) as usize..][..8], b"conectix");

        // Same inputs, same bytes.
        let again = dir.path().join("again.vhd");
        std::fs::copy(&raw, &again).unwrap();
        raw_to_fixed_vhd(&again, 1_700_000_000, [1; 16]).unwrap();
        std::fs::copy(&raw, &vhd).unwrap();
        raw_to_fixed_vhd(&vhd, 1_700_000_000, [1; 16]).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(&vhd).unwrap());
    }
}
