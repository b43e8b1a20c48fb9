//! Reading guest bytes back out of a qcow2 image (qcow2.txt "Cluster mapping"): enough for
//! what imgbuild needs to know about a disk it is given (its boot sector), for any qcow2
//! without a backing file or encryption, ours or `qemu-img`'s, deflate-compressed clusters
//! included.

use std::io::{Read, Seek, SeekFrom};

/// The magic at byte 0 of every qcow2 file.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Bits 9-55 of an L1 or L2 entry: the host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L2 entry flag: the cluster is compressed.
const OFLAG_COMPRESSED: u64 = 1 << 62;
/// L2 entry flag (version 3): the cluster reads as zeros.
const OFLAG_ZERO: u64 = 1;
/// Incompatible features this reader cannot follow: an external data file (bit 2),
/// a compression type other than deflate (bit 3) and extended L2 entries (bit 4).
const UNSUPPORTED_FEATURES: u64 = (1 << 2) | (1 << 3) | (1 << 4);

/// Why a qcow2 image cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Qcow2ReadError {
    /// The file does not start with the qcow2 magic.
    #[error("not a qcow2 image (no `QFI\\xfb` magic at byte 0)")]
    NotQcow2,
    /// A qcow2 feature this reader does not follow.
    #[error("qcow2 image uses {0}, which imgbuild does not read; convert it with `qemu-img convert -O qcow2` first")]
    Unsupported(&'static str),
    /// A compressed cluster holding the guest range does not inflate.
    #[error("guest byte {guest_offset} is in a compressed cluster that does not inflate (damaged image); check it with `qemu-img check`")]
    Compressed {
        /// The guest offset asked for.
        guest_offset: u64,
    },
    /// Reading the file failed (or it is truncated).
    #[error("reading the qcow2 image: {0}")]
    Io(#[from] std::io::Error),
}

/// A qcow2 image opened for reading guest bytes.
#[derive(Debug)]
pub struct Qcow2Reader<R> {
    inner: R,
    cluster_bits: u32,
    virtual_size: u64,
    l1_offset: u64,
    l1_size: u64,
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    (u64::from(be_u32(b, at)) << 32) | u64::from(be_u32(b, at + 4))
}

impl<R: Read + Seek> Qcow2Reader<R> {
    /// Reads and checks the header.
    pub fn open(mut inner: R) -> Result<Self, Qcow2ReadError> {
        let mut h = [0u8; 104];
        inner.seek(SeekFrom::Start(0))?;
        inner.read_exact(&mut h[..72]).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Qcow2ReadError::NotQcow2,
            _ => e.into(),
        })?;
        if h[..4] != MAGIC {
            return Err(Qcow2ReadError::NotQcow2);
        }
        let version = be_u32(&h, 4);
        if !(2..=3).contains(&version) {
            return Err(Qcow2ReadError::Unsupported(
                "a header version other than 2 or 3",
            ));
        }
        if be_u64(&h, 8) != 0 {
            return Err(Qcow2ReadError::Unsupported("a backing file"));
        }
        if be_u32(&h, 32) != 0 {
            return Err(Qcow2ReadError::Unsupported("encryption"));
        }
        if version == 3 {
            inner.read_exact(&mut h[72..80])?;
            if be_u64(&h, 72) & UNSUPPORTED_FEATURES != 0 {
                return Err(Qcow2ReadError::Unsupported(
                    "an external data file, zstd compression or extended L2 entries",
                ));
            }
        }
        let cluster_bits = be_u32(&h, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(Qcow2ReadError::Unsupported(
                "a cluster size outside 512 B..2 MiB",
            ));
        }
        Ok(Self {
            inner,
            cluster_bits,
            virtual_size: be_u64(&h, 24),
            l1_size: u64::from(be_u32(&h, 36)),
            l1_offset: be_u64(&h, 40),
        })
    }

    /// The guest disk's size in bytes.
    pub fn virtual_size(&self) -> u64 {
        self.virtual_size
    }

    fn entry(&mut self, at: u64) -> Result<u64, Qcow2ReadError> {
        let mut word = [0u8; 8];
        self.inner.seek(SeekFrom::Start(at))?;
        self.inner.read_exact(&mut word)?;
        Ok(u64::from_be_bytes(word))
    }

    /// Where the guest cluster holding `guest` is stored.
    fn host_cluster(&mut self, guest: u64) -> Result<Stored, Qcow2ReadError> {
        let cluster = guest >> self.cluster_bits;
        let l2_entries = 1u64 << (self.cluster_bits - 3);
        let l1_index = cluster / l2_entries;
        if l1_index >= self.l1_size {
            return Ok(Stored::Zeros);
        }
        let l2 = self.entry(self.l1_offset + 8 * l1_index)? & OFFSET_MASK;
        if l2 == 0 {
            return Ok(Stored::Zeros);
        }
        let e = self.entry(l2 + 8 * (cluster % l2_entries))?;
        if e & OFLAG_COMPRESSED != 0 {
            // Compressed cluster descriptor: the byte offset below bit x, then the
            // sectors after the first, x = 62 - (cluster_bits - 8).
            let x = 62 - (self.cluster_bits - 8);
            let offset = e & ((1 << x) - 1);
            let sectors = ((e >> x) & ((1 << (self.cluster_bits - 8)) - 1)) + 1;
            let len = sectors * 512 - (offset & 511);
            return Ok(Stored::Compressed { offset, len });
        }
        let host = e & OFFSET_MASK;
        Ok(if host != 0 && e & OFLAG_ZERO == 0 {
            Stored::Plain(host)
        } else {
            Stored::Zeros
        })
    }

    /// Fills `buf` with the guest bytes from `offset`; unallocated clusters and bytes past
    /// the virtual size read as zeros.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Qcow2ReadError> {
        let cluster_size = 1u64 << self.cluster_bits;
        let mut done = 0usize;
        while done < buf.len() {
            let guest = offset + done as u64;
            let within = guest & (cluster_size - 1);
            let n = (buf.len() - done).min((cluster_size - within) as usize);
            let part = &mut buf[done..done + n];
            match self.host_cluster(guest)? {
                _ if guest >= self.virtual_size => part.fill(0),
                Stored::Zeros => part.fill(0),
                Stored::Plain(host) => {
                    self.inner.seek(SeekFrom::Start(host + within))?;
                    self.inner.read_exact(part)?;
                }
                Stored::Compressed { offset, len } => {
                    let mut packed = vec![0u8; len as usize];
                    self.inner.seek(SeekFrom::Start(offset))?;
                    // The last sector may run past the end of the file.
                    let got = read_up_to(&mut self.inner, &mut packed)?;
                    let mut cluster = vec![0u8; cluster_size as usize];
                    let mut z = flate2::read::DeflateDecoder::new(&packed[..got]);
                    z.read_exact(&mut cluster)
                        .map_err(|_| Qcow2ReadError::Compressed {
                            guest_offset: guest,
                        })?;
                    part.copy_from_slice(&cluster[within as usize..within as usize + n]);
                }
            }
            done += n;
        }
        Ok(())
    }
}

/// How a guest cluster is stored.
enum Stored {
    /// Unallocated or a zero cluster.
    Zeros,
    /// Uncompressed at this host offset.
    Plain(u64),
    /// Compressed: up to `len` bytes of raw deflate at `offset`.
    Compressed { offset: u64, len: u64 },
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
