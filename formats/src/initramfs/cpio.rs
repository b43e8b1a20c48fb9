//! Deterministic cpio "newc" (SVR4, magic `070701`) archive writer, the
//! format the Linux kernel unpacks as initramfs
//! (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Each entry is a 110-byte ASCII header (13 eight-digit hex fields), the
//! NUL-terminated path padded to a multiple of 4 bytes, then the data padded
//! to a multiple of 4. The archive ends with an entry named `TRAILER!!!`.
//!
//! Determinism: entries are written in the order they were added (add
//! parents before children), inode numbers are assigned sequentially from 1,
//! the `dev` fields are 0 and the `check` field is 0; mtimes are whatever
//! the caller gives (clamp them to SOURCE_DATE_EPOCH upstream).
//!
//! Hard links follow the newc rule: all links share one inode number and
//! carry `nlink` = number of links; only the *last* link in the archive
//! carries the data, the earlier ones have size 0 (GNU cpio and the kernel
//! both restore them as links).

use std::collections::HashMap;
use std::io::Write;

use crate::disk::source::{copy_exact, CopyError, FileData};

/// `S_IFMT` and file type bits.
const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFREG: u32 = 0o100_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;

/// Errors while writing a cpio archive.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    /// Path is empty, absolute after normalisation, or contains `..`.
    #[error("{path:?}: invalid archive path: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// A hard link names a path that is not an earlier regular file.
    #[error("{path}: hard link target {target:?} is not a regular file added earlier; add the file first")]
    BadLinkTarget {
        /// The link.
        path: String,
        /// Its target.
        target: String,
    },
    /// The mode's type bits contradict the entry kind.
    #[error("{path}: mode {mode:o} has file type bits that do not match a {kind}; pass permission bits only (0o7777) or matching type bits")]
    ModeMismatch {
        /// The path.
        path: String,
        /// The given mode.
        mode: u32,
        /// The entry kind.
        kind: &'static str,
    },
    /// A value does not fit the 32-bit header field.
    #[error("{path}: {field} = {value} does not fit in a 32-bit newc header field")]
    FieldTooLarge {
        /// The path.
        path: String,
        /// Field name.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A file source ended early.
    #[error("{path}: source ended after {got} of the declared {expected} bytes")]
    ShortRead {
        /// The path.
        path: String,
        /// Declared size.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// Reading a file source failed.
    #[error("{path}: reading source failed: {source}")]
    Source {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A hard-linked file was announced with more links than came.
    #[error("{path}: announced with {nlink} links, but {missing} never came (a bug in the caller's link count)")]
    MissingLinks {
        /// The file.
        path: String,
        /// The announced link count.
        nlink: u32,
        /// Links that did not come.
        missing: u32,
    },
    /// Writing the archive failed.
    #[error("writing the cpio archive failed: {0}")]
    Io(#[from] std::io::Error),
}

/// What an entry is: the store's tar entry model. A hard link names an earlier
/// [`EntryKind::File`] entry (its metadata is taken from that file); a symlink is always
/// mode 0777, as on Linux. A file's bytes are [`Entry::data`].
pub use imgbuild_store::tarball::EntryKind;

fn type_bits(kind: &EntryKind) -> u32 {
    match kind {
        EntryKind::File | EntryKind::Hardlink(_) => S_IFREG,
        EntryKind::Dir => S_IFDIR,
        EntryKind::Symlink(_) => S_IFLNK,
        EntryKind::CharDevice(..) => S_IFCHR,
        EntryKind::BlockDevice(..) => S_IFBLK,
        EntryKind::Fifo => S_IFIFO,
    }
}

fn kind_name(kind: &EntryKind) -> &'static str {
    match kind {
        EntryKind::File | EntryKind::Hardlink(_) => "regular file",
        EntryKind::Dir => "directory",
        EntryKind::Symlink(_) => "symlink",
        EntryKind::CharDevice(..) => "character device",
        EntryKind::BlockDevice(..) => "block device",
        EntryKind::Fifo => "fifo",
    }
}

/// One archive member.
#[derive(Debug)]
pub struct Entry {
    /// Path inside the archive; a leading `/` or `./` is removed. `.` is the
    /// archive root.
    pub path: String,
    /// Permission bits (`0o7777`, including setuid/setgid/sticky); type
    /// bits may be included if they match `kind`.
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, Unix seconds.
    pub mtime: u64,
    /// Type.
    pub kind: EntryKind,
    /// The bytes of a [`EntryKind::File`] entry (`None`: empty); ignored for other kinds.
    pub data: Option<FileData>,
}

impl Entry {
    /// An entry with `mode`, owned by root, mtime `mtime` (a file is empty).
    pub fn new(path: impl Into<String>, mode: u32, mtime: u64, kind: EntryKind) -> Entry {
        Entry {
            path: path.into(),
            mode,
            uid: 0,
            gid: 0,
            mtime,
            kind,
            data: None,
        }
    }

    /// A regular file holding `data`, with `mode`, owned by root, mtime `mtime`.
    pub fn file(path: impl Into<String>, mode: u32, mtime: u64, data: FileData) -> Entry {
        Entry {
            data: Some(data),
            ..Entry::new(path, mode, mtime, EntryKind::File)
        }
    }
}

/// What [`CpioArchive::write_to`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpioSummary {
    /// Members written (excluding the trailer).
    pub entries: u64,
    /// Archive size in bytes.
    pub bytes: u64,
}

/// A newc archive being assembled.
#[derive(Debug, Default)]
pub struct CpioArchive {
    entries: Vec<Entry>,
}

/// Header fields of one member.
/// The entry that ends a newc archive.
const TRAILER: Header<'static> = Header {
    ino: 0,
    mode: 0,
    uid: 0,
    gid: 0,
    nlink: 1,
    mtime: 0,
    filesize: 0,
    rdev: (0, 0),
    name: "TRAILER!!!",
};

