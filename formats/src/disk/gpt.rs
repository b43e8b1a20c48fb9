//! GUID Partition Table writer (UEFI 2.10 §5.3) with a protective MBR
//! (UEFI 2.10 §5.2.3) or an optional hybrid MBR.
//!
//! Layout for a disk of `N` 512-byte sectors:
//!
//! | LBA            | content                                   |
//! |----------------|-------------------------------------------|
//! | 0              | MBR: caller boot code (≤ 440 bytes), protective `0xEE` entry |
//! | 1              | primary GPT header                        |
//! | 2..=33         | primary partition entry array (128 × 128 bytes) |
//! | 34..=N-34      | usable space (partitions, 1 MiB aligned by [`Gpt::add_partition`]) |
//! | N-33..=N-2     | backup partition entry array              |
//! | N-1            | backup GPT header                         |
//!
//! [`Gpt::write`] only writes these metadata sectors; partition contents are
//! written by the caller at [`Partition::byte_offset`]. Only 512-byte logical
//! sectors are supported.

use std::io::{Seek, SeekFrom, Write};

use crate::disk::align::{align_lba_mib, SECTOR_SIZE};
use crate::disk::crc32::crc32;
use crate::disk::guid::Guid;

/// Number of partition entries in the array (the UEFI minimum array size).
pub const ENTRY_COUNT: u32 = 128;
/// Size of one partition entry in bytes.
pub const ENTRY_SIZE: u32 = 128;
/// Sectors taken by the partition entry array (16 KiB).
const ENTRY_ARRAY_SECTORS: u64 = (ENTRY_COUNT as u64 * ENTRY_SIZE as u64) / SECTOR_SIZE;
/// First LBA usable by partitions.
pub const FIRST_USABLE_LBA: u64 = 2 + ENTRY_ARRAY_SECTORS;
/// Maximum length of a partition name in UTF-16 code units.
pub const MAX_NAME_UNITS: usize = 36;
/// Maximum number of bytes of MBR boot code (e.g. syslinux `gptmbr.bin`).
pub const MBR_BOOT_CODE_LEN: usize = 440;

/// Partition attribute bits (UEFI 2.10 Table 5.8).
pub mod attr {
    /// Bit 0: required for the platform to function.
    pub const REQUIRED: u64 = 1 << 0;
    /// Bit 1: firmware must not produce an EFI_BLOCK_IO_PROTOCOL for it.
    pub const NO_BLOCK_IO: u64 = 1 << 1;
    /// Bit 2: legacy BIOS bootable (used by syslinux `gptmbr.bin`).
    pub const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;
    /// Bit 59: grow the file system to the partition (Discoverable Partitions
    /// Specification, what `systemd-repart`'s `GrowFileSystem=` sets).
    pub const GROW_FILE_SYSTEM: u64 = 1 << 59;
}

