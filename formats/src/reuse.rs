//! Telling whether a written output is still what was written, and cloning one output to
//! another place: what lets a build skip exports the store has already answered.
//!
//! An output's [`Snapshot`] is what stat(2) says about each of its files (the artifact,
//! every file of an OCI layout directory, an initramfs's kernel): inode, size, mtime and
//! ctime. Any write, truncation, chmod, rename over or replacement of a file changes its
//! ctime or inode, and the kernel alone sets ctime, so an output whose snapshot is the
//! one taken right after it was written has not been modified since.

use crate::output::{write_dir_atomically, write_path_atomically};
use crate::{Artifact, ExportError};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How an output's files looked to stat(2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    files: Vec<FileStat>,
}

/// One file or directory of an output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStat {
    /// The artifact's path (and below it, for a directory).
    path: PathBuf,
    dir: bool,
    dev: u64,
    ino: u64,
    size: u64,
    mode: u32,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Snapshot {
    /// Stats every file of `artifact`; `None` when any of them is missing or is not what
    /// it should be (a symlink, say).
    pub fn take(artifact: &Artifact) -> Option<Snapshot> {
        let mut files = Vec::new();
        let roots = std::iter::once(&artifact.path).chain(&artifact.kernel);
        for root in roots {
            let mut stack = vec![root.clone()];
            while let Some(path) = stack.pop() {
                let meta = std::fs::symlink_metadata(&path).ok()?;
                if meta.is_dir() {
                    let mut below: Vec<PathBuf> = std::fs::read_dir(&path)
                        .ok()?
                        .map(|e| e.map(|e| e.path()))
                        .collect::<Result<_, _>>()
                        .ok()?;
                    below.sort();
                    stack.extend(below.into_iter().rev());
                } else if !meta.is_file() {
                    return None;
                }
                files.push(FileStat {
                    dir: meta.is_dir(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                    size: if meta.is_dir() { 0 } else { meta.size() },
                    mode: meta.mode(),
                    mtime: (meta.mtime(), meta.mtime_nsec()),
                    ctime: (meta.ctime(), meta.ctime_nsec()),
                    path,
                });
            }
        }
        Some(Snapshot { files })
    }

    /// The snapshot as the store records it.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a snapshot serializes")
    }

    /// A recorded snapshot; `None` for one this version cannot read (as if unrecorded).
    pub fn decode(text: &str) -> Option<Snapshot> {
        serde_json::from_str(text).ok()
    }

    /// True when `artifact` is, file for file, what this snapshot recorded.
    pub fn matches(&self, artifact: &Artifact) -> bool {
        Snapshot::take(artifact).as_ref() == Some(self)
    }

    /// The bytes of the output's regular files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Writes a copy of the output `from` at `to` (both of the same format), atomically as
/// every export is: each file is cloned (reflinked) where the filesystem can, else copied
/// with its holes kept.
pub fn clone_output(from: &Artifact, to: &Artifact) -> Result<(), ExportError> {
    if from.path.is_dir() {
        write_dir_atomically(&to.path, |dir| clone_tree(&from.path, dir))?;
    } else {
        write_path_atomically(&to.path, |tmp| clone_file(&from.path, tmp))?;
    }
    if let (Some(kernel), Some(to_kernel)) = (&from.kernel, &to.kernel) {
        write_path_atomically(to_kernel, |tmp| clone_file(kernel, tmp))?;
    }
    Ok(())
}

/// Clones every file and directory below `from` into the existing directory `to`.
fn clone_tree(from: &Path, to: &Path) -> Result<(), ExportError> {
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            fs_err::create_dir(&target)?;
            clone_tree(&entry.path(), &target)?;
        } else {
            clone_file(&entry.path(), &target)?;
            fs_err::set_permissions(&target, entry.metadata()?.permissions())?;
        }
    }
    Ok(())
}

