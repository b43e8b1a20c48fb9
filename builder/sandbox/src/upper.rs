//! Scanning an overlay upper dir after a step into sorted layer entries for
//! the deterministic tar writer.
//!
//! * Order: entries are sorted by `path` (byte-wise string order), which
//!   puts every directory before its contents. The upper root itself is not
//!   emitted.
//! * Whiteouts: 0:0 character devices (both overlay flavours; overlayfs
//!   creates them, often as hard links to one shared inode) and, for the
//!   `userxattr` flavour, zero-size files carrying `user.overlay.whiteout`
//!   become [`UpperKind::Whiteout`]. Directories with `<prefix>opaque = y`
//!   become [`UpperKind::OpaqueDir`]. Overlay's own `trusted.overlay.*` /
//!   `user.overlay.*` xattrs are dropped from every entry.
//! * Hard links: regular files sharing `(dev, ino)` are emitted once as
//!   [`EntryKind::File`] (first path in sorted order) and then as
//!   [`EntryKind::Hardlink`] to that path.
//! * Owners: the upper holds host ids (every step runs in a user
//!   namespace); with [`ScanOptions::id_map`] they are mapped back to
//!   sandbox ids. Whiteouts carry no owner (overlayfs makes them with the
//!   mounter's ids). A v3 `security.capability` (written by `setcap` in the
//!   user namespace, with the host id of sandbox root) is turned back into
//!   what the sandbox sees: v2 for sandbox root.
//! * Sandbox mount points: the sandbox creates `/proc`, `/dev`, `/tmp`,
//!   `/run` (and `/etc/resolv.conf`, `/etc/hosts` with network, and `/etc`
//!   for them when the image has none) in the
//!   merged root when no lower has them, so they show up in the upper. An
//!   entry on that list is dropped only if **no lower dir has that path**
//!   and it is still what the sandbox made: an empty, non-opaque directory
//!   (resp. an empty regular file). If a lower has the path, the sandbox
//!   never touched it in the upper (mounting over a directory does not copy
//!   it up), so an upper entry there is a genuine change and is kept.
//!   `/sys` is on the list too for images whose base lacks it, and secrets
//!   live in the `/run` tmpfs, so they never reach the upper. An `etc` that
//!   no lower has and that holds nothing but dropped mount points goes too.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::namespaces::IdMap;
use super::overlay::{is_overlay_private_xattr, OverlayXattrs};
use imgbuild_store::tarball::EntryKind;

/// One entry of the layer diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperEntry {
    /// Relative path, no leading slash, `/`-separated.
    pub path: String,
    /// What it is.
    pub kind: UpperKind,
    /// Permission bits incl. setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner inside the sandbox.
    pub uid: u32,
    /// Group inside the sandbox.
    pub gid: u32,
    /// Extended attributes, overlay-private ones removed.
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Modification time, seconds since the epoch.
    pub mtime: i64,
    /// Where the entry is in the upper dir (a regular file's bytes are read from here).
    pub host_path: PathBuf,
    /// Size in bytes of a regular file; 0 otherwise.
    pub size: u64,
}

/// Kind of an [`UpperEntry`]: an entry typed as the store's tar model types it, or one of
/// the two things overlayfs adds to that model (kept apart because a layer's tar spells
/// them as extra names, `.wh.NAME` and `DIR/.wh..wh..opq`, not as entry types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpperKind {
    /// An entry the layer carries: file, directory, symlink, hard link to an earlier
    /// entry, device or fifo.
    Entry(EntryKind),
    /// A directory that hides everything below it in lower layers (OCI `.wh..wh..opq`).
    OpaqueDir,
    /// Deletion of this path from lower layers (OCI `.wh.NAME`).
    Whiteout,
}

/// Inputs of [`scan_upper`] besides the upper dir.
#[derive(Debug, Clone, Copy)]
pub struct ScanOptions<'a> {
    /// Overlay flavour the upper was written with.
    pub overlay: OverlayXattrs,
    /// The lower dirs of the run (any order), for the mount point rule.
    pub lowers: &'a [PathBuf],
    /// Rootless id map to translate host ids back; `None` in root mode.
    pub id_map: Option<&'a IdMap>,
}

