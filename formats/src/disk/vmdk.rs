//! streamOptimized VMDK (VMware "Virtual Disk Format 5.0", the stream-optimized
//! compressed sparse extent): what VMware products and OVA packages take.
//!
//! One sequential pass over the raw disk, no seeking on the output:
//!
//! | sectors        | content                                                  |
//! |----------------|----------------------------------------------------------|
//! | 0              | sparse extent header, `gdOffset` = GD_AT_END              |
//! | 1..=20         | the embedded descriptor (`createType="streamOptimized"`) |
//! | 128..          | the non-zero 64 KiB grains, each a grain marker (guest    |
//! |                | sector, compressed length) and its zlib stream, padded   |
//! | then           | every grain table, each after a GT marker                |
//! | then           | the grain directory after a GD marker                    |
//! | last 3         | footer marker, footer (the header with `gdOffset`), EOS  |
//!
//! All-zero grains are left out (grain table entry 0). Grains are compressed
//! in parallel in batches and written in guest order, so the output does not
//! depend on the number of threads. Holes of the raw file are skipped with
//! `SEEK_DATA`.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::write::ZlibEncoder;
use flate2::Compression;
use rayon::prelude::*;

use super::sparse::{DataExtents, FileExtents};

/// Sector size.
const SECTOR: u64 = 512;
/// Grain size in sectors (64 KiB), VMware's default.
const GRAIN_SECTORS: u64 = 128;
/// Grain size in bytes.
const GRAIN: u64 = GRAIN_SECTORS * SECTOR;
/// Grain table entries per table.
const GT_ENTRIES: u64 = 512;
/// Sectors of one grain table.
const GT_SECTORS: u64 = GT_ENTRIES * 4 / SECTOR;
/// Where the descriptor starts and how many sectors it may take.
const DESCRIPTOR_OFFSET: u64 = 1;
const DESCRIPTOR_SECTORS: u64 = 20;
/// Sectors before the first grain.
const OVERHEAD: u64 = GRAIN_SECTORS;
/// Header flags: valid newline test, compressed grains, markers.
const FLAGS: u32 = 1 | 1 << 16 | 1 << 17;
/// `gdOffset` in the leading header: the grain directory is at the end.
const GD_AT_END: u64 = u64::MAX;
/// Metadata marker types.
const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;
/// A zero grain, compared with `==` (a memcmp).
static ZERO: [u8; GRAIN as usize] = [0; GRAIN as usize];
/// Grains compressed together (4 MiB).
const BATCH: usize = 64;

/// Errors while writing a streamOptimized VMDK.
#[derive(Debug, thiserror::Error)]
pub enum VmdkError {
    /// Reading the raw disk failed.
    #[error("reading the raw disk {}: {source}", path.display())]
    Read {
        /// The raw disk.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The disk is larger than a VMDK sparse extent addresses (2 TiB).
    #[error(
        "the disk is {size} bytes; a streamOptimized VMDK holds at most 2 TiB, lower [disk] size"
    )]
    TooLarge {
        /// The raw disk's size.
        size: u64,
    },
    /// Writing the VMDK failed.
    #[error("writing the VMDK: {0}")]
    Write(#[source] std::io::Error),
}

/// What [`write_stream_optimized`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmdkSummary {
    /// Guest (virtual) size in bytes.
    pub virtual_size: u64,
    /// Grains stored (non-zero 64 KiB chunks).
    pub grains: u64,
    /// Size of the VMDK in bytes.
    pub file_size: u64,
}

