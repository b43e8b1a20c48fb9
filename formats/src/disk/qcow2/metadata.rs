//! qcow2 metadata placed after the data clusters: L2 tables, L1 table,
//! refcount table and refcount blocks, and the header (qcow2.txt sections
//! "Header", "Host cluster management", "Cluster mapping").

use std::io::{Seek, SeekFrom, Write};

/// `cluster_bits` = 16: 64 KiB clusters (QEMU's default).
pub(crate) const CLUSTER_BITS: u32 = 16;
/// Bytes per cluster.
pub(crate) const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table (one cluster).
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// `refcount_order` = 4: 16-bit refcounts.
const REFCOUNT_ORDER: u32 = 4;
/// Refcounts per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE * 8 / (1 << REFCOUNT_ORDER);
/// L1/L2 flag: refcount is exactly one (`QCOW_OFLAG_COPIED`).
pub(crate) const OFLAG_COPIED: u64 = 1 << 63;
/// L2 flag: a compressed cluster (`QCOW_OFLAG_COMPRESSED`).
pub(crate) const OFLAG_COMPRESSED: u64 = 1 << 62;
/// Where a compressed cluster descriptor's sector count starts: bit
/// `62 - (cluster_bits - 8)`; the host byte offset takes the bits below.
pub(crate) const COMPRESSED_SECTORS_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);
/// Header length for version 3 without optional fields.
const HEADER_LENGTH: u32 = 104;

/// Host placement of the metadata, in cluster indices.
pub(crate) struct Layout {
    virtual_size: u64,
    guest_clusters: u64,
    l1_size: u64,
    /// Which L1 entries have an L2 table.
    l2_present: Vec<bool>,
    l2_start: u64,
    l1_start: u64,
    l1_clusters: u64,
    rt_start: u64,
    rt_clusters: u64,
    rb_start: u64,
    rb_count: u64,
    total: u64,
}

fn bit(allocated: &[u64], c: u64) -> bool {
    allocated[(c / 64) as usize] & (1 << (c % 64)) != 0
}

impl Layout {
    /// Places metadata after header + `data_clusters` data clusters.
    pub(crate) fn new(virtual_size: u64, data_clusters: u64, allocated: &[u64]) -> Layout {
        let guest_clusters = virtual_size.div_ceil(CLUSTER_SIZE);
        let l1_size = guest_clusters.div_ceil(L2_ENTRIES);
        let l2_present: Vec<bool> = (0..l1_size)
            .map(|i| {
                let lo = i * L2_ENTRIES;
                let hi = ((i + 1) * L2_ENTRIES).min(guest_clusters);
                (lo..hi).any(|c| bit(allocated, c))
            })
            .collect();
        let l2_count = l2_present.iter().filter(|&&p| p).count() as u64;
        let l2_start = 1 + data_clusters;
        let l1_start = l2_start + l2_count;
        let l1_clusters = (l1_size * 8).div_ceil(CLUSTER_SIZE).max(1);
        let rt_start = l1_start + l1_clusters;
        // Refcount structures count themselves: iterate to a fixed point.
        let (mut rt_clusters, mut rb_count) = (1u64, 1u64);
        loop {
            let total = rt_start + rt_clusters + rb_count;
            let rb = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let rt = (rb * 8).div_ceil(CLUSTER_SIZE).max(1);
            if (rt, rb) == (rt_clusters, rb_count) {
                break;
            }
            (rt_clusters, rb_count) = (rt.max(rt_clusters), rb.max(rb_count));
        }
        let rb_start = rt_start + rt_clusters;
        Layout {
            virtual_size,
            guest_clusters,
            l1_size,
            l2_present,
            l2_start,
            l1_start,
            l1_clusters,
            rt_start,
            rt_clusters,
            rb_start,
            rb_count,
            total: rb_start + rb_count,
        }
    }

    /// Size of the finished file in bytes.
    pub(crate) fn file_size(&self) -> u64 {
        self.total * CLUSTER_SIZE
    }

