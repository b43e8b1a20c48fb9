//! Streaming qcow2 (version 3) writer from a raw disk image, following the
//! QEMU qcow2 format specification (`docs/interop/qcow2.txt`).
//!
//! Output layout (64 KiB clusters, 16-bit refcounts, no backing file, no
//! snapshots; optionally compressed clusters):
//!
//! | host cluster   | content                                              |
//! |----------------|------------------------------------------------------|
//! | 0              | header (spec "Header", 104 bytes, v3)                |
//! | 1..=D          | the non-zero guest clusters, in guest order (packed  |
//! |                | byte after byte when compressed)                     |
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
use metadata::{Layout, CLUSTER_SIZE, COMPRESSED_SECTORS_SHIFT, OFLAG_COMPRESSED, OFLAG_COPIED};
use rayon::prelude::*;

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
    write_clusters(raw, virtual_size, extents, out, false)
}

/// Like [`write_qcow2_sparse`], with every stored cluster compressed (raw
/// deflate, the qcow2 default compression type) and packed byte after byte,
/// as `qemu-img convert -c` does. Clusters are compressed in parallel batches
/// and stored in guest order, so the output does not depend on the thread count.
pub fn write_qcow2_compressed<R: Read + Seek, E: DataExtents, W: Write + Seek>(
    raw: &mut R,
    virtual_size: u64,
    extents: &mut E,
    out: &mut W,
) -> Result<Qcow2Summary, Qcow2Error> {
    write_clusters(raw, virtual_size, extents, out, true)
}

/// Guest clusters read before a batch is stored (compressed in parallel).
const BATCH: usize = 64;

fn write_clusters<R: Read + Seek, E: DataExtents, W: Write + Seek>(
    raw: &mut R,
    virtual_size: u64,
    extents: &mut E,
    out: &mut W,
    compress: bool,
) -> Result<Qcow2Summary, Qcow2Error> {
    // Compared with `==` (a memcmp, fast even unoptimised).
    static ZERO: [u8; CLUSTER_SIZE as usize] = [0; CLUSTER_SIZE as usize];
    let guest_clusters = virtual_size.div_ceil(CLUSTER_SIZE);
    let mut allocated = vec![0u64; guest_clusters.div_ceil(64) as usize];
    let mut data = DataArea::new(compress);
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);

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
        let mut buf = vec![0u8; CLUSTER_SIZE as usize];
        raw.seek(SeekFrom::Start(start))?;
        read_full(raw, &mut buf[..len], start, virtual_size)?;
        if buf[..] == ZERO[..] {
            continue;
        }
        allocated[(c / 64) as usize] |= 1 << (c % 64);
        batch.push(buf);
        if batch.len() == BATCH {
            data.store(&mut batch, out)?;
        }
    }
    data.store(&mut batch, out)?;

    let data_clusters = data.host_clusters();
    let layout = Layout::new(virtual_size, data_clusters, &allocated);
    layout.write(out, &allocated, &data.entries, data.refcounts.as_deref())?;
    out.flush()?;
    Ok(Qcow2Summary {
        virtual_size,
        data_clusters: data.entries.len() as u64,
        file_size: layout.file_size(),
    })
}

/// The stored guest clusters: their L2 entries in guest order and, when
/// compressed, the refcount of each data host cluster (how many compressed
/// clusters touch it).
struct DataArea {
    compress: bool,
    /// Next free byte in the file (data starts after the header cluster).
    next: u64,
    entries: Vec<u64>,
    refcounts: Option<Vec<u16>>,
}

impl DataArea {
    fn new(compress: bool) -> Self {
        Self {
            compress,
            next: CLUSTER_SIZE,
            entries: Vec::new(),
            refcounts: compress.then(Vec::new),
        }
    }

    /// Host clusters the data takes.
    fn host_clusters(&self) -> u64 {
        self.next.div_ceil(CLUSTER_SIZE) - 1
    }

    /// Writes `batch` (whole guest clusters, in guest order) and empties it.
    fn store<W: Write>(&mut self, batch: &mut Vec<Vec<u8>>, out: &mut W) -> std::io::Result<()> {
        if !self.compress {
            for cluster in batch.drain(..) {
                out.write_all(&cluster)?;
                self.entries.push(self.next | OFLAG_COPIED);
                self.next += CLUSTER_SIZE;
            }
            return Ok(());
        }
        let compressed: Vec<Vec<u8>> = batch
            .par_iter()
            .map(|cluster| deflate(cluster))
            .collect::<std::io::Result<_>>()?;
        batch.clear();
        let refcounts = self.refcounts.get_or_insert_with(Vec::new);
        for bytes in compressed {
            let (start, last) = (self.next, self.next + bytes.len() as u64 - 1);
            out.write_all(&bytes)?;
            // Sectors beyond the one holding the first byte.
            let more = last / 512 - start / 512;
            self.entries
                .push(OFLAG_COMPRESSED | more << COMPRESSED_SECTORS_SHIFT | start);
            for host in start / CLUSTER_SIZE..=last / CLUSTER_SIZE {
                let i = (host - 1) as usize;
                if refcounts.len() <= i {
                    refcounts.resize(i + 1, 0);
                }
                refcounts[i] += 1;
            }
            self.next = last + 1;
        }
        Ok(())
    }
}

/// A cluster as raw deflate (RFC 1951), what qcow2's compression type 0 means.
fn deflate(cluster: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(cluster.len() / 2),
        flate2::Compression::default(),
    );
    z.write_all(cluster)?;
    z.finish()
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
    convert(raw, qcow2, false)
}

/// Like [`convert_file`], with compressed clusters ([`write_qcow2_compressed`]).
pub fn convert_file_compressed(raw: &Path, qcow2: &Path) -> Result<Qcow2Summary, Qcow2Error> {
    convert(raw, qcow2, true)
}

fn convert(raw: &Path, qcow2: &Path, compress: bool) -> Result<Qcow2Summary, Qcow2Error> {
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
    let summary = write_clusters(&mut reader, size, &mut extents, &mut out, compress)?;
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all().map_err(file_err(qcow2))?;
    Ok(summary)
}

#[cfg(test)]
mod tests;
