//! Dynamic VHDX (Microsoft "[MS-VHDX]: Virtual Hard Disk v2 (VHDX) File Format"),
//! what Hyper-V takes, from a raw disk.
//!
//! | offset            | content                                                 |
//! |-------------------|---------------------------------------------------------|
//! | 0                 | file type identifier (`vhdxfile`, creator)              |
//! | 64 KiB, 128 KiB   | the two headers (sequence 0 and 1, no log to replay)   |
//! | 192 KiB, 256 KiB  | the two region tables (BAT, metadata)                   |
//! | 1 MiB             | the log (1 MiB, empty)                                  |
//! | 2 MiB             | the metadata region: table, then its five items         |
//! | 3 MiB             | the BAT, a whole number of MiB                          |
//! | then              | the 1 MiB payload blocks holding a non-zero byte, in    |
//! |                   | guest order                                             |
//!
//! Blocks of zeros are left out (BAT state "not present", read as zeros with no
//! parent). One pass over the raw disk, skipping holes with `SEEK_DATA`; the
//! tables are written last. Every GUID is derived from the caller's seed and
//! every checksum is CRC-32C, so the output is deterministic.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::crc32::crc32c;
use super::guid::{guid_from_seed, Guid};
use super::sparse::{DataExtents, FileExtents};

const KIB64: u64 = 64 * 1024;
const MIB: u64 = 1024 * 1024;
/// Payload block size: the smallest VHDX allows, for the sparsest file.
const BLOCK: u64 = MIB;
/// Logical sector size.
const SECTOR: u64 = 512;
/// Payload blocks per sector bitmap block: 2^23 sectors / sectors per block.
const CHUNK_RATIO: u64 = (1 << 23) * SECTOR / BLOCK;
const LOG_OFFSET: u64 = MIB;
const LOG_LENGTH: u64 = MIB;
const METADATA_OFFSET: u64 = 2 * MIB;
const METADATA_LENGTH: u64 = MIB;
const BAT_OFFSET: u64 = 3 * MIB;
/// BAT entry state: the whole block is in the file.
const PAYLOAD_BLOCK_FULLY_PRESENT: u64 = 6;

const BAT_REGION: Guid = Guid::from_u128(0x2DC27766_F623_4200_9D64_115E9BFD4A08);
const METADATA_REGION: Guid = Guid::from_u128(0x8B7CA206_4790_4B9A_B8FE_575F050F886E);
const FILE_PARAMETERS: Guid = Guid::from_u128(0xCAA16737_FA36_4D43_B3B6_33F0AA44E76B);
const VIRTUAL_DISK_SIZE: Guid = Guid::from_u128(0x2FA54224_CD1B_4876_B211_5DBED83BF4B8);
const PAGE_83_DATA: Guid = Guid::from_u128(0xBECA12AB_B2E6_4523_93EF_C309E000C746);
const LOGICAL_SECTOR_SIZE: Guid = Guid::from_u128(0x8141BF1D_A96F_4709_BA47_F233A8FAAB5F);
const PHYSICAL_SECTOR_SIZE: Guid = Guid::from_u128(0xCDA348C7_445D_4471_9CC9_E9885251C556);

/// Errors while writing a VHDX.
#[derive(Debug, thiserror::Error)]
pub enum VhdxError {
    /// Opening or reading the raw disk, or creating the VHDX, failed.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The raw disk is not a whole number of 512-byte sectors.
    #[error("the raw disk is {size} bytes, not a whole number of 512-byte sectors")]
    NotSectors {
        /// Its size.
        size: u64,
    },
    /// Writing the VHDX failed.
    #[error("writing the VHDX: {0}")]
    Write(#[source] std::io::Error),
}

/// What [`convert_file`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhdxSummary {
    /// Guest (virtual) size in bytes.
    pub virtual_size: u64,
    /// Payload blocks stored.
    pub blocks: u64,
    /// Size of the VHDX in bytes.
    pub file_size: u64,
}

