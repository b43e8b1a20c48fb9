//! The record of outputs written from the store's images, so that a build whose outputs
//! are already in place, unchanged, writes nothing, and one to a new directory clones a
//! recorded output instead of exporting again. The store keeps the records, not the
//! outputs: whether an output still is what was written is the exporter's judgement (it
//! compares what stat(2) says now with what it said after writing).

use crate::{OutputRecord, Store, StoreError};
use std::path::Path;

impl Store {
    /// Remembers the output at `record.path` (replacing what was recorded there).
    pub fn record_output(&self, record: &OutputRecord) -> Result<(), StoreError> {
        self.with_index(|ix| ix.put_output(record))
    }

    /// What was recorded at `path`, if anything.
    pub fn output_at(&self, path: &Path) -> Result<Option<OutputRecord>, StoreError> {
        Ok(self
            .with_index(|ix| ix.outputs_where(Some(path), None))?
            .into_iter()
            .next())
    }

    /// Every output recorded as made with `key`, the newest first.
    pub fn outputs_made_with(&self, key: &str) -> Result<Vec<OutputRecord>, StoreError> {
        self.with_index(|ix| ix.outputs_where(None, Some(key)))
    }

    /// Forgets the output at `path` (one that is gone or no longer what was written).
    pub fn forget_output(&self, path: &Path) -> Result<(), StoreError> {
        self.with_index(|ix| ix.forget_output(path))
    }

    /// Forgets the outputs whose path no longer exists (for `store gc`); returns how many.
    pub(crate) fn forget_gone_outputs(&self) -> Result<usize, StoreError> {
        let gone: Vec<_> = self
            .with_index(|ix| ix.outputs_where(None, None))?
            .into_iter()
            .filter(|r| std::fs::symlink_metadata(&r.path).is_err())
            .collect();
        for record in &gone {
            self.forget_output(&record.path)?;
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn records_are_found_by_path_and_by_key_and_replaced_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let record = |path: &str, key: &str| OutputRecord {
            path: PathBuf::from(path),
            key: key.to_owned(),
            files: format!("{path}:{key}"),
        };
        store.record_output(&record("/o/a.raw", "k1")).unwrap();
        store.record_output(&record("/p/a.raw", "k1")).unwrap();
        store.record_output(&record("/o/a.raw", "k2")).unwrap();
        assert_eq!(
            store.output_at(Path::new("/o/a.raw")).unwrap(),
            Some(record("/o/a.raw", "k2"))
        );
        let made: Vec<_> = store.outputs_made_with("k1").unwrap();
        assert_eq!(made, [record("/p/a.raw", "k1")]);
        store.forget_output(Path::new("/p/a.raw")).unwrap();
        assert!(store.outputs_made_with("k1").unwrap().is_empty());
        assert_eq!(store.output_at(Path::new("/q")).unwrap(), None);
        let here = tmp.path().join("here.raw");
        fs_err::write(&here, b"x").unwrap();
        store
            .record_output(&record(here.to_str().unwrap(), "k3"))
            .unwrap();
        assert_eq!(store.forget_gone_outputs().unwrap(), 1, "/o/a.raw is gone");
        assert_eq!(store.outputs_made_with("k3").unwrap().len(), 1);
    }
}
