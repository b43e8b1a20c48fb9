//! Running a build: plan, look every step up in the store, execute the misses, and write
//! the image config and manifest.
//!
//! - `orchestrate.rs`: [`build`] (prepare, plan, execute) and [`execute`]: stages in
//!   dependency order, then the image; for each unit the base and the step loop (cache
//!   look-up, run on a miss), then the image's tags and the plan recorded for `explain`;
//! - `step.rs`: one step that missed the cache, run in its `StepContext`;
//! - `base.rs`: importing the base (Debian bootstrap, rootfs, OCI layout or archive,
//!   registry);
//! - `image.rs`: the image config (with the recipe's `[config]`) and the manifest;
//! - `check.rs`: `build --check`: every layer made again on its stored layers below,
//!   without the cache ([`rebuild_all`]);
//! - `report.rs`: what a build tells while it runs ([`Progress`]) and returns
//!   ([`BuildReport`]).

mod base;
mod check;
mod image;
mod orchestrate;
mod report;
mod step;

use std::collections::BTreeMap;
use std::path::PathBuf;

use imgbuild_store::{Compression, Digest, StoreError};

use crate::sources::debian::LockMode;
use crate::sources::SourceError;
use crate::steps::StepError;

pub use check::{rebuild_all, Rebuild};
pub use orchestrate::{build, execute};
pub use report::{BuildReport, CacheOutcome, Progress, StepReport};

/// How to build.
pub struct BuildOptions<'a> {
    /// Every timestamp in the image (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    /// How layers are compressed in the image.
    pub compression: Compression,
    /// Told about each step as it starts and ends, and each line a command prints.
    pub progress: &'a (dyn Fn(&Progress<'_>) + Sync),
    /// How the Debian lock file is used.
    pub lock_mode: LockMode,
    /// Build secrets: id -> host file, mounted for the `run` steps that name them.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Pulls registry bases.
    pub registry: &'a imgbuild_registry::Client,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base or an input could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A step failed.
    #[error(transparent)]
    Step(#[from] StepError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `run` step names a secret the build was not given.
    #[error("step {step} needs the secret `{id}`: pass it with --secret id={id},src=FILE")]
    MissingSecret {
        /// The step number.
        step: usize,
        /// The secret id.
        id: String,
    },
    /// `build --check` found a step's cache entry gone.
    #[error("the layer of {unit} step {step} left the cache while it was checked (a concurrent `imgbuild store gc`?); build again")]
    LeftTheCache {
        /// The image or the stage.
        unit: String,
        /// The step number.
        step: usize,
    },
    /// Reading a layer back failed.
    #[error("reading layer {diff_id}: {source}")]
    Layer {
        /// The layer.
        diff_id: Digest,
        /// What failed.
        #[source]
        source: imgbuild_store::tarball::LayerReadError,
    },
}

impl From<imgbuild_store::MergeError> for BuildError {
    fn from(e: imgbuild_store::MergeError) -> Self {
        match e {
            imgbuild_store::MergeError::Store(e) => Self::Store(e),
            imgbuild_store::MergeError::Layer { diff_id, source } => {
                Self::Layer { diff_id, source }
            }
        }
    }
}

impl BuildError {
    /// True when the user has to fix something (the recipe, its inputs, its lock, a
    /// flag); false for a step that failed, an unreachable mirror or registry, the store.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Source(e) => e.is_user_error(),
            Self::Step(e) => e.is_user_error(),
            Self::Store(e) => e.is_user_error(),
            Self::MissingSecret { .. } => true,
            Self::Layer { .. } | Self::LeftTheCache { .. } => false,
        }
    }
}