/// Errors while laying out or writing a GPT.
#[derive(Debug, thiserror::Error)]
pub enum GptError {
    /// The disk is not a whole number of sectors or too small for two GPTs.
    #[error("disk size {size} bytes is unusable for GPT: it must be a multiple of 512 and at least {min} bytes")]
    DiskSize {
        /// Requested disk size.
        size: u64,
        /// Smallest usable size.
        min: u64,
    },
    /// A partition does not fit in the usable LBA range.
    #[error("partition {name:?} (LBA {first}..={last}) is outside the usable range {first_usable}..={last_usable}: enlarge the disk or shrink the partition")]
    OutOfRange {
        /// Partition name.
        name: String,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
        /// First usable LBA of the disk.
        first_usable: u64,
        /// Last usable LBA of the disk.
        last_usable: u64,
    },
    /// Not enough free space after the previous partition.
    #[error("no room for partition {name:?} of {requested} bytes: only {available} bytes left after 1 MiB alignment; enlarge the disk")]
    NoSpace {
        /// Partition name.
        name: String,
        /// Requested size in bytes.
        requested: u64,
        /// Bytes left.
        available: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions {a:?} and {b:?} overlap")]
    Overlap {
        /// First partition name.
        a: String,
        /// Second partition name.
        b: String,
    },
    /// More partitions than entries in the array.
    #[error("too many partitions: at most {ENTRY_COUNT} are supported")]
    TooManyPartitions,
    /// The name does not fit in 36 UTF-16 code units.
    #[error(
        "partition name {name:?} is longer than {MAX_NAME_UNITS} UTF-16 code units: shorten it"
    )]
    NameTooLong {
        /// The offending name.
        name: String,
    },
    /// A nil or repeated GUID.
    #[error("partition {name:?}: {what} GUID {guid} is nil or used twice; use distinct GUIDs (see guid_from_seed)")]
    BadGuid {
        /// Partition name.
        name: String,
        /// Which GUID ("type", "unique" or "disk").
        what: &'static str,
        /// The GUID.
        guid: Guid,
    },
    /// Boot code longer than the MBR boot code area.
    #[error("MBR boot code is {len} bytes; at most {MBR_BOOT_CODE_LEN} fit (use gptmbr.bin, not a full 512-byte sector)")]
    BootCodeTooLong {
        /// Supplied length.
        len: usize,
    },
    /// Invalid hybrid MBR request.
    #[error("invalid hybrid MBR: {reason}")]
    Hybrid {
        /// What is wrong.
        reason: String,
    },
    /// Writing failed.
    #[error("writing the partition table failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One GPT partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Partition type, e.g. [`Guid::ESP`].
    pub type_guid: Guid,
    /// Unique partition GUID (the `PARTUUID`).
    pub unique_guid: Guid,
    /// First sector (inclusive).
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Attribute bits, see [`attr`].
    pub attributes: u64,
    /// Name (at most 36 UTF-16 code units; the `PARTLABEL`).
    pub name: String,
}

impl Partition {
    /// Byte offset of the partition from the start of the disk.
    pub fn byte_offset(&self) -> u64 {
        self.first_lba * SECTOR_SIZE
    }

    /// Partition length in bytes.
    pub fn byte_len(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR_SIZE
    }
}

/// A partition to be placed by [`Gpt::add_partition`].
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    /// Name (`PARTLABEL`).
    pub name: String,
    /// Type GUID.
    pub type_guid: Guid,
    /// Unique GUID (`PARTUUID`).
    pub unique_guid: Guid,
    /// Size in bytes, rounded up to whole sectors; `None` takes the rest of
    /// the disk.
    pub size_bytes: Option<u64>,
    /// Attribute bits, see [`attr`].
    pub attributes: u64,
}

/// A GPT partition mirrored into the MBR (hybrid MBR), for BIOSes or
/// operating systems that only read MBR tables. Hybrid MBRs are a
/// compatibility hack outside the UEFI spec; prefer a protective MBR.
#[derive(Debug, Clone)]
pub struct HybridEntry {
    /// Index into [`Gpt::partitions`].
    pub partition: usize,
    /// MBR partition type byte (e.g. `0xEF` EFI, `0x0C` FAT32 LBA, `0x83` Linux).
    pub mbr_type: u8,
    /// Set the MBR "active" (0x80) flag.
    pub bootable: bool,
}

/// Options for LBA 0.
#[derive(Debug, Clone, Default)]
pub struct MbrOptions {
    /// Boot code for bytes 0..440 (e.g. syslinux `gptmbr.bin`); zeros if `None`.
    pub boot_code: Option<Vec<u8>>,
    /// Mark the protective `0xEE` entry active (0x80). Some legacy BIOSes
    /// refuse to boot a disk without an active MBR entry; UEFI 2.10 says the
    /// flag should be 0, so only set it for such BIOSes.
    pub protective_active: bool,
    /// Up to three GPT partitions to mirror into the MBR (hybrid MBR).
    pub hybrid: Vec<HybridEntry>,
    /// The MBR disk signature at byte 440.
    pub disk_signature: u32,
}

/// A GPT being laid out.
#[derive(Debug, Clone)]
pub struct Gpt {
    disk_guid: Guid,
    disk_sectors: u64,
    partitions: Vec<Partition>,
    /// MBR options (boot code, hybrid entries).
    pub mbr: MbrOptions,
}

