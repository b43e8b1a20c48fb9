//! What Google Compute Engine imports: the raw disk as `disk.raw` in a gzip'd
//! GNU tar, written as `tar --format=oldgnu -Sczf` does (the command Google's
//! documentation gives), without calling it.
//!
//! `disk.raw` is a GNU sparse member (type `S`): only the 64 KiB chunks that
//! hold a non-zero byte are stored, listed in the header's sparse map and its
//! extension blocks; extraction (`tar -xSf`, GCE's importer) recreates the
//! holes. Numbers that do not fit the 11 octal digits of a field (8 GiB and
//! more) use GNU's base-256 form. The raw file is read twice (once for the map,
//! which precedes the data, once for the data), skipping holes with
//! `SEEK_DATA`. gzip compresses 1 MiB chunks in parallel (pigz's scheme, see
//! [`ParallelGz`]); its header carries no mtime and no name, and the member's
//! mtime is the image's epoch, so the output is reproducible.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use rayon::prelude::*;

use super::sparse::{DataExtents, FileExtents};

/// Granularity of the sparse map: chunks of this many bytes are stored whole.
const CHUNK: u64 = 64 * 1024;
/// A zero chunk, compared with `!=` (a memcmp).
static ZERO: [u8; CHUNK as usize] = [0; CHUNK as usize];
/// tar block size.
const BLOCK: usize = 512;
/// GNU tar's default record: the archive is padded to a multiple of it.
const RECORD: u64 = 20 * BLOCK as u64;
/// Sparse map entries in the main header.
const HEADER_ENTRIES: usize = 4;
/// Sparse map entries per extension block.
const EXTENSION_ENTRIES: usize = 21;

/// Errors while writing a GCE image archive.
#[derive(Debug, thiserror::Error)]
pub enum GceError {
    /// Reading the raw disk failed or it changed size while being read.
    #[error("reading the raw disk {}: {source}", path.display())]
    Read {
        /// The raw disk.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the archive failed.
    #[error("writing the GCE archive: {0}")]
    Write(#[source] std::io::Error),
}

/// What [`write_tar_gz`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GceSummary {
    /// Size of `disk.raw` once extracted.
    pub disk_size: u64,
    /// Bytes of it stored in the tar (the non-zero chunks).
    pub stored: u64,
}

/// Writes `raw` as `disk.raw` (mtime `mtime`) into a gzip'd GNU tar on `out`.
pub fn write_tar_gz<W: Write>(raw: &Path, mtime: u64, out: W) -> Result<GceSummary, GceError> {
    let read_err = |source| GceError::Read {
        path: raw.to_owned(),
        source,
    };
    let file = fs_err::File::open(raw).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    let map = sparse_map(file.file(), size).map_err(read_err)?;
    let stored: u64 = map.iter().map(|&(_, len)| len).sum();

    let mut gz = ParallelGz::new(out).map_err(GceError::Write)?;
    let w = |gz: &mut ParallelGz<W>, bytes: &[u8]| gz.write(bytes).map_err(GceError::Write);
    let blocks = headers(size, stored, mtime, &map);
    for block in &blocks {
        w(&mut gz, block)?;
    }
    let mut buf = vec![0u8; CHUNK as usize];
    let mut reader = file.file();
    for &(offset, len) in &map {
        reader.seek(SeekFrom::Start(offset)).map_err(read_err)?;
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK) as usize;
            reader.read_exact(&mut buf[..n]).map_err(read_err)?;
            w(&mut gz, &buf[..n])?;
            left -= n as u64;
        }
    }
    // Data padded to a block, the end-of-archive marker (two zero blocks), then zeros
    // to a whole record.
    let written = (blocks.len() * BLOCK) as u64 + stored.div_ceil(BLOCK as u64) * BLOCK as u64;
    let end = (written + 2 * BLOCK as u64).div_ceil(RECORD) * RECORD;
    let tail = stored.next_multiple_of(BLOCK as u64) - stored + (end - written);
    w(&mut gz, &vec![0u8; tail as usize])?;
    gz.finish().map_err(GceError::Write)?;
    Ok(GceSummary {
        disk_size: size,
        stored,
    })
}

/// Uncompressed bytes per independently compressed gzip chunk.
const GZ_CHUNK: usize = 1 << 20;
/// Chunks compressed at once.
const GZ_BATCH: usize = 8;

/// A gzip writer that compresses 1 MiB chunks in parallel, as pigz does: each
/// chunk becomes raw deflate blocks ended by a sync flush (the last by the
/// final block), so the chunks join into one deflate stream. Chunk boundaries
/// sit at fixed offsets of the input, so the output does not depend on the
/// thread count or on how the input was split into writes. The header has no
/// mtime and no name.
struct ParallelGz<W: Write> {
    out: W,
    pending: Vec<u8>,
    crc: Crc,
}