/// Writes the raw disk `raw` as a new dynamic VHDX `vhdx`, its GUIDs derived
/// from `seed`.
pub fn convert_file(raw: &Path, vhdx: &Path, seed: &str) -> Result<VhdxSummary, VhdxError> {
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| VhdxError::File { path, source }
    };
    let src = fs_err::File::open(raw).map_err(err(raw))?;
    let size = src.metadata().map_err(err(raw))?.len();
    if size % SECTOR != 0 {
        return Err(VhdxError::NotSectors { size });
    }
    let out = fs_err::File::create(vhdx).map_err(err(vhdx))?;
    let mut out = std::io::BufWriter::with_capacity(MIB as usize, out);
    let blocks = size.div_ceil(BLOCK);
    let bat_entries = blocks + blocks.saturating_sub(1) / CHUNK_RATIO;
    let bat_length = (bat_entries * 8).div_ceil(MIB).max(1) * MIB;
    let mut bat = vec![0u64; bat_entries as usize];

    // Payload blocks.
    static ZERO: [u8; BLOCK as usize] = [0; BLOCK as usize];
    let mut buf = vec![0u8; BLOCK as usize];
    let mut next = BAT_OFFSET + bat_length;
    let mut stored = 0u64;
    let mut extents = FileExtents::new(src.file());
    let mut reader = src.file();
    let mut extent = extents.next_data(0, size).map_err(err(raw))?;
    let w = VhdxError::Write;
    out.seek(SeekFrom::Start(next)).map_err(w)?;
    for b in 0..blocks {
        let start = b * BLOCK;
        let end = (start + BLOCK).min(size);
        while let Some((_, e)) = extent {
            if e > start {
                break;
            }
            extent = extents.next_data(start, size).map_err(err(raw))?;
        }
        let Some((data_start, _)) = extent else {
            break;
        };
        if data_start >= end {
            continue;
        }
        buf.fill(0);
        reader.seek(SeekFrom::Start(start)).map_err(err(raw))?;
        reader
            .read_exact(&mut buf[..(end - start) as usize])
            .map_err(err(raw))?;
        if buf[..] == ZERO[..] {
            continue;
        }
        out.write_all(&buf).map_err(w)?;
        bat[(b + b / CHUNK_RATIO) as usize] = (next / MIB) << 20 | PAYLOAD_BLOCK_FULLY_PRESENT;
        next += BLOCK;
        stored += 1;
    }
    out.seek(SeekFrom::Start(BAT_OFFSET)).map_err(w)?;
    let bat_bytes: Vec<u8> = bat.iter().flat_map(|e| e.to_le_bytes()).collect();
    out.write_all(&bat_bytes).map_err(w)?;

    let id = |role: &str| guid_from_seed(format!("{seed}:vhdx:{role}").as_bytes());
    out.seek(SeekFrom::Start(METADATA_OFFSET)).map_err(w)?;
    out.write_all(&metadata(size, id("disk"))).map_err(w)?;

    out.seek(SeekFrom::Start(0)).map_err(w)?;
    let mut ident = vec![0u8; KIB64 as usize];
    ident[..8].copy_from_slice(b"vhdxfile");
    for (i, unit) in "imgbuild".encode_utf16().enumerate() {
        ident[8 + 2 * i..10 + 2 * i].copy_from_slice(&unit.to_le_bytes());
    }
    out.write_all(&ident).map_err(w)?;
    for sequence in 0..2 {
        out.write_all(&header(sequence, id("file-write"), id("data-write")))
            .map_err(w)?;
    }
    let table = region_table(bat_length);
    out.write_all(&table).map_err(w)?;
    out.write_all(&table).map_err(w)?;

    let out = out.into_inner().map_err(|e| w(e.into_error()))?;
    // The BAT region ends past its entries: the file reaches it even with no payload.
    out.set_len(next).map_err(err(vhdx))?;
    out.sync_all().map_err(err(vhdx))?;
    Ok(VhdxSummary {
        virtual_size: size,
        blocks: stored,
        file_size: next,
    })
}

