//! The build sandbox: unpacking layers into overlay lower dirs
//! ([`unpack_layer`]), running a recipe `run` step on top of them
//! ([`Sandbox::run`]) and scanning the resulting upper dir
//! ([`scan_upper`] / [`Sandbox::scan_upper`]).
//!
//! # Flow for one step
//!
//! 1. Each layer is unpacked once into its own directory with
//!    [`unpack_layer`], using [`Sandbox::overlay_xattrs`] as
//!    [`UnpackOptions::overlay`]. As root use [`Owners::Apply`]; rootless use
//!    [`Owners::Defer`] and then [`apply_owners_in_userns`] with the
//!    sandbox's [`IdMap`], so owners end up as the mapped host subuids.
//! 2. A [`Sandbox`] gets those dirs in **layer order: base layer first,
//!    topmost last** (OCI manifest order; they are reversed for overlayfs),
//!    an empty upper and work dir on one filesystem, and a
//!    [`SandboxMode`] ([`SandboxMode::detect`]: `Root` for euid 0, else
//!    `Rootless` with the user's `/etc/subuid` range). [`Sandbox::run`]
//!    executes the [`Step`] and returns `Ok(())` or
//!    [`RunError::CommandFailed`] `{ code, last_lines }`.
//! 3. [`Sandbox::scan_upper`] turns the upper dir into sorted
//!    [`UpperEntry`]s for the layer writer.
//!
//! # Overlay metadata flavours
//!
//! Root in the initial user namespace mounts overlayfs normally
//! (`trusted.overlay.*`); rootless (or root inside a container's user
//! namespace) mounts with `userxattr` (`user.overlay.*`). Whiteouts are
//! 0:0 character devices in both (unprivileged whiteout creation is allowed
//! since Linux 5.8); an unpack that is refused one records it in
//! [`UnpackReport::unmaterialised_whiteouts`]. Opaque dirs carry
//! `<prefix>opaque=y`. See [`overlay`].
//!
//! # Isolation
//!
//! New mount, pid, ipc, uts and (unless `network = true`) net namespaces;
//! a user namespace only in rootless mode. The step sees a pivot_root'ed
//! overlay with fresh `/proc`, a minimal `/dev`, tmpfs `/tmp` and `/run`,
//! secrets read-only at `/run/secrets/<id>`; it keeps Docker's default
//! capabilities minus `CAP_MKNOD`. Pid 1 is our own reaper; when the
//! command exits, everything left in the sandbox is killed. Details:
//! `child.rs`, `mounts.rs`, [`namespaces`].
mod child;
mod mounts;
pub mod namespaces;
pub mod output;
pub mod overlay;
pub mod owners;
pub mod run;
pub mod unpack;
pub mod upper;

pub use namespaces::{reexec_in_user_namespace, IdMap, IdMapError, SandboxMode, UsernsError};
pub use output::{OutputLine, Stream};
pub use overlay::OverlayXattrs;
pub use owners::{apply_owners_in_userns, OwnersError};
pub use run::{RunError, Sandbox, Step, StepCommand, User, DEFAULT_PATH};
pub use unpack::{
    unpack_layer, OwnerFix, Owners, UnpackError, UnpackNote, UnpackNoteKind, UnpackOptions,
    UnpackReport,
};
pub use upper::{scan_upper, ScanError, ScanOptions, UpperEntry, UpperKind};