/// Errors of [`scan_upper`].
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// Reading the upper dir failed.
    #[error("cannot scan upper dir entry {path}: {source}; in rootless mode scan from inside the user namespace or as root")]
    Io {
        /// The host path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// A path is not valid UTF-8 (cannot be put in the layer as `String`).
    #[error("upper dir entry {path} has a non-UTF-8 name; rename it in the step")]
    NonUtf8 {
        /// The host path.
        path: PathBuf,
    },
    /// An owner outside the rootless mapping.
    #[error("upper dir entry {path} is owned by host id {id}, which is outside the sandbox id map; was the upper dir reused across users?")]
    UnmappedId {
        /// The host path.
        path: PathBuf,
        /// The host uid or gid.
        id: u32,
    },
}

/// Paths the sandbox may create as mount points, with `true` for dirs.
const SANDBOX_MOUNT_POINTS: [(&str, bool); 7] = [
    ("proc", true),
    ("dev", true),
    ("tmp", true),
    ("run", true),
    ("sys", true),
    ("etc/resolv.conf", false),
    ("etc/hosts", false),
];

struct Raw {
    entry: UpperEntry,
    dev_ino: Option<(u64, u64)>,
    /// Number of direct children in the upper.
    children: usize,
    /// (mode, host uid, host gid) as stored on disk.
    host_meta: (u32, u32, u32),
}