/// A header (4 KiB of content in its 64 KiB slot).
fn header(sequence: u64, file_write: Guid, data_write: Guid) -> Vec<u8> {
    let mut h = vec![0u8; KIB64 as usize];
    h[0..4].copy_from_slice(b"head");
    h[8..16].copy_from_slice(&sequence.to_le_bytes());
    h[16..32].copy_from_slice(&file_write.to_gpt_bytes());
    h[32..48].copy_from_slice(&data_write.to_gpt_bytes());
    // 48..64: LogGuid zero, nothing to replay; 64..66: LogVersion 0.
    h[66..68].copy_from_slice(&1u16.to_le_bytes()); // Version
    h[68..72].copy_from_slice(&(LOG_LENGTH as u32).to_le_bytes());
    h[72..80].copy_from_slice(&LOG_OFFSET.to_le_bytes());
    let sum = crc32c(&h[..4096]);
    h[4..8].copy_from_slice(&sum.to_le_bytes());
    h
}

/// A region table naming the BAT and the metadata region, both required.
fn region_table(bat_length: u64) -> Vec<u8> {
    let mut t = vec![0u8; KIB64 as usize];
    t[0..4].copy_from_slice(b"regi");
    t[8..12].copy_from_slice(&2u32.to_le_bytes());
    let regions = [
        (BAT_REGION, BAT_OFFSET, bat_length),
        (METADATA_REGION, METADATA_OFFSET, METADATA_LENGTH),
    ];
    for (i, (guid, offset, length)) in regions.into_iter().enumerate() {
        let at = 16 + 32 * i;
        t[at..at + 16].copy_from_slice(&guid.to_gpt_bytes());
        t[at + 16..at + 24].copy_from_slice(&offset.to_le_bytes());
        t[at + 24..at + 28].copy_from_slice(&(length as u32).to_le_bytes());
        t[at + 28..at + 32].copy_from_slice(&1u32.to_le_bytes()); // Required
    }
    let sum = crc32c(&t);
    t[4..8].copy_from_slice(&sum.to_le_bytes());
    t
}