impl Gpt {
    /// A table for a disk of `disk_size_bytes` (a multiple of 512).
    pub fn new(disk_guid: Guid, disk_size_bytes: u64) -> Result<Gpt, GptError> {
        let min_sectors = FIRST_USABLE_LBA + 1 + ENTRY_ARRAY_SECTORS + 1;
        if !disk_size_bytes.is_multiple_of(SECTOR_SIZE)
            || disk_size_bytes / SECTOR_SIZE < min_sectors
        {
            return Err(GptError::DiskSize {
                size: disk_size_bytes,
                min: min_sectors * SECTOR_SIZE,
            });
        }
        if disk_guid == Guid::NIL {
            return Err(GptError::BadGuid {
                name: String::new(),
                what: "disk",
                guid: disk_guid,
            });
        }
        Ok(Gpt {
            disk_guid,
            disk_sectors: disk_size_bytes / SECTOR_SIZE,
            partitions: Vec::new(),
            mbr: MbrOptions::default(),
        })
    }

    /// The disk GUID.
    pub fn disk_guid(&self) -> Guid {
        self.disk_guid
    }

    /// First LBA a partition may use (34).
    pub fn first_usable_lba(&self) -> u64 {
        FIRST_USABLE_LBA
    }

    /// Last LBA a partition may use (before the backup entry array).
    pub fn last_usable_lba(&self) -> u64 {
        self.disk_sectors - 2 - ENTRY_ARRAY_SECTORS
    }

    /// Partitions in table order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Appends a partition starting at the first 1 MiB boundary after the
    /// previous one. Returns the placed partition.
    pub fn add_partition(&mut self, spec: PartitionSpec) -> Result<&Partition, GptError> {
        let after = self
            .partitions
            .iter()
            .map(|p| p.last_lba + 1)
            .max()
            .unwrap_or(FIRST_USABLE_LBA);
        let last_usable = self.last_usable_lba();
        let first = align_lba_mib(after).unwrap_or(u64::MAX);
        let available = if first > last_usable {
            0
        } else {
            (last_usable - first + 1) * SECTOR_SIZE
        };
        let sectors = match spec.size_bytes {
            Some(size) => size.div_ceil(SECTOR_SIZE),
            None => available / SECTOR_SIZE,
        };
        let requested = spec.size_bytes.unwrap_or(1);
        if sectors == 0 || sectors * SECTOR_SIZE > available {
            return Err(GptError::NoSpace {
                name: spec.name,
                requested,
                available,
            });
        }
        self.push_partition(Partition {
            type_guid: spec.type_guid,
            unique_guid: spec.unique_guid,
            first_lba: first,
            last_lba: first + sectors - 1,
            attributes: spec.attributes,
            name: spec.name,
        })
    }

    /// Appends a partition at explicit LBAs, after validating it against the
    /// disk and the partitions already present.
    pub fn push_partition(&mut self, part: Partition) -> Result<&Partition, GptError> {
        if self.partitions.len() >= ENTRY_COUNT as usize {
            return Err(GptError::TooManyPartitions);
        }
        if part.name.encode_utf16().count() > MAX_NAME_UNITS {
            return Err(GptError::NameTooLong { name: part.name });
        }
        if part.first_lba < FIRST_USABLE_LBA
            || part.last_lba > self.last_usable_lba()
            || part.first_lba > part.last_lba
        {
            return Err(GptError::OutOfRange {
                name: part.name,
                first: part.first_lba,
                last: part.last_lba,
                first_usable: FIRST_USABLE_LBA,
                last_usable: self.last_usable_lba(),
            });
        }
        for (what, guid) in [("type", part.type_guid), ("unique", part.unique_guid)] {
            if guid == Guid::NIL {
                return Err(GptError::BadGuid {
                    name: part.name,
                    what,
                    guid,
                });
            }
        }
        for other in &self.partitions {
            if other.unique_guid == part.unique_guid {
                return Err(GptError::BadGuid {
                    name: part.name,
                    what: "unique",
                    guid: part.unique_guid,
                });
            }
            if part.first_lba <= other.last_lba && other.first_lba <= part.last_lba {
                return Err(GptError::Overlap {
                    a: other.name.clone(),
                    b: part.name,
                });
            }
        }
        self.partitions.push(part);
        let idx = self.partitions.len() - 1;
        Ok(&self.partitions[idx])
    }