/// Scans `upper` (see module docs).
pub fn scan_upper(upper: &Path, opts: &ScanOptions<'_>) -> Result<Vec<UpperEntry>, ScanError> {
    let mut raw = Vec::new();
    walk(upper, upper, opts, &mut raw)?;
    raw.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));

    // Sandbox-made mount points, and then parents that were copied up only
    // because such a mount point was created in them (e.g. `etc` for
    // `etc/resolv.conf`) and are otherwise identical to the lower.
    let mut dropped: HashMap<String, usize> = HashMap::new();
    let mut drop_set = std::collections::HashSet::new();
    for r in &raw {
        if is_sandbox_artifact(r, opts.lowers) {
            drop_set.insert(r.entry.path.clone());
            if let Some((parent, _)) = r.entry.path.rsplit_once('/') {
                *dropped.entry(parent.to_owned()).or_default() += 1;
            }
        }
    }
    for r in &raw {
        if dropped.get(&r.entry.path).is_some_and(|n| *n == r.children)
            && (is_unchanged_copy_up(r, opts.lowers) || is_sandbox_made_parent(r, opts.lowers))
        {
            drop_set.insert(r.entry.path.clone());
        }
    }

    let mut first_of: HashMap<(u64, u64), String> = HashMap::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        if drop_set.contains(&r.entry.path) {
            continue;
        }
        let mut e = r.entry;
        if let (Some(key), UpperKind::Entry(EntryKind::File)) = (r.dev_ino, &e.kind) {
            match first_of.get(&key) {
                Some(first) => {
                    e.kind = UpperKind::Entry(EntryKind::Hardlink(first.clone()));
                    e.size = 0;
                }
                None => {
                    first_of.insert(key, e.path.clone());
                }
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn is_sandbox_artifact(r: &Raw, lowers: &[PathBuf]) -> bool {
    let e = &r.entry;
    let Some(&(_, is_dir)) = SANDBOX_MOUNT_POINTS.iter().find(|(p, _)| *p == e.path) else {
        return false;
    };
    let pristine = match &e.kind {
        UpperKind::Entry(EntryKind::Dir) => is_dir && r.children == 0,
        UpperKind::Entry(EntryKind::File) => !is_dir && e.size == 0,
        _ => false,
    };
    pristine
        && !lowers
            .iter()
            .any(|l| l.join(&e.path).symlink_metadata().is_ok())
}

/// `etc`, made by the sandbox for the resolver's mount points in an image
/// without one: a non-opaque directory that no lower has.
fn is_sandbox_made_parent(r: &Raw, lowers: &[PathBuf]) -> bool {
    r.entry.path == "etc"
        && r.entry.kind == UpperKind::Entry(EntryKind::Dir)
        && !lowers
            .iter()
            .any(|l| l.join(&r.entry.path).symlink_metadata().is_ok())
}

/// A non-opaque directory whose mode and owner equal those of the same
/// directory in some lower.
fn is_unchanged_copy_up(r: &Raw, lowers: &[PathBuf]) -> bool {
    r.entry.kind == UpperKind::Entry(EntryKind::Dir)
        && lowers.iter().any(|l| {
            l.join(&r.entry.path)
                .symlink_metadata()
                .is_ok_and(|m| m.is_dir() && (m.mode() & 0o7777, m.uid(), m.gid()) == r.host_meta)
        })
}

fn walk(
    upper: &Path,
    dir: &Path,
    opts: &ScanOptions<'_>,
    out: &mut Vec<Raw>,
) -> Result<usize, ScanError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ScanError::Io { path, source }
    };
    let mut count = 0;
    for de in fs_err::read_dir(dir).map_err(io_err(dir))? {
        count += 1;
        let de = de.map_err(io_err(dir))?;
        let host = de.path();
        let md = fs_err::symlink_metadata(&host).map_err(io_err(&host))?;
        let rel = host
            .strip_prefix(upper)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| ScanError::NonUtf8 { path: host.clone() })?
            .to_owned();
        let xattrs_all = read_xattrs(&host).map_err(io_err(&host))?;
        let ft = md.file_type();
        let rdev = md.rdev();
        let mut children = 0;
        let kind = if ft.is_dir() {
            children = walk(upper, &host, opts, out)?;
            let opaque = xattrs_all
                .get(opts.overlay.opaque_name())
                .is_some_and(|v| v == b"y");
            if opaque {
                UpperKind::OpaqueDir
            } else {
                UpperKind::Entry(EntryKind::Dir)
            }
        } else if ft.is_char_device() && rdev == 0 {
            UpperKind::Whiteout
        } else if ft.is_file() {
            if opts.overlay == OverlayXattrs::User
                && md.len() == 0
                && xattrs_all.contains_key("user.overlay.whiteout")
            {
                UpperKind::Whiteout
            } else {
                UpperKind::Entry(EntryKind::File)
            }
        } else if ft.is_symlink() {
            let t = fs_err::read_link(&host).map_err(io_err(&host))?;
            let target = t
                .to_str()
                .ok_or_else(|| ScanError::NonUtf8 { path: host.clone() })?
                .to_owned();
            UpperKind::Entry(EntryKind::Symlink(target))
        } else if ft.is_char_device() {
            UpperKind::Entry(EntryKind::CharDevice(
                rustix::fs::major(rdev),
                rustix::fs::minor(rdev),
            ))
        } else if ft.is_block_device() {
            UpperKind::Entry(EntryKind::BlockDevice(
                rustix::fs::major(rdev),
                rustix::fs::minor(rdev),
            ))
        } else if ft.is_fifo() {
            UpperKind::Entry(EntryKind::Fifo)
        } else {
            // Sockets cannot go into a layer; skip them.
            continue;
        };
        // Whiteouts are made by overlayfs with the mounter's ids (host
        // root when imgbuild runs as root); their owner is not recorded.
        let whiteout = kind == UpperKind::Whiteout;
        let map_id = |id: u32, f: fn(&IdMap, u32) -> Option<u32>| match opts.id_map {
            _ if whiteout => Ok(0),
            None => Ok(id),
            Some(m) => f(m, id).ok_or(ScanError::UnmappedId {
                path: host.clone(),
                id,
            }),
        };
        let is_file = kind == UpperKind::Entry(EntryKind::File);
        let dev_ino = (is_file && md.nlink() > 1).then(|| (md.dev(), md.ino()));
        out.push(Raw {
            entry: UpperEntry {
                path: rel,
                mode: md.mode() & 0o7777,
                uid: map_id(md.uid(), IdMap::to_container_uid)?,
                gid: map_id(md.gid(), IdMap::to_container_gid)?,
                xattrs: xattrs_all
                    .into_iter()
                    .filter(|(k, _)| !is_overlay_private_xattr(k))
                    .map(|(k, v)| {
                        let v = match opts.id_map {
                            Some(m) if k == "security.capability" => sandbox_capability(v, m),
                            _ => v,
                        };
                        (k, v)
                    })
                    .collect(),
                mtime: md.mtime(),
                kind,
                size: if is_file { md.len() } else { 0 },
                host_path: host,
            },
            dev_ino,
            children,
            host_meta: (md.mode() & 0o7777, md.uid(), md.gid()),
        });
    }
    Ok(count)
}

