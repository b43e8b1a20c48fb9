//! imgbuild's application layer: the one pipeline every command drives.
//!
//! [`pipeline`] takes typed requests (no command-line types) and owns each stage of a build:
//! load the recipe -> prepare its inputs -> plan -> build -> export every format -> push ->
//! export the step cache. `imgbuild build`, `run`, `inspect RECIPE`, `lock` and `push` are
//! thin callers in the binary's `cli` module.
#![forbid(unsafe_code)]

pub mod pipeline;
