//! Staged outputs: hidden entries (`.imgbuild-staged-*`) beside the final path, each locked by its
//! writer for the life of the export, renamed into place when complete.
//!
//! A staged entry (file or directory) carries an exclusive `flock` on the entry itself,
//! taken right after it is created and held until it has been renamed into place or
//! removed. The kernel drops the lock when its writer dies, so any staged entry
//! whose lock can be taken belongs to no live build: [`sweep`] removes those, and only
//! those. Creating and locking are two steps; a sweep can take the lock in between and
//! remove the fresh entry, so a writer checks after locking that the name still points at
//! the inode it locked, and starts over with a new name if not. Removers hold the lock
//! while they remove, and check the same way, so two of them never fight over one entry.

use std::fs::TryLockError;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The prefix of every staged entry; `sweep` only ever looks at these names. Not just
/// `.imgbuild-`: the README's CI example keeps its store in `.imgbuild-store`, and `-o .`
/// must not sweep it.
pub(crate) const PREFIX: &str = ".imgbuild-staged-";

/// A staged file or directory beside an output, locked by this process. Dropped before
/// [`Staged::commit_file`] or [`Staged::commit_dir`], it is removed.
#[derive(Debug)]
pub(crate) struct Staged {
    path: PathBuf,
    /// The open entry holding the lock; `None` once committed.
    lock: Option<fs_err::File>,
    is_dir: bool,
}

impl Staged {
    /// Creates and locks an empty staged file in `dir`.
    pub(crate) fn file_in(dir: &Path) -> io::Result<Self> {
        loop {
            let (file, path) = tempfile::Builder::new()
                .prefix(PREFIX)
                .tempfile_in(dir)?
                .keep()
                .map_err(|e| e.error)?;
            let file = fs_err::File::from_parts(file, &path);
            if let Some(staged) = Self::locked(path, file, false)? {
                return Ok(staged);
            }
        }
    }

    /// Creates and locks an empty staged directory in `dir`.
    pub(crate) fn dir_in(dir: &Path) -> io::Result<Self> {
        loop {
            let path = tempfile::Builder::new()
                .prefix(PREFIX)
                .tempdir_in(dir)?
                .keep();
            let file = match fs_err::File::open(&path) {
                Ok(f) => f,
                // A sweep removed it between creation and open: try another name.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if let Some(staged) = Self::locked(path, file, true)? {
                return Ok(staged);
            }
        }
    }

    /// Locks `file` (just created at `path`); `None` if a sweep got to it first.
    fn locked(path: PathBuf, file: fs_err::File, is_dir: bool) -> io::Result<Option<Self>> {
        match file.file().try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if !names_inode(&path, file.file())? {
            return Ok(None);
        }
        Ok(Some(Self {
            path,
            lock: Some(file),
            is_dir,
        }))
    }

    /// Where the staged entry is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The locked staged file, to write into.
    pub(crate) fn file(&self) -> &fs_err::File {
        self.lock.as_ref().expect("not committed yet")
    }

    /// Makes the staged file readable by all, syncs it and renames it over `target`
    /// (`rename(2)` replaces a file atomically, so concurrent writers each land whole and
    /// the last one stays).
    pub(crate) fn commit_file(mut self, target: &Path) -> io::Result<()> {
        let file = self.file();
        file.set_permissions(PermissionsExt::from_mode(0o644))?;
        file.sync_all()?;
        fs_err::rename(&self.path, target)?;
        self.lock = None;
        sync_parent(target);
        Ok(())
    }