struct Header<'a> {
    ino: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdev: (u32, u32),
    name: &'a str,
}

impl CpioArchive {
    /// An empty archive.
    pub fn new() -> CpioArchive {
        CpioArchive::default()
    }

    /// Appends an entry (archive order = insertion order).
    pub fn add(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    /// Writes the archive, including the trailer, to `w`.
    pub fn write_to<W: Write>(self, w: &mut W) -> Result<CpioSummary, CpioError> {
        let n = self.entries.len();
        // Normalise paths and check modes up front.
        let mut paths = Vec::with_capacity(n);
        for e in &self.entries {
            let p = normalize(&e.path)?;
            let t = e.mode & S_IFMT;
            if t != 0 && t != type_bits(&e.kind) {
                return Err(CpioError::ModeMismatch {
                    path: e.path.clone(),
                    mode: e.mode,
                    kind: kind_name(&e.kind),
                });
            }
            paths.push(p);
        }
        // Hard link groups: group leader (the File entry) index per entry,
        // link counts per leader and the last member of each group.
        let mut file_index: HashMap<&str, usize> = HashMap::new();
        let mut leader = vec![usize::MAX; n];
        let mut nlink = vec![1u32; n];
        let mut last = vec![usize::MAX; n];
        for (i, e) in self.entries.iter().enumerate() {
            match &e.kind {
                EntryKind::File => {
                    file_index.insert(paths[i].as_str(), i);
                    leader[i] = i;
                    last[i] = i;
                }
                EntryKind::Hardlink(target) => {
                    let t = normalize(target)?;
                    let Some(&l) = file_index.get(t.as_str()) else {
                        return Err(CpioError::BadLinkTarget {
                            path: e.path.clone(),
                            target: target.clone(),
                        });
                    };
                    leader[i] = l;
                    nlink[l] += 1;
                    last[l] = i;
                }
                _ => {}
            }
        }
        // Inode numbers: sequential, shared within a link group.
        let mut ino = vec![0u32; n];
        let mut next = 1u32;
        for i in 0..n {
            if leader[i] != usize::MAX && leader[i] != i {
                ino[i] = ino[leader[i]];
            } else {
                ino[i] = next;
                next += 1;
            }
        }

        let mut out = CountingWriter { inner: w, count: 0 };
        let mut buf = vec![0u8; 64 * 1024];
        let metas: Vec<(u32, u32, u32, u64)> = self
            .entries
            .iter()
            .map(|e| (e.mode & 0o7777, e.uid, e.gid, e.mtime))
            .collect();
        let mut data: Vec<Option<FileData>> = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        for e in self.entries {
            match e.kind {
                EntryKind::File => {
                    data.push(Some(e.data.unwrap_or(FileData::Bytes(Vec::new()))));
                    kinds.push(None);
                }
                k => {
                    data.push(None);
                    kinds.push(Some(k));
                }
            }
        }
        for i in 0..n {
            let path = &paths[i];
            let src = if leader[i] == usize::MAX {
                i
            } else {
                leader[i]
            };
            let (perm, uid, gid, mtime) = metas[src];
            let mtime = u32::try_from(mtime).map_err(|_| CpioError::FieldTooLarge {
                path: path.clone(),
                field: "mtime",
                value: mtime,
            })?;
            let mut h = Header {
                ino: ino[i],
                mode: perm,
                uid,
                gid,
                nlink: 1,
                mtime,
                filesize: 0,
                rdev: (0, 0),
                name: path,
            };
            if leader[i] != usize::MAX {
                // Regular file or hard link.
                let l = leader[i];
                h.mode |= S_IFREG;
                h.nlink = nlink[l];
                if last[l] == i {
                    let d = data[l].take().unwrap_or(FileData::Bytes(Vec::new()));
                    let size = d.len();
                    h.filesize = u32::try_from(size).map_err(|_| CpioError::FieldTooLarge {
                        path: path.clone(),
                        field: "file size",
                        value: size,
                    })?;
                    write_header(&mut out, &h)?;
                    copy_exact(d, &mut out, &mut buf).map_err(|e| match e {
                        CopyError::Short { expected, got } => CpioError::ShortRead {
                            path: path.clone(),
                            expected,
                            got,
                        },
                        CopyError::Read(source) => CpioError::Source {
                            path: path.clone(),
                            source,
                        },
                        CopyError::Write(e) => CpioError::Io(e),
                    })?;
                    pad4(&mut out)?;
                } else {
                    write_header(&mut out, &h)?;
                }
                continue;
            }
            let Some(kind) = &kinds[i] else {
                continue;
            };
            h.mode |= type_bits(kind);
            match kind {
                EntryKind::Dir => {
                    h.nlink = 2;
                    write_header(&mut out, &h)?;
                }
                EntryKind::Symlink(target) => {
                    h.mode = (h.mode & S_IFMT) | 0o777;
                    h.filesize = target.len() as u32;
                    write_header(&mut out, &h)?;
                    out.write_all(target.as_bytes())?;
                    pad4(&mut out)?;
                }
                EntryKind::CharDevice(major, minor) | EntryKind::BlockDevice(major, minor) => {
                    h.rdev = (*major, *minor);
                    write_header(&mut out, &h)?;
                }
                _ => write_header(&mut out, &h)?,
            }
        }
        write_header(&mut out, &TRAILER)?;
        out.flush()?;
        Ok(CpioSummary {
            entries: n as u64,
            bytes: out.count,
        })
    }
}

/// A hard-linked file waiting for its last link, which carries its bytes.
struct Pending {
    ino: u32,
    perm: u32,
    uid: u32,
    gid: u32,
    mtime: u32,
    nlink: u32,
    remaining: u32,
    data: FileData,
}

/// A newc archive written as its entries arrive, so that nothing but hard-linked files
/// waits in memory: byte for byte what [`CpioArchive`] writes for the same entries,
/// given each hard-linked file's link count up front (a file's bytes go with its last
/// link, so only those files are held until then).
pub struct CpioStream<W: Write> {
    out: W,
    count: u64,
    next_ino: u32,
    entries: u64,
    /// Names (normalised) of every file with hard links, and its link count.
    nlink: HashMap<String, u32>,
    /// Hard-linked files whose last link has not come yet.
    pending: HashMap<String, Pending>,
    buf: Vec<u8>,
}

impl<W: Write> CpioStream<W> {
    /// Writes to `out`; `nlink` maps each file that has hard links (the file's own path)
    /// to its number of names, itself included. Files not in it have no links.
    pub fn new(out: W, nlink: HashMap<String, u32>) -> Result<Self, CpioError> {
        let nlink = nlink
            .into_iter()
            .map(|(p, n)| Ok((normalize(&p)?, n)))
            .collect::<Result<_, CpioError>>()?;
        Ok(Self {
            out,
            count: 0,
            next_ino: 1,
            entries: 0,
            nlink,
            pending: HashMap::new(),
            buf: vec![0u8; 64 * 1024],
        })
    }

