//! The build sandbox: unpacking layers into overlay lower dirs
//! ([`unpack_layer`]), running a recipe `run` step on top of them
//! ([`Sandbox::run`]) and scanning the resulting upper dir
//! ([`scan_upper`] / [`Sandbox::scan_upper`]).
//!
//! # Flow for one step
//!
//! 1. Each layer is unpacked once into its own directory with
//!    [`unpack_layer`], using [`Sandbox::overlay_xattrs`] as
//!    [`UnpackOptions::overlay`]. As real root use [`Owners::Shift`] with
//!    [`IdMap::contiguous`] of the sandbox's map; as root of a user
//!    namespace (identity map) [`Owners::Apply`]; rootless use
//!    [`Owners::Defer`] and then [`apply_owners_in_userns`] with the
//!    sandbox's [`IdMap`], so owners end up as the mapped host ids.
//! 2. A [`Sandbox`] gets those dirs in **layer order: base layer first,
//!    topmost last** (OCI manifest order; they are reversed for overlayfs),
//!    an empty upper and work dir on one filesystem, and a
//!    [`SandboxMode`] ([`SandboxMode::detect`]: `Root` with
//!    [`IdMap::for_root`] for euid 0, else `Rootless` with the user's
//!    `/etc/subuid` range). [`Sandbox::run`]
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
//! Every step runs in new user, mount, pid, ipc, uts and (unless
//! `network = true`) net namespaces. Sandbox root is never host root: as
//! root, sandbox ids map to a subordinate range ([`IdMap::for_root`]: root's
//! `/etc/subuid` entry or [`ROOT_SUBID_START`]), the overlay is mounted
//! before the user namespace exists and lower dirs are unpacked with
//! [`Owners::Shift`]. The step sees a pivot_root'ed overlay with fresh
//! `/proc` (`/proc/sys`, `sysrq-trigger`, `irq`, `bus`, `fs` read-only;
//! [`MASKED_FILES`] and [`MASKED_DIRS`] hidden), an empty read-only `/sys`,
//! a minimal `/dev`, tmpfs `/tmp` ([`TMP_SIZE`]) and `/run` ([`RUN_SIZE`]),
//! secrets read-only at `/run/secrets/<id>`. The command keeps Docker's
//! default capabilities minus `CAP_MKNOD`, runs with `no_new_privs`, a
//! seccomp filter (moby's default profile in effect, see `seccomp.rs`) and
//! at most [`MAX_PROCS`] processes per user. Pid 1 is our own reaper; when
//! the command exits, everything left in the sandbox is killed. Details:
//! `child.rs`, `mounts.rs`, [`namespaces`].
//!
//! This is the only imgbuild crate with `unsafe` code (every other one forbids it):
//! `fork`, `unshare`, and the fd, capability and network syscalls between fork and
//! `execve`. Each block says why it is sound in a `SAFETY:` comment.
mod child;
mod mounts;
pub mod namespaces;
pub mod output;
pub mod overlay;
pub mod owners;
pub mod run;
mod seccomp;
pub mod unpack;
pub mod upper;

pub use imgbuild_store::tarball::EntryKind;
pub use mounts::{MASKED_DIRS, MASKED_FILES, READONLY_PROC, RUN_SIZE, SHM_SIZE, TMP_SIZE};
pub use namespaces::{
    reexec_in_user_namespace, IdMap, IdMapError, MapWriter, SandboxMode, UsernsError,
    ROOT_SUBID_COUNT, ROOT_SUBID_START,
};
pub use output::{OutputLine, Stream};
pub use overlay::OverlayXattrs;
pub use owners::{apply_owners_in_userns, OwnersError};
pub use run::{RunError, Sandbox, Step, StepCommand, User, DEFAULT_PATH, MAX_PROCS};
pub use unpack::{
    unpack_layer, OwnerFix, Owners, UnpackError, UnpackNote, UnpackNoteKind, UnpackOptions,
    UnpackReport,
};
pub use upper::{scan_upper, ScanError, ScanOptions, UpperEntry, UpperKind};