/// Copies the file `from` to `to` (created or truncated): a reflink where the filesystem
/// shares extents (btrfs, xfs); else a sparse file (a raw disk) has its data extents
/// copied and its holes kept, and any other file is copied in the kernel
/// (`copy_file_range`). Not synced here: a file output is synced as it is committed.
fn clone_file(from: &Path, to: &Path) -> Result<(), ExportError> {
    let mut src = fs_err::File::open(from)?;
    let mut dst = fs_err::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)?;
    if rustix::fs::ioctl_ficlone(dst.file(), src.file()).is_ok() {
        return Ok(());
    }
    let meta = src.metadata()?;
    if meta.blocks() * 512 < meta.len() {
        drop(dst);
        crate::disk::sparse::copy_sparse(from, to)?;
    } else {
        // On the std files themselves, so that std copies with `copy_file_range`.
        std::io::copy(src.file_mut(), dst.file_mut())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: PathBuf, kernel: Option<PathBuf>) -> Artifact {
        Artifact {
            format: "test",
            path,
            kernel,
        }
    }

    #[test]
    fn any_change_to_a_file_or_a_directory_output_breaks_the_match() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.raw");
        fs_err::write(&file, b"disk").unwrap();
        let kernel = tmp.path().join("a.vmlinuz");
        fs_err::write(&kernel, b"kernel").unwrap();
        let a = artifact(file.clone(), Some(kernel.clone()));
        let snap = Snapshot::take(&a).unwrap();
        assert!(Snapshot::decode(&snap.encode()).unwrap().matches(&a));
        // Same size, same mtime, other bytes: ctime tells.
        let mtime = fs_err::metadata(&kernel).unwrap().modified().unwrap();
        fs_err::write(&kernel, b"KERNEL").unwrap();
        fs_err::File::options()
            .write(true)
            .open(&kernel)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(!snap.matches(&a));

        let dir = tmp.path().join("a.oci");
        fs_err::create_dir_all(dir.join("blobs")).unwrap();
        fs_err::write(dir.join("blobs/x"), b"blob").unwrap();
        let d = artifact(dir.clone(), None);
        let snap = Snapshot::take(&d).unwrap();
        assert!(snap.matches(&d));
        fs_err::write(dir.join("blobs/y"), b"extra").unwrap();
        assert!(!snap.matches(&d), "a file added to the layout");
        fs_err::remove_file(dir.join("blobs/y")).unwrap();
        fs_err::remove_file(dir.join("blobs/x")).unwrap();
        assert!(!snap.matches(&d), "a file removed from the layout");
        assert!(Snapshot::take(&artifact(tmp.path().join("gone"), None)).is_none());
    }

    #[test]
    fn a_clone_has_the_same_bytes_and_holes_and_lands_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = tmp.path().join("a.raw");
        {
            use std::io::{Seek, Write};
            let mut f = fs_err::File::create(&disk).unwrap();
            f.set_len(64 << 20).unwrap();
            f.seek(std::io::SeekFrom::Start(32 << 20)).unwrap();
            f.write_all(b"data in the middle").unwrap();
        }
        let dir = tmp.path().join("a.oci");
        fs_err::create_dir_all(dir.join("blobs/sha256")).unwrap();
        fs_err::write(dir.join("index.json"), b"{}").unwrap();
        fs_err::write(dir.join("blobs/sha256/ab"), b"blob").unwrap();
        let out = tmp.path().join("out");
        fs_err::create_dir(&out).unwrap();
        clone_output(
            &artifact(disk.clone(), None),
            &artifact(out.join("a.raw"), None),
        )
        .unwrap();
        clone_output(&artifact(dir, None), &artifact(out.join("a.oci"), None)).unwrap();
        assert_eq!(
            fs_err::read(&disk).unwrap(),
            fs_err::read(out.join("a.raw")).unwrap()
        );
        let allocated = fs_err::metadata(out.join("a.raw")).unwrap().blocks() * 512;
        assert!(
            allocated < 1 << 20,
            "holes kept: {allocated} bytes allocated"
        );
        assert_eq!(
            fs_err::read(out.join("a.oci/blobs/sha256/ab")).unwrap(),
            b"blob"
        );
        let mut left: Vec<_> = fs_err::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["a.oci", "a.raw"]);
    }
}