/// The metadata region: the table, then its items from 64 KiB.
fn metadata(virtual_size: u64, disk_id: Guid) -> Vec<u8> {
    const IS_VIRTUAL_DISK: u32 = 1 << 1;
    const IS_REQUIRED: u32 = 1 << 2;
    let items: [(Guid, Vec<u8>, u32); 5] = [
        (
            FILE_PARAMETERS,
            // BlockSize, then LeaveBlocksAllocated = 0, HasParent = 0.
            [(BLOCK as u32).to_le_bytes(), [0; 4]].concat(),
            IS_REQUIRED,
        ),
        (
            VIRTUAL_DISK_SIZE,
            virtual_size.to_le_bytes().to_vec(),
            IS_VIRTUAL_DISK | IS_REQUIRED,
        ),
        (
            PAGE_83_DATA,
            disk_id.to_gpt_bytes().to_vec(),
            IS_VIRTUAL_DISK | IS_REQUIRED,
        ),
        (
            LOGICAL_SECTOR_SIZE,
            (SECTOR as u32).to_le_bytes().to_vec(),
            IS_VIRTUAL_DISK | IS_REQUIRED,
        ),
        (
            PHYSICAL_SECTOR_SIZE,
            (SECTOR as u32).to_le_bytes().to_vec(),
            IS_VIRTUAL_DISK | IS_REQUIRED,
        ),
    ];
    let mut m = vec![0u8; (KIB64 + 4096) as usize];
    m[0..8].copy_from_slice(b"metadata");
    m[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
    let mut offset = KIB64 as usize;
    for (i, (guid, data, flags)) in items.iter().enumerate() {
        let at = 32 + 32 * i;
        m[at..at + 16].copy_from_slice(&guid.to_gpt_bytes());
        m[at + 16..at + 20].copy_from_slice(&(offset as u32).to_le_bytes());
        m[at + 20..at + 24].copy_from_slice(&(data.len() as u32).to_le_bytes());
        m[at + 24..at + 28].copy_from_slice(&flags.to_le_bytes());
        m[offset..offset + data.len()].copy_from_slice(data);
        offset += data.len();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testutil::{run_ok, s};

    fn raw_with(path: &Path, size: u64, runs: &[(u64, &[u8])]) {
        let mut f = std::fs::File::create(path).unwrap();
        f.set_len(size).unwrap();
        for (at, data) in runs {
            f.seek(SeekFrom::Start(*at)).unwrap();
            f.write_all(data).unwrap();
        }
    }

    #[test]
    fn qemu_reads_the_vhdx_as_the_raw_disk() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        // A written zero block, a partial last block.
        let size = 40 * MIB + 512;
        let zeros = vec![0u8; MIB as usize];
        raw_with(
            &raw,
            size,
            &[
                (0, &[0xAB; 512]),
                (3 * MIB - 10, &[7u8; 20]), // crosses a block boundary
                (5 * MIB, &zeros),          // written zeros: not stored
                (size - 5, b"tail!"),
            ],
        );
        let vhdx = dir.path().join("disk.vhdx");
        let sum = convert_file(&raw, &vhdx, "test").unwrap();
        assert_eq!(sum.blocks, 1 + 2 + 1);
        assert_eq!(std::fs::metadata(&vhdx).unwrap().len(), sum.file_size);

        let info = run_ok("qemu-img", "qemu-utils", &["info", s(&vhdx)]);
        assert!(
            info.contains("file format: vhdx") && info.contains(&format!("({size} bytes)")),
            "{info}"
        );
        let out = run_ok("qemu-img", "qemu-utils", &["check", s(&vhdx)]);
        assert!(out.contains("No errors were found"), "{out}");
        let out = run_ok(
            "qemu-img",
            "qemu-utils",
            &["compare", "-f", "raw", "-F", "vhdx", s(&raw), s(&vhdx)],
        );
        assert!(out.contains("Images are identical"), "{out}");

        let again = dir.path().join("again.vhdx");
        convert_file(&raw, &again, "test").unwrap();
        assert!(std::fs::read(&again).unwrap() == std::fs::read(&vhdx).unwrap());
    }

    /// Past the first 4 GiB chunk the BAT interleaves a sector bitmap entry. QEMU reads
    /// vhdx without block status, so the bytes are checked where they are, not compared
    /// whole.
    #[test]
    fn blocks_past_the_first_chunk_land_where_qemu_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("big.raw");
        let size = 9 * 1024 * MIB;
        let at = [4096 * MIB + 5, 8192 * MIB + 7, size - 20];
        raw_with(
            &raw,
            size,
            &[
                (at[0], &[0x11; 20]),
                (at[1], &[0x22; 20]),
                (at[2], &[0x33; 20]),
            ],
        );
        let vhdx = dir.path().join("big.vhdx");
        assert_eq!(convert_file(&raw, &vhdx, "test").unwrap().blocks, 3);
        let out = run_ok("qemu-img", "qemu-utils", &["check", s(&vhdx)]);
        assert!(out.contains("No errors were found"), "{out}");
        let mut args = vec!["-r".to_owned(), "-f".into(), "vhdx".into()];
        for (i, a) in at.iter().enumerate() {
            let pattern = 0x11 * (i + 1);
            args.extend(["-c".into(), format!("read -P {pattern:#x} {a} 20")]);
            args.extend(["-c".into(), format!("read -P 0 {} 5", a - 5)]);
        }
        args.push(s(&vhdx).to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_ok("qemu-io", "qemu-utils", &args);
        assert!(!out.contains("Pattern verification failed"), "{out}");
        assert_eq!(out.matches("read ").count(), 6, "{out}");
    }
}
