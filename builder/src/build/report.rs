//! What a build reports: progress while it runs, and the outcome of each step and of the
//! whole build.

use std::path::PathBuf;

use imgbuild_store::tarball::Difference;
use imgbuild_store::Digest;

use crate::explain::Cause;
use crate::prepare::Unit;
use crate::sources::registry::ResolvedBase;

/// What a build is doing.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A step is about to be looked up (and run on a miss).
    StepStarted {
        /// Step number.
        number: usize,
        /// Number of steps.
        total: usize,
        /// What it does.
        description: &'a str,
    },
    /// A step is done.
    StepFinished(&'a StepReport),
    /// A line a step's command printed.
    Output {
        /// Step number (0 for the base).
        number: usize,
        /// The line.
        line: &'a str,
    },
    /// Something worth telling that is not a step (resolving packages, bootstrapping).
    Note(&'a str),
    /// An output file or directory is in place: written now, or found unchanged and kept.
    Exported {
        /// The format's name (`qcow2`, `oci`, ...).
        format: &'a str,
        /// Where it is.
        path: &'a std::path::Path,
        /// Its size in bytes.
        bytes: u64,
        /// Wall time spent on it.
        seconds: f64,
        /// True when the output already there was kept instead of written again.
        reused: bool,
        /// The recorded output it was copied from, instead of being exported again.
        copied_from: Option<&'a std::path::Path>,
    },
}

/// Whether a step came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheOutcome {
    /// Found in the store; nothing ran.
    Hit,
    /// Executed.
    Miss,
}

/// What happened to one step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    /// The image or the stage the step belongs to.
    pub unit: Unit,
    /// Step number (1-based).
    pub index: usize,
    /// `copy`, `write`, ...
    pub kind: &'static str,
    /// One line describing it.
    pub description: String,
    /// Hit or miss.
    pub cache: CacheOutcome,
    /// For a miss: why, compared with the last build of the recipe in this store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Cause>,
    /// Wall time.
    pub seconds: f64,
    /// The compressed layer's digest, as the manifest lists it.
    pub layer: Digest,
    /// The uncompressed layer's digest.
    pub diff_id: Digest,
    /// The step's cache key.
    pub key: Digest,
    /// True when the step had the host's network (`network = true`).
    pub network: bool,
    /// True when the step ran another architecture's code under qemu-user (left out of
    /// JSON when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub emulated: bool,
    /// Whether `build --check` made the same layer again; `null` when not checked.
    pub reproducible: Option<bool>,
    /// When not reproducible: the paths whose entries differ, stored vs made again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
}

/// The outcome of a build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// The image name.
    pub image: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config's digest.
    pub config: Digest,
    /// Each step of the image.
    pub steps: Vec<StepReport>,
    /// Each step of every stage, stages in build order.
    pub stage_steps: Vec<StepReport>,
    /// The Debian lock file, when the recipe has a Debian base.
    pub lock: Option<PathBuf>,
    /// The registry base and the manifest digest it resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<ResolvedBase>,
}