    /// Writes L2 tables, L1, refcount table and blocks, then the header.
    /// `entries` are the L2 entries of the allocated guest clusters in guest
    /// order; `data_refcounts` the refcounts of the data host clusters (from
    /// host cluster 1), or `None` when each is 1.
    pub(crate) fn write<W: Write + Seek>(
        &self,
        out: &mut W,
        allocated: &[u64],
        entries: &[u64],
        data_refcounts: Option<&[u16]>,
    ) -> std::io::Result<()> {
        let mut table = vec![0u8; CLUSTER_SIZE as usize];
        out.seek(SeekFrom::Start(self.l2_start * CLUSTER_SIZE))?;
        let mut entries = entries.iter();
        let mut l1 = Vec::with_capacity((self.l1_clusters * CLUSTER_SIZE) as usize);
        let mut l2_host = self.l2_start;
        for (i, present) in self.l2_present.iter().enumerate() {
            if !present {
                l1.extend_from_slice(&0u64.to_be_bytes());
                continue;
            }
            table.fill(0);
            let lo = i as u64 * L2_ENTRIES;
            let hi = (lo + L2_ENTRIES).min(self.guest_clusters);
            for c in lo..hi {
                if bit(allocated, c) {
                    let e = entries.next().copied().unwrap_or(0);
                    let at = ((c - lo) * 8) as usize;
                    table[at..at + 8].copy_from_slice(&e.to_be_bytes());
                }
            }
            out.write_all(&table)?;
            l1.extend_from_slice(&((l2_host * CLUSTER_SIZE) | OFLAG_COPIED).to_be_bytes());
            l2_host += 1;
        }
        l1.resize((self.l1_clusters * CLUSTER_SIZE) as usize, 0);
        out.write_all(&l1)?;

        let mut rt = vec![0u8; (self.rt_clusters * CLUSTER_SIZE) as usize];
        for k in 0..self.rb_count {
            let off = (self.rb_start + k) * CLUSTER_SIZE;
            rt[(k * 8) as usize..(k * 8 + 8) as usize].copy_from_slice(&off.to_be_bytes());
        }
        out.write_all(&rt)?;
        for k in 0..self.rb_count {
            table.fill(0);
            let lo = k * REFCOUNTS_PER_BLOCK;
            let hi = ((k + 1) * REFCOUNTS_PER_BLOCK).min(self.total);
            for c in lo..hi {
                let count = match data_refcounts {
                    Some(counts) if (1..self.l2_start).contains(&c) => counts[(c - 1) as usize],
                    _ => 1,
                };
                let at = ((c - lo) * 2) as usize;
                table[at..at + 2].copy_from_slice(&count.to_be_bytes());
            }
            out.write_all(&table)?;
        }

        out.seek(SeekFrom::Start(0))?;
        out.write_all(&self.header())?;
        Ok(())
    }

    /// The version 3 header, followed by the end-of-extensions marker.
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::with_capacity(HEADER_LENGTH as usize + 8);
        h.extend_from_slice(b"QFI\xfb");
        h.extend_from_slice(&3u32.to_be_bytes()); // version
        h.extend_from_slice(&0u64.to_be_bytes()); // backing_file_offset
        h.extend_from_slice(&0u32.to_be_bytes()); // backing_file_size
        h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
        h.extend_from_slice(&self.virtual_size.to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // crypt_method
        h.extend_from_slice(&(self.l1_size as u32).to_be_bytes());
        h.extend_from_slice(&(self.l1_start * CLUSTER_SIZE).to_be_bytes());
        h.extend_from_slice(&(self.rt_start * CLUSTER_SIZE).to_be_bytes());
        h.extend_from_slice(&(self.rt_clusters as u32).to_be_bytes());
        h.extend_from_slice(&0u32.to_be_bytes()); // nb_snapshots
        h.extend_from_slice(&0u64.to_be_bytes()); // snapshots_offset
        h.extend_from_slice(&0u64.to_be_bytes()); // incompatible_features
        h.extend_from_slice(&0u64.to_be_bytes()); // compatible_features
        h.extend_from_slice(&0u64.to_be_bytes()); // autoclear_features
        h.extend_from_slice(&REFCOUNT_ORDER.to_be_bytes());
        h.extend_from_slice(&HEADER_LENGTH.to_be_bytes());
        h.extend_from_slice(&[0u8; 8]); // header extension end marker
        h.resize(CLUSTER_SIZE as usize, 0);
        h
    }
}