impl<W: Write> ParallelGz<W> {
    fn new(mut out: W) -> std::io::Result<Self> {
        // Magic, deflate, no flags, mtime 0, no extra flags, OS unknown.
        out.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255])?;
        Ok(Self {
            out,
            pending: Vec::with_capacity(GZ_CHUNK * GZ_BATCH),
            crc: Crc::new(),
        })
    }

    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = GZ_CHUNK * GZ_BATCH - self.pending.len();
            let n = room.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.pending.len() == GZ_CHUNK * GZ_BATCH {
                self.compress_pending(false)?;
            }
        }
        Ok(())
    }

    /// Compresses the whole chunks pending (all of it when `last`).
    fn compress_pending(&mut self, last: bool) -> std::io::Result<()> {
        let whole = if last {
            self.pending.len()
        } else {
            self.pending.len() / GZ_CHUNK * GZ_CHUNK
        };
        let chunks: Vec<&[u8]> = if whole == 0 {
            vec![&[]]
        } else {
            self.pending[..whole].chunks(GZ_CHUNK).collect()
        };
        let n = chunks.len();
        let packed: Vec<Vec<u8>> = chunks
            .into_par_iter()
            .enumerate()
            .map(|(i, chunk)| deflate_chunk(chunk, last && i + 1 == n))
            .collect::<std::io::Result<_>>()?;
        for p in packed {
            self.out.write_all(&p)?;
        }
        self.crc.update(&self.pending[..whole]);
        self.pending.drain(..whole);
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.compress_pending(true)?;
        self.out.write_all(&self.crc.sum().to_le_bytes())?;
        self.out.write_all(&self.crc.amount().to_le_bytes())?;
        self.out.flush()
    }
}

/// `chunk` as raw deflate, ended by a sync flush or, when `last`, the final block.
fn deflate_chunk(chunk: &[u8], last: bool) -> std::io::Result<Vec<u8>> {
    let mut z = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.len() == out.capacity() {
            out.reserve(64 * 1024);
        }
        let status = z
            .compress_vec(&chunk[z.total_in() as usize..], &mut out, flush)
            .map_err(std::io::Error::other)?;
        let consumed = z.total_in() as usize == chunk.len();
        match status {
            Status::StreamEnd => break,
            _ if !last && consumed && out.len() < out.capacity() => break,
            _ => {}
        }
    }
    Ok(out)
}

/// The `(offset, length)` runs of 64 KiB chunks of `file` that hold a
/// non-zero byte, merged, ending with `(size, 0)` when the file ends in a hole
/// (as GNU tar writes, so extraction restores the size).
fn sparse_map(file: &std::fs::File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
    let mut map: Vec<(u64, u64)> = Vec::new();
    let mut extents = FileExtents::new(file);
    let mut reader = file;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut from = 0;
    while let Some((start, end)) = extents.next_data(from, size)? {
        let mut chunk = start / CHUNK * CHUNK;
        while chunk < end {
            let len = CHUNK.min(size - chunk);
            reader.seek(SeekFrom::Start(chunk))?;
            reader.read_exact(&mut buf[..len as usize])?;
            if buf[..len as usize] != ZERO[..len as usize] {
                match map.last_mut() {
                    Some((o, l)) if *o + *l == chunk => *l += len,
                    _ => map.push((chunk, len)),
                }
            }
            chunk += CHUNK;
        }
        from = chunk;
    }
    if map.last().is_none_or(|&(o, l)| o + l < size) {
        map.push((size, 0));
    }
    Ok(map)
}

/// The member's header and sparse extension blocks.
fn headers(size: u64, stored: u64, mtime: u64, map: &[(u64, u64)]) -> Vec<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    h[..8].copy_from_slice(b"disk.raw");
    number(&mut h[100..108], 0o644);
    number(&mut h[108..116], 0);
    number(&mut h[116..124], 0);
    number(&mut h[124..136], stored);
    number(&mut h[136..148], mtime);
    h[156] = b'S';
    h[257..265].copy_from_slice(b"ustar  \0");
    let (first, rest) = map.split_at(map.len().min(HEADER_ENTRIES));
    for (i, &(offset, len)) in first.iter().enumerate() {
        let at = 386 + i * 24;
        number(&mut h[at..at + 12], offset);
        number(&mut h[at + 12..at + 24], len);
    }
    h[482] = u8::from(!rest.is_empty());
    number(&mut h[483..495], size);
    // Checksum: the header's byte sum with the field taken as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());

    let mut blocks = vec![h];
    let chunks: Vec<_> = rest.chunks(EXTENSION_ENTRIES).collect();
    for (k, chunk) in chunks.iter().enumerate() {
        let mut x = [0u8; BLOCK];
        for (i, &(offset, len)) in chunk.iter().enumerate() {
            let at = i * 24;
            number(&mut x[at..at + 12], offset);
            number(&mut x[at + 12..at + 24], len);
        }
        x[504] = u8::from(k + 1 < chunks.len());
        blocks.push(x);
    }
    blocks
}

