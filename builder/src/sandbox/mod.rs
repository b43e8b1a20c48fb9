//! The build sandbox: unpacking layers into overlay lower dirs
//! ([`unpack_layer`]), running a recipe `run` step on top of them
//! ([`Sandbox::run`]) and scanning the resulting upper dir
//! ([`scan_upper`]).
//!
//! Typical flow for one step:
//!
//! 1. each layer is unpacked once into its own directory with
//!    [`unpack_layer`] (using [`Sandbox::overlay_xattrs`] as the flavour);
//! 2. [`Sandbox`] gets those dirs **base layer first** plus an empty upper
//!    and work dir on one filesystem, and [`Sandbox::run`] executes the
//!    [`Step`] in fresh namespaces on an overlay of them;
//! 3. [`scan_upper`] turns the upper dir into sorted [`UpperEntry`]s for the
//!    layer writer.
mod child;
mod mounts;
pub mod namespaces;
pub mod output;
pub mod overlay;
pub mod owners;
pub mod run;
pub mod unpack;
pub mod upper;

pub use namespaces::{IdMap, IdMapError, SandboxMode};
pub use output::{OutputLine, Stream};
pub use overlay::OverlayXattrs;
pub use owners::{apply_owners_in_userns, OwnersError};
pub use run::{RunError, Sandbox, Step, StepCommand, User, DEFAULT_PATH};
pub use unpack::{
    unpack_layer, OwnerFix, Owners, UnpackError, UnpackNote, UnpackNoteKind, UnpackOptions,
    UnpackReport,
};
pub use upper::{scan_upper, ScanError, ScanOptions, UpperEntry, UpperKind};