    /// Writes the MBR, both GPT headers and both entry arrays. The writer
    /// must represent the whole disk (offset 0 = LBA 0); partition data is
    /// left untouched.
    pub fn write<W: Write + Seek>(&self, w: &mut W) -> Result<(), GptError> {
        let mbr = self.mbr_sector()?;
        let entries = self.entry_array();
        let entries_crc = crc32(&entries);
        let last = self.disk_sectors - 1;
        let backup_entries_lba = last - ENTRY_ARRAY_SECTORS;
        let primary = self.header(1, last, 2, entries_crc);
        let backup = self.header(last, 1, backup_entries_lba, entries_crc);

        w.seek(SeekFrom::Start(0))?;
        w.write_all(&mbr)?;
        w.write_all(&primary)?;
        w.write_all(&entries)?;
        w.seek(SeekFrom::Start(backup_entries_lba * SECTOR_SIZE))?;
        w.write_all(&entries)?;
        w.write_all(&backup)?;
        w.flush()?;
        Ok(())
    }

    /// The partition entry array (UEFI 2.10 Table 5.7).
    fn entry_array(&self) -> Vec<u8> {
        let mut buf = vec![0u8; (ENTRY_COUNT * ENTRY_SIZE) as usize];
        for (i, p) in self.partitions.iter().enumerate() {
            let e = &mut buf[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
            e[0..16].copy_from_slice(&p.type_guid.to_gpt_bytes());
            e[16..32].copy_from_slice(&p.unique_guid.to_gpt_bytes());
            e[32..40].copy_from_slice(&p.first_lba.to_le_bytes());
            e[40..48].copy_from_slice(&p.last_lba.to_le_bytes());
            e[48..56].copy_from_slice(&p.attributes.to_le_bytes());
            for (j, unit) in p.name.encode_utf16().take(MAX_NAME_UNITS).enumerate() {
                e[56 + 2 * j..58 + 2 * j].copy_from_slice(&unit.to_le_bytes());
            }
        }
        buf
    }

    /// A GPT header sector (UEFI 2.10 Table 5.5).
    fn header(
        &self,
        my_lba: u64,
        alternate_lba: u64,
        entries_lba: u64,
        entries_crc: u32,
    ) -> Vec<u8> {
        let mut h = vec![0u8; SECTOR_SIZE as usize];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        // 16..20: header CRC, computed below with the field zeroed.
        h[24..32].copy_from_slice(&my_lba.to_le_bytes());
        h[32..40].copy_from_slice(&alternate_lba.to_le_bytes());
        h[40..48].copy_from_slice(&FIRST_USABLE_LBA.to_le_bytes());
        h[48..56].copy_from_slice(&self.last_usable_lba().to_le_bytes());
        h[56..72].copy_from_slice(&self.disk_guid.to_gpt_bytes());
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&ENTRY_COUNT.to_le_bytes());
        h[84..88].copy_from_slice(&ENTRY_SIZE.to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// LBA 0: boot code, disk signature, protective (and hybrid) entries.
    fn mbr_sector(&self) -> Result<Vec<u8>, GptError> {
        let mut m = vec![0u8; SECTOR_SIZE as usize];
        if let Some(code) = &self.mbr.boot_code {
            if code.len() > MBR_BOOT_CODE_LEN {
                return Err(GptError::BootCodeTooLong { len: code.len() });
            }
            m[..code.len()].copy_from_slice(code);
        }
        m[440..444].copy_from_slice(&self.mbr.disk_signature.to_le_bytes());
        if self.mbr.hybrid.len() > 3 {
            return Err(GptError::Hybrid {
                reason: "at most 3 partitions can be mirrored into the MBR".into(),
            });
        }
        let max_lba = self.disk_sectors - 1;
        let mut entries: Vec<[u8; 16]> = Vec::new();
        let mut protective_end = max_lba;
        let mut hybrid = Vec::new();
        for h in &self.mbr.hybrid {
            let p = self
                .partitions
                .get(h.partition)
                .ok_or_else(|| GptError::Hybrid {
                    reason: format!("partition index {} does not exist", h.partition),
                })?;
            if p.last_lba > u64::from(u32::MAX) {
                return Err(GptError::Hybrid {
                    reason: format!(
                        "partition {:?} ends beyond 2 TiB, MBR cannot address it",
                        p.name
                    ),
                });
            }
            protective_end = protective_end.min(p.first_lba - 1);
            hybrid.push(mbr_entry(h.bootable, h.mbr_type, p.first_lba, p.last_lba));
        }
        // The 0xEE entry covers LBA 1 up to the first mirrored partition (or
        // the whole disk), capped at the 32-bit limit.
        let protective_end = protective_end.min(u64::from(u32::MAX));
        entries.push(mbr_entry(
            self.mbr.protective_active,
            0xEE,
            1,
            protective_end,
        ));
        entries.extend(hybrid);
        for (i, e) in entries.iter().enumerate() {
            m[446 + 16 * i..462 + 16 * i].copy_from_slice(e);
        }
        m[510] = 0x55;
        m[511] = 0xAA;
        Ok(m)
    }
}

/// One 16-byte MBR partition entry (`first`/`last` ≤ u32::MAX).
fn mbr_entry(active: bool, kind: u8, first: u64, last: u64) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0] = if active { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&lba_to_chs(first));
    e[4] = kind;
    e[5..8].copy_from_slice(&lba_to_chs(last));
    let start = u32::try_from(first).unwrap_or(u32::MAX);
    let count = u32::try_from(last - first + 1).unwrap_or(u32::MAX);
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&count.to_le_bytes());
    e
}