    /// Makes the staged directory readable by all and swaps it into place at `target`.
    ///
    /// When `target` exists, `renameat2(RENAME_EXCHANGE)` swaps the two names in one step:
    /// readers and concurrent writers only ever see a whole directory at `target`, and the
    /// old one ends up under our staged name, from where it is removed. When `target` does
    /// not exist, `RENAME_NOREPLACE` moves ours in without clobbering one that appeared in
    /// the meantime (then we exchange instead). On a filesystem without `renameat2` flags
    /// (EINVAL), the old directory is first renamed aside to a fresh hidden name, then ours
    /// is renamed in, retrying if another writer got in between; each writer's output is
    /// still whole, but for an instant there is none at `target`.
    pub(crate) fn commit_dir(mut self, target: &Path) -> io::Result<()> {
        fs_err::set_permissions(&self.path, PermissionsExt::from_mode(0o755))?;
        loop {
            match rename_with(&self.path, target, rustix::fs::RenameFlags::NOREPLACE) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if unsupported(&e) => return self.commit_dir_fallback(target),
                Err(e) => return Err(e),
            }
            match rename_with(&self.path, target, rustix::fs::RenameFlags::EXCHANGE) {
                Ok(()) => {
                    // Ours is in place; what is under our staged name now is the old one.
                    self.lock = None;
                    sync_parent(target);
                    remove_if_dead(&self.path, true);
                    return Ok(());
                }
                // Someone removed the target in between: move in with NOREPLACE again.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if unsupported(&e) => return self.commit_dir_fallback(target),
                Err(e) => return Err(e),
            }
        }
        self.lock = None;
        sync_parent(target);
        Ok(())
    }

    /// [`Staged::commit_dir`] without `renameat2` flags.
    fn commit_dir_fallback(mut self, target: &Path) -> io::Result<()> {
        let parent = target.parent().unwrap_or(Path::new("."));
        loop {
            match fs_err::rename(&self.path, target) {
                Ok(()) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists
                    ) =>
                {
                    // Unlocked, so a sweep may remove it too: that is what we want.
                    let aside = tempfile::Builder::new()
                        .prefix(PREFIX)
                        .make_in(parent, |_| Ok(()))?
                        .into_temp_path()
                        .keep()
                        .map_err(|e| e.error)?;
                    match fs_err::rename(target, &aside) {
                        Ok(()) => {
                            remove_if_dead(&aside, true);
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        self.lock = None;
        sync_parent(target);
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.lock.is_some() {
            // Still holding the lock: nobody else removes it, so just remove it.
            let _ = if self.is_dir {
                fs_err::remove_dir_all(&self.path)
            } else {
                fs_err::remove_file(&self.path)
            };
        }
    }
}

fn rename_with(from: &Path, to: &Path, flags: rustix::fs::RenameFlags) -> io::Result<()> {
    rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, flags).map_err(|e| {
        io::Error::new(
            io::Error::from(e).kind(),
            RenameError {
                from: from.to_owned(),
                to: to.to_owned(),
                errno: e,
            },
        )
    })
}

/// A failed `renameat2`, naming both paths (as `fs_err` does for `rename`).
#[derive(Debug, thiserror::Error)]
#[error("failed to rename {} to {}: {errno}", from.display(), to.display())]
struct RenameError {
    from: PathBuf,
    to: PathBuf,
    errno: rustix::io::Errno,
}

/// True when `renameat2` flags are not supported here (old kernel, NFS, some FUSE).
fn unsupported(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<RenameError>())
        .is_some_and(|r| matches!(r.errno, rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS))
}

/// True when `path` still names the inode `file` has open.
fn names_inode(path: &Path, file: &std::fs::File) -> io::Result<bool> {
    let open = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Syncs the directory holding `path`, so the rename survives a crash (best effort).
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
}

/// Removes the staged entry at `path` if its lock can be taken, i.e. its writer is gone
/// (waiting for the lock if `wait`). Returns whether it removed something.
fn remove_if_dead(path: &Path, wait: bool) -> bool {
    // O_NOFOLLOW: a symlink named like a staged entry is not ours to follow; O_NONBLOCK:
    // nor is a FIFO ours to wait on.
    let opened = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(
                (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
            )
            .open(path)
    };
    let Ok(file) = opened else {
        return false;
    };
    let locked = if wait {
        file.lock().is_ok()
    } else {
        file.try_lock().is_ok()
    };
    if !locked || !names_inode(path, &file).unwrap_or(false) {
        return false;
    }
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let removed = if meta.is_dir() {
        fs_err::remove_dir_all(path)
    } else {
        fs_err::remove_file(path)
    };
    removed.is_ok()
}

/// Writes `bytes` to `dir/name` atomically (staged beside it, synced, renamed into place):
/// a reader sees the old file or the whole new one, never a part. Creates `dir`.
pub fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    use std::io::Write;
    fs_err::create_dir_all(dir)?;
    let staged = Staged::file_in(dir)?;
    staged.file().write_all(bytes)?;
    let target = dir.join(name);
    staged.commit_file(&target)?;
    Ok(target)
}

