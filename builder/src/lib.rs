//! imgbuild's builder: turns a recipe into an image in the store.
//!
//! Data flows one way: [`recipe`] (parse and validate) -> [`plan`] (every step's cache key,
//! computed before anything runs) -> the store is asked for each key -> the misses are
//! executed (file steps directly, `run` steps in the [`sandbox`]), each producing one
//! layer -> the image's config and manifest are written.
//!
//! The sandbox and the Debian client are crates of their own (`imgbuild-sandbox`, the
//! only crate with `unsafe` code, and `imgbuild-debian`); they are re-exported here as
//! [`sandbox`] and [`debian`].
#![forbid(unsafe_code)]

pub mod boot_assets;
pub mod build;
pub mod plan;
pub mod recipe;
mod sources;
mod steps;

pub use imgbuild_debian as debian;
pub use imgbuild_sandbox as sandbox;

pub use build::{
    build, resolve_packages, BuildError, BuildOptions, BuildReport, CacheOutcome, Progress,
    StepReport,
};
pub use plan::{Plan, PlanInputs, PlannedStep};
pub use sources::debian::{lock_path, LockMode, PackageSets};
pub use sources::registry::{resolve_base, ResolvedBase};
pub use sources::SourceError;
pub use steps::StepError;
