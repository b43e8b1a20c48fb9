//! Remembered digests of the host files `copy` steps read: planning asks before hashing a
//! file, and tells what it hashed, so that a rebuild does not read unchanged sources again.

use imgbuild_store::{Digest, KnownDigest, Store};
use std::collections::HashMap;

/// Where planning finds and leaves the digests of host files, by absolute path and stamp.
pub trait DigestMemo: Sync {
    /// The remembered digests of the files whose path starts with `prefix`, by path.
    fn known_under(&self, prefix: &str) -> HashMap<String, KnownDigest>;
    /// Remembers digests: `(path, stamp, digest, size)` each.
    fn remember(&self, found: &[(String, String, Digest, u64)]);
}

/// The store remembers; a failure to read or write its memo only costs hashing again.
impl DigestMemo for Store {
    fn known_under(&self, prefix: &str) -> HashMap<String, KnownDigest> {
        self.file_digests_under(prefix).unwrap_or_default()
    }

    fn remember(&self, found: &[(String, String, Digest, u64)]) {
        let _ = self.record_file_digests(found);
    }
}

/// Remembers nothing: every file is hashed.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMemo;

impl DigestMemo for NoMemo {
    fn known_under(&self, _prefix: &str) -> HashMap<String, KnownDigest> {
        HashMap::new()
    }

    fn remember(&self, _found: &[(String, String, Digest, u64)]) {}
}

/// Reads the store's memo and leaves it as it is (for `--dry-run`, which changes nothing).
#[derive(Debug, Clone, Copy)]
pub struct ReadOnlyMemo<'a>(pub &'a Store);

impl DigestMemo for ReadOnlyMemo<'_> {
    fn known_under(&self, prefix: &str) -> HashMap<String, KnownDigest> {
        self.0.known_under(prefix)
    }

    fn remember(&self, _found: &[(String, String, Digest, u64)]) {}
}
