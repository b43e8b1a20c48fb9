//! Digests of host files, remembered by path and stat(2) stamp, so that a `copy` step's
//! unchanged sources are not read and hashed again on every build (as git's index and
//! make's timestamps spare work). The stamp is the caller's text (size, mtime, ctime, inode,
//! device); a file whose stamp differs is hashed again. Callers record only files whose
//! ctime is older than a moment before hashing began, so that a write in the same clock tick
//! as the hashing cannot go unnoticed.

use crate::{Digest, Store, StoreError};
use std::collections::HashMap;

/// A recorded digest: the stamp it was taken under, the digest and the size.
pub type KnownDigest = (String, Digest, u64);

impl Store {
    /// The recorded digests of the files whose path starts with `prefix`, by path.
    pub fn file_digests_under(
        &self,
        prefix: &str,
    ) -> Result<HashMap<String, KnownDigest>, StoreError> {
        // Every string that starts with `prefix` sorts in [prefix, prefix + U+10FFFF).
        let end = format!("{prefix}\u{10FFFF}");
        Ok(self
            .with_index(|ix| ix.file_digests_between(prefix, &end))?
            .into_iter()
            .map(|(path, stamp, digest, size)| (path, (stamp, digest, size)))
            .collect())
    }

    /// Records digests: `(path, stamp, digest, size)` each.
    pub fn record_file_digests(
        &self,
        found: &[(String, String, Digest, u64)],
    ) -> Result<(), StoreError> {
        if found.is_empty() {
            return Ok(());
        }
        self.with_index(|ix| ix.put_file_digests(found))
    }

    /// Forgets the digests of files that no longer exist (for `store gc`); returns how many.
    pub(crate) fn forget_gone_file_digests(&self) -> Result<usize, StoreError> {
        let gone: Vec<String> = self
            .with_index(|ix| ix.file_digest_paths())?
            .into_iter()
            .filter(|p| std::fs::symlink_metadata(p).is_err())
            .collect();
        for path in &gone {
            self.with_index(|ix| ix.forget_file_digest(path))?;
        }
        Ok(gone.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_found_under_their_prefix_only_and_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        let d = |s: &str| Digest::of(s.as_bytes());
        store
            .record_file_digests(&[
                ("/src/a".into(), "s1".into(), d("a"), 1),
                ("/src/b/c".into(), "s2".into(), d("c"), 2),
                ("/srcx".into(), "s3".into(), d("x"), 3),
            ])
            .unwrap();
        store
            .record_file_digests(&[("/src/a".into(), "s4".into(), d("A"), 4)])
            .unwrap();
        let found = store.file_digests_under("/src/").unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found["/src/a"], ("s4".into(), d("A"), 4));
        assert_eq!(found["/src/b/c"], ("s2".into(), d("c"), 2));
        assert_eq!(store.forget_gone_file_digests().unwrap(), 3);
        assert!(store.file_digests_under("/").unwrap().is_empty());
    }
}