    fn header(&mut self, h: &Header<'_>) -> std::io::Result<()> {
        let mut w = CountingWriter {
            inner: &mut self.out,
            count: self.count,
        };
        let written = write_header(&mut w, h);
        self.count = w.count;
        written
    }

    fn data(&mut self, path: &str, d: FileData, symlink: Option<&str>) -> Result<(), CpioError> {
        let mut w = CountingWriter {
            inner: &mut self.out,
            count: self.count,
        };
        let copied = match symlink {
            Some(target) => w.write_all(target.as_bytes()).map_err(CpioError::Io),
            None => copy_exact(d, &mut w, &mut self.buf).map_err(|e| match e {
                CopyError::Short { expected, got } => CpioError::ShortRead {
                    path: path.to_owned(),
                    expected,
                    got,
                },
                CopyError::Read(source) => CpioError::Source {
                    path: path.to_owned(),
                    source,
                },
                CopyError::Write(e) => CpioError::Io(e),
            }),
        };
        let padded = copied.and_then(|()| pad4(&mut w).map_err(CpioError::Io));
        self.count = w.count;
        padded
    }

    /// Writes `entry` (a hard-linked file's bytes wait for its last link).
    pub fn add(&mut self, e: Entry) -> Result<(), CpioError> {
        let path = normalize(&e.path)?;
        let t = e.mode & S_IFMT;
        if t != 0 && t != type_bits(&e.kind) {
            return Err(CpioError::ModeMismatch {
                path: e.path.clone(),
                mode: e.mode,
                kind: kind_name(&e.kind),
            });
        }
        let mtime = u32::try_from(e.mtime).map_err(|_| CpioError::FieldTooLarge {
            path: path.clone(),
            field: "mtime",
            value: e.mtime,
        })?;
        self.entries += 1;
        let mut h = Header {
            ino: 0,
            mode: (e.mode & 0o7777) | type_bits(&e.kind),
            uid: e.uid,
            gid: e.gid,
            nlink: 1,
            mtime,
            filesize: 0,
            rdev: (0, 0),
            name: &path,
        };
        if !matches!(e.kind, EntryKind::Hardlink(_)) {
            h.ino = self.next_ino;
            self.next_ino += 1;
        }
        match &e.kind {
            EntryKind::File => {
                let data = e.data.unwrap_or(FileData::Bytes(Vec::new()));
                if let Some(&n) = self.nlink.get(&path).filter(|&&n| n > 1) {
                    h.nlink = n;
                    self.header(&h)?;
                    let pending = Pending {
                        ino: h.ino,
                        perm: e.mode & 0o7777,
                        uid: e.uid,
                        gid: e.gid,
                        mtime,
                        nlink: n,
                        remaining: n - 1,
                        data,
                    };
                    self.pending.insert(path.clone(), pending);
                    return Ok(());
                }
                h.filesize = file_size(&path, data.len())?;
                self.header(&h)?;
                self.data(&path, data, None)?;
            }
            EntryKind::Hardlink(target) => {
                let target = normalize(target)?;
                let Some(p) = self.pending.get_mut(&target) else {
                    return Err(CpioError::BadLinkTarget {
                        path: e.path.clone(),
                        target,
                    });
                };
                p.remaining -= 1;
                h.ino = p.ino;
                h.mode = p.perm | S_IFREG;
                (h.uid, h.gid, h.mtime, h.nlink) = (p.uid, p.gid, p.mtime, p.nlink);
                if p.remaining > 0 {
                    self.header(&h)?;
                    return Ok(());
                }
                let p = self.pending.remove(&target).expect("found above");
                h.filesize = file_size(&path, p.data.len())?;
                self.header(&h)?;
                self.data(&path, p.data, None)?;
            }
            EntryKind::Dir => {
                h.nlink = 2;
                self.header(&h)?;
            }
            EntryKind::Symlink(target) => {
                h.mode = S_IFLNK | 0o777;
                h.filesize = file_size(&path, target.len() as u64)?;
                self.header(&h)?;
                self.data(&path, FileData::Bytes(Vec::new()), Some(target))?;
            }
            EntryKind::CharDevice(major, minor) | EntryKind::BlockDevice(major, minor) => {
                h.rdev = (*major, *minor);
                self.header(&h)?;
            }
            EntryKind::Fifo => self.header(&h)?,
        }
        Ok(())
    }

