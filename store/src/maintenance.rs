//! Keeping the store healthy: `verify` re-hashes blobs, `gc` removes what nothing needs.

use crate::{Digest, Sha256Writer, Store, StoreError};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

/// What `verify` found.
#[derive(Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Blobs checked.
    pub checked: usize,
    /// Indexed blobs whose file is gone.
    pub missing: Vec<Digest>,
    /// Blobs whose bytes no longer hash to their name, or whose size changed.
    pub corrupt: Vec<Digest>,
    /// Blob files the index does not mention (left by a killed build; `gc` removes them).
    pub unindexed: usize,
    /// True when `--repair` dropped the missing and corrupt blobs (and what depends on them).
    pub repaired: bool,
}

impl VerifyReport {
    /// True when nothing is missing or corrupt.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// How much `gc` keeps.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Cache entries used within this long are kept.
    pub keep_recent: Duration,
    /// After keeping image refs, drop least recently used cache entries until the store fits.
    pub max_size: Option<u64>,
}

/// What `gc` removed.
#[derive(Debug, Default, serde::Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// Cache entries dropped.
    pub cache_entries_removed: usize,
    /// Bytes the store holds afterwards.
    pub bytes_kept: u64,
}

/// What the store holds.
#[derive(Debug, Default, serde::Serialize)]
pub struct StoreUsage {
    /// Number of blobs.
    pub blobs: usize,
    /// Their total size.
    pub bytes: u64,
    /// Number of distinct layers.
    pub layers: usize,
    /// Number of step cache entries.
    pub cache_entries: usize,
    /// Number of image refs.
    pub refs: usize,
}

impl Store {
    /// Re-hashes every blob; with `repair`, forgets and deletes what is missing or corrupt.
    pub fn verify(&self, repair: bool) -> Result<VerifyReport, StoreError> {
        let mut report = VerifyReport::default();
        let blobs = self.with_index(crate::index::Index::blobs)?;
        let indexed: BTreeSet<String> = blobs.iter().map(|(d, _)| d.hex()).collect();
        for (digest, size) in &blobs {
            report.checked += 1;
            let path = self.blob_path(digest);
            let mut file = match fs_err::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    report.missing.push(digest.clone());
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut hasher = Sha256Writer::new(io::sink());
            io::copy(&mut file, &mut hasher)?;
            let (found, found_size, _) = hasher.finish();
            if found != *digest || found_size != *size {
                report.corrupt.push(digest.clone());
            }
        }
        for entry in fs_err::read_dir(self.blobs_dir())? {
            if !indexed.contains(&*entry?.file_name().to_string_lossy()) {
                report.unindexed += 1;
            }
        }
        if repair {
            for digest in report.missing.iter().chain(&report.corrupt) {
                self.with_index(|ix| ix.forget_blob(digest))?;
                remove_if_present(&self.blob_path(digest))?;
            }
            report.repaired = true;
        }
        Ok(report)
    }