/// A file capability as the sandbox sees it: `setcap` in a user namespace
/// writes a v3 capability whose root id is the host id of the namespace's
/// root; read from the host it keeps that id. One owned by sandbox root
/// becomes the v2 form (what the kernel shows inside and what real root
/// writes), another mapped root id is translated to the sandbox id.
fn sandbox_capability(v: Vec<u8>, map: &IdMap) -> Vec<u8> {
    const REVISION_MASK: u32 = 0xFF00_0000;
    const REVISION_2: u32 = 0x0200_0000;
    const REVISION_3: u32 = 0x0300_0000;
    if v.len() != 24 {
        return v;
    }
    let word = |i: usize| u32::from_le_bytes([v[i], v[i + 1], v[i + 2], v[i + 3]]);
    let magic = word(0);
    if magic & REVISION_MASK != REVISION_3 {
        return v;
    }
    match map.to_container_uid(word(20)) {
        Some(0) => {
            let mut out = ((magic & !REVISION_MASK) | REVISION_2)
                .to_le_bytes()
                .to_vec();
            out.extend_from_slice(&v[4..20]);
            out
        }
        Some(id) => {
            let mut out = v[..20].to_vec();
            out.extend_from_slice(&id.to_le_bytes());
            out
        }
        None => v,
    }
}

/// All xattrs of `path` (not following symlinks).
pub(crate) fn read_xattrs(path: &Path) -> io::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let n = loop {
        match rustix::fs::llistxattr(path, &mut names[..]) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(rustix::io::Errno::NOTSUP) => return Ok(out),
            Err(e) => return Err(e.into()),
        }
    };
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let mut val = vec![0u8; 256];
        let len = loop {
            match rustix::fs::lgetxattr(path, name, &mut val[..]) {
                Ok(len) => break Some(len),
                Err(rustix::io::Errno::RANGE) => val.resize(val.len() * 16, 0),
                // Vanished or not readable for us (e.g. trusted.* as a user).
                Err(
                    rustix::io::Errno::NODATA | rustix::io::Errno::PERM | rustix::io::Errno::ACCESS,
                ) => break None,
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(len) = len {
            val.truncate(len);
            out.insert(name.to_owned(), val);
        }
    }
    Ok(out)
}

impl super::Sandbox {
    /// [`scan_upper`] of this sandbox's upper dir with matching options
    /// (its overlay flavour, lowers and, when rootless, id map).
    pub fn scan_upper(&self) -> Result<Vec<UpperEntry>, ScanError> {
        scan_upper(
            &self.upper,
            &ScanOptions {
                overlay: self.overlay_xattrs(),
                lowers: &self.lowers,
                id_map: Some(self.mode.id_map()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MapWriter;

    #[test]
    fn v3_capabilities_of_sandbox_root_become_v2() {
        let map = IdMap {
            host_uid: 1 << 30,
            host_gid: 1 << 30,
            subuid_start: (1 << 30) + 1,
            subuid_count: 65535,
            subgid_start: (1 << 30) + 1,
            subgid_count: 65535,
            writer: MapWriter::Direct,
        };
        // cap_net_raw+ep, v3, root id = host id of sandbox root.
        let mut v3 = 0x0300_0001u32.to_le_bytes().to_vec();
        v3.extend_from_slice(&[0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut v2 = 0x0200_0001u32.to_le_bytes().to_vec();
        v2.extend_from_slice(&v3[4..20]);
        let mut root_owned = v3.clone();
        root_owned.extend_from_slice(&(1u32 << 30).to_le_bytes());
        assert_eq!(sandbox_capability(root_owned, &map), v2);
        let mut user_owned = v3.clone();
        user_owned.extend_from_slice(&((1u32 << 30) + 1000).to_le_bytes());
        let mut want = v3.clone();
        want.extend_from_slice(&1000u32.to_le_bytes());
        assert_eq!(sandbox_capability(user_owned, &map), want);
        // v2 and unmapped root ids are kept as they are.
        assert_eq!(sandbox_capability(v2.clone(), &map), v2);
        let mut unmapped = v3;
        unmapped.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(sandbox_capability(unmapped.clone(), &map), unmapped);
    }
}
