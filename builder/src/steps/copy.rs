//! What a `copy` step puts where: the host files it reads, mapped to image paths, with the
//! content digests that enter its cache key.
//!
//! A single directory source has its contents copied into `to`; a single file lands at
//! `to` (or inside it when `to` ends in `/`); each match of a glob lands inside `to` under
//! its own name. Modes are normalised so that a checkout's umask never changes a digest:
//! files are 0755 when any execute bit is set and 0644 otherwise (or the step's `mode`),
//! directories 0755, symlinks are kept as links.

use crate::plan::DigestMemo;
use crate::sources::SourceError;
use imgbuild_store::{Digest, KnownDigest, Sha256Writer};
use rayon::prelude::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// One entry a copy step writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyItem {
    /// Path in the image, relative (no leading `/`).
    pub dest: String,
    /// What it is.
    pub kind: CopyKind,
}

/// The kind of a copied entry. Not the store's `EntryKind`: this is a plan of what to
/// copy, made before anything is written, so a file carries where its bytes come from and
/// the digest and stamp that go into the step's cache key; and a copy makes only files,
/// directories and symlinks (host hard links become separate files; devices, fifos and
/// sockets are refused).
/// `files.rs` turns each item into an `EntryMeta` when the layer is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyKind {
    File {
        host: PathBuf,
        size: u64,
        digest: Digest,
        mode: u32,
        /// What the file looked like when it was hashed, to notice a change before copying.
        stamp: FileStamp,
    },
    Dir,
    Symlink(String),
}

impl CopyItem {
    /// The item as it enters the cache key: destination, type, mode and content digest.
    pub(crate) fn key_value(&self) -> Value {
        match &self.kind {
            CopyKind::File {
                digest, mode, size, ..
            } => {
                json!({"path": self.dest, "file": digest.to_string(), "size": size, "mode": mode})
            }
            CopyKind::Dir => json!({"path": self.dest, "dir": true}),
            CopyKind::Symlink(t) => json!({"path": self.dest, "symlink": t}),
        }
    }
}

/// Size, mtime, ctime, inode and device of a host file: if all are the same at copy time
/// as when it was hashed, its bytes are taken to be the same too (as make, cargo and git do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileStamp {
    fields: [i64; 6],
    dev: u64,
}

impl FileStamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Self {
            fields: [
                i64::try_from(meta.len()).unwrap_or(i64::MAX),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
                i64::try_from(meta.ino()).unwrap_or(i64::MAX),
            ],
            dev: meta.dev(),
        }
    }

    /// The stamp as the store's digest memo keeps it.
    fn memo_text(&self) -> String {
        format!("{:?} dev {}", self.fields, self.dev)
    }
}

/// Maps the matched host paths of a copy step to image entries, hashing every file
/// (in parallel) whose digest `memo` does not remember under the same stamp.
pub(crate) fn items(
    matches: &[PathBuf],
    to: &str,
    mode: Option<u32>,
    memo: &dyn DigestMemo,
) -> Result<Vec<CopyItem>, SourceError> {
    let into_dir = to.ends_with('/') || matches.len() > 1;
    let to = to.trim_matches('/').to_owned();
    let mut out: BTreeMap<String, CopyItem> = BTreeMap::new();
    for source in matches {
        let meta = fs_err::symlink_metadata(source)?;
        let name = source
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dest = if meta.is_dir() && matches.len() == 1 {
            to.clone()
        } else if into_dir {
            format!("{to}/{name}")
        } else {
            to.clone()
        };
        if meta.is_dir() {
            add_tree(source, &dest, mode, &mut out)?;
        } else {
            let item = item(source, dest.clone(), &meta, mode)?;
            out.insert(dest, item);
        }
    }
    let mut items: Vec<CopyItem> = out.into_values().collect();
    let cwd = std::env::current_dir()?;
    let mut known = HashMap::new();
    for source in matches {
        known.extend(memo.known_under(&memo_path(source, &cwd)?));
    }
    // A file changed less than this long before hashing began is hashed again next time:
    // a write in the same clock tick could leave its stamp as it was.
    let settled = SystemTime::now() - Duration::from_secs(2);
    let hashed: Vec<Option<(String, String, Digest, u64)>> = items
        .par_iter_mut()
        .map(|item| hash_file(item, &known, settled, &cwd))
        .collect::<Result<_, _>>()?;
    memo.remember(&hashed.into_iter().flatten().collect::<Vec<_>>());
    Ok(items)
}

