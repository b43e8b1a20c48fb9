//! The store's error type.

use crate::Digest;
use std::path::PathBuf;

/// Something went wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The SQLite index could not be read or written.
    #[error("store index {path}: {source}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The index was written by a newer imgbuild.
    #[error("store index {path} has schema version {found}, newer than this imgbuild understands ({supported}); upgrade imgbuild or use another --store")]
    SchemaTooNew {
        /// The index file.
        path: PathBuf,
        /// Version on disk.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// Another process holds the store lock for longer than we wait.
    #[error("timed out after {seconds}s waiting for the lock on {path} (a `store gc` may be running); raise IMGBUILD_LOCK_TIMEOUT to wait longer")]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        seconds: u64,
    },
    /// A blob the index or a manifest names is not in the store.
    #[error("blob {0} is not in the store; run `imgbuild store verify` and rebuild")]
    MissingBlob(Digest),
    /// Bytes did not hash to the digest they were expected to have.
    #[error("digest mismatch: expected {expected}, found {found}")]
    DigestMismatch {
        /// The digest that was promised.
        expected: Digest,
        /// The digest of the bytes received.
        found: Digest,
    },
    /// A JSON document in the store could not be parsed.
    #[error("blob {digest} is not valid JSON: {source}")]
    Json {
        /// The blob.
        digest: Digest,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    pub(crate) fn index(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Index {
            path: path.to_owned(),
            source,
        }
    }
}
