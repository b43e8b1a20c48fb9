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
    /// A stored blob's bytes no longer hash to its digest (or its size changed): bitrot or tampering.
    #[error("blob {digest} in the store is corrupt ({detail}); run `imgbuild store verify --repair`, then build again")]
    CorruptBlob {
        /// The blob.
        digest: Digest,
        /// What was found instead.
        detail: String,
    },
    /// The filesystem holding the store is full (ENOSPC) or the user's quota is used up (EDQUOT).
    #[error("no space left on device while writing {path}; free space (`imgbuild store gc` helps) and build again")]
    NoSpace {
        /// The file being written.
        path: PathBuf,
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
    /// True when the user has to act (wait for or stop a `store gc`, upgrade imgbuild
    /// or pick another store); false when the store or its disk failed.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::SchemaTooNew { .. } | Self::LockTimeout { .. } => true,
            Self::Io(_)
            | Self::Index { .. }
            | Self::MissingBlob(_)
            | Self::DigestMismatch { .. }
            | Self::CorruptBlob { .. }
            | Self::NoSpace { .. }
            | Self::Json { .. } => false,
        }
    }

    pub(crate) fn index(path: &std::path::Path) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| {
            if matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DiskFull)
            ) {
                return StoreError::NoSpace {
                    path: path.to_owned(),
                };
            }
            StoreError::Index {
                path: path.to_owned(),
                source,
            }
        }
    }

    /// The store error an I/O error carries (from a store reader or writer), or the I/O error.
    pub fn from_io(err: std::io::Error) -> StoreError {
        if !err.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
            return StoreError::Io(err);
        }
        let kind = err.kind();
        match err.into_inner().map(|b| b.downcast::<StoreError>()) {
            Some(Ok(inner)) => *inner,
            Some(Err(other)) => StoreError::Io(std::io::Error::new(kind, other)),
            None => StoreError::Io(kind.into()),
        }
    }

    /// True for ENOSPC and EDQUOT.
    pub fn is_no_space(err: &std::io::Error) -> bool {
        err.kind() == std::io::ErrorKind::StorageFull
            || err.kind() == std::io::ErrorKind::QuotaExceeded
            || matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }

    /// Turns an ENOSPC/EDQUOT error from writing `path` into one that names it (kind kept);
    /// other errors get the path as context.
    pub fn io_writing(path: &std::path::Path, err: std::io::Error) -> std::io::Error {
        if err.get_ref().is_some_and(|inner| inner.is::<StoreError>()) {
            return err;
        }
        if Self::is_no_space(&err) {
            return std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                StoreError::NoSpace {
                    path: path.to_owned(),
                },
            );
        }
        std::io::Error::new(err.kind(), format!("writing {}: {err}", path.display()))
    }
}

impl From<StoreError> for std::io::Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Io(io) => io,
            StoreError::NoSpace { .. } => std::io::Error::new(std::io::ErrorKind::StorageFull, e),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}
