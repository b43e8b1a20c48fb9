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

use imgbuild_store::tarball::WrittenEntries;
use imgbuild_store::LayerRecord;

/// A step's new layer: its record, and its entries when the step wrote them itself.
pub(crate) struct StepLayer {
    pub(crate) record: LayerRecord,
    /// What the layer holds, so the next step's merged tree need not read it back.
    pub(crate) written: Option<WrittenEntries>,
}

impl From<LayerRecord> for StepLayer {
    /// A layer whose entries are only in its blob (a sandbox's diff, an unpack).
    fn from(record: LayerRecord) -> Self {
        Self {
            record,
            written: None,
        }
    }
}