/// A host path as the memo knows it: absolute (a relative one taken from `cwd`), as text.
fn memo_path(path: &Path, cwd: &Path) -> Result<String, SourceError> {
    // Joined to the working directory read once, not once per file by `absolute`.
    Ok(std::path::absolute(cwd.join(path))?
        .to_string_lossy()
        .into_owned())
}

/// Fills in a file item's digest, size and stamp, from `known` when it remembers the file
/// under the same stamp; returns what to remember when the file was hashed.
fn hash_file(
    item: &mut CopyItem,
    known: &HashMap<String, KnownDigest>,
    settled: SystemTime,
    cwd: &Path,
) -> Result<Option<(String, String, Digest, u64)>, SourceError> {
    let CopyKind::File {
        host,
        size,
        digest,
        stamp,
        ..
    } = &mut item.kind
    else {
        return Ok(None);
    };
    let path = memo_path(host, cwd)?;
    // The walk's stat tells whether the file is as remembered, with no need to open it.
    if let Some((s, d, len)) = known.get(&path) {
        if *s == stamp.memo_text() {
            (*digest, *size) = (d.clone(), *len);
            return Ok(None);
        }
    }
    // The stamp of the file opened is the one remembered with its bytes' digest.
    let mut file = fs_err::File::open(&*host)?;
    let meta = file.metadata()?;
    let before = FileStamp::of(&meta);
    let stamp_text = before.memo_text();
    let mut hasher = Sha256Writer::new(std::io::sink());
    std::io::copy(&mut file, &mut hasher)?;
    let (found, len, _) = hasher.finish();
    let changed = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).unwrap_or(0),
            u32::try_from(meta.ctime_nsec()).unwrap_or(0),
        );
    let remember = (changed < settled).then(|| (path, stamp_text, found.clone(), len));
    (*digest, *size, *stamp) = (found, len, before);
    Ok(remember)
}

