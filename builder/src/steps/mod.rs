//! Executing the steps that need no sandbox: each writes one deterministic layer.

pub(crate) mod copy;
mod files;

pub(crate) use files::{write_layer, StepError};
