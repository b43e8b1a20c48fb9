//! `gc`: removes what nothing needs, bucket by bucket, and with `--max-size` brings the
//! whole store (as `store du` measures it) under the size.
//!
//! What each bucket keeps:
//! - `blobs/`: everything a ref reaches; the layers of cache entries that a ref holds
//!   (they cost nothing) or that were used within `--keep-recent`, most recently used first
//!   while they fit under `--max-size`.
//! - `tmp/`: nothing (gc holds the store exclusively, so no build is writing there).
//! - `unpacked/`: the dirs of layers that are still stored; under `--max-size`, the least
//!   recently used go first until the store fits (they are recreated on demand).
//! - `boot-assets/`: resolutions written within `--keep-recent`.

use crate::disk::{measure, remove_tree};
use crate::layout::Bucket;
use crate::{Digest, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The suffix of the stamp beside an unpacked dir whose mtime is its last use.
pub(crate) const USED_SUFFIX: &str = ".used";

/// How much `gc` keeps.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Cache entries used (and boot-asset resolutions written) within this long are kept.
    pub keep_recent: Duration,
    /// After keeping image refs, drop least recently used cache entries, then least
    /// recently used unpacked layers, until the whole store fits.
    pub max_size: Option<u64>,
}

/// What `gc` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Cache entries dropped.
    pub cache_entries_removed: usize,
    /// Unpacked layer dirs removed.
    pub unpacked_removed: usize,
    /// Other entries removed (temp files, scratch dirs, old boot-asset resolutions, records
    /// of outputs and of copied host files that are gone).
    pub other_removed: usize,
    /// Bytes freed on disk.
    pub bytes_freed: u64,
    /// Bytes the store holds afterwards, as `store du` counts them.
    pub bytes_kept: u64,
    /// How far the store is still above `--max-size` (what the refs need does not fit).
    pub over_max_size: u64,
}

/// An unpacked layer dir and its last use.
#[derive(Debug)]
pub(crate) struct UnpackedDir {
    pub(crate) dir: PathBuf,
    pub(crate) last_used: SystemTime,
}

impl UnpackedDir {
    fn stamp(&self) -> PathBuf {
        let mut s = self.dir.as_os_str().to_owned();
        s.push(USED_SUFFIX);
        PathBuf::from(s)
    }
}

