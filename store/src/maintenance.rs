//! `verify`: re-hashing every blob, and with `--repair` forgetting what is broken.

use crate::{Digest, Sha256Writer, Store, StoreError};
use std::collections::BTreeSet;
use std::io;

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
                crate::disk::remove_tree(&self.blob_path(digest))?;
            }
            report.repaired = true;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Compression, GcOptions};
    use std::io::Write;
    use std::time::Duration;

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
