//! Executing steps: file steps write their layer directly; `run` and `packages` steps run
//! in the sandbox over the layers below.

pub(crate) mod copy;
mod files;
pub(crate) mod from_stage;
pub(crate) mod image_glob;
pub(crate) mod install;
mod normalise;
mod sandboxed;
pub(crate) mod system;

pub(crate) use files::write_layer;
pub use files::StepError;
pub(crate) use sandboxed::run_to_layer;
