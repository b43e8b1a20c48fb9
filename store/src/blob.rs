//! Writing blobs: to a temp file, hashed on the way, fsynced and renamed to their digest.
//! A blob written by this open store counts as checked (see `Store::check_blob`).
//!
//! A temp blob is `tmp/blob-*` and its writer holds an exclusive `flock` on it for as long
//! as it lives, so anyone who can take that lock has proof that the writer is dead: opening
//! the store sweeps such files ([`sweep_dead_temp_blobs`]). The file is created as
//! `tmp/.new-*`, locked, and only then renamed to its sweepable name, so a sweeper never
//! sees an unlocked live temp blob.

use crate::{Digest, Sha256Writer, Store, StoreError};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The prefix of locked temp blobs in `tmp/`.
pub(crate) const TEMP_BLOB_PREFIX: &str = "blob-";

/// What a blob is: its digest and size, as an OCI descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// sha256 of the bytes.
    pub digest: Digest,
    /// Length in bytes.
    pub size: u64,
}

/// A locked temp file in `tmp/`, removed on drop unless it was renamed into place.
struct TempBlob {
    path: PathBuf,
    file: File,
    persisted: bool,
}

impl TempBlob {
    fn create(tmp: &Path) -> Result<Self, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let staging = tempfile::Builder::new()
            .prefix(".new-")
            .tempfile_in(tmp)
            .map_err(|e| StoreError::io_writing(tmp, e))?;
        staging
            .as_file()
            .try_lock()
            .map_err(|e| io::Error::other(format!("locking {}: {e}", staging.path().display())))?;
        let suffix = staging
            .path()
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(".new-"))
            .unwrap_or("x")
            .to_owned();
        let path = tmp.join(format!(
            "{TEMP_BLOB_PREFIX}{}-{}-{suffix}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let file = staging.persist_noclobber(&path).map_err(|e| e.error)?;
        Ok(Self {
            path,
            file,
            persisted: false,
        })
    }
}