    /// Writes the trailer; returns the writer and what was written. A hard-linked file
    /// whose links did not all come is [`CpioError::MissingLinks`].
    pub fn finish(mut self) -> Result<(W, CpioSummary), CpioError> {
        if let Some((path, p)) = self.pending.iter().min_by(|a, b| a.0.cmp(b.0)) {
            return Err(CpioError::MissingLinks {
                path: path.clone(),
                nlink: p.nlink,
                missing: p.remaining,
            });
        }
        self.header(&TRAILER)?;
        self.out.flush()?;
        let summary = CpioSummary {
            entries: self.entries,
            bytes: self.count,
        };
        Ok((self.out, summary))
    }
}

/// A file size as a newc header field.
fn file_size(path: &str, size: u64) -> Result<u32, CpioError> {
    u32::try_from(size).map_err(|_| CpioError::FieldTooLarge {
        path: path.to_owned(),
        field: "file size",
        value: size,
    })
}

/// Strips leading `/` and `./`; rejects empty paths and `..` components.
fn normalize(path: &str) -> Result<String, CpioError> {
    let invalid = |reason| CpioError::InvalidPath {
        path: path.to_string(),
        reason,
    };
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_prefix('/') {
            p = rest;
        } else if let Some(rest) = p.strip_prefix("./") {
            p = rest;
        } else {
            break;
        }
    }
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        return if path.starts_with('.') || path.starts_with('/') {
            Ok(".".to_string())
        } else {
            Err(invalid("empty"))
        };
    }
    if p.split('/').any(|c| c == "..") {
        return Err(invalid("`..` components are not allowed"));
    }
    if p.contains('\0') {
        return Err(invalid("contains NUL"));
    }
    Ok(p.to_string())
}

/// Writes a newc header and the padded name.
fn write_header<W: Write>(w: &mut CountingWriter<W>, h: &Header<'_>) -> std::io::Result<()> {
    let namesize = h.name.len() + 1;
    let s = format!(
        "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
        h.ino,
        h.mode,
        h.uid,
        h.gid,
        h.nlink,
        h.mtime,
        h.filesize,
        0,
        0,
        h.rdev.0,
        h.rdev.1,
        namesize,
        0
    );
    w.write_all(s.as_bytes())?;
    w.write_all(h.name.as_bytes())?;
    w.write_all(&[0])?;
    pad4(w)
}

/// Pads the stream to a multiple of 4 bytes.
fn pad4<W: Write>(w: &mut CountingWriter<W>) -> std::io::Result<()> {
    let pad = (4 - (w.count % 4) as usize) % 4;
    w.write_all(&[0u8; 3][..pad])
}

/// Tracks the stream offset for padding.
struct CountingWriter<'a, W: Write> {
    inner: &'a mut W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests;
