//! Reading entry metadata from tar streams written by anyone, with paths normalised and
//! anything that climbs out of the root refused.

use super::entry::{EntryKind, EntryMeta};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// The one check of a path from a tar header (an entry's name or a hard link's target):
/// splits `raw` on `/`, drops empty and `.` components (so a leading `/` or `./` goes) and
/// refuses `..`. The root itself has no components.
pub fn path_components(raw: &[u8]) -> Result<Vec<&[u8]>, LayerReadError> {
    let mut parts = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(LayerReadError::Escapes {
                    path: String::from_utf8_lossy(raw).into_owned(),
                })
            }
            c => parts.push(c),
        }
    }
    Ok(parts)
}

/// A path from a tar header as the entry model keeps it: [`path_components`] joined by `/`
/// (names that are not UTF-8 get replacement characters).
pub(crate) fn normalize(path: &Path) -> Result<String, LayerReadError> {
    let joined = path_components(path.as_os_str().as_bytes())?.join(&b'/');
    Ok(String::from_utf8_lossy(&joined).into_owned())
}

/// GNU's PAX sparse format 1.0 (`tar --sparse --format=pax`): the real name and size.
struct PaxSparse {
    name: String,
    real_size: u64,
}

/// The PAX sparse 1.0 records of an entry, if it has them.
fn pax_sparse<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Option<PaxSparse>, LayerReadError> {
    let Some(pax) = entry.pax_extensions()? else {
        return Ok(None);
    };
    let (mut major, mut minor, mut name, mut real_size) = (None, None, None, None);
    for ext in pax {
        let ext = ext?;
        let (Ok(key), Ok(value)) = (ext.key(), ext.value()) else {
            continue;
        };
        match key {
            "GNU.sparse.major" => major = Some(value.to_owned()),
            "GNU.sparse.minor" => minor = Some(value.to_owned()),
            "GNU.sparse.name" => name = Some(value.to_owned()),
            "GNU.sparse.realsize" => real_size = value.parse().ok(),
            _ => {}
        }
    }
    match (major.as_deref(), minor.as_deref(), name, real_size) {
        (Some("1"), Some("0"), Some(name), Some(real_size)) => {
            Ok(Some(PaxSparse { name, real_size }))
        }
        _ => Ok(None),
    }
}

/// Reads one entry's metadata and a reader of its bytes, expanding a PAX sparse file in
/// GNU's format 1.0 (the sparse map at the start of the data, then the data chunks) into
/// its real name, size and bytes. Other entries are as [`read_meta`] and the entry itself.
pub fn read_expanding<'e, 'a, R: Read + 'a>(
    entry: &'e mut tar::Entry<'a, R>,
) -> Result<(EntryMeta, Box<dyn Read + 'e>), LayerReadError> {
    let Some(sparse) = pax_sparse(entry)? else {
        let meta = read_meta(entry)?;
        return Ok((meta, Box::new(entry)));
    };
    let mut meta = read_meta_inner(entry)?;
    meta.path = normalize(Path::new(&sparse.name))?;
    meta.size = sparse.real_size;
    let stored = entry.size();
    let reader = SparseReader::new(entry, stored, sparse.real_size).map_err(|e| {
        LayerReadError::Refused {
            path: format!("{} ({e})", meta.path),
            what: "a PAX sparse file with a malformed sparse map",
        }
    })?;
    Ok((meta, Box::new(reader)))
}

/// The bytes of a PAX sparse 1.0 file: zeros where the map has holes.
struct SparseReader<R> {
    inner: R,
    /// (offset, length) of each data chunk, ascending.
    chunks: std::collections::VecDeque<(u64, u64)>,
    pos: u64,
    real_size: u64,
}

