//! A deterministic tar writer: the caller decides order and metadata, the writer encodes
//! them the same way every time (ustar headers, PAX records only when needed, no user or
//! group names, no host state).

use super::entry::{join, EntryKind, EntryMeta, OPAQUE_MARKER, WHITEOUT_PREFIX};
use super::read::path_components;
use std::io::{self, Read, Write};

/// Encodes entries as a POSIX (PAX) tar stream.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    /// With [`TarWriter::recording`]: every entry appended, as a reader will see it.
    record: Option<Vec<EntryMeta>>,
}

/// The entries of a tar stream one [`TarWriter::recording`] wrote, in order and as
/// [`super::read_meta`] reads them back: what [`super::MergedTree::push_written`] applies
/// without reading the layer again. Only a writer makes one.
#[derive(Debug, Default)]
pub struct WrittenEntries(pub(super) Vec<EntryMeta>);

impl WrittenEntries {
    /// The entries, in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = &EntryMeta> {
        self.0.iter()
    }

    /// Number of entries (whiteouts and opaque markers included).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the stream has no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const USTAR_MAX_ID: u32 = 0o7_777_777;
const USTAR_MAX_SIZE: u64 = 0o77_777_777_777;

impl<W: Write> TarWriter<W> {
    /// Starts a tar stream on `out`.
    pub fn new(out: W) -> Self {
        Self {
            builder: tar::Builder::new(out),
            record: None,
        }
    }

    /// Starts a tar stream on `out` that also keeps what it wrote: [`TarWriter::finish_recorded`].
    pub fn recording(out: W) -> Self {
        Self {
            record: Some(Vec::new()),
            ..Self::new(out)
        }
    }