/// Writes the raw disk `raw` as a streamOptimized VMDK to `out`. `file_name`
/// is the VMDK's own name, which its descriptor names as its extent; `cid` is
/// the content ID the descriptor carries (derive it from the content for
/// reproducible output).
pub fn write_stream_optimized<W: Write>(
    raw: &Path,
    file_name: &str,
    cid: u32,
    out: W,
) -> Result<VmdkSummary, VmdkError> {
    let read_err = |source| VmdkError::Read {
        path: raw.to_owned(),
        source,
    };
    let file = fs_err::File::open(raw).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let capacity = size.div_ceil(SECTOR);
    let grains = size.div_ceil(GRAIN);
    // Grain table entries are 32-bit sector offsets: a file of at most 2 TiB.
    let sector_of = |at: u64| u32::try_from(at / SECTOR).map_err(|_| VmdkError::TooLarge { size });
    if size > 2 << 40 {
        return Err(VmdkError::TooLarge { size });
    }
    let mut out = Counting { inner: out, at: 0 };
    let w = |out: &mut Counting<W>, bytes: &[u8]| out.write_all(bytes).map_err(VmdkError::Write);

    w(&mut out, &header(capacity, GD_AT_END))?;
    let mut descriptor = descriptor(capacity, file_name, cid).into_bytes();
    descriptor.resize(((OVERHEAD - DESCRIPTOR_OFFSET) * SECTOR) as usize, 0);
    w(&mut out, &descriptor)?;

    let mut gt = vec![0u32; (grains.div_ceil(GT_ENTRIES) * GT_ENTRIES) as usize];
    let mut stored = 0u64;
    let mut extents = FileExtents::new(file.file());
    let mut reader = file.file();
    let mut extent = extents.next_data(0, size).map_err(read_err)?;
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<(u64, Vec<u8>)>,
                 out: &mut Counting<W>,
                 gt: &mut [u32],
                 stored: &mut u64|
     -> Result<(), VmdkError> {
        let records: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|(g, data)| grain_record(*g, data))
            .collect::<Result<_, _>>()
            .map_err(VmdkError::Write)?;
        for ((g, _), record) in batch.iter().zip(records) {
            gt[*g as usize] = sector_of(out.at)?;
            w(out, &record)?;
            *stored += 1;
        }
        batch.clear();
        Ok(())
    };
    for g in 0..grains {
        let start = g * GRAIN;
        let end = (start + GRAIN).min(size);
        while let Some((_, e)) = extent {
            if e > start {
                break;
            }
            extent = extents.next_data(start, size).map_err(read_err)?;
        }
        let Some((data_start, _)) = extent else {
            break;
        };
        if data_start >= end {
            continue;
        }
        let mut buf = vec![0u8; GRAIN as usize];
        reader.seek(SeekFrom::Start(start)).map_err(read_err)?;
        reader
            .read_exact(&mut buf[..(end - start) as usize])
            .map_err(read_err)?;
        if buf[..] == ZERO[..] {
            continue;
        }
        batch.push((g, buf));
        if batch.len() == BATCH {
            flush(&mut batch, &mut out, &mut gt, &mut stored)?;
        }
    }
    flush(&mut batch, &mut out, &mut gt, &mut stored)?;

    let mut gd = Vec::with_capacity(gt.len() / GT_ENTRIES as usize);
    for table in gt.chunks(GT_ENTRIES as usize) {
        w(&mut out, &marker(GT_SECTORS, MARKER_GT))?;
        gd.push(sector_of(out.at)?);
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
        w(&mut out, &bytes)?;
    }
    let mut gd_bytes: Vec<u8> = gd.iter().flat_map(|e| e.to_le_bytes()).collect();
    let gd_sectors = (gd_bytes.len() as u64).div_ceil(SECTOR).max(1);
    gd_bytes.resize((gd_sectors * SECTOR) as usize, 0);
    w(&mut out, &marker(gd_sectors, MARKER_GD))?;
    let gd_offset = out.at / SECTOR;
    w(&mut out, &gd_bytes)?;
    w(&mut out, &marker(1, MARKER_FOOTER))?;
    w(&mut out, &header(capacity, gd_offset))?;
    w(&mut out, &marker(0, MARKER_EOS))?;
    out.flush().map_err(VmdkError::Write)?;
    Ok(VmdkSummary {
        virtual_size: size,
        grains: stored,
        file_size: out.at,
    })
}

