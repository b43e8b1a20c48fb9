//! The store's directory layout, owned here and nowhere else (as uv's `CacheBucket` is).
//!
//! ```text
//! <root>/                   0700
//!   CACHEDIR.TAG            marks the tree as a cache for backup tools
//!   v1/                     0700; the layout version
//!     lock                  flock: shared for builds, exclusive for gc / verify --repair
//!     index.lock            flock held while the schema is created or migrated
//!     index.sqlite(-wal)    the index (WAL mode); `-shm` beside it while the store is open
//!     blobs/sha256/<hex>    Bucket::Blobs: immutable blobs, read-only files
//!     tmp/                  Bucket::Tmp: blobs being written and run steps' scratch dirs
//!     unpacked/<flavour>/   Bucket::Unpacked: layers unpacked as overlay lower dirs
//!       <diff_id hex>/        the layer's tree (may hold shifted owners and mode-0 dirs)
//!       <diff_id hex>.used    stamp whose mtime is the dir's last use (gc drops the oldest)
//!     boot-assets/<key>.json  Bucket::BootAssets: remembered bootloader resolutions
//!     plans/<recipe>.json     Bucket::Plans: each recipe's last built plan (`build --explain`)
//! ```
//!
//! Every directory below `v1/` is a [`Bucket`]; other crates ask [`Store::bucket`] for
//! it instead of joining paths. A new bucket is a new variant: `gc` and `store du` match on
//! every variant, so the compiler asks what they do with it.
//!
//! [`Store::bucket`]: crate::Store::bucket

use std::path::{Path, PathBuf};

/// The layout version directory below the root.
const VERSION_DIR: &str = "v1";

/// A directory of the store, below `v1/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Bucket {
    /// `blobs/`: content-addressed blobs (`blobs/sha256/<hex>`), listed in the index.
    Blobs,
    /// `tmp/`: temp blobs and scratch dirs of live builds; swept when their owner dies.
    Tmp,
    /// `unpacked/`: layers unpacked once per flavour as overlay lower dirs; a cache of the
    /// layer blobs, recreated on demand.
    Unpacked,
    /// `boot-assets/`: which bootloader packages a signed Release resolved to.
    BootAssets,
    /// `plans/`: the inputs of every key of each recipe's last build, by recipe path, so
    /// the next build can say why a step missed.
    Plans,
}

impl Bucket {
    /// Every bucket, in the order `store du` shows them.
    pub const ALL: [Bucket; 5] = [
        Bucket::Blobs,
        Bucket::Tmp,
        Bucket::Unpacked,
        Bucket::BootAssets,
        Bucket::Plans,
    ];

    /// The directory's name below `v1/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Bucket::Blobs => "blobs",
            Bucket::Tmp => "tmp",
            Bucket::Unpacked => "unpacked",
            Bucket::BootAssets => "boot-assets",
            Bucket::Plans => "plans",
        }
    }
}

impl std::fmt::Display for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The paths of one store.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
    data: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
            data: root.join(VERSION_DIR),
        }
    }

    /// The store's root directory.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// `v1/`.
    pub(crate) fn data(&self) -> &Path {
        &self.data
    }

    pub(crate) fn bucket(&self, bucket: Bucket) -> PathBuf {
        self.data.join(bucket.dir_name())
    }

    /// Where blobs named by their sha256 live.
    pub(crate) fn sha256_blobs(&self) -> PathBuf {
        self.bucket(Bucket::Blobs).join("sha256")
    }

    pub(crate) fn cachedir_tag(&self) -> PathBuf {
        self.root.join("CACHEDIR.TAG")
    }

    pub(crate) fn lock_file(&self) -> PathBuf {
        self.data.join("lock")
    }

    pub(crate) fn schema_lock_file(&self) -> PathBuf {
        self.data.join("index.lock")
    }

    pub(crate) fn index_file(&self) -> PathBuf {
        self.data.join("index.sqlite")
    }

    /// True for SQLite's shared-memory file: it exists only while the index is open (so
    /// while `store du` or `gc` measures) and goes with the last connection.
    pub(crate) fn is_transient(&self, path: &Path) -> bool {
        path.parent() == Some(self.data.as_path())
            && path.file_name() == Some(std::ffi::OsStr::new("index.sqlite-shm"))
    }

    /// True when `dir` looks like a store root (it has the layout version dir).
    pub(crate) fn is_store_root(dir: &Path) -> bool {
        dir.join(VERSION_DIR).is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_is_its_own_directory_below_v1() {
        let layout = Layout::new(Path::new("/s"));
        let dirs: std::collections::BTreeSet<PathBuf> =
            Bucket::ALL.iter().map(|b| layout.bucket(*b)).collect();
        assert_eq!(dirs.len(), Bucket::ALL.len());
        assert!(dirs.iter().all(|d| d.parent() == Some(Path::new("/s/v1"))));
        assert_eq!(
            layout.bucket(Bucket::BootAssets),
            Path::new("/s/v1/boot-assets")
        );
        assert_eq!(layout.sha256_blobs(), Path::new("/s/v1/blobs/sha256"));
    }
}
