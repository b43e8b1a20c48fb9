//! imgbuild's builder: turns a recipe into an image in the store.
//!
//! Data flows one way: [`recipe`] (parse and validate) -> [`prepare`] (every input a key
//! depends on resolved: locks, digests, manifests) -> [`plan`] (every key of every stage
//! and of the image, and whether the store has it; pure) -> [`build::execute`] (the
//! misses run: file steps directly, `run` steps in the [`sandbox`], each producing one
//! layer; then the image's config and manifest) -> [`explain`] keeps the plan's inputs so
//! the next build can say why a step missed.
//!
//! The sandbox and the Debian client are crates of their own (`imgbuild-sandbox`, the
//! only crate with `unsafe` code, and `imgbuild-debian`); they are re-exported here as
//! [`sandbox`] and [`debian`].
#![forbid(unsafe_code)]

pub mod boot_assets;
pub mod build;
pub mod emulation;
pub mod explain;
pub mod plan;
pub mod prepare;
pub mod provenance;
pub mod recipe;
pub mod sbom;
mod sources;
mod steps;

pub use imgbuild_debian as debian;
pub use imgbuild_sandbox as sandbox;

pub use build::{
    build, execute, rebuild_all, BuildError, BuildOptions, BuildReport, CacheOutcome, Progress,
    Rebuild, StepReport,
};
pub use explain::Cause;
pub use plan::{plan, Plan, PlannedStep, UnitPlan};
pub use prepare::{prepare, Access, Prepared, PreparedBase, PreparedUnit, Unit};
pub use sources::debian::{lock_path, LockMode, PackageSets};
pub use sources::registry::ResolvedBase;
pub use sources::SourceError;
pub use steps::StepError;