impl<R: Read> SparseReader<R> {
    /// Reads the map from the start of `inner` (`stored` bytes in all).
    fn new(mut inner: R, stored: u64, real_size: u64) -> io::Result<Self> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_owned());
        let mut consumed: u64 = 0;
        let mut number = |inner: &mut R| -> io::Result<u64> {
            let mut digits = String::new();
            loop {
                let mut b = [0u8; 1];
                inner.read_exact(&mut b)?;
                consumed += 1;
                match b[0] {
                    b'\n' => break,
                    d @ b'0'..=b'9' if digits.len() < 20 => digits.push(char::from(d)),
                    _ => return Err(bad("not a decimal number")),
                }
            }
            digits.parse().map_err(|_| bad("empty number"))
        };
        let count = number(&mut inner)?;
        if count > stored / 4 + 1 {
            return Err(bad("more chunks than the entry can hold"));
        }
        let mut chunks = std::collections::VecDeque::new();
        let (mut end, mut data) = (0u64, 0u64);
        for _ in 0..count {
            let offset = number(&mut inner)?;
            let length = number(&mut inner)?;
            let chunk_end = offset
                .checked_add(length)
                .ok_or_else(|| bad("chunk overflows"))?;
            if offset < end || chunk_end > real_size {
                return Err(bad("chunks overlap or pass the real size"));
            }
            end = chunk_end;
            data += length;
            chunks.push_back((offset, length));
        }
        let padding = (512 - consumed % 512) % 512;
        io::copy(&mut (&mut inner).take(padding), &mut io::sink())?;
        if consumed + padding + data != stored {
            return Err(bad(
                "the map and the chunks do not add up to the entry's size",
            ));
        }
        Ok(Self {
            inner,
            chunks,
            pos: 0,
            real_size,
        })
    }
}

impl<R: Read> Read for SparseReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while let Some(&(offset, length)) = self.chunks.front() {
            if self.pos >= offset + length {
                self.chunks.pop_front();
                continue;
            }
            if self.pos < offset {
                let n = buf
                    .len()
                    .min(usize::try_from(offset - self.pos).unwrap_or(usize::MAX));
                buf[..n].fill(0);
                self.pos += n as u64;
                return Ok(n);
            }
            let want = usize::try_from(offset + length - self.pos).unwrap_or(usize::MAX);
            let len = buf.len().min(want);
            let n = self.inner.read(&mut buf[..len])?;
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.pos += n as u64;
            return Ok(n);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.real_size.saturating_sub(self.pos)).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Reads the metadata of one entry. The root directory itself comes back with path `""`.
pub fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<EntryMeta, LayerReadError> {
    if let Some(what) = refused_entry(entry)? {
        return Err(LayerReadError::Refused {
            path: entry.path()?.display().to_string(),
            what,
        });
    }
    read_meta_inner(entry)
}

fn read_meta_inner<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<EntryMeta, LayerReadError> {
    let raw = read_raw_inner(entry)?;
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let kind = match raw.kind {
        EntryKind::File => EntryKind::File,
        EntryKind::Dir => EntryKind::Dir,
        EntryKind::Symlink(t) => EntryKind::Symlink(text(t)),
        EntryKind::Hardlink(t) => EntryKind::Hardlink(text(t)),
        EntryKind::CharDevice(a, b) => EntryKind::CharDevice(a, b),
        EntryKind::BlockDevice(a, b) => EntryKind::BlockDevice(a, b),
        EntryKind::Fifo => EntryKind::Fifo,
    };
    Ok(EntryMeta {
        path: text(raw.path.join(&b'/')),
        kind,
        mode: raw.mode,
        uid: u32::try_from(raw.uid).unwrap_or(u32::MAX),
        gid: u32::try_from(raw.gid).unwrap_or(u32::MAX),
        mtime: raw.mtime,
        size: raw.size,
        xattrs: raw.xattrs,
    })
}

/// One entry's metadata as the tar stream has it, names as bytes: what extracting a layer
/// onto a filesystem needs (a name that is not UTF-8 must survive). [`read_meta`] is this
/// made into an [`EntryMeta`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMeta {
    /// The path's components ([`path_components`]); none for the root itself.
    pub path: Vec<Vec<u8>>,
    /// The entry's type; a symlink's target as written, a hard link's target normalised
    /// by [`path_components`] (components joined by `/`).
    pub kind: EntryKind<Vec<u8>>,
    /// Permission bits, including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner (a PAX `uid` record wins over the header).
    pub uid: u64,
    /// Group (a PAX `gid` record wins over the header).
    pub gid: u64,
    /// The header's modification time in seconds.
    pub mtime: u64,
    /// A PAX `mtime` record as (seconds, nanoseconds), if any and well-formed.
    pub pax_mtime: Option<(i64, i64)>,
    /// Size of the data that follows (files only; 0 otherwise).
    pub size: u64,
    /// `SCHILY.xattr.*` records, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// Reads one entry's metadata with names as bytes, refusing what [`refused_entry`] refuses
