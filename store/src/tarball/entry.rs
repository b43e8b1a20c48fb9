//! What one tar entry is, independent of how it is encoded.

use std::collections::BTreeMap;

/// The prefix that marks a whiteout file in an OCI layer.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The name that marks its directory as opaque in an OCI layer.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The type of an entry, with what each type carries; link targets are `String`s in the
/// entry model, bytes (`EntryKind<Vec<u8>>`) where a layer is read for extraction.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EntryKind<N = String> {
    /// A regular file; its bytes follow in the stream.
    File,
    /// A directory.
    Dir,
    /// A symbolic link to the target (as written, not resolved).
    Symlink(N),
    /// A hard link to an earlier entry's path (relative, no leading `/`).
    Hardlink(N),
    /// A character device (major, minor).
    CharDevice(u32, u32),
    /// A block device (major, minor).
    BlockDevice(u32, u32),
    /// A named pipe.
    Fifo,
}

/// One entry of a layer: path and metadata, everything but the file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EntryMeta {
    /// Path relative to the root: no leading `/`, no trailing `/`, no `.` or `..` components.
    pub path: String,
    /// The entry's type.
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (no file-type bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time in seconds since the epoch.
    pub mtime: u64,
    /// Size of the data that follows (files only; 0 otherwise).
    pub size: u64,
    /// Extended attributes such as `security.capability`, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl EntryMeta {
    /// A directory owned by root with mode 0755.
    pub fn dir(path: impl Into<String>, mtime: u64) -> Self {
        Self::new(path, EntryKind::Dir, 0o755, mtime)
    }

    /// A regular file of `size` bytes owned by root with mode 0644.
    pub fn file(path: impl Into<String>, size: u64, mtime: u64) -> Self {
        Self {
            size,
            ..Self::new(path, EntryKind::File, 0o644, mtime)
        }
    }

    /// An entry of `kind` owned by root.
    pub fn new(path: impl Into<String>, kind: EntryKind, mode: u32, mtime: u64) -> Self {
        Self {
            path: path.into(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// True when this is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    /// The file name (last component).
    pub fn name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The parent's path, `""` for entries at the root.
    pub fn parent(&self) -> &str {
        parent_of(&self.path)
    }

    /// If this entry is a whiteout, the path it deletes.
    pub fn whiteout_target(&self) -> Option<String> {
        let name = self.name();
        if name == OPAQUE_MARKER {
            return None;
        }
        let target = name.strip_prefix(WHITEOUT_PREFIX)?;
        Some(join(self.parent(), target))
    }

    /// If this entry marks a directory opaque, that directory's path.
    pub fn opaque_dir(&self) -> Option<&str> {
        (self.name() == OPAQUE_MARKER).then(|| self.parent())
    }
}

/// The parent of a relative path, `""` at the root.
pub(crate) fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// Joins a relative directory and a name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}
