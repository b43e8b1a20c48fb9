//! The differences between two layers, entry by entry: what `build --check` shows for a
//! step whose rebuilt layer is not the stored one.

use super::entry::EntryKind;
use super::read::{read_meta, LayerReadError};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};

/// Files up to this size whose bytes are UTF-8 get their first differing lines shown.
pub const TEXT_LIMIT: u64 = 64 * 1024;

/// Lines shown from each side, starting at the first one that differs.
const LINES_SHOWN: usize = 3;

/// How one path differs between the stored layer and the rebuilt one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Difference {
    /// The path inside the image, with a leading `/` (whiteouts by their `.wh.` name).
    pub path: String,
    /// Whether it is only in one of the layers or in both, changed.
    pub change: Change,
    /// For [`Change::Changed`]: what differs, among `kind`, `content`, `mode`, `owner`,
    /// `mtime`, `link target`, `device` and `xattrs` (and `order`, which the caller adds
    /// for layers whose entries are all the same).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<&'static str>,
    /// For a small UTF-8 file whose content differs: the first lines that differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<LineDifference>,
}

/// Where a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Only in the rebuilt layer.
    Added,
    /// Only in the stored layer.
    Removed,
    /// In both, different.
    Changed,
}

/// The first differing lines of a small text file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineDifference {
    /// The 1-based number of the first line that differs.
    pub line: usize,
    /// Up to three lines of the stored file from there.
    pub stored: Vec<String>,
    /// Up to three lines of the rebuilt file from there.
    pub rebuilt: Vec<String>,
}

/// One entry as compared: its metadata and its bytes' hash.
#[derive(Debug, PartialEq, Eq)]
struct Compared {
    kind: EntryKind,
    mode: u32,
    owner: (u32, u32),
    mtime: u64,
    size: u64,
    sha256: [u8; 32],
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Compares two layers (tar streams; `open(false)` opens the stored one, `open(true)` the
/// rebuilt one), each read to its end. Entries are matched by path; the differing small
/// UTF-8 files are read a second time for their lines. The result is sorted by path.
pub fn diff_layers<R, E>(mut open: impl FnMut(bool) -> Result<R, E>) -> Result<Vec<Difference>, E>
where
    R: Read,
    E: From<LayerReadError>,
{
    let stored = entries(open(false)?)?;
    let rebuilt = entries(open(true)?)?;
    let mut differences = Vec::new();
    let paths: BTreeSet<&String> = stored.keys().chain(rebuilt.keys()).collect();
    let mut texts = BTreeSet::new();
    for path in paths {
        let difference = |change, fields| Difference {
            path: format!("/{path}"),
            change,
            fields,
            lines: None,
        };
        match (stored.get(path), rebuilt.get(path)) {
            (Some(a), Some(b)) if a != b => {
                let fields = changed_fields(a, b);
                if fields.contains(&"content")
                    && a.kind == EntryKind::File
                    && b.kind == EntryKind::File
                    && a.size.max(b.size) <= TEXT_LIMIT
                {
                    texts.insert(path.clone());
                }
                differences.push(difference(Change::Changed, fields));
            }
            (Some(_), None) => differences.push(difference(Change::Removed, Vec::new())),
            (None, Some(_)) => differences.push(difference(Change::Added, Vec::new())),
            _ => {}
        }
    }
    if !texts.is_empty() {
        let stored = contents(open(false)?, &texts)?;
        let rebuilt = contents(open(true)?, &texts)?;
        for d in &mut differences {
            let path = &d.path[1..];
            if let (Some(a), Some(b)) = (stored.get(path), rebuilt.get(path)) {
                d.lines = first_differing_lines(a, b);
            }
        }
    }
    Ok(differences)
}

fn changed_fields(a: &Compared, b: &Compared) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let same_kind = std::mem::discriminant(&a.kind) == std::mem::discriminant(&b.kind);
    if !same_kind {
        fields.push("kind");
    } else if a.kind != b.kind {
        // Same kind, different payload: a link's target or a device's numbers.
        fields.push(match a.kind {
            EntryKind::Symlink(_) | EntryKind::Hardlink(_) => "link target",
            _ => "device",
        });
    }
    if (a.size, a.sha256) != (b.size, b.sha256) {
        fields.push("content");
    }
    if a.mode != b.mode {
        fields.push("mode");
    }
    if a.owner != b.owner {
        fields.push("owner");
    }
    if a.mtime != b.mtime {
        fields.push("mtime");
    }
    if a.xattrs != b.xattrs {
        fields.push("xattrs");
    }
    fields
}

/// Every entry of a layer by path (the root directory as `""`), its bytes hashed.
fn entries<R: Read>(mut reader: R) -> Result<BTreeMap<String, Compared>, LayerReadError> {
    let mut all = BTreeMap::new();
    let parsed = (|| {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            let meta = read_meta(&mut entry)?;
            let mut hash = Sha256::new();
            io::copy(&mut entry, &mut hash)?;
            all.insert(
                meta.path,
                Compared {
                    kind: meta.kind,
                    mode: meta.mode,
                    owner: (meta.uid, meta.gid),
                    mtime: meta.mtime,
                    size: meta.size,
                    sha256: hash.finalize().into(),
                    xattrs: meta.xattrs,
                },
            );
        }
        Ok::<_, LayerReadError>(())
    })();
    // Read to the end, so a layer reader checks its digest; its error wins.
    io::copy(&mut reader, &mut io::sink())?;
    parsed?;
    Ok(all)
}