/// and paths that climb out with `..`. An entry type imgbuild does not carry is
/// [`LayerReadError::UnsupportedType`] (the path was checked first).
pub fn read_raw_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<RawMeta, LayerReadError> {
    if let Some(what) = refused_entry(entry)? {
        return Err(LayerReadError::Refused {
            path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            what,
        });
    }
    read_raw_inner(entry)
}

fn read_raw_inner<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<RawMeta, LayerReadError> {
    let path_bytes = entry.path_bytes();
    let path: Vec<Vec<u8>> = path_components(&path_bytes)?
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    let header = entry.header();
    let link = || -> Vec<u8> {
        entry
            .link_name_bytes()
            .map(|l| l.into_owned())
            .unwrap_or_default()
    };
    // Numeric fields some writers leave empty or garbled read as GNU tar reads them: 0
    // (a mode as 0644).
    let device = || -> io::Result<(u32, u32)> {
        Ok((
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        ))
    };
    let kind = match header.entry_type() {
        // GNU sparse entries come expanded (holes as zeros) from the tar crate.
        tar::EntryType::Regular | tar::EntryType::GNUSparse => EntryKind::File,
        tar::EntryType::Directory => EntryKind::Dir,
        tar::EntryType::Symlink => EntryKind::Symlink(link()),
        tar::EntryType::Link => EntryKind::Hardlink(path_components(&link())?.join(&b'/')),
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
                path: String::from_utf8_lossy(&path.join(&b'/')).into_owned(),
                kind: other.as_byte(),
            })
        }
    };
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let mut uid = header.uid().unwrap_or(0);
    let mut gid = header.gid().unwrap_or(0);
    let mtime = header.mtime().unwrap_or(0);
    let size = if kind == EntryKind::File {
        entry.size()
    } else {
        0
    };
    let mut xattrs = BTreeMap::new();
    let mut pax_mtime = None;
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let Ok(key) = ext.key() else { continue };
            let number = || ext.value().ok().and_then(|v| v.trim().parse::<u64>().ok());
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                xattrs.insert(name.to_owned(), ext.value_bytes().to_vec());
            } else if key == "uid" {
                uid = number().unwrap_or(uid);
            } else if key == "gid" {
                gid = number().unwrap_or(gid);
            } else if key == "mtime" {
                pax_mtime = ext.value().ok().and_then(parse_pax_time).or(pax_mtime);
            }
        }
    }
    Ok(RawMeta {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        pax_mtime,
        size,
        xattrs,
    })
}

/// Parses a PAX time `SECS[.FRACTION]` into (seconds, nanoseconds).
fn parse_pax_time(s: &str) -> Option<(i64, i64)> {
    let (secs, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let secs = secs.parse::<i64>().ok()?;
    let mut nanos = 0i64;
    for (i, c) in frac.chars().take(9).enumerate() {
        nanos += i64::from(c.to_digit(10)?) * 10i64.pow(8 - i as u32);
    }
    Some((secs, if secs < 0 { -nanos } else { nanos }))
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
        assert!(path_components(b"sub/../../x").is_err());
        assert_eq!(path_components(b"./a//b/.").unwrap(), [&b"a"[..], b"b"]);
        assert!(path_components(b"/").unwrap().is_empty());
    }

    #[test]
    fn pax_time() {
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("7"), Some((7, 0)));
        assert_eq!(parse_pax_time("x"), None);
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
    fn a_pax_sparse_map_expands_to_holes_and_chunks() {
        let map = b"2\n3\n2\n8\n1\n";
        let mut stored = map.to_vec();
        stored.resize(512, 0);
        stored.extend_from_slice(b"abc");
        let mut r = SparseReader::new(stored.as_slice(), 515, 12).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"\0\0\0ab\0\0\0c\0\0\0");
        // Overlapping chunks, a size that does not add up, a chunk past the end: refused.
        for (map, declared) in [
            (&b"2\n3\n2\n4\n1\n"[..], 515),
            (b"1\n0\n3\n", 600),
            (b"1\n11\n3\n", 515),
        ] {
            let mut stored = map.to_vec();
            stored.resize(512, 0);
            stored.extend_from_slice(b"abc");
            assert!(SparseReader::new(stored.as_slice(), declared, 12).is_err());
        }
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
