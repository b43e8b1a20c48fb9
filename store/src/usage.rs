//! `store du`: everything the store holds on disk, bucket by bucket, and what the index
//! counts.

use crate::disk::{measure, Measured};
use crate::layout::Bucket;
use crate::{Digest, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// What the store holds.
#[derive(Debug, Default, serde::Serialize)]
pub struct StoreUsage {
    /// Everything below the store's root, as `du -sb` counts it.
    pub bytes: u64,
    /// Bytes on disk in each bucket.
    pub buckets: BTreeMap<Bucket, u64>,
    /// The rest: the index, lock files, `CACHEDIR.TAG` and the directories themselves.
    pub other_bytes: u64,
    /// Directories that could not be read (the total is then a lower bound).
    pub unreadable_dirs: usize,
    /// Number of indexed blobs.
    pub blobs: usize,
    /// Their total size.
    pub blob_bytes: u64,
    /// Number of distinct layers.
    pub layers: usize,
    /// Number of unpacked layer dirs (one per layer and flavour).
    pub unpacked: usize,
    /// Number of step cache entries.
    pub cache_entries: usize,
    /// Number of image refs.
    pub refs: usize,
}

/// The store on disk, measured in one walk.
#[derive(Debug, Default)]
pub(crate) struct OnDisk {
    pub(crate) total: u64,
    pub(crate) buckets: BTreeMap<Bucket, u64>,
    pub(crate) other: u64,
    pub(crate) unreadable: usize,
}

impl Store {
    /// Measures the whole store on disk (every file below the root, hard links once, but
    /// not the index's shared-memory file, which goes when the store is closed).
    pub(crate) fn on_disk(&self) -> OnDisk {
        let mut seen = HashSet::new();
        let mut out = OnDisk::default();
        let add = |out: &mut OnDisk, bucket: Option<Bucket>, m: Measured| {
            out.total += m.bytes;
            out.unreadable += m.unreadable;
            match bucket {
                Some(b) => *out.buckets.entry(b).or_default() += m.bytes,
                None => out.other += m.bytes,
            }
        };
        for bucket in Bucket::ALL {
            out.buckets.insert(bucket, 0);
        }
        let data = self.layout.data().to_owned();
        for dir in [self.root().to_owned(), data.clone()] {
            if let Ok(meta) = std::fs::symlink_metadata(&dir) {
                add(
                    &mut out,
                    None,
                    Measured {
                        bytes: std::os::unix::fs::MetadataExt::size(&meta),
                        unreadable: 0,
                    },
                );
            }
        }
        let children = |dir: &std::path::Path| -> Vec<std::fs::DirEntry> {
            std::fs::read_dir(dir)
                .map(|r| r.flatten().collect())
                .unwrap_or_default()
        };
        for entry in children(self.root()) {
            if entry.path() != data {
                add(&mut out, None, measure(&entry.path(), &mut seen));
            }
        }
        for entry in children(&data) {
            if self.layout.is_transient(&entry.path()) {
                continue;
            }
            let name = entry.file_name();
            let bucket = Bucket::ALL
                .into_iter()
                .find(|b| name.to_str() == Some(b.dir_name()));
            add(&mut out, bucket, measure(&entry.path(), &mut seen));
        }
        out
    }

    /// Counts what the store holds, on disk and in the index.
    pub fn usage(&self) -> Result<StoreUsage, StoreError> {
        let blobs = self.with_index(crate::index::Index::blobs)?;
        let layers: BTreeSet<Digest> = self
            .with_index(crate::index::Index::all_layers)?
            .into_iter()
            .map(|l| l.diff_id)
            .collect();
        let disk = self.on_disk();
        Ok(StoreUsage {
            bytes: disk.total,
            buckets: disk.buckets,
            other_bytes: disk.other,
            unreadable_dirs: disk.unreadable,
            blobs: blobs.len(),
            blob_bytes: blobs.iter().map(|(_, s)| s).sum(),
            layers: layers.len(),
            unpacked: self.unpacked_dirs().len(),
            cache_entries: self.cache_entries()?.len(),
            refs: self.refs()?.len(),
        })
    }
}