/// The bytes of the files at `paths` that are UTF-8.
fn contents<R: Read>(
    mut reader: R,
    paths: &BTreeSet<String>,
) -> Result<BTreeMap<String, String>, LayerReadError> {
    let mut found = BTreeMap::new();
    let parsed = (|| {
        let mut archive = tar::Archive::new(&mut reader);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                continue;
            }
            let meta = read_meta(&mut entry)?;
            if paths.contains(&meta.path) && meta.size <= TEXT_LIMIT {
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes)?;
                if let Ok(text) = String::from_utf8(bytes) {
                    found.insert(meta.path, text);
                }
            }
        }
        Ok::<_, LayerReadError>(())
    })();
    io::copy(&mut reader, &mut io::sink())?;
    parsed?;
    Ok(found)
}

/// The first lines that differ between two texts, if any do.
fn first_differing_lines(a: &str, b: &str) -> Option<LineDifference> {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let at = (0..x.len().max(y.len())).find(|&i| x.get(i) != y.get(i))?;
    let from = |lines: &[&str]| {
        lines
            .iter()
            .skip(at)
            .take(LINES_SHOWN)
            .map(|l| (*l).to_owned())
            .collect()
    };
    Some(LineDifference {
        line: at + 1,
        stored: from(&x),
        rebuilt: from(&y),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::{EntryMeta, TarWriter};

    fn layer(entries: &[(EntryMeta, &[u8])]) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        for (meta, data) in entries {
            w.append(meta, &mut &data[..]).unwrap();
        }
        w.finish().unwrap()
    }

    fn diff(a: &[u8], b: &[u8]) -> Vec<Difference> {
        diff_layers(|rebuilt| Ok::<_, LayerReadError>(if rebuilt { b } else { a })).unwrap()
    }

    #[test]
    fn added_removed_and_changed_paths_are_named_with_what_changed() {
        let same = EntryMeta::file("etc/same", 3, 5);
        let a = layer(&[
            (EntryMeta::dir("etc", 5), b""),
            (same.clone(), b"abc"),
            (EntryMeta::file("etc/old", 1, 5), b"x"),
            (EntryMeta::file("etc/motd", 12, 5), b"one\ntwo\nsix\n"),
            (
                EntryMeta::new("etc/link", EntryKind::Symlink("a".into()), 0o777, 5),
                b"",
            ),
        ]);
        let mut motd = EntryMeta::file("etc/motd", 14, 6);
        motd.mode = 0o600;
        let b = layer(&[
            (EntryMeta::dir("etc", 5), b""),
            (same, b"abc"),
            (EntryMeta::file("etc/new", 1, 5), b"y"),
            (motd, b"one\ntwo\nseven\n"),
            (
                EntryMeta::new("etc/link", EntryKind::Symlink("b".into()), 0o777, 5),
                b"",
            ),
        ]);
        let found = diff(&a, &b);
        let summary: Vec<(&str, Change, Vec<&str>)> = found
            .iter()
            .map(|d| (d.path.as_str(), d.change, d.fields.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                ("/etc/link", Change::Changed, vec!["link target"]),
                (
                    "/etc/motd",
                    Change::Changed,
                    vec!["content", "mode", "mtime"]
                ),
                ("/etc/new", Change::Added, vec![]),
                ("/etc/old", Change::Removed, vec![]),
            ]
        );
        assert_eq!(
            found[1].lines,
            Some(LineDifference {
                line: 3,
                stored: vec!["six".into()],
                rebuilt: vec!["seven".into()],
            })
        );
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn binary_files_have_no_lines() {
        let a = layer(&[(EntryMeta::file("x", 2, 0), &[0xff, 0x00])]);
        let b = layer(&[(EntryMeta::file("x", 2, 0), &[0xfe, 0x00])]);
        let found = diff(&a, &b);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].fields, ["content"]);
        assert_eq!(found[0].lines, None);
    }
}