fn add_tree(
    root: &Path,
    dest: &str,
    mode: Option<u32>,
    out: &mut BTreeMap<String, CopyItem>,
) -> Result<(), SourceError> {
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.map_err(|e| SourceError::Walk {
            path: root.to_owned(),
            message: e.to_string(),
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let rel = rel.to_string_lossy();
        let path = if rel.is_empty() {
            dest.to_owned()
        } else {
            format!("{dest}/{rel}")
        };
        let meta = fs_err::symlink_metadata(entry.path())?;
        out.insert(path.clone(), item(entry.path(), path, &meta, mode)?);
    }
    Ok(())
}

fn item(
    host: &Path,
    dest: String,
    meta: &std::fs::Metadata,
    mode: Option<u32>,
) -> Result<CopyItem, SourceError> {
    let kind = if meta.is_dir() {
        CopyKind::Dir
    } else if meta.file_type().is_symlink() {
        CopyKind::Symlink(fs_err::read_link(host)?.to_string_lossy().into_owned())
    } else if meta.is_file() {
        // Hashed afterwards, in parallel with the other files.
        let exec = meta.permissions().mode() & 0o111 != 0;
        CopyKind::File {
            host: host.to_owned(),
            size: 0,
            digest: Digest::of(b""),
            mode: mode.unwrap_or(if exec { 0o755 } else { 0o644 }),
            stamp: FileStamp::of(meta),
        }
    } else {
        return Err(SourceError::Unsupported {
            path: host.to_owned(),
        });
    };
    Ok(CopyItem { dest, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NoMemo;

    #[test]
    fn directory_contents_land_in_to_and_files_keep_exec_bits() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app");
        fs_err::create_dir_all(app.join("bin")).unwrap();
        fs_err::write(app.join("bin/run"), "#!/bin/sh\n").unwrap();
        fs_err::set_permissions(app.join("bin/run"), std::fs::Permissions::from_mode(0o775))
            .unwrap();
        fs_err::write(app.join("README"), "hi").unwrap();
        std::os::unix::fs::symlink("bin/run", app.join("start")).unwrap();
        let got = items(&[app], "/opt/app", None, &NoMemo).unwrap();
        let summary: Vec<(String, String)> = got
            .iter()
            .map(|i| {
                let k = match &i.kind {
                    CopyKind::File { mode, .. } => format!("file {mode:o}"),
                    CopyKind::Dir => "dir".into(),
                    CopyKind::Symlink(t) => format!("-> {t}"),
                };
                (i.dest.clone(), k)
            })
            .collect();
        let expect = [
            ("opt/app", "dir"),
            ("opt/app/README", "file 644"),
            ("opt/app/bin", "dir"),
            ("opt/app/bin/run", "file 755"),
            ("opt/app/start", "-> bin/run"),
        ];
        let expect: Vec<(String, String)> = expect
            .iter()
            .map(|(a, b)| ((*a).into(), (*b).into()))
            .collect();
        assert_eq!(summary, expect);
    }

    #[test]
    fn a_file_lands_at_to_or_inside_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("motd");
        fs_err::write(&f, "x").unwrap();
        assert_eq!(
            items(std::slice::from_ref(&f), "/etc/motd.txt", None, &NoMemo).unwrap()[0].dest,
            "etc/motd.txt"
        );
        assert_eq!(
            items(&[f], "/etc/", Some(0o600), &NoMemo).unwrap()[0].dest,
            "etc/motd"
        );
    }

    #[test]
    fn remembered_digests_spare_hashing_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = imgbuild_store::Store::open(&dir.path().join("store")).unwrap();
        let src = dir.path().join("src");
        fs_err::create_dir_all(&src).unwrap();
        let (old, new) = (src.join("old"), src.join("new"));
        fs_err::write(&old, "settled").unwrap();
        std::thread::sleep(Duration::from_millis(2100));
        fs_err::write(&new, "just written").unwrap();
        let digest_of = |got: &[CopyItem], name: &str| {
            got.iter()
                .find_map(|i| match &i.kind {
                    CopyKind::File { digest, .. } if i.dest.ends_with(name) => Some(digest.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let got = items(std::slice::from_ref(&src), "/d", None, &store).unwrap();
        assert_eq!(digest_of(&got, "old"), Digest::of(b"settled"));
        // Only the file changed more than a moment before hashing is remembered.
        let cwd = std::env::current_dir().unwrap();
        let prefix = memo_path(&src, &cwd).unwrap();
        let known = store.file_digests_under(&prefix).unwrap();
        assert_eq!(known.len(), 1, "{known:?}");
        let (stamp, _, size) = known[&memo_path(&old, &cwd).unwrap()].clone();

        // What is remembered is used: a planted digest under the same stamp comes back.
        let planted = Digest::of(b"planted");
        store
            .record_file_digests(&[(memo_path(&old, &cwd).unwrap(), stamp, planted.clone(), size)])
            .unwrap();
        let got = items(std::slice::from_ref(&src), "/d", None, &store).unwrap();
        assert_eq!(digest_of(&got, "old"), planted);

        // Rewritten with the same size and mtime: the ctime differs, so it is hashed again.
        let mtime = fs_err::metadata(&old).unwrap().modified().unwrap();
        fs_err::write(&old, "SETTLED").unwrap();
        fs_err::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let got = items(std::slice::from_ref(&src), "/d", None, &store).unwrap();
        assert_eq!(digest_of(&got, "old"), Digest::of(b"SETTLED"));
        assert_eq!(digest_of(&got, "new"), Digest::of(b"just written"));
    }
}