    /// Removes blobs that no image ref and no kept cache entry needs, temp files, and
    /// blob files the index does not know. Needs the store opened exclusively.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StoreError> {
        let mut report = GcReport::default();
        let sizes: BTreeMap<Digest, u64> = self
            .with_index(crate::index::Index::blobs)?
            .into_iter()
            .collect();
        let mut live = BTreeSet::new();
        for r in self.refs()? {
            self.mark_manifest(&r.manifest, &mut live)?;
        }
        let layers = self.with_index(crate::index::Index::all_layers)?;
        let mut forms: BTreeMap<Digest, Vec<Digest>> = BTreeMap::new();
        for l in &layers {
            forms
                .entry(l.diff_id.clone())
                .or_default()
                .push(l.digest.clone());
        }
        let mut kept_bytes: u64 = live.iter().filter_map(|d| sizes.get(d)).sum();
        let cutoff =
            crate::index::now() - i64::try_from(options.keep_recent.as_secs()).unwrap_or(i64::MAX);
        for entry in self.cache_entries()? {
            let blobs = forms.get(&entry.diff_id).cloned().unwrap_or_default();
            let extra: u64 = blobs
                .iter()
                .filter(|d| !live.contains(*d))
                .filter_map(|d| sizes.get(d))
                .sum();
            let recent = entry.last_used >= cutoff;
            let fits = options.max_size.is_none_or(|max| kept_bytes + extra <= max);
            if recent && fits {
                kept_bytes += extra;
                live.extend(blobs);
            } else {
                self.with_index(|ix| ix.remove_cache_entry(&entry.key))?;
                report.cache_entries_removed += 1;
            }
        }
        for (digest, size) in &sizes {
            if !live.contains(digest) {
                self.with_index(|ix| ix.forget_blob(digest))?;
                remove_if_present(&self.blob_path(digest))?;
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for entry in fs_err::read_dir(self.blobs_dir())? {
            let entry = entry?;
            let known = Digest::from_hex(&entry.file_name().to_string_lossy())
                .is_ok_and(|d| sizes.contains_key(&d));
            if !known {
                report.bytes_freed += entry.metadata()?.len();
                remove_if_present(&entry.path())?;
                report.blobs_removed += 1;
            }
        }
        for entry in fs_err::read_dir(self.tmp_dir())? {
            remove_if_present(&entry?.path())?;
        }
        // Unpacked lower dirs of layers that are gone, and unpacks a killed build left.
        let live_layers: BTreeSet<String> = self
            .with_index(crate::index::Index::all_layers)?
            .into_iter()
            .map(|l| l.diff_id.hex())
            .collect();
        let unpacked = self.data.join("unpacked");
        if unpacked.is_dir() {
            for flavour in fs_err::read_dir(&unpacked)? {
                for entry in fs_err::read_dir(flavour?.path())? {
                    let entry = entry?;
                    if !live_layers.contains(&*entry.file_name().to_string_lossy()) {
                        make_writable(&entry.path());
                        fs_err::remove_dir_all(entry.path())?;
                    }
                }
            }
        }
        report.bytes_kept = kept_bytes;
        Ok(report)
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

    /// Counts what the store holds.
    pub fn usage(&self) -> Result<StoreUsage, StoreError> {
        let blobs = self.with_index(crate::index::Index::blobs)?;
        let layers: BTreeSet<Digest> = self
            .with_index(crate::index::Index::all_layers)?
            .into_iter()
            .map(|l| l.diff_id)
            .collect();
        Ok(StoreUsage {
            blobs: blobs.len(),
            bytes: blobs.iter().map(|(_, s)| s).sum(),
            layers: layers.len(),
            cache_entries: self.cache_entries()?.len(),
            refs: self.refs()?.len(),
        })
    }
}

/// Unpacked layers may hold read-only directories (0555); make them removable.
pub(crate) fn make_writable(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

fn remove_if_present(path: &std::path::Path) -> io::Result<()> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            if path.is_dir() {
                make_writable(path);
                fs_err::remove_dir_all(path)
            } else {
                Err(e)
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Compression;
    use std::io::Write;

    #[test]
    fn gc_keeps_referenced_and_recent_and_verify_finds_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_exclusive(dir.path()).unwrap();
        let mut lw = store.layer_writer(Compression::Zstd).unwrap();
        lw.write_all(&[0u8; 1024]).unwrap();
        let layer = lw.commit(&store).unwrap();
        let manifest = serde_json::json!({
            "config": {"digest": store.put_bytes(b"{}").unwrap().digest.to_string()},
            "layers": [{"digest": layer.digest.to_string()}],
        });
        let m = store.put_bytes(manifest.to_string().as_bytes()).unwrap();
        store.set_ref("img:latest", &m.digest).unwrap();
        let garbage = store.put_bytes(b"garbage").unwrap();
        let opts = GcOptions {
            keep_recent: Duration::ZERO,
            max_size: None,
        };
        let report = store.gc(&opts).unwrap();
        assert_eq!(report.blobs_removed, 1);
        assert!(!store.has_blob(&garbage.digest).unwrap());
        assert!(store.has_blob(&layer.digest).unwrap());
        assert!(store.verify(false).unwrap().is_clean());

        let path = store.blob_path(&layer.digest);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(&path, b"bitrot").unwrap();
        let report = store.verify(true).unwrap();
        assert_eq!(report.corrupt, vec![layer.digest.clone()]);
        assert!(store.verify(false).unwrap().is_clean());
        assert!(store.layer_forms(&layer.diff_id).unwrap().is_empty());
    }

    #[test]
    fn recompressing_a_layer_keeps_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut lw = store.layer_writer(Compression::Zstd).unwrap();
        lw.write_all(b"not really a tar, but bytes all the same")
            .unwrap();
        let zstd = lw.commit(&store).unwrap();
        let gzip = store.layer_as(&zstd.diff_id, Compression::Gzip).unwrap();
        assert_eq!(gzip.diff_id, zstd.diff_id);
        assert_ne!(gzip.digest, zstd.digest);
        assert_eq!(store.layer_forms(&zstd.diff_id).unwrap().len(), 2);
    }
}
