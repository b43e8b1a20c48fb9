//! Safe extraction of an (already decompressed) OCI layer tar into a
//! directory that is later used as an overlayfs lower dir.
//!
//! # Safety approach (untrusted input)
//!
//! Every path is resolved by this module, never by the kernel's normal
//! path walk:
//!
//! * entry metadata comes from the store's tar reader
//!   ([`imgbuild_store::tarball::read_raw_meta`], names as bytes), which also
//!   holds the one path check: entry names and hard-link targets are split on
//!   `/`, a leading `/`, empty and `.` components are dropped (so `/etc/x`
//!   lands at `<root>/etc/x`, like GNU tar does), and any `..` component
//!   rejects the whole layer with [`UnpackError::UnsafePath`];
//! * parent directories are opened one component at a time with
//!   `openat(O_PATH | O_DIRECTORY | O_NOFOLLOW)` starting from an fd of the
//!   root, so a symlink (or any non-directory) in a parent position makes
//!   the open fail and the layer is rejected — we never follow a symlink,
//!   neither one from this layer nor a pre-existing one;
//! * the final component is created with `*at` calls relative to that
//!   parent fd, with `O_NOFOLLOW` / `AT_SYMLINK_NOFOLLOW` where applicable,
//!   and an existing leaf is unlinked first (never written through);
//! * hard-link targets are resolved the same way (inside the root, no
//!   symlinks), and `linkat` is called without `AT_SYMLINK_FOLLOW`.
//!
//! Missing parent directories are created (0755, owned by the unpacking
//! user) and fixed up when their own entry appears later in the stream.
//! Directory mtimes are applied after all entries, deepest last-seen first.
//!
//! # OCI whiteouts
//!
//! * `.wh.NAME` becomes a 0:0 character device `NAME` (overlayfs form). The
//!   kernel allows unprivileged whiteout creation since Linux 5.8; if it is
//!   refused anyway the path is recorded in
//!   [`UnpackReport::unmaterialised_whiteouts`] so the caller can merge.
//! * `.wh..wh..opq` sets `trusted.overlay.opaque=y` or
//!   `user.overlay.opaque=y` (per [`UnpackOptions::overlay`]) on its parent.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use imgbuild_store::tarball::{
    read_raw_meta, EntryKind, LayerReadError, RawMeta, OPAQUE_MARKER, WHITEOUT_PREFIX,
};

use super::overlay::OverlayXattrs;

/// How to unpack a layer.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Overlay flavour the lower dir will be mounted with (opaque markers).
    pub overlay: OverlayXattrs,
    /// What to do with the uid/gid of the tar headers.
    pub owners: Owners,
}

/// Ownership handling of [`unpack_layer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owners {
    /// `lchown` every entry now (root, or inside a user namespace with
    /// the ids mapped); fails with [`UnpackError::Chown`] otherwise.
    Apply,
    /// Keep the unpacking user's ids (owners are lost).
    Ignore,
    /// Root unpacking for a sandbox whose ids map to one contiguous host
    /// range ([`super::IdMap::contiguous`]): sandbox id `n` is stored as
    /// host id `uid + n` / `gid + n`; ids `>= count` fail with
    /// [`UnpackError::Chown`]. Directories the layer does not list, and the
    /// destination itself, belong to sandbox root.
    Shift {
        /// Host uid of sandbox uid 0.
        uid: u32,
        /// Host gid of sandbox gid 0.
        gid: u32,
        /// Number of mapped ids.
        count: u32,
    },
    /// Rootless: unpack as the invoking user and record every owner (plus
    /// the mode and `security.capability`, which a chown clears) in
    /// [`UnpackReport::deferred_owners`]; then call
    /// [`super::owners::apply_owners_in_userns`] to apply them from inside
    /// a user namespace with the sandbox's [`super::IdMap`].
    Defer,
}

/// An owner to apply later (see [`Owners::Defer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFix {
    /// Relative path ("" is the root itself).
    pub path: String,
    /// Sandbox uid.
    pub uid: u32,
    /// Sandbox gid.
    pub gid: u32,
    /// Mode to restore after the chown (`None` for symlinks).
    pub mode: Option<u32>,
    /// `security.capability` to restore after the chown.
    pub capability: Option<Vec<u8>>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        Self {
            overlay: OverlayXattrs::for_current_process(),
            owners: Owners::Apply,
        }
    }
}

