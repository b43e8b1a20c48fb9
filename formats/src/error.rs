//! The exporters' error type.

use std::path::PathBuf;

/// An export failed; nothing was left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output failed (the message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Reading from the store failed.
    #[error(transparent)]
    Store(#[from] imgbuild_store::StoreError),
    /// A layer in the store could not be read as a tar stream.
    #[error("layer {diff_id}: {source}")]
    Layer {
        /// The layer.
        diff_id: imgbuild_store::Digest,
        /// What is wrong.
        #[source]
        source: imgbuild_store::tarball::LayerReadError,
    },
    /// The output path exists and is not what this format writes.
    #[error("{path} exists and is not a {expected}; remove it or choose another -o")]
    OutputInTheWay {
        /// The path.
        path: PathBuf,
        /// What the format writes there.
        expected: &'static str,
    },
}
