//! Where an image's base and inputs come from: rootfs tarballs, local OCI layouts and
//! archives, registries, and host files for `copy` steps.

pub(crate) mod debian;
pub(crate) mod oci;
pub(crate) mod registry;
pub(crate) mod rootfs;

use imgbuild_store::tarball::LayerReadError;
use imgbuild_store::{Digest, Sha256Writer, StoreError};
use std::path::{Path, PathBuf};

/// A base image or input file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A file could not be read (the message names it).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Walking a directory failed.
    #[error("reading {path}: {message}")]
    Walk {
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A copy source is a socket, device or fifo.
    #[error("{path} is not a regular file, directory or symlink; imgbuild does not copy it")]
    Unsupported {
        /// The path.
        path: PathBuf,
    },
    /// A base image is malformed.
    #[error("base image {path}: {message}")]
    BadImage {
        /// The layout or archive.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A base layer's tar stream is malformed or unsafe.
    #[error("base {path}: {source}")]
    Layer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: LayerReadError,
    },
    /// A registry base could not be pulled.
    #[error(transparent)]
    Pull(#[from] imgbuild_registry::PullError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The Debian mirror's Release could not be fetched or verified.
    #[error("{0}")]
    Release(#[from] crate::debian::release::ReleaseError),
    /// A Debian `Packages` index could not be fetched or read.
    #[error("{0}")]
    Index(#[from] crate::debian::index::IndexError),
    /// The Debian packages could not be resolved (an unknown package, a conflict).
    #[error("{0}")]
    Resolve(#[from] crate::debian::resolve::ResolveError),
    /// A `.deb` could not be downloaded or verified.
    #[error("{0}")]
    Fetch(#[from] crate::debian::fetch::FetchError),
    /// The lock file could not be read, written or used.
    #[error("{0}")]
    Lock(#[from] crate::debian::lock::LockError),
    /// A fetched `.deb` could not be read.
    #[error("{0}")]
    Deb(#[from] crate::debian::deb::DebError),
    /// imgbuild reached a state it should not (a bug): the message says which.
    #[error("internal error: {0}; please report it")]
    Internal(&'static str),
    /// A plan that may not fetch or write needs something that is not here yet.
    #[error("not available without fetching: {what}")]
    NotLocal {
        /// What is missing and how to get it.
        what: String,
    },
    /// `--locked` and the lock is missing or out of date.
    #[error("--locked: {}: {message}\n  = help: {help}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// How it disagrees with the recipe.
        message: String,
        /// The command that updates it.
        help: String,
    },
}

impl From<crate::debian::DebianError> for SourceError {
    fn from(e: crate::debian::DebianError) -> Self {
        use crate::debian::DebianError as D;
        match e {
            D::Release(e) => e.into(),
            D::Index(e) => e.into(),
            D::Resolve(e) => e.into(),
        }
    }
}

impl SourceError {
    /// True when the user has to fix something (a path, a base image, the recipe's
    /// Debian packages, the lock); false for an unreachable mirror or registry, a failing
    /// store and imgbuild's own bugs.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Io(_)
            | Self::Walk { .. }
            | Self::Unsupported { .. }
            | Self::BadImage { .. }
            | Self::Layer { .. }
            | Self::Locked { .. }
            | Self::NotLocal { .. } => true,
            Self::Pull(e) => e.is_user_error(),
            Self::Store(e) => e.is_user_error(),
            Self::Release(e) => e.is_user_error(),
            Self::Index(e) => e.is_user_error(),
            Self::Resolve(e) => e.is_user_error(),
            Self::Fetch(e) => e.is_user_error(),
            Self::Lock(e) => e.is_user_error(),
            Self::Deb(e) => e.is_user_error(),
            Self::Internal(_) => false,
        }
    }
}

/// sha256 of a file's bytes.
pub(crate) fn file_digest(path: &Path) -> Result<Digest, SourceError> {
    let mut hasher = Sha256Writer::new(std::io::sink());
    std::io::copy(&mut fs_err::File::open(path)?, &mut hasher)?;
    Ok(hasher.finish().0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::{http::HttpError, release::ReleaseError, resolve::ResolveError};

    #[test]
    fn debian_errors_keep_their_type_and_their_class() {
        let unknown = SourceError::from(crate::debian::DebianError::from(
            ResolveError::UnknownVariant("tiny".into()),
        ));
        assert!(matches!(unknown, SourceError::Resolve(_)), "{unknown:?}");
        assert!(unknown.is_user_error());
        let not_found = SourceError::from(ReleaseError::Fetch(HttpError::NotFound {
            url: "http://mirror/dists/nosuch/InRelease".into(),
        }));
        assert!(
            not_found.is_user_error(),
            "a 404 means a wrong suite or mirror"
        );
        // The typed error stays reachable as the source, for callers that classify.
        let source = std::error::Error::source(&not_found).expect("a source");
        assert!(source.downcast_ref::<ReleaseError>().is_some());
        assert!(!SourceError::Internal("x").is_user_error());
    }
}
