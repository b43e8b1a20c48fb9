//! Reading entry metadata from tar streams written by anyone, with paths normalised and
//! anything that climbs out of the root refused.

use super::entry::{EntryKind, EntryMeta};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path};

/// A tar entry that cannot be taken into a layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerReadError {
    /// The stream itself could not be read.
    #[error("reading tar stream: {0}")]
    Io(#[from] io::Error),
    /// A path or link target leaves the root through `..`.
    #[error("tar entry `{path}` climbs out of the image root; refusing the layer")]
    Escapes {
        /// The offending path.
        path: String,
    },
    /// An entry type imgbuild does not carry (GNU volume labels, multi-volume parts, ...).
    #[error("tar entry `{path}` has unsupported type {kind:?} ({}); recreate the tarball without it", char::from(*kind).escape_default())]
    UnsupportedType {
        /// The entry's path.
        path: String,
        /// Its type byte.
        kind: u8,
    },
    /// An entry whose bytes imgbuild would not read faithfully (a PAX sparse file, a
    /// contiguous file).
    #[error("tar entry `{path}` is {what}, which imgbuild does not import; recreate the tarball without it (for sparse files: GNU tar without --sparse, or --format=gnu)")]
    Refused {
        /// The entry's path as the header names it.
        path: String,
        /// What kind of entry it is.
        what: &'static str,
    },
}

/// Why an entry cannot be taken as the tar crate presents it, if so: a PAX sparse file
/// (its data would be the sparse map and chunks, not the file), a contiguous file, a GNU
/// multi-volume part or volume label. GNU sparse entries (type `S`) are fine: the tar
/// crate expands their holes.
pub fn refused_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Option<&'static str>, LayerReadError> {
    let kind = entry.header().entry_type();
    Ok(match kind.as_byte() {
        b'0' | b'\0' => {
            let sparse = match entry.pax_extensions()? {
                Some(pax) => pax
                    .filter_map(Result::ok)
                    .any(|e| e.key().is_ok_and(|k| k.starts_with("GNU.sparse."))),
                None => false,
            };
            sparse.then_some("a PAX sparse file (GNU.sparse.* records)")
        }
        b'7' => Some("a contiguous file (type 7)"),
        b'M' => Some("a GNU multi-volume continuation (type M)"),
        b'V' => Some("a GNU volume label (type V)"),
        b'N' => Some("an old GNU long-name entry (type N)"),
        b'D' => Some("a GNU incremental dump directory (type D)"),
        _ => None,
    })
}

/// Normalises a path from a tar header: drops `/` and `./` prefixes and a trailing `/`;
/// refuses `..` components.
pub(crate) fn normalize(path: &Path) -> Result<String, LayerReadError> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerReadError::Escapes {
                    path: path.display().to_string(),
                })
            }
        }
    }
    Ok(parts.join("/"))
}

/// Reads the metadata of one entry. The root directory itself comes back with path `""`.
pub fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<EntryMeta, LayerReadError> {
    if let Some(what) = refused_entry(entry)? {
        return Err(LayerReadError::Refused {
            path: entry.path()?.display().to_string(),
            what,
        });
    }
    let path = normalize(&entry.path()?)?;
    let header = entry.header();
    let link = || -> Result<String, LayerReadError> {
        Ok(entry
            .link_name()?
            .map(|l| l.to_string_lossy().into_owned())
            .unwrap_or_default())
    };
    let device = || -> io::Result<(u32, u32)> {
        Ok((
            header.device_major()?.unwrap_or(0),
            header.device_minor()?.unwrap_or(0),
        ))
    };
    let kind = match header.entry_type() {
        // GNU sparse entries come expanded (holes as zeros) from the tar crate.
        tar::EntryType::Regular | tar::EntryType::GNUSparse => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink(link()?),
        tar::EntryType::Link => {
            let target = link()?;
            EntryKind::Hardlink(normalize(Path::new(&target))?)
        }
        tar::EntryType::Char => {
            let (a, b) = device()?;
            EntryKind::CharDevice(a, b)
        }
        tar::EntryType::Block => {
            let (a, b) = device()?;
            EntryKind::BlockDevice(a, b)
        }
        tar::EntryType::Fifo => EntryKind::Fifo,
        other => {
            return Err(LayerReadError::UnsupportedType {
                path,
                kind: other.as_byte(),
            })
        }
    };
    let mode = header.mode()? & 0o7777;
    let mut uid = u32::try_from(header.uid()?).unwrap_or(u32::MAX);
    let mut gid = u32::try_from(header.gid()?).unwrap_or(u32::MAX);
    let mtime = header.mtime()?;
    let size = if kind == EntryKind::File {
        entry.size()
    } else {
        0
    };
    let mut xattrs = BTreeMap::new();
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.insert(name.to_owned(), ext.value_bytes().to_vec());
            } else if key == "uid" {
                uid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
            } else if key == "gid" {
                gid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
            }
        }
    }
    Ok(EntryMeta {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        size,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize(Path::new("./a/b/")).unwrap(), "a/b");
        assert_eq!(normalize(Path::new("/etc/x")).unwrap(), "etc/x");
        assert_eq!(normalize(Path::new("./")).unwrap(), "");
        assert!(normalize(Path::new("a/../../etc")).is_err());
    }

    fn one_entry(kind: tar::EntryType, pax: &[(&str, &[u8])]) -> Result<EntryMeta, LayerReadError> {
        let mut b = tar::Builder::new(Vec::new());
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().copied()).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        h.set_path("dir/entry").unwrap();
        h.set_entry_type(kind);
        h.set_size(3);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        read_meta(&mut entry)
    }

    #[test]
    fn exotic_entries_are_refused_with_their_path() {
        assert_eq!(one_entry(tar::EntryType::Regular, &[]).unwrap().size, 3);
        let sparse = one_entry(
            tar::EntryType::Regular,
            &[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            sparse.contains("`dir/entry` is a PAX sparse file"),
            "{sparse}"
        );
        for kind in [b'7', b'M', b'V'] {
            let err = one_entry(tar::EntryType::new(kind), &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("`dir/entry`"), "{err}");
        }
    }
}
