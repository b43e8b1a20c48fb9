//! The build sandbox: unpacking layers into overlay lower dirs, running a
//! recipe `run` step on top of them, and scanning the resulting upper dir.
pub mod overlay;
pub mod unpack;

pub use overlay::OverlayXattrs;
pub use unpack::{unpack_layer, UnpackError, UnpackNote, UnpackNoteKind, UnpackOptions, UnpackReport};