/// A writer that counts the bytes written.
struct Counting<W> {
    inner: W,
    at: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.at += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The sparse extent header (also the footer, with the real `gd_offset`).
fn header(capacity: u64, gd_offset: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[0..4].copy_from_slice(b"KDMV");
    h[4..8].copy_from_slice(&3u32.to_le_bytes()); // version
    h[8..12].copy_from_slice(&FLAGS.to_le_bytes());
    h[12..20].copy_from_slice(&capacity.to_le_bytes());
    h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
    h[28..36].copy_from_slice(&DESCRIPTOR_OFFSET.to_le_bytes());
    h[36..44].copy_from_slice(&DESCRIPTOR_SECTORS.to_le_bytes());
    h[44..48].copy_from_slice(&(GT_ENTRIES as u32).to_le_bytes());
    h[48..56].copy_from_slice(&0u64.to_le_bytes()); // rgdOffset: no redundant GD
    h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
    h[64..72].copy_from_slice(&OVERHEAD.to_le_bytes());
    h[72] = 0; // uncleanShutdown
    h[73..77].copy_from_slice(b"\n \r\n"); // newline detection characters
    h[77..79].copy_from_slice(&1u16.to_le_bytes()); // compressAlgorithm: deflate
    h
}

/// The embedded descriptor, as VMware and QEMU write it for an IDE disk.
fn descriptor(capacity: u64, file_name: &str, cid: u32) -> String {
    let cylinders = (capacity / (16 * 63)).min(16383);
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{file_name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.virtualHWVersion = \"4\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"16\"\n\
         ddb.geometry.sectors = \"63\"\n\
         ddb.adapterType = \"ide\"\n"
    )
}

/// A metadata marker sector: `sectors` of metadata of `kind` follow.
fn marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0..8].copy_from_slice(&sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// Grain `g` compressed behind its grain marker, padded to a sector.
fn grain_record(g: u64, data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut record = Vec::with_capacity(data.len() / 2);
    record.extend_from_slice(&(g * GRAIN_SECTORS).to_le_bytes());
    record.extend_from_slice(&[0; 4]);
    let mut z = ZlibEncoder::new(record, Compression::default());
    z.write_all(data)?;
    let mut record = z.finish()?;
    let len = (record.len() - 12) as u32;
    record[8..12].copy_from_slice(&len.to_le_bytes());
    record.resize(record.len().next_multiple_of(SECTOR as usize), 0);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testutil::{run, run_ok, s};

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn qemu_reads_the_vmdk_as_the_raw_disk() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        // Past one grain table (32 MiB), more grains than a batch, a partial last grain.
        let size = 70 * MIB + 4096;
        {
            let mut f = std::fs::File::create(&raw).unwrap();
            f.set_len(size).unwrap();
            let mut put = |at: u64, data: &[u8]| {
                f.seek(SeekFrom::Start(at)).unwrap();
                f.write_all(data).unwrap();
            };
            put(0, &[0xAB; 512]);
            let noise: Vec<u8> = (0..6 * MIB).map(|i| (i * 7919 % 251) as u8).collect();
            put(MIB + 100, &noise);
            put(20 * MIB, &vec![0u8; GRAIN as usize]); // written zeros: left out
            put(40 * MIB - 10, &[7u8; 20]); // crosses a grain and a grain table
            put(size - 5, b"tail!");
        }
        let vmdk = dir.path().join("disk.vmdk");
        let write = |to: &Path| {
            write_stream_optimized(
                &raw,
                "disk.vmdk",
                0x1234abcd,
                std::fs::File::create(to).unwrap(),
            )
            .unwrap()
        };
        let sum = write(&vmdk);
        assert_eq!(sum.virtual_size, size);
        assert_eq!(sum.grains, 1 + 97 + 2 + 1);
        assert_eq!(std::fs::metadata(&vmdk).unwrap().len(), sum.file_size);

        let info = run_ok("qemu-img", "qemu-utils", &["info", s(&vmdk)]);
        assert!(
            info.contains("file format: vmdk")
                && info.contains("create type: streamOptimized")
                && info.contains(&format!("({size} bytes)"))
                && info.contains("compressed: true"),
            "{info}"
        );
        let check = run("qemu-img", "qemu-utils", &["check", s(&vmdk)]);
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && text.contains("No errors were found"),
            "{text}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        let out = run_ok(
            "qemu-img",
            "qemu-utils",
            &["compare", "-f", "raw", "-F", "vmdk", s(&raw), s(&vmdk)],
        );
        assert!(out.contains("Images are identical"), "{out}");

        let again = dir.path().join("again.vmdk");
        write(&again);
        assert_eq!(
            std::fs::read(&again).unwrap(),
            std::fs::read(&vmdk).unwrap()
        );
    }
}