impl Write for TempBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file
            .write(buf)
            .map_err(|e| StoreError::io_writing(&self.path, e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file
            .flush()
            .map_err(|e| StoreError::io_writing(&self.path, e))
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Marks the scratch dirs of one open store: `tmp/owner-<id>.lock`, flocked while the store
/// is open, and `tmp/scratch-<id>-*`. Once the lock can be taken, the owner is dead.
#[derive(Debug)]
pub(crate) struct ScratchOwner {
    pub(crate) id: String,
    path: PathBuf,
    _file: File,
}

const OWNER_PREFIX: &str = "owner-";
const SCRATCH_PREFIX: &str = "scratch-";
const OWNER_ID_LEN: usize = 16;

impl ScratchOwner {
    pub(crate) fn create(tmp: &Path) -> Result<Self, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!(
            "{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let id = Digest::of(seed.as_bytes()).hex()[..OWNER_ID_LEN].to_owned();
        let path = tmp.join(format!("{OWNER_PREFIX}{id}.lock"));
        let file = fs_err::OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io_writing(&path, e))?
            .into_parts()
            .0;
        file.try_lock()
            .map_err(|e| io::Error::other(format!("locking {}: {e}", path.display())))?;
        Ok(Self {
            id,
            path,
            _file: file,
        })
    }

    pub(crate) fn scratch_prefix(&self) -> String {
        format!("{SCRATCH_PREFIX}{}-", self.id)
    }
}

impl Drop for ScratchOwner {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Removes the scratch dirs (and owner locks) of stores whose processes are dead.
pub(crate) fn sweep_dead_scratch_dirs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    let names: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for owner in names.iter().filter_map(|n| {
        n.strip_prefix(OWNER_PREFIX)
            .and_then(|rest| rest.strip_suffix(".lock"))
    }) {
        let lock_path = tmp.join(format!("{OWNER_PREFIX}{owner}.lock"));
        let Ok(file) = File::open(&lock_path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // alive
        }
        let prefix = format!("{SCRATCH_PREFIX}{owner}-");
        for dir in names.iter().filter(|n| n.starts_with(&prefix)) {
            let dir = tmp.join(dir);
            crate::disk::make_writable(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_file(&lock_path);
    }
}

/// Removes the temp blobs in `tmp` whose writers are dead (their lock can be taken).
pub(crate) fn sweep_dead_temp_blobs(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_BLOB_PREFIX))
        {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            // The writer is gone (its lock went with it); the name is never reused.
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// A blob being written into the store. Nothing is visible until [`BlobWriter::commit`];
/// dropping it removes its temp file at once (a killed build's is swept by the next open).
pub struct BlobWriter<'s> {
    store: &'s Store,
    out: Sha256Writer<BufWriter<TempBlob>>,
}

impl<'s> BlobWriter<'s> {
    pub(crate) fn new(store: &'s Store) -> Result<Self, StoreError> {
        let tmp = TempBlob::create(&store.tmp_dir())?;
        Ok(Self {
            store,
            out: Sha256Writer::new(BufWriter::with_capacity(1 << 20, tmp)),
        })
    }

    /// Makes the blob durable and visible under its digest.
    pub fn commit(self) -> Result<Descriptor, StoreError> {
        self.commit_inner(None)
    }

    /// Like [`BlobWriter::commit`], but fails (storing nothing) unless the bytes hash to `expected`.
    pub fn commit_verified(self, expected: &Digest) -> Result<Descriptor, StoreError> {
        self.commit_inner(Some(expected))
    }

    fn commit_inner(self, expected: Option<&Digest>) -> Result<Descriptor, StoreError> {
        let (digest, size, buffered) = self.out.finish();
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    found: digest,
                });
            }
        }
        let mut tmp = buffered
            .into_inner()
            .map_err(|e| StoreError::from_io(e.into_error()))?;
        tmp.persisted = place(self.store, &tmp.file, &tmp.path, &digest, size)?;
        Ok(Descriptor { digest, size })
    }
}

/// Makes the finished file `file` at `path` (in `tmp/`) the blob `digest`: fsynced,
/// read-only, renamed into place and indexed. A blob already there is only indexed and the
/// file left where it is; says whether it was renamed.
fn place(
    store: &Store,
    file: &File,
    path: &Path,
    digest: &Digest,
    size: u64,
) -> Result<bool, StoreError> {
    let final_path = store.blob_path(digest);
    let renamed = !final_path.exists();
    if renamed {
        let writing = |e| StoreError::from_io(StoreError::io_writing(path, e));
        file.sync_all().map_err(writing)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o444))
            .map_err(writing)?;
        fs_err::rename(path, &final_path)?;
        if let Some(dir) = final_path.parent() {
            fs_err::File::open(dir)?.sync_all()?;
        }
    }
    store.with_index(|ix| ix.add_blob(digest, size))?;
    if renamed {
        // These very bytes were hashed on their way into the file: reading them back in
        // this process (the OCI layout's copy of a layer just built) need not hash again.
        store.verified.insert(digest);
    }
    Ok(renamed)
}

