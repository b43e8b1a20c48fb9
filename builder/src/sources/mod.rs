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
    /// A registry base was not resolved to a digest before planning.
    #[error("base image {reference}: {message}")]
    Unresolved {
        /// The reference.
        reference: String,
        /// What is wrong.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Resolving, verifying or fetching Debian packages failed.
    #[error("{0}")]
    Debian(String),
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

/// sha256 of a file's bytes.
pub(crate) fn file_digest(path: &Path) -> Result<Digest, SourceError> {
    let mut hasher = Sha256Writer::new(std::io::sink());
    std::io::copy(&mut fs_err::File::open(path)?, &mut hasher)?;
    Ok(hasher.finish().0)
}
