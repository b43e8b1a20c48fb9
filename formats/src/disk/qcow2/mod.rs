//! Streaming qcow2 (version 3) writer from a raw disk image, following the
//! QEMU qcow2 format specification (`docs/interop/qcow2.txt`).
//!
//! Output layout (64 KiB clusters, 16-bit refcounts, no backing file, no
//! compression, no snapshots):
//!
//! | host cluster   | content                                              |
//! |----------------|------------------------------------------------------|
//! | 0              | header (spec "Header", 104 bytes, v3)                |
//! | 1..=D          | the non-zero guest clusters, in guest order          |
//! | then           | L2 tables, only for 512 MiB ranges holding data      |
//! | then           | L1 table                                             |
//! | then           | refcount table, then refcount blocks                 |
//!
//! All-zero guest clusters are left unallocated (they read as zeros, since
//! there is no backing file). The raw image is read once, sequentially;
//! memory use is one cluster buffer plus one bit per guest cluster (2 KiB per
//! GiB of virtual size). Holes of a sparse source file are skipped without
//! reading them ([`convert_file`]). Output is deterministic.

mod metadata;
pub mod read;

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::disk::sparse::{AllData, DataExtents, FileExtents};
use metadata::{Layout, CLUSTER_SIZE};

/// Errors while converting a raw image to qcow2.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2Error {
    /// The raw source ended before its declared size.
    #[error(
        "raw image ended at byte {got} but its size was given as {expected}; pass the real size"
    )]
    ShortSource {
        /// Declared size.
        expected: u64,
        /// Bytes actually available.
        got: u64,
    },
    /// Opening or reading a source/destination file failed.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("qcow2 conversion I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What a conversion produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Summary {
    /// Guest (virtual) disk size in bytes.
    pub virtual_size: u64,
    /// Guest clusters stored (non-zero data).
    pub data_clusters: u64,
    /// Size of the qcow2 file in bytes.
    pub file_size: u64,
}

/// Converts `raw` (`virtual_size` bytes from offset 0) into a qcow2 image
/// written to `out` from offset 0. Every byte of `raw` is read; see
/// [`write_qcow2_sparse`] to skip holes.
pub fn write_qcow2<R: Read + Seek, W: Write + Seek>(
    raw: &mut R,
    virtual_size: u64,
    out: &mut W,
) -> Result<Qcow2Summary, Qcow2Error> {
    write_qcow2_sparse(raw, virtual_size, &mut AllData, out)
}

/// Like [`write_qcow2`], but only reads the byte ranges `extents` reports
/// as data; everything else is taken to be zeros.
pub fn write_qcow2_sparse<R: Read + Seek, E: DataExtents, W: Write + Seek>(
    raw: &mut R,
    virtual_size: u64,
    extents: &mut E,
    out: &mut W,
) -> Result<Qcow2Summary, Qcow2Error> {
    static ZERO: [u8; CLUSTER_SIZE as usize] = [0; CLUSTER_SIZE as usize];
    let guest_clusters = virtual_size.div_ceil(CLUSTER_SIZE);
    let mut allocated = vec![0u64; guest_clusters.div_ceil(64) as usize];
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    let mut data_clusters = 0u64;

    out.seek(SeekFrom::Start(CLUSTER_SIZE))?;
    let mut extent = extents.next_data(0, virtual_size)?;
    for c in 0..guest_clusters {
        let start = c * CLUSTER_SIZE;
        let end = (start + CLUSTER_SIZE).min(virtual_size);
        while let Some((_, e)) = extent {
            if e > start {
                break;
            }
            extent = extents.next_data(start, virtual_size)?;
        }
        let Some((data_start, _)) = extent else {
            break;
        };
        if data_start >= end {
            continue;
        }
        let len = (end - start) as usize;
        raw.seek(SeekFrom::Start(start))?;
        read_full(raw, &mut buf[..len], start, virtual_size)?;
        buf[len..].fill(0);
        if buf[..] == ZERO[..] {
            continue;
        }
        out.write_all(&buf)?;
        allocated[(c / 64) as usize] |= 1 << (c % 64);
        data_clusters += 1;
    }

    let layout = Layout::new(virtual_size, data_clusters, &allocated);
    layout.write(out, &allocated)?;
    out.flush()?;
    Ok(Qcow2Summary {
        virtual_size,
        data_clusters,
        file_size: layout.file_size(),
    })
}

/// Reads exactly `buf.len()` bytes, reporting a short source clearly.
fn read_full<R: Read>(raw: &mut R, buf: &mut [u8], at: u64, size: u64) -> Result<(), Qcow2Error> {
    let mut got = 0;
    while got < buf.len() {
        match raw.read(&mut buf[got..]) {
            Ok(0) => {
                return Err(Qcow2Error::ShortSource {
                    expected: size,
                    got: at + got as u64,
                })
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Converts the raw image file `raw` into a new qcow2 file `qcow2`
/// (truncated if present), skipping holes with `SEEK_DATA`/`SEEK_HOLE`.
pub fn convert_file(raw: &Path, qcow2: &Path) -> Result<Qcow2Summary, Qcow2Error> {
    let file_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| Qcow2Error::File { path, source }
    };
    let src = fs_err::File::open(raw).map_err(file_err(raw))?;
    let size = src.metadata().map_err(file_err(raw))?.len();
    let out = fs_err::File::create(qcow2).map_err(file_err(qcow2))?;
    let mut out = std::io::BufWriter::with_capacity(1024 * 1024, out);
    let mut reader = src.file();
    let mut extents = FileExtents::new(src.file());
    let summary = write_qcow2_sparse(&mut reader, size, &mut extents, &mut out)?;
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all().map_err(file_err(qcow2))?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
