//! Measuring and removing trees on disk, whatever unpacked layers left in them.
//!
//! Sizes are apparent sizes (`st_size`), each inode counted once, as `du -sb` counts them.
//! Unpacked layers hold mode-0 and read-only directories and files owned by a sandbox's
//! shifted ids; [`remove_tree`] gives directories back to their owner as it goes.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What a walk found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Measured {
    /// Apparent size of every file, directory and symlink, hard links once.
    pub(crate) bytes: u64,
    /// Directories that could not be listed (their own size is counted).
    pub(crate) unreadable: usize,
}

/// Measures the tree at `path` (a file, a directory or nothing). `seen` holds the inodes
/// with several links already counted, so trees measured one after another add up.
pub(crate) fn measure(path: &Path, seen: &mut HashSet<(u64, u64)>) -> Measured {
    let mut out = Measured::default();
    let mut stack = vec![path.to_owned()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        out.bytes += meta.size();
        if meta.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(entries) => stack.extend(entries.flatten().map(|e| e.path())),
                Err(_) => out.unreadable += 1,
            }
        }
    }
    out
}

/// Removes `path` (a file, a directory tree or nothing), making directories writable
/// and searchable where that is what stops it.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(with_path(path, e)),
    };
    if !meta.is_dir() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(with_path(path, e)),
            _ => Ok(()),
        };
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            make_writable(path);
            fs_err::remove_dir_all(path).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{e} (it may hold files owned by a sandbox's ids: remove it as root)"),
                )
            })
        }
    }
}

fn with_path(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("removing {}: {e}", path.display()))
}

/// Gives every directory below `root` mode 0700 where we may, so it can be listed and
/// emptied (unpacked layers hold 0555 and 0000 directories).
pub(crate) fn make_writable(root: &Path) {
    let mut stack: Vec<PathBuf> = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measure_counts_hard_links_once_and_remove_tree_gets_through_mode_0_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        fs_err::create_dir_all(t.join("locked/deeper")).unwrap();
        fs_err::write(t.join("locked/deeper/f"), vec![0u8; 1000]).unwrap();
        fs_err::hard_link(t.join("locked/deeper/f"), t.join("link")).unwrap();
        std::os::unix::fs::symlink("locked/deeper/f", t.join("sym")).unwrap();
        let dirs = [&t, &t.join("locked"), &t.join("locked/deeper")];
        let dir_bytes: u64 = dirs
            .iter()
            .map(|d| fs_err::symlink_metadata(d).unwrap().size())
            .sum();
        let m = measure(&t, &mut HashSet::new());
        assert_eq!(m.bytes, dir_bytes + 1000 + "locked/deeper/f".len() as u64);
        for d in [t.join("locked/deeper"), t.join("locked")] {
            fs_err::set_permissions(&d, std::fs::Permissions::from_mode(0o0)).unwrap();
        }
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
    }
}