/// Something that was not reproduced exactly but did not fail the unpack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackNote {
    /// Entry path, relative to the root.
    pub path: String,
    /// What happened.
    pub kind: UnpackNoteKind,
}

/// See [`UnpackNote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnpackNoteKind {
    /// Character/block device skipped: creating it needs `CAP_MKNOD`.
    DeviceSkipped,
    /// An xattr could not be set (e.g. `trusted.*` without privilege).
    XattrSkipped {
        /// The xattr name.
        name: String,
        /// The OS error.
        errno: i32,
    },
    /// A whiteout could not be created as a 0:0 device; it is listed in
    /// [`UnpackReport::unmaterialised_whiteouts`].
    WhiteoutRecorded,
    /// A tar entry type we do not extract (an unknown type letter).
    UnsupportedType(u8),
}

/// Result of a successful unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackReport {
    /// Number of tar entries processed.
    pub entries: u64,
    /// Non-fatal deviations.
    pub notes: Vec<UnpackNote>,
    /// Whiteout paths (relative, without the `.wh.` prefix) that could not be
    /// created as 0:0 devices; the caller must apply them when merging.
    pub unmaterialised_whiteouts: Vec<String>,
    /// With [`Owners::Defer`]: owners still to apply, in entry order.
    pub deferred_owners: Vec<OwnerFix>,
}