/// Moves `staged`, a finished file in the store's own `tmp/` bucket, into the store as the
/// blob `expected` without copying its bytes: they are hashed again (they are still in the
/// page cache), then [`place`]d. Stores nothing, and removes `staged`, when the bytes are
/// not `expected`.
pub(crate) fn adopt_verified(
    store: &Store,
    staged: &Path,
    expected: &Digest,
) -> Result<Descriptor, StoreError> {
    let mut file = fs_err::File::open(staged)?;
    let mut hasher = Sha256Writer::new(io::sink());
    io::copy(&mut file, &mut hasher).map_err(StoreError::from_io)?;
    let (digest, size, _) = hasher.finish();
    if digest != *expected {
        let _ = fs_err::remove_file(staged);
        return Err(StoreError::DigestMismatch {
            expected: expected.clone(),
            found: digest,
        });
    }
    if !place(store, file.file(), staged, &digest, size)? {
        let _ = fs_err::remove_file(staged);
    }
    Ok(Descriptor { digest, size })
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adopting_renames_a_staged_file_and_refuses_wrong_bytes() {
        use crate::layout::Bucket;
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let staged = store.bucket(Bucket::Tmp).join("download.part");
        fs_err::write(&staged, b"package bytes").unwrap();
        let inode = fs_err::metadata(&staged).unwrap().ino();
        let digest = Digest::of(b"package bytes");

        let wrong = Digest::of(b"other bytes");
        assert!(matches!(
            store.adopt_verified(&staged, &wrong),
            Err(StoreError::DigestMismatch { .. })
        ));
        assert!(!staged.exists(), "a refused file is removed");
        assert!(!store.has_blob(&wrong).unwrap());

        fs_err::write(&staged, b"package bytes").unwrap();
        let inode = fs_err::metadata(&staged).map_or(inode, |m| m.ino());
        let stored = store.adopt_verified(&staged, &digest).unwrap();
        assert_eq!(stored.size, 13);
        assert!(!staged.exists());
        let blob = fs_err::metadata(store.blob_path(&digest)).unwrap();
        assert_eq!(blob.ino(), inode, "renamed, not copied");
        assert_eq!(blob.mode() & 0o777, 0o444);
        assert_eq!(store.read_blob(&digest).unwrap(), b"package bytes");

        // Adopting a blob the store has already just drops the staged copy.
        fs_err::write(&staged, b"package bytes").unwrap();
        store.adopt_verified(&staged, &digest).unwrap();
        assert!(!staged.exists());
    }

    #[test]
    fn open_sweeps_temp_blobs_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut live = store.blob_writer().unwrap();
        live.write_all(b"still writing").unwrap();
        live.flush().unwrap();
        // A dead writer's file: nobody holds its lock.
        let dead = store.tmp_dir().join(format!("{TEMP_BLOB_PREFIX}dead"));
        std::fs::write(&dead, b"partial").unwrap();
        let other = Store::open(dir.path()).unwrap();
        assert!(!dead.exists(), "the dead writer's temp blob is swept");
        let left: Vec<_> = std::fs::read_dir(store.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "the live writer's temp blob stays: {left:?}");
        let blob = live.commit().unwrap();
        assert_eq!(other.read_blob(&blob.digest).unwrap(), b"still writing");
        let left: Vec<_> = std::fs::read_dir(store.tmp_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| !n.starts_with(OWNER_PREFIX))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn open_sweeps_scratch_dirs_of_dead_stores_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let live = store.scratch_dir().unwrap();
        std::fs::write(live.path().join("upper"), b"x").unwrap();
        // A killed build's: its owner lock file is there but nobody holds it.
        let tmp = store.tmp_dir();
        std::fs::write(
            tmp.join(format!("{OWNER_PREFIX}0123456789abcdef.lock")),
            b"",
        )
        .unwrap();
        let dead = tmp.join(format!("{SCRATCH_PREFIX}0123456789abcdef-XyZ123"));
        std::fs::create_dir_all(dead.join("work/work")).unwrap();
        std::fs::set_permissions(
            dead.join("work/work"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        let _other = Store::open(dir.path()).unwrap();
        assert!(!dead.exists(), "the dead build's scratch dir is swept");
        assert!(!tmp
            .join(format!("{OWNER_PREFIX}0123456789abcdef.lock"))
            .exists());
        assert!(live.path().join("upper").exists(), "the live one stays");
        drop(live);
        drop(store);
        assert!(
            std::fs::read_dir(&tmp)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .all(|n| n.starts_with(OWNER_PREFIX)),
            "only the other store's owner lock is left"
        );
    }
}