/// Removes the staged entries in `dir` whose writer is dead (their lock can be taken), and
/// returns their paths. Entries of live builds, and everything not named
/// `.imgbuild-staged-*`, are left alone. A missing `dir` has nothing to sweep.
pub fn sweep(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry?;
        if !entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(PREFIX.as_bytes())
        {
            continue;
        }
        let path = entry.path();
        if remove_if_dead(&path, false) {
            removed.push(path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut all: Vec<String> = fs_err::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn sweep_removes_unlocked_entries_and_keeps_locked_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // Dead writers: nothing holds their locks.
        fs_err::write(dir.join(".imgbuild-staged-deadfile"), b"x").unwrap();
        fs_err::create_dir_all(dir.join(".imgbuild-staged-deaddir/blobs/sha256")).unwrap();
        fs_err::write(dir.join(".imgbuild-staged-deaddir/blobs/sha256/a"), b"x").unwrap();
        // Not ours: the README's CI store included.
        fs_err::write(dir.join("keep.tar"), b"x").unwrap();
        fs_err::create_dir_all(dir.join(".imgbuild-store/v1")).unwrap();
        std::os::unix::fs::symlink("keep.tar", dir.join(".imgbuild-staged-link")).unwrap();
        // Live writers (flock is per open file description, so this process counts as
        // another holder for the sweep's own open).
        let live_file = Staged::file_in(dir).unwrap();
        let live_dir = Staged::dir_in(dir).unwrap();
        let removed = sweep(dir).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        let left = names(dir);
        assert!(left.contains(&".imgbuild-store".to_owned()), "{left:?}");
        assert!(left.contains(&"keep.tar".to_owned()), "{left:?}");
        assert!(
            left.contains(&".imgbuild-staged-link".to_owned()),
            "{left:?}"
        );
        assert!(live_file.path().exists() && live_dir.path().is_dir());
        assert_eq!(left.len(), 5, "{left:?}");
        // Dropping an uncommitted entry removes it.
        drop((live_file, live_dir));
        assert_eq!(
            names(dir),
            [".imgbuild-staged-link", ".imgbuild-store", "keep.tar"]
        );
    }

    #[test]
    fn commit_dir_replaces_a_directory_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("x.oci");
        for round in 0..3 {
            let staged = Staged::dir_in(tmp.path()).unwrap();
            fs_err::write(staged.path().join("round"), round.to_string()).unwrap();
            staged.commit_dir(&target).unwrap();
            assert_eq!(names(&target), ["round"]);
            assert_eq!(
                fs_err::read_to_string(target.join("round")).unwrap(),
                round.to_string()
            );
            assert_eq!(names(tmp.path()), ["x.oci"]);
        }
    }

    #[test]
    fn commit_dir_fallback_replaces_a_directory_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("x.oci");
        for round in 0..3 {
            let staged = Staged::dir_in(tmp.path()).unwrap();
            fs_err::write(staged.path().join("round"), round.to_string()).unwrap();
            staged.commit_dir_fallback(&target).unwrap();
            assert_eq!(
                fs_err::read_to_string(target.join("round")).unwrap(),
                round.to_string()
            );
            assert_eq!(names(tmp.path()), ["x.oci"]);
        }
    }

    #[test]
    fn commit_file_replaces_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("x.tar");
        for round in 0..2 {
            let staged = Staged::file_in(tmp.path()).unwrap();
            std::io::Write::write_all(&mut staged.file(), round.to_string().as_bytes()).unwrap();
            staged.commit_file(&target).unwrap();
            assert_eq!(fs_err::read_to_string(&target).unwrap(), round.to_string());
            assert_eq!(names(tmp.path()), ["x.tar"]);
        }
    }
}
