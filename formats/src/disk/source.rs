//! File contents to place into an image: bytes in memory, a reader with a
//! declared length, or a host file opened at write time.

use std::io::{Read, Write};
use std::path::PathBuf;

/// Contents of a file to store.
pub enum FileData {
    /// In-memory bytes.
    Bytes(Vec<u8>),
    /// A reader that yields exactly `len` bytes.
    Reader {
        /// The source.
        reader: Box<dyn Read + Send>,
        /// Declared length.
        len: u64,
    },
    /// A host file, opened when the image is written.
    Path {
        /// Host path.
        path: PathBuf,
        /// Its length (checked when reading).
        len: u64,
    },
}

impl FileData {
    /// A host file; its length is read now.
    pub fn from_path(path: impl Into<PathBuf>) -> Result<FileData, std::io::Error> {
        let path = path.into();
        let len = fs_err::metadata(&path)?.len();
        Ok(FileData::Path { path, len })
    }

    /// Declared length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            FileData::Bytes(b) => b.len() as u64,
            FileData::Reader { len, .. } | FileData::Path { len, .. } => *len,
        }
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Debug for FileData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileData::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            FileData::Reader { len, .. } => write!(f, "Reader({len} bytes)"),
            FileData::Path { path, len } => write!(f, "Path({}, {len} bytes)", path.display()),
        }
    }
}

/// Why [`copy_exact`] failed.
#[derive(Debug)]
pub(crate) enum CopyError {
    /// The source ended early.
    Short { expected: u64, got: u64 },
    /// Opening or reading the source failed.
    Read(std::io::Error),
    /// Writing failed.
    Write(std::io::Error),
}

/// Copies exactly the declared length of `data` into `w`, using `buf`.
pub(crate) fn copy_exact<W: Write + ?Sized>(
    data: FileData,
    w: &mut W,
    buf: &mut [u8],
) -> Result<(), CopyError> {
    let expected = data.len();
    let mut reader: Box<dyn Read> = match data {
        FileData::Bytes(b) => return w.write_all(&b).map_err(CopyError::Write),
        FileData::Reader { reader, .. } => reader,
        FileData::Path { path, .. } => Box::new(fs_err::File::open(path).map_err(CopyError::Read)?),
    };
    let mut got = 0u64;
    while got < expected {
        let want = (expected - got).min(buf.len() as u64) as usize;
        let n = match reader.read(&mut buf[..want]) {
            Ok(0) => return Err(CopyError::Short { expected, got }),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        got += n as u64;
    }
    Ok(())
}