    /// Appends one entry; for files, `data` must yield exactly `meta.size` bytes.
    pub fn append(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut header = tar::Header::new_ustar();
        let mut name = meta.path.clone();
        if meta.is_dir() {
            name.push('/');
        }
        if header.set_path(&name).is_err() || name.len() > 255 {
            pax.push(("path".into(), name.clone().into_bytes()));
            set_stand_in(&mut header, &name)?;
        }
        let (entry_type, link) = match &meta.kind {
            EntryKind::File => (tar::EntryType::Regular, None),
            EntryKind::Dir => (tar::EntryType::Directory, None),
            EntryKind::Symlink(t) => (tar::EntryType::Symlink, Some(t)),
            EntryKind::Hardlink(t) => (tar::EntryType::Link, Some(t)),
            EntryKind::CharDevice(..) => (tar::EntryType::Char, None),
            EntryKind::BlockDevice(..) => (tar::EntryType::Block, None),
            EntryKind::Fifo => (tar::EntryType::Fifo, None),
        };
        header.set_entry_type(entry_type);
        if let Some(target) = link {
            if target.len() > 100 || header.set_link_name_literal(target).is_err() {
                pax.push(("linkpath".into(), target.clone().into_bytes()));
                header.set_link_name_literal(&target[..floor_char_boundary(target, 100)])?;
            }
        }
        let (major, minor) = match meta.kind {
            EntryKind::CharDevice(a, b) | EntryKind::BlockDevice(a, b) => (a, b),
            _ => (0, 0),
        };
        header.set_device_major(major)?;
        header.set_device_minor(minor)?;
        header.set_mode(meta.mode & 0o7777);
        set_id(&mut header, &mut pax, "uid", meta.uid)?;
        set_id(&mut header, &mut pax, "gid", meta.gid)?;
        let size = if meta.kind == EntryKind::File {
            meta.size
        } else {
            0
        };
        if size > USTAR_MAX_SIZE {
            pax.push(("size".into(), size.to_string().into_bytes()));
            header.set_size(0);
        } else {
            header.set_size(size);
        }
        header.set_mtime(meta.mtime);
        for (key, value) in &meta.xattrs {
            pax.push((format!("SCHILY.xattr.{key}"), value.clone()));
        }
        if let Some((key, _)) = pax.iter().find(|(_, value)| value.contains(&b'\n')) {
            // POSIX allows it (records are length-prefixed), but the tar crate that reads
            // layers back splits records on newlines: such a layer could not be read again.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{:?}: its PAX `{key}` record would hold a newline, which imgbuild cannot \
                     read back from a layer; rename the file or drop the attribute",
                    meta.path
                ),
            ));
        }
        if !pax.is_empty() {
            self.append_pax(&name, &pax)?;
        }
        header.set_cksum();
        // The builder pads the data to a 512-byte block; a short reader is an error.
        let mut limited = data.take(size);
        let mut counting = CountingReader::new(&mut limited);
        let result = self.builder.append(&header, &mut counting);
        // A failed write (a full disk) or read (a corrupt store blob) is the error to report,
        // not the short count it leaves behind.
        result?;
        if counting.count != size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: expected {size} bytes, read {}",
                    meta.path, counting.count
                ),
            ));
        }
        if let Some(record) = &mut self.record {
            record.push(as_read_back(meta)?);
        }
        Ok(())
    }

    /// Appends a whiteout that deletes `path` from lower layers.
    pub fn whiteout(&mut self, path: &str, mtime: u64) -> io::Result<()> {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let meta = EntryMeta::new(
            join(dir, &format!("{WHITEOUT_PREFIX}{name}")),
            EntryKind::File,
            0o644,
            mtime,
        );
        self.append(&meta, &mut io::empty())
    }

    /// Appends a marker that hides everything lower layers have below `dir`.
    pub fn opaque(&mut self, dir: &str, mtime: u64) -> io::Result<()> {
        let meta = EntryMeta::new(join(dir, OPAQUE_MARKER), EntryKind::File, 0o644, mtime);
        self.append(&meta, &mut io::empty())
    }

    /// Writes the end-of-archive blocks and returns the output.
    pub fn finish(self) -> io::Result<W> {
        self.builder.into_inner()
    }

    /// Like [`TarWriter::finish`], also returning the entries a [`TarWriter::recording`]
    /// wrote (none for a writer made with [`TarWriter::new`]).
    pub fn finish_recorded(mut self) -> io::Result<(W, WrittenEntries)> {
        let record = self.record.take().unwrap_or_default();
        Ok((self.finish()?, WrittenEntries(record)))
    }

    fn append_pax(&mut self, name: &str, records: &[(String, Vec<u8>)]) -> io::Result<()> {
        let mut body = Vec::new();
        for (key, value) in records {
            // Each record is "<len> <key>=<value>\n" where <len> counts itself.
            let rest = key.len() + value.len() + 3;
            let mut len = rest + rest.to_string().len();
            if len.to_string().len() + rest != len {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut header = tar::Header::new_ustar();
        set_stand_in(
            &mut header,
            &format!("PaxHeaders/{}", name.trim_end_matches('/')),
        )?;
        header.set_entry_type(tar::EntryType::XHeader);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_device_major(0)?;
        header.set_device_minor(0)?;
        header.set_size(body.len() as u64);
        header.set_cksum();
        self.builder.append(&header, body.as_slice())
    }
}

/// `meta` as [`super::read_meta`] reads back what [`TarWriter::append`] wrote of it: the
/// path and a hard link's target normalised, permission bits only, no size but a file's.
fn as_read_back(meta: &EntryMeta) -> io::Result<EntryMeta> {
    let normalised = |path: &str| -> io::Result<String> {
        let parts = path_components(path.as_bytes())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        Ok(String::from_utf8_lossy(&parts.join(&b'/')).into_owned())
    };
    let kind = match &meta.kind {
        EntryKind::Hardlink(target) => EntryKind::Hardlink(normalised(target)?),
        kind => kind.clone(),
    };
    Ok(EntryMeta {
        path: normalised(&meta.path)?,
        size: if kind == EntryKind::File {
            meta.size
        } else {
            0
        },
        kind,
        mode: meta.mode & 0o7777,
        uid: meta.uid,
        gid: meta.gid,
        mtime: meta.mtime,
        xattrs: meta.xattrs.clone(),
    })
}

fn set_id(
    header: &mut tar::Header,
    pax: &mut Vec<(String, Vec<u8>)>,
    key: &str,
    id: u32,
) -> io::Result<()> {
    let value = if id > USTAR_MAX_ID {
        pax.push((key.into(), id.to_string().into_bytes()));
        0
    } else {
        id
    };
    if key == "uid" {
        header.set_uid(value.into());
    } else {
        header.set_gid(value.into());
    }
    Ok(())
}

/// Sets the ustar name behind a PAX `path` record (readers that know PAX ignore it): the
/// last 99 bytes of `name`, or, when those start with `/` or `..` (which the ustar field
/// must not), the same without their leading `/` and `.` bytes.
fn set_stand_in(header: &mut tar::Header, name: &str) -> io::Result<()> {
    let tail = truncate_name(name);
    if header.set_path(tail).is_ok() {
        return Ok(());
    }
    let trimmed = tail.trim_start_matches(['/', '.']);
    header.set_path(if trimmed.is_empty() {
        "PaxPath"
    } else {
        trimmed
    })
}

/// The last 99 bytes of a name (on a char boundary), for the ustar field behind a PAX path.
fn truncate_name(name: &str) -> &str {
    let mut start = name.len().saturating_sub(99);
    while !name.is_char_boundary(start) {
        start += 1;
    }
    &name[start..]
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R> CountingReader<R> {
    fn new(inner: R) -> Self {
        Self { inner, count: 0 }
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::read_meta;

    fn roundtrip(metas: &[EntryMeta]) -> Vec<EntryMeta> {
        let mut w = TarWriter::new(Vec::new());
        for m in metas {
            let data = vec![b'x'; usize::try_from(m.size).unwrap()];
            w.append(m, &mut data.as_slice()).unwrap();
        }
        let bytes = w.finish().unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        archive
            .entries()
            .unwrap()
            .map(|e| read_meta(&mut e.unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn long_names_ids_and_xattrs_survive() {
        let long = format!("{}/file", "d".repeat(300));
        let mut file = EntryMeta::new(long, EntryKind::File, 0o4755, 7);
        file.size = 3;
        file.uid = 5_000_000;
        file.gid = 1000;
        file.xattrs
            .insert("security.capability".into(), vec![1, 0, 0, 2, 0]);
        let link = EntryMeta::new("l", EntryKind::Symlink("t".repeat(200)), 0o777, 7);
        let back = roundtrip(&[file.clone(), link.clone()]);
        assert_eq!(back, vec![file, link]);
    }

    #[test]
    fn a_newline_in_a_pax_record_is_refused_and_a_short_one_round_trips() {
        let long = EntryMeta::new(format!("{}\nx", "n".repeat(120)), EntryKind::File, 0o644, 7);
        let err = TarWriter::new(Vec::new())
            .append(&long, &mut io::empty())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("`path` record would hold a newline"),
            "{err}"
        );

        let mut caps = EntryMeta::new("bin/tool", EntryKind::File, 0o755, 7);
        caps.xattrs.insert(
            "security.capability".into(),
            vec![1, 0, 0, 2, 0x0a, 0, 0, 0],
        );
        let err = TarWriter::new(Vec::new())
            .append(&caps, &mut io::empty())
            .unwrap_err();
        assert!(
            err.to_string().contains("SCHILY.xattr.security.capability"),
            "{err}"
        );

        // A name that fits the ustar header needs no PAX record, newline or not.
        let short = EntryMeta::new("a\nb", EntryKind::File, 0o644, 7);
        assert_eq!(roundtrip(std::slice::from_ref(&short)), vec![short]);
    }

    #[test]
    fn every_long_path_is_written_whatever_byte_the_split_lands_on() {
        // For each length, a path whose byte 99 from the end (where the ustar name field
        // starts) is `/`, and one where it is a `.` of a `..`-looking name.
        let mut metas = Vec::new();
        for total in 100..=320 {
            for (i, tail) in [("/", 98), ("/..", 96)].into_iter().enumerate() {
                let (sep, last) = tail;
                let head_len = total - sep.len() - last;
                let head: String = (0..head_len)
                    .map(|j| if j % 40 == 39 { '/' } else { 'n' })
                    .collect();
                let head = head.trim_end_matches('/').to_owned() + "x";
                let path = format!("{head}{sep}{}", "y".repeat(last));
                let mut file = EntryMeta::file(path.clone(), 1, 0);
                file.mtime = (total * 2 + i) as u64;
                metas.push(file);
                let mut dir = EntryMeta::dir(format!("{head}{sep}{}", "d".repeat(last - 1)), 0);
                dir.mtime = (total * 2 + i) as u64;
                metas.push(dir);
                let link = EntryMeta::new(
                    format!("{head}{sep}{}", "l".repeat(last)),
                    EntryKind::Hardlink(path),
                    0o644,
                    0,
                );
                metas.push(link);
            }
        }
        let back = roundtrip(&metas);
        assert_eq!(back, metas);
    }

    #[test]
    fn short_data_is_an_error() {
        let mut m = EntryMeta::new("f", EntryKind::File, 0o644, 0);
        m.size = 10;
        let mut w = TarWriter::new(Vec::new());
        assert!(w.append(&m, &mut &b"abc"[..]).is_err());
    }
}