/// A numeric field: octal digits and a NUL when they fit, else GNU base-256
/// (a leading 0x80 byte, then the value big-endian).
fn number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || value < 1 << (3 * digits) {
        let text = format!("{value:0digits$o}\0");
        field.copy_from_slice(text.as_bytes());
    } else {
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&value.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::testutil::{run_ok, s};
    use std::process::Command;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn numbers_switch_to_base_256_past_eleven_octal_digits() {
        let mut f = [0u8; 12];
        number(&mut f, 8 * 1024 * MIB - 1);
        assert_eq!(&f, b"77777777777\0");
        number(&mut f, 8 * 1024 * MIB);
        assert_eq!(f[0], 0x80);
        assert_eq!(&f[4..], &(8 * 1024 * MIB).to_be_bytes());
    }

    #[test]
    fn parallel_gzip_is_one_stream_whatever_the_writes() {
        let mut x = 7u32;
        let data: Vec<u8> = (0..(9 << 20) + 12_345)
            .map(|i: u32| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                if i.is_multiple_of(3) {
                    (x >> 24) as u8
                } else {
                    b"abc"[(i % 3) as usize]
                }
            })
            .collect();
        let gz = |step: usize| {
            let mut out = Vec::new();
            let mut z = ParallelGz::new(&mut out).unwrap();
            for part in data.chunks(step) {
                z.write(part).unwrap();
            }
            z.finish().unwrap();
            out
        };
        let a = gz(1_000_003);
        assert!(
            a == gz(4096),
            "the output depends on how the input was written"
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back == data);
        // GNU gzip checks the CRC and length too.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.gz");
        std::fs::write(&file, &a).unwrap();
        run_ok("gzip", "gzip", &["-t", s(&file)]);
        // Empty input: a valid, empty stream.
        let mut empty = Vec::new();
        ParallelGz::new(&mut empty).unwrap().finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }

    #[test]
    fn gnu_tar_extracts_the_raw_disk_sparse() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        // Past 8 GiB (base-256 numbers), with more runs than the header holds.
        let size = 9 * 1024 * MIB;
        {
            let mut f = std::fs::File::create(&raw).unwrap();
            f.set_len(size).unwrap();
            let mut put = |at: u64, data: &[u8]| {
                f.seek(SeekFrom::Start(at)).unwrap();
                f.write_all(data).unwrap();
            };
            put(0, &[0xAB; 512]);
            for i in 0..30 {
                put(MIB + i * 3 * CHUNK + 7, &[i as u8 + 1; 100]);
            }
            put(5 * MIB, &vec![0u8; CHUNK as usize]); // written zeros: a hole in the tar
            put(size - 5, b"tail!");
        }
        let archive = dir.path().join("disk.tar.gz");
        let sum = write_tar_gz(
            &raw,
            1_700_000_000,
            std::fs::File::create(&archive).unwrap(),
        )
        .unwrap();
        assert_eq!(sum.disk_size, size);
        assert_eq!(sum.stored, 32 * CHUNK);
        let bytes = std::fs::read(&archive).unwrap();
        // gzip: deflate, no flags (no name), mtime 0.
        assert_eq!(&bytes[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);

        let list = run_ok("tar", "tar", &["-tvzf", s(&archive)]);
        assert!(list.contains(&format!(" {size} ")), "{list}");
        assert!(list.trim_end().ends_with(" disk.raw"), "{list}");
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        run_ok("tar", "tar", &["-xzSf", s(&archive), "-C", s(&x)]);
        let out = run_ok(
            "qemu-img",
            "qemu-utils",
            &[
                "compare",
                "-f",
                "raw",
                "-F",
                "raw",
                s(&raw),
                s(&x.join("disk.raw")),
            ],
        );
        assert!(out.contains("Images are identical"), "{out}");
        let meta = std::fs::metadata(x.join("disk.raw")).unwrap();
        assert_eq!(meta.len(), size);

        // The `tar` crate reads it too (GCE's importer is not GNU tar).
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
        let mut entries = a.entries().unwrap();
        let mut e = entries.next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("disk.raw"));
        assert_eq!(e.size(), size);
        let mut head = [0u8; 512];
        e.read_exact(&mut head).unwrap();
        assert_eq!(head, [0xAB; 512]);
        drop(e);
        assert!(entries.next().is_none());

        let again = dir.path().join("again.tar.gz");
        write_tar_gz(&raw, 1_700_000_000, std::fs::File::create(&again).unwrap()).unwrap();
        assert_eq!(std::fs::read(&again).unwrap(), bytes);
        let gz = Command::new("gzip")
            .arg("-t")
            .arg(&archive)
            .status()
            .unwrap();
        assert!(gz.success());
    }
}
