//! Why a pipeline request failed: the error of the stage that failed, as it is.

use imgbuild_builder::boot_assets::BootAssetsError;
use imgbuild_builder::recipe::RecipeError;
use imgbuild_builder::{BuildError, SourceError};
use imgbuild_formats::ExportError;
use imgbuild_registry::{PushError, RegistryError};
use imgbuild_store::StoreError;

/// A failed pipeline stage.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The recipe is not valid, or asks for something that was not given.
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    /// Preparing the inputs (locks, bases) failed.
    #[error(transparent)]
    Prepare(#[from] SourceError),
    /// The build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bootloaders a disk needs could not be fetched.
    #[error(transparent)]
    BootAssets(#[from] BootAssetsError),
    /// Writing an output failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// Pushing the image or the cache failed.
    #[error(transparent)]
    Push(#[from] PushError),
    /// Talking to a registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// `build --check` could not compare two layers.
    #[error(transparent)]
    Check(#[from] Box<super::CheckError>),
    /// Writing an SBOM or provenance document, or reading a file it describes, failed.
    #[error("cannot write or read {}: {source}", path.display())]
    Document {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The build runs another architecture's code and this host cannot.
    #[error(transparent)]
    Emulation(#[from] imgbuild_builder::emulation::EmulationError),
    /// The build has several platforms and an output that holds one.
    #[error("{message}")]
    Platforms {
        /// What cannot be written.
        message: String,
        /// What to do.
        help: String,
    },
    /// A push source is neither an OCI layout nor an image in the store.
    #[error("`{name}` is neither an OCI layout directory nor an image in the store; `imgbuild store ls` lists the images")]
    UnknownImage {
        /// What was named.
        name: String,
    },
}

impl PipelineError {
    /// True when the user has to fix something (the recipe, a flag, an input); false when
    /// a mirror, registry or the store failed, or imgbuild did.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Recipe(e) => e.is_user_error(),
            Self::Prepare(e) => e.is_user_error(),
            Self::Build(e) => e.is_user_error(),
            Self::Store(e) => e.is_user_error(),
            Self::BootAssets(e) => e.is_user_error(),
            Self::Export(e) => e.is_user_error(),
            Self::Push(e) => e.is_user_error(),
            Self::Registry(e) => e.is_user_error(),
            Self::Check(_) => false,
            Self::UnknownImage { .. } | Self::Platforms { .. } => true,
            Self::Document { .. } => false,
            Self::Emulation(_) => true,
        }
    }
}