/// CHS triple with 255 heads and 63 sectors per track; `FE FF FF` when the
/// LBA is beyond cylinder 1023.
fn lba_to_chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SPT: u64 = 63;
    let cyl = lba / (HEADS * SPT);
    if cyl > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let head = (lba / SPT) % HEADS;
    let sector = lba % SPT + 1;
    [
        head as u8,
        (sector as u8) | (((cyl >> 2) & 0xC0) as u8),
        (cyl & 0xFF) as u8,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::align::MIB;
    use crate::disk::guid::guid_from_seed;
    use crate::disk::testutil::{run_ok, s};

    fn sample(disk: u64) -> Gpt {
        let mut gpt = Gpt::new(guid_from_seed(b"disk"), disk).unwrap();
        gpt.add_partition(PartitionSpec {
            name: "ESP".into(),
            type_guid: Guid::ESP,
            unique_guid: guid_from_seed(b"esp"),
            size_bytes: Some(16 * MIB),
            attributes: attr::LEGACY_BIOS_BOOTABLE,
        })
        .unwrap();
        gpt.add_partition(PartitionSpec {
            name: "BIOS boot".into(),
            type_guid: Guid::BIOS_BOOT,
            unique_guid: guid_from_seed(b"bios"),
            size_bytes: Some(MIB),
            attributes: 0,
        })
        .unwrap();
        gpt.add_partition(PartitionSpec {
            name: "root-x86-64 ✓".into(),
            type_guid: Guid::LINUX_ROOT_X86_64,
            unique_guid: guid_from_seed(b"root"),
            size_bytes: None,
            attributes: 0,
        })
        .unwrap();
        gpt
    }

    fn write_file(gpt: &Gpt, size: u64) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(size).unwrap();
        gpt.write(&mut f.as_file()).unwrap();
        f
    }

    #[test]
    fn layout_is_mib_aligned() {
        let gpt = sample(64 * MIB);
        let p = gpt.partitions();
        assert_eq!(p[0].first_lba, 2048);
        assert_eq!(p[0].byte_len(), 16 * MIB);
        assert_eq!(p[1].first_lba, 2048 + 16 * 2048);
        assert_eq!(p[2].first_lba, 2048 + 17 * 2048);
        assert_eq!(p[2].last_lba, gpt.last_usable_lba());
    }

    #[test]
    fn sgdisk_verifies_and_shows_our_guids() {
        let size = 64 * MIB;
        let mut gpt = sample(size);
        let code: Vec<u8> = (0..440).map(|i| (i % 251) as u8).collect();
        gpt.mbr.boot_code = Some(code.clone());
        gpt.mbr.disk_signature = 0x1234_5678;
        let f = write_file(&gpt, size);
        let path = s(f.path());
        let v = run_ok("sgdisk", "gdisk", &["-v", path]);
        assert!(v.contains("No problems found"), "{v}");
        let p = run_ok("sgdisk", "gdisk", &["-p", path]);
        assert!(p.contains(&gpt.disk_guid().to_string()), "{p}");
        assert!(p.contains("ESP") && p.contains("BIOS boot"), "{p}");
        let i1 = run_ok("sgdisk", "gdisk", &["-i", "1", path]);
        assert!(i1.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"), "{i1}");
        assert!(i1.contains(&guid_from_seed(b"esp").to_string()), "{i1}");
        assert!(i1.contains("First sector: 2048"), "{i1}");
        assert!(i1.contains("Attribute flags: 0000000000000004"), "{i1}");
        let i2 = run_ok("sgdisk", "gdisk", &["-i", "2", path]);
        assert!(i2.contains("21686148-6449-6E6F-744E-656564454649"), "{i2}");
        let i3 = run_ok("sgdisk", "gdisk", &["-i", "3", path]);
        assert!(i3.contains("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"), "{i3}");
        assert!(i3.contains("'root-x86-64 ✓'"), "{i3}");
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(&bytes[..440], &code[..]);
        assert_eq!(&bytes[440..444], &0x1234_5678u32.to_le_bytes());
        assert_eq!(bytes[446 + 4], 0xEE);
    }

    #[test]
    fn hybrid_mbr_verifies() {
        let size = 64 * MIB;
        let mut gpt = sample(size);
        gpt.mbr.hybrid = vec![HybridEntry {
            partition: 0,
            mbr_type: 0xEF,
            bootable: true,
        }];
        let f = write_file(&gpt, size);
        let v = run_ok("sgdisk", "gdisk", &["-v", s(f.path())]);
        assert!(v.contains("No problems found"), "{v}");
        let bytes = std::fs::read(f.path()).unwrap();
        assert_eq!(bytes[446 + 4], 0xEE);
        assert_eq!(&bytes[446 + 12..446 + 16], &2047u32.to_le_bytes());
        assert_eq!(bytes[462], 0x80);
        assert_eq!(bytes[462 + 4], 0xEF);
        assert_eq!(&bytes[462 + 8..462 + 12], &2048u32.to_le_bytes());
    }

    #[test]
    fn deterministic() {
        let size = 8 * MIB;
        let mut gpt = Gpt::new(guid_from_seed(b"d"), size).unwrap();
        gpt.add_partition(PartitionSpec {
            name: "a".into(),
            type_guid: Guid::LINUX_FS,
            unique_guid: guid_from_seed(b"a"),
            size_bytes: None,
            attributes: 0,
        })
        .unwrap();
        let a = write_file(&gpt, size);
        let b = write_file(&gpt, size);
        assert_eq!(
            std::fs::read(a.path()).unwrap(),
            std::fs::read(b.path()).unwrap()
        );
    }

    #[test]
    fn rejects_bad_layouts() {
        assert!(matches!(
            Gpt::new(guid_from_seed(b"d"), 1000),
            Err(GptError::DiskSize { .. })
        ));
        let mut gpt = Gpt::new(guid_from_seed(b"d"), 4 * MIB).unwrap();
        let spec = PartitionSpec {
            name: "big".into(),
            type_guid: Guid::LINUX_FS,
            unique_guid: guid_from_seed(b"a"),
            size_bytes: Some(4 * MIB),
            attributes: 0,
        };
        assert!(matches!(
            gpt.add_partition(spec.clone()),
            Err(GptError::NoSpace { .. })
        ));
        let name = "x".repeat(37);
        let long = PartitionSpec {
            name,
            size_bytes: Some(MIB),
            ..spec.clone()
        };
        assert!(matches!(
            gpt.add_partition(long),
            Err(GptError::NameTooLong { .. })
        ));
        gpt.add_partition(PartitionSpec {
            size_bytes: Some(MIB),
            ..spec.clone()
        })
        .unwrap();
        let dup = PartitionSpec {
            size_bytes: Some(MIB),
            ..spec
        };
        assert!(matches!(
            gpt.add_partition(dup),
            Err(GptError::BadGuid { .. })
        ));
        gpt.mbr.boot_code = Some(vec![0; 512]);
        let mut c = std::io::Cursor::new(Vec::new());
        assert!(matches!(
            gpt.write(&mut c),
            Err(GptError::BootCodeTooLong { len: 512 })
        ));
    }
}