/// Errors of [`unpack_layer`].
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The destination directory could not be opened.
    #[error("cannot open unpack destination {root}: {source}; it must be an existing directory")]
    OpenRoot {
        /// Destination.
        root: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The tar stream itself is unreadable.
    #[error("cannot read layer tar for {root} (after entry {after:?}): {source}; the blob is truncated, corrupt or still compressed")]
    Read {
        /// Destination.
        root: PathBuf,
        /// Last entry successfully read.
        after: Option<String>,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An entry imgbuild does not import faithfully (a PAX sparse file, a contiguous file,
    /// a GNU multi-volume part or volume label).
    #[error("refusing layer entry {path:?} for {root}: it is {what}, which imgbuild does not import; rebuild the layer without it (for sparse files: GNU tar without --sparse)")]
    Refused {
        /// Destination.
        root: PathBuf,
        /// Entry path as found in the tar.
        path: String,
        /// What kind of entry it is.
        what: &'static str,
    },
    /// An entry tried to escape the root; nothing outside was written.
    #[error("refusing layer entry {path:?} for {root}: {reason}; the layer is malformed or malicious (nothing outside the destination was written)")]
    UnsafePath {
        /// Destination.
        root: PathBuf,
        /// Entry path as found in the tar.
        path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A filesystem operation failed.
    #[error("cannot {op} {path:?} under {root}: {source}")]
    Write {
        /// Destination.
        root: PathBuf,
        /// Entry path.
        path: String,
        /// The failed operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// An owner outside the ids the sandbox maps ([`Owners::Shift`]).
    #[error("layer entry {path:?} for {root} is owned by {uid}:{gid}, but the sandbox maps only ids 0..{count}; give root a larger range in /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 1073741824-1140850687 --add-subgids 1073741824-1140850687 root`)")]
    OutsideIdRange {
        /// Destination.
        root: PathBuf,
        /// Entry path.
        path: String,
        /// Owner in the layer.
        uid: u32,
        /// Group in the layer.
        gid: u32,
        /// Number of mapped ids.
        count: u32,
    },
    /// Owner could not be applied.
    #[error("cannot chown {path:?} under {root} to {uid}:{gid}: {source}; unpack as root, inside the build user namespace (ids must be mapped), or with `Owners::Defer` when rootless")]
    Chown {
        /// Destination.
        root: PathBuf,
        /// Entry path.
        path: String,
        /// Wanted uid.
        uid: u32,
        /// Wanted gid.
        gid: u32,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

const CAPABILITY_XATTR: &str = "security.capability";

/// Unpacks the tar stream `reader` into the existing directory `root`.
///
/// See the module docs for the path-safety rules and whiteout handling.
pub fn unpack_layer<R: Read>(
    reader: R,
    root: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, UnpackError> {
    let root_fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenRoot {
        root: root.to_owned(),
        source: e.into(),
    })?;
    if let Owners::Shift { uid, gid, .. } = opts.owners {
        rfs::fchown(
            &root_fd,
            Some(rfs::Uid::from_raw(uid)),
            Some(rfs::Gid::from_raw(gid)),
        )
        .map_err(|e| UnpackError::OpenRoot {
            root: root.to_owned(),
            source: e.into(),
        })?;
    }
    let mut u = Unpacker {
        root: root.to_owned(),
        root_fd,
        opts: opts.clone(),
        report: UnpackReport::default(),
        dir_times: Vec::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let mut last: Option<String> = None;
    let entries = archive.entries().map_err(|e| u.read_err(&last, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| u.read_err(&last, e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        u.entry(&mut entry, &name)?;
        last = Some(name);
    }
    u.finish_dir_times();
    Ok(u.report)
}

struct Unpacker {
    root: PathBuf,
    root_fd: OwnedFd,
    opts: UnpackOptions,
    report: UnpackReport,
    dir_times: Vec<(Vec<OsString>, Timestamps)>,
}

/// Metadata collected from the header and PAX records.
struct Meta {
    /// The path relative to the root, `/`-joined (for deferred owners).
    rel: String,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    fn new(raw: &RawMeta) -> Self {
        let (secs, nanos) = raw
            .pax_mtime
            .unwrap_or((i64::try_from(raw.mtime).unwrap_or(i64::MAX), 0));
        Self {
            rel: String::from_utf8_lossy(&raw.path.join(&b'/')).into_owned(),
            mode: raw.mode,
            // Never u32::MAX: chown would read it as "leave unchanged".
            uid: u32::try_from(raw.uid).unwrap_or(u32::MAX - 1),
            gid: u32::try_from(raw.gid).unwrap_or(u32::MAX - 1),
            mtime: Timespec {
                tv_sec: secs,
                tv_nsec: nanos as _,
            },
            xattrs: raw.xattrs.clone(),
        }
    }
}

fn io_err(e: Errno) -> io::Error {
    e.into()
}

impl Unpacker {
    fn read_err(&self, after: &Option<String>, source: io::Error) -> UnpackError {
        UnpackError::Read {
            root: self.root.clone(),
            after: after.clone(),
            source,
        }
    }

    fn unsafe_path(&self, path: &str, reason: &'static str) -> UnpackError {
        UnpackError::UnsafePath {
            root: self.root.clone(),
            path: path.to_owned(),
            reason,
        }
    }

    fn write_err(&self, path: &str, op: &'static str, e: Errno) -> UnpackError {
        UnpackError::Write {
            root: self.root.clone(),
            path: path.to_owned(),
            op,
            source: io_err(e),
        }
    }

    fn note(&mut self, path: &str, kind: UnpackNoteKind) {
        self.report.notes.push(UnpackNote {
            path: path.to_owned(),
            kind,
        });
    }

    /// Opens the directory `comps` below the root without following any
    /// symlink, creating missing directories when `create` is set.
    fn open_dir(
        &self,
        comps: &[OsString],
        create: bool,
        path: &str,
    ) -> Result<OwnedFd, UnpackError> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut cur = rfs::openat(&self.root_fd, ".", flags, Mode::empty())
            .map_err(|e| self.write_err(path, "open destination", e))?;
        for c in comps {
            let next = match rfs::openat(&cur, c.as_os_str(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            if let Owners::Shift { uid, gid, .. } = self.opts.owners {
                                rfs::chownat(
                                    &cur,
                                    c.as_os_str(),
                                    Some(rfs::Uid::from_raw(uid)),
                                    Some(rfs::Gid::from_raw(gid)),
                                    AtFlags::SYMLINK_NOFOLLOW,
                                )
                                .map_err(|e| {
                                    self.write_err(path, "chown parent directory of", e)
                                })?;
                            }
                        }
                        Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(self.write_err(path, "create parent directory of", e))
                        }
                    }
                    rfs::openat(&cur, c.as_os_str(), flags, Mode::empty())
                        .map_err(|e| self.write_err(path, "open parent directory of", e))?
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    return Err(self
                        .unsafe_path(path, "a parent component is a symlink or not a directory"))
                }
                Err(e) => return Err(self.write_err(path, "open parent directory of", e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// An error of the store's tar reader as this layer's refusal or read failure.
    fn layer_err(&self, path: &str, e: LayerReadError) -> UnpackError {
        match e {
            LayerReadError::Escapes { .. } => {
                self.unsafe_path(path, "path or hard link target contains a `..` component")
            }
            LayerReadError::Refused { what, .. } => UnpackError::Refused {
                root: self.root.clone(),
                path: path.to_owned(),
                what,
            },
            LayerReadError::Io(source) => self.read_err(&Some(path.to_owned()), source),
            other @ LayerReadError::UnsupportedType { .. } => {
                self.read_err(&Some(path.to_owned()), io::Error::other(other.to_string()))
            }
        }
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        path: &str,
    ) -> Result<(), UnpackError> {
        use tar::EntryType as T;
        self.report.entries += 1;
        let etype = entry.header().entry_type();
        if matches!(
            etype,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        let raw = match read_raw_meta(entry) {
            Ok(raw) => raw,
            Err(LayerReadError::UnsupportedType { kind, .. }) => {
                self.note(path, UnpackNoteKind::UnsupportedType(kind));
                return Ok(());
            }
            Err(e) => return Err(self.layer_err(path, e)),
        };
        let comps: Vec<OsString> = raw
            .path
            .iter()
            .map(|c| OsStr::from_bytes(c).to_owned())
            .collect();
        let meta = Meta::new(&raw);

        let Some((leaf, parents)) = comps.split_last() else {
            // The root itself (`./`): only a directory entry makes sense.
            if raw.kind == EntryKind::Dir {
                let fd = rfs::openat(
                    &self.root_fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.write_err(path, "open", e))?;
                self.apply_fd_meta(&fd, &meta, path)?;
                self.dir_times.push((Vec::new(), times(meta.mtime)));
                return Ok(());
            }
            return Err(self.unsafe_path(path, "non-directory entry for the root itself"));
        };
        let parent = self.open_dir(parents, true, path)?;
        let leaf_bytes = leaf.as_bytes();

        // OCI whiteouts.
        if leaf_bytes == OPAQUE_MARKER.as_bytes() {
            let dir = rfs::openat(
                &parent,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.write_err(path, "open opaque directory", e))?;
            let name = self.opts.overlay.opaque_name();
            return rfs::fsetxattr(&dir, name, b"y", XattrFlags::empty())
                .map_err(|e| self.write_err(path, "set overlay opaque xattr on the parent of", e));
        }
        if let Some(target) = leaf_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let target = OsStr::from_bytes(target);
            if target.is_empty() || target == "." || target == ".." {
                return Err(self.unsafe_path(path, "whiteout names no file"));
            }
            self.remove_existing(&parent, target, false, path)?;
            match rfs::mknodat(
                &parent,
                target,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            ) {
                Ok(()) => {}
                Err(Errno::PERM | Errno::ACCESS) => {
                    let mut p = parents
                        .iter()
                        .map(|c| c.to_string_lossy())
                        .collect::<Vec<_>>();
                    p.push(target.to_string_lossy());
                    self.report.unmaterialised_whiteouts.push(p.join("/"));
                    self.note(path, UnpackNoteKind::WhiteoutRecorded);
                }
                Err(e) => return Err(self.write_err(path, "create whiteout device for", e)),
            }
            return Ok(());
        }

        match raw.kind {
            // GNU sparse entries (type S) come expanded from the tar crate.
            EntryKind::File => {
                self.remove_existing(&parent, leaf, false, path)?;
                let mut f = rfs::openat(
                    &parent,
                    leaf.as_os_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map(std::fs::File::from)
                .map_err(|e| self.write_err(path, "create file", e))?;
                io::copy(entry, &mut f).map_err(|e| UnpackError::Write {
                    root: self.root.clone(),
                    path: path.to_owned(),
                    op: "write file data",
                    source: e,
                })?;
                self.apply_fd_meta(f.as_fd(), &meta, path)?;
                rfs::futimens(&f, &times(meta.mtime))
                    .map_err(|e| self.write_err(path, "set mtime of", e))?;
            }
            EntryKind::Dir => {
                let reuse = self.remove_existing(&parent, leaf, true, path)?;
                if !reuse {
                    rfs::mkdirat(&parent, leaf.as_os_str(), Mode::from_raw_mode(0o700))
                        .map_err(|e| self.write_err(path, "create directory", e))?;
                }
                let dir = rfs::openat(
                    &parent,
                    leaf.as_os_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.write_err(path, "open directory", e))?;
                self.apply_fd_meta(&dir, &meta, path)?;
                self.dir_times.push((comps.clone(), times(meta.mtime)));
            }
            EntryKind::Symlink(target) => {
                if target.is_empty() {
                    return Err(self.unsafe_path(path, "symlink without a target"));
                }
                self.remove_existing(&parent, leaf, false, path)?;
                rfs::symlinkat(OsStr::from_bytes(&target), &parent, leaf.as_os_str())
                    .map_err(|e| self.write_err(path, "create symlink", e))?;
                self.apply_at_meta(&parent, leaf, &meta, path, false)?;
            }
            EntryKind::Hardlink(target) => {
                // Normalised by the reader: components joined by `/`, `..` refused.
                let tcomps: Vec<OsString> = target
                    .split(|b| *b == b'/')
                    .filter(|c| !c.is_empty())
                    .map(|c| OsStr::from_bytes(c).to_owned())
                    .collect();
                let Some((tleaf, tparents)) = tcomps.split_last() else {
                    return Err(
                        self.unsafe_path(path, "hard link without a target, or to the root")
                    );
                };
                let tparent = self.open_dir(tparents, false, path).map_err(|e| match e {
                    UnpackError::Write { source, .. } => UnpackError::Write {
                        root: self.root.clone(),
                        path: path.to_owned(),
                        op: "resolve hard link target (must be an earlier entry of this layer) for",
                        source,
                    },
                    other => other,
                })?;
                self.remove_existing(&parent, leaf, false, path)?;
                rfs::linkat(
                    &tparent,
                    tleaf.as_os_str(),
                    &parent,
                    leaf.as_os_str(),
                    AtFlags::empty(),
                )
                .map_err(|e| {
                    self.write_err(
                        path,
                        "hard link (target must be an earlier entry of this layer)",
                        e,
                    )
                })?;
            }
            EntryKind::CharDevice(..) | EntryKind::BlockDevice(..) | EntryKind::Fifo => {
                let (ft, dev) = match raw.kind {
                    EntryKind::CharDevice(major, minor) => {
                        (FileType::CharacterDevice, rfs::makedev(major, minor))
                    }
                    EntryKind::BlockDevice(major, minor) => {
                        (FileType::BlockDevice, rfs::makedev(major, minor))
                    }
                    _ => (FileType::Fifo, 0),
                };
                self.remove_existing(&parent, leaf, false, path)?;
                match rfs::mknodat(
                    &parent,
                    leaf.as_os_str(),
                    ft,
                    Mode::from_raw_mode(0o600),
                    dev,
                ) {
                    Ok(()) => self.apply_at_meta(&parent, leaf, &meta, path, true)?,
                    Err(Errno::PERM) if ft != FileType::Fifo => {
                        self.note(path, UnpackNoteKind::DeviceSkipped);
                    }
                    Err(e) => return Err(self.write_err(path, "create device node", e)),
                }
            }
        }
        Ok(())
    }

    /// Removes an existing `leaf` so it can be replaced. Returns true when
    /// `leaf` is an existing directory and `keep_dir` asked to reuse it.
    fn remove_existing(
        &self,
        parent: &OwnedFd,
        leaf: &OsStr,
        keep_dir: bool,
        path: &str,
    ) -> Result<bool, UnpackError> {
        match rfs::statat(parent, leaf, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(self.write_err(path, "stat existing", e)),
            Ok(st) => {
                let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if is_dir && keep_dir {
                    return Ok(true);
                }
                let flags = if is_dir {
                    AtFlags::REMOVEDIR
                } else {
                    AtFlags::empty()
                };
                rfs::unlinkat(parent, leaf, flags)
                    .map_err(|e| self.write_err(path, "replace existing", e))?;
                Ok(false)
            }
        }
    }

    /// chown, chmod, xattrs on an open file or directory.
    fn apply_fd_meta(&mut self, fd: impl AsFd, meta: &Meta, path: &str) -> Result<(), UnpackError> {
        let fd = fd.as_fd();
        self.defer_owner(meta, Some(meta.mode));
        if let Some((uid, gid)) = self.host_owner(path, meta)? {
            rfs::fchown(
                fd,
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(gid)),
            )
            .map_err(|e| self.chown_err(path, meta, e))?;
        }
        // After chown: chown clears setuid/setgid bits and file capabilities.
        let mut mode = meta.mode;
        if self.opts.owners == Owners::Defer
            && rfs::fstat(fd)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        {
            // Unprivileged: keep directories writable for the entries that
            // follow; the real mode is restored with the deferred owner.
            mode |= 0o700;
        }
        rfs::fchmod(fd, Mode::from_raw_mode(mode)).map_err(|e| self.write_err(path, "chmod", e))?;
        for (name, value) in &meta.xattrs {
            if self.deferred(name) {
                continue;
            }
            let r = rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty());
            self.xattr_result(r, name, path)?;
        }
        Ok(())
    }

    /// chown, chmod (unless symlink), xattrs, mtime on a non-openable node.
    fn apply_at_meta(
        &mut self,
        parent: &OwnedFd,
        leaf: &OsStr,
        meta: &Meta,
        path: &str,
        chmod: bool,
    ) -> Result<(), UnpackError> {
        self.defer_owner(meta, chmod.then_some(meta.mode));
        if let Some((uid, gid)) = self.host_owner(path, meta)? {
            rfs::chownat(
                parent,
                leaf,
                Some(rfs::Uid::from_raw(uid)),
                Some(rfs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.chown_err(path, meta, e))?;
        }
        if chmod {
            // The leaf is a device node or fifo we just created; chmodat
            // has no NOFOLLOW on Linux but the node cannot be a symlink.
            rfs::chmodat(
                parent,
                leaf,
                Mode::from_raw_mode(meta.mode),
                AtFlags::empty(),
            )
            .map_err(|e| self.write_err(path, "chmod", e))?;
        }
        if !meta.xattrs.is_empty() {
            let mut p = OsString::from(format!("/proc/self/fd/{}/", parent.as_raw_fd()));
            p.push(leaf);
            for (name, value) in &meta.xattrs {
                if self.deferred(name) {
                    continue;
                }
                let r = rfs::lsetxattr(p.as_os_str(), name.as_str(), value, XattrFlags::empty());
                self.xattr_result(r, name, path)?;
            }
        }
        rfs::utimensat(parent, leaf, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.write_err(path, "set mtime of", e))
    }

    fn xattr_result(
        &mut self,
        r: rustix::io::Result<()>,
        name: &str,
        path: &str,
    ) -> Result<(), UnpackError> {
        match r {
            Ok(()) => Ok(()),
            Err(e @ (Errno::PERM | Errno::NOTSUP | Errno::ACCESS)) => {
                self.note(
                    path,
                    UnpackNoteKind::XattrSkipped {
                        name: name.to_owned(),
                        errno: e.raw_os_error(),
                    },
                );
                Ok(())
            }
            Err(e) => Err(self.write_err(path, "set xattr on", e)),
        }
    }

    /// True for xattrs that [`Owners::Defer`] applies later.
    fn deferred(&self, name: &str) -> bool {
        self.opts.owners == Owners::Defer && name == CAPABILITY_XATTR
    }

    fn defer_owner(&mut self, meta: &Meta, mode: Option<u32>) {
        if self.opts.owners != Owners::Defer {
            return;
        }
        self.report.deferred_owners.push(OwnerFix {
            path: meta.rel.clone(),
            uid: meta.uid,
            gid: meta.gid,
            mode,
            capability: meta.xattrs.get(CAPABILITY_XATTR).cloned(),
        });
    }

    /// The owner to `chown` an entry to now, if any.
    fn host_owner(&self, path: &str, meta: &Meta) -> Result<Option<(u32, u32)>, UnpackError> {
        match self.opts.owners {
            Owners::Apply => Ok(Some((meta.uid, meta.gid))),
            Owners::Ignore | Owners::Defer => Ok(None),
            Owners::Shift { uid, gid, count } => {
                if meta.uid >= count || meta.gid >= count {
                    return Err(UnpackError::OutsideIdRange {
                        root: self.root.clone(),
                        path: path.to_owned(),
                        uid: meta.uid,
                        gid: meta.gid,
                        count,
                    });
                }
                Ok(Some((uid + meta.uid, gid + meta.gid)))
            }
        }
    }

    fn chown_err(&self, path: &str, meta: &Meta, e: Errno) -> UnpackError {
        UnpackError::Chown {
            root: self.root.clone(),
            path: path.to_owned(),
            uid: meta.uid,
            gid: meta.gid,
            source: io_err(e),
        }
    }

    fn finish_dir_times(&mut self) {
        let list = std::mem::take(&mut self.dir_times);
        for (comps, ts) in list.iter().rev() {
            // Best effort: the directory may have been replaced later.
            if let Ok(fd) = self.open_dir(comps, false, "") {
                let Ok(dir) = rfs::openat(
                    &fd,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) else {
                    continue;
                };
                let _ = rfs::futimens(&dir, ts);
            }
        }
    }
}

fn times(t: Timespec) -> Timestamps {
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}