impl Store {
    /// Every complete unpacked dir, least recently used first.
    pub(crate) fn unpacked_dirs(&self) -> Vec<UnpackedDir> {
        let mut out = Vec::new();
        let Ok(flavours) = std::fs::read_dir(self.bucket(Bucket::Unpacked)) else {
            return out;
        };
        for flavour in flavours.flatten() {
            let Ok(entries) = std::fs::read_dir(flavour.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if Digest::from_hex(&name).is_err() {
                    continue;
                }
                let mut found = UnpackedDir {
                    dir: entry.path(),
                    last_used: SystemTime::UNIX_EPOCH,
                };
                found.last_used = std::fs::metadata(found.stamp())
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push(found);
            }
        }
        out.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.dir.cmp(&b.dir)));
        out
    }

    /// Removes blobs that no image ref and no kept cache entry needs, and from every other
    /// bucket what nothing needs (see the module doc). Needs the store opened exclusively.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let cutoff = crate::index::now()
            .saturating_sub(i64::try_from(options.keep_recent.as_secs()).unwrap_or(i64::MAX));
        self.gc_blobs(options, cutoff, &mut report)?;
        // Every bucket is named here, so a new one cannot be forgotten.
        for bucket in Bucket::ALL {
            match bucket {
                Bucket::Blobs => {}
                Bucket::Tmp => self.gc_tmp(&mut report)?,
                Bucket::Unpacked => self.gc_unpacked_of_gone_layers(&mut report)?,
                Bucket::BootAssets => self.gc_records(bucket, cutoff, &mut report)?,
                Bucket::Plans => self.gc_plans(&mut report)?,
            }
        }
        report.other_removed += self.forget_gone_outputs()? + self.forget_gone_file_digests()?;
        self.with_index(crate::index::Index::checkpoint)?;
        let mut total = self.on_disk().total;
        if let Some(max) = options.max_size {
            for old in self.unpacked_dirs() {
                if total <= max {
                    break;
                }
                let freed = self.remove_unpacked(&old)?;
                total = total.saturating_sub(freed);
                report.bytes_freed += freed;
                report.unpacked_removed += 1;
            }
            total = self.on_disk().total;
            report.over_max_size = total.saturating_sub(max);
        }
        report.bytes_kept = total;
        Ok(report)
    }

    fn gc_blobs(
        &self,
        options: &GcOptions,
        cutoff: i64,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        let sizes: BTreeMap<Digest, u64> = self
            .with_index(crate::index::Index::blobs)?
            .into_iter()
            .collect();
        let mut live = BTreeSet::new();
        for r in self.refs()? {
            self.mark_manifest(&r.manifest, &mut live)?;
        }
        let held = live.clone();
        let mut forms: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
        for l in self.with_index(crate::index::Index::all_layers)? {
            forms.entry(l.diff_id).or_default().push(l.digest);
        }
        // What stays whatever the blobs: the index, the other buckets' small files and
        // the directories; unpacked layers and temp files give way to blobs.
        let overhead = match options.max_size {
            Some(_) => {
                let disk = self.on_disk();
                let dirs: u64 = [
                    self.bucket(Bucket::Blobs),
                    self.blobs_dir(),
                    self.bucket(Bucket::Unpacked),
                    self.bucket(Bucket::Tmp),
                ]
                .iter()
                .filter_map(|d| std::fs::symlink_metadata(d).ok())
                .map(|m| std::os::unix::fs::MetadataExt::size(&m))
                .sum();
                let records: u64 = [Bucket::BootAssets, Bucket::Plans]
                    .iter()
                    .filter_map(|b| disk.buckets.get(b))
                    .sum();
                disk.other + records + dirs
            }
            None => 0,
        };
        let mut kept_bytes: u64 = overhead + live.iter().filter_map(|d| sizes.get(d)).sum::<u64>();
        for entry in self.cache_entries()? {
            let blobs = forms.get(&entry.diff_id).cloned().unwrap_or_default();
            // A layer a tag holds stays anyway: its cache entry costs nothing.
            if blobs.iter().any(|d| held.contains(d)) {
                continue;
            }
            let extra: u64 = blobs
                .iter()
                .filter(|d| !live.contains(*d))
                .filter_map(|d| sizes.get(d))
                .sum();
            let recent = entry.last_used > cutoff;
            let fits = options.max_size.is_none_or(|max| kept_bytes + extra <= max);
            if recent && fits {
                kept_bytes += extra;
                live.extend(blobs);
            } else {
                self.with_index(|ix| ix.remove_cache_entry(&entry.key))?;
                report.cache_entries_removed += 1;
            }
        }
        // A layer's table of contents stays while a form of the layer does.
        for (diff_id, toc) in self.with_index(crate::index::Index::layer_tocs)? {
            let layer_kept = forms
                .get(&diff_id)
                .is_some_and(|blobs| blobs.iter().any(|d| live.contains(d)));
            if layer_kept {
                live.insert(toc);
            }
        }
        for (digest, size) in &sizes {
            if !live.contains(digest) {
                self.with_index(|ix| ix.forget_blob(digest))?;
                remove_tree(&self.blob_path(digest))?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for entry in fs_err::read_dir(self.blobs_dir())? {
            let entry = entry?;
            let known = Digest::from_hex(&entry.file_name().to_string_lossy())
                .is_ok_and(|d| sizes.contains_key(&d));
            if !known {
                report.bytes_freed += measure(&entry.path(), &mut HashSet::new()).bytes;
                remove_tree(&entry.path())?;
                report.blobs_removed += 1;
            }
        }
        Ok(())
    }

    fn gc_tmp(&self, report: &mut GcReport) -> Result<(), StoreError> {
        for entry in fs_err::read_dir(self.tmp_dir())? {
            self.remove_other(&entry?.path(), report)?;
        }
        Ok(())
    }

    /// Removes the unpacked dirs of layers that are no longer stored, stamps without a
    /// dir, and half-unpacked dirs a killed build left.
    fn gc_unpacked_of_gone_layers(&self, report: &mut GcReport) -> Result<(), StoreError> {
        let live_layers: BTreeSet<String> = self
            .with_index(crate::index::Index::all_layers)?
            .into_iter()
            .map(|l| l.diff_id.hex())
            .collect();
        for flavour in fs_err::read_dir(self.bucket(Bucket::Unpacked))? {
            let flavour = flavour?.path();
            if !flavour.is_dir() {
                self.remove_other(&flavour, report)?;
                continue;
            }
            for entry in fs_err::read_dir(&flavour)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let hex = name.strip_suffix(USED_SUFFIX).unwrap_or(&name);
                let is_stamp = hex.len() != name.len();
                let keep = live_layers.contains(hex) && (!is_stamp || flavour.join(hex).is_dir());
                if keep {
                    continue;
                }
                if is_stamp || Digest::from_hex(hex).is_err() {
                    self.remove_other(&entry.path(), report)?;
                } else {
                    let freed = self.remove_unpacked(&UnpackedDir {
                        dir: entry.path(),
                        last_used: SystemTime::UNIX_EPOCH,
                    })?;
                    report.bytes_freed += freed;
                    report.unpacked_removed += 1;
                }
            }
        }
        Ok(())
    }

    /// Drops the records (boot-asset resolutions, built plans) of `bucket` written before
    /// `cutoff`: a new build writes them again.
    fn gc_records(
        &self,
        bucket: Bucket,
        cutoff: i64,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        for entry in fs_err::read_dir(self.bucket(bucket))? {
            let path = entry?.path();
            let written = std::fs::symlink_metadata(&path)
                .map_or(0, |m| std::os::unix::fs::MetadataExt::mtime(&m));
            if written <= cutoff {
                self.remove_other(&path, report)?;
            }
        }
        Ok(())
    }

    /// Drops the plan records of recipes that are gone (unreadable records too); the
    /// others stay whatever their age, for `build --explain` to compare with.
    fn gc_plans(&self, report: &mut GcReport) -> Result<(), StoreError> {
        #[derive(serde::Deserialize)]
        struct Record {
            recipe: std::path::PathBuf,
        }
        for entry in fs_err::read_dir(self.bucket(Bucket::Plans))? {
            let path = entry?.path();
            let recipe = std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Record>(&bytes).ok())
                .map(|r| r.recipe);
            if !recipe.is_some_and(|r| r.is_absolute() && r.is_file()) {
                self.remove_other(&path, report)?;
            }
        }
        Ok(())
    }

    /// Removes an unpacked dir and its stamp; returns the bytes freed.
    fn remove_unpacked(&self, unpacked: &UnpackedDir) -> Result<u64, StoreError> {
        let mut seen = HashSet::new();
        let stamp = unpacked.stamp();
        let bytes = measure(&unpacked.dir, &mut seen).bytes + measure(&stamp, &mut seen).bytes;
        remove_tree(&unpacked.dir)?;
        remove_tree(&stamp)?;
        Ok(bytes)
    }

    fn remove_other(
        &self,
        path: &std::path::Path,
        report: &mut GcReport,
    ) -> Result<(), StoreError> {
        report.bytes_freed += measure(path, &mut HashSet::new()).bytes;
        remove_tree(path)?;
        report.other_removed += 1;
        Ok(())
    }

    /// Adds a manifest (or index) and everything it references to `live`.
    fn mark_manifest(
        &self,
        digest: &Digest,
        live: &mut BTreeSet<Digest>,
    ) -> Result<(), StoreError> {
        if !live.insert(digest.clone()) || !self.blob_path(digest).exists() {
            return Ok(());
        }
        let doc: serde_json::Value = self.read_json(digest)?;
        let named = |v: &serde_json::Value| {
            v.get("digest")
                .and_then(|d| d.as_str())
                .and_then(|d| d.parse::<Digest>().ok())
        };
        if let Some(config) = doc.get("config").and_then(named) {
            live.insert(config);
        }
        for layer in doc
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(d) = named(layer) {
                // Every stored form of a layer an image uses stays.
                if let Some(rec) = self.layer_by_digest(&d)? {
                    for form in self.layer_forms(&rec.diff_id)? {
                        live.insert(form.digest);
                    }
                }
                live.insert(d);
            }
        }
        for child in doc
            .get("manifests")
            .and_then(|m| m.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(d) = named(child) {
                self.mark_manifest(&d, live)?;
            }
        }
        Ok(())
    }
}
