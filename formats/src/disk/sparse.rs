//! Data extents of sparse files, via `lseek(2)` `SEEK_DATA`/`SEEK_HOLE`
//! (Linux ≥ 3.1; supported by ext4, xfs, btrfs, tmpfs).
//!
//! Filesystems without support report the whole file as data, which is
//! always correct, merely slower for callers that skip holes.

use std::fs::File;
use std::io;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

/// A source of "where is the next data" answers for a byte range.
pub trait DataExtents {
    /// The first data extent `[start, end)` at or after `from`, or `None`
    /// if only holes (zeros) remain before `size`.
    fn next_data(&mut self, from: u64, size: u64) -> io::Result<Option<(u64, u64)>>;
}

/// Treats every byte as data (for plain readers).
#[derive(Debug, Default, Clone, Copy)]
pub struct AllData;

impl DataExtents for AllData {
    fn next_data(&mut self, from: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
        Ok((from < size).then_some((from, size)))
    }
}

/// Extents of a real file from `SEEK_DATA`/`SEEK_HOLE`.
#[derive(Debug)]
pub struct FileExtents<'a> {
    file: &'a File,
    supported: bool,
}

impl<'a> FileExtents<'a> {
    /// Queries `file`. Moves the file position; callers must seek before
    /// reading.
    pub fn new(file: &'a File) -> FileExtents<'a> {
        FileExtents {
            file,
            supported: true,
        }
    }
}

impl DataExtents for FileExtents<'_> {
    fn next_data(&mut self, from: u64, size: u64) -> io::Result<Option<(u64, u64)>> {
        if from >= size {
            return Ok(None);
        }
        if !self.supported {
            return AllData.next_data(from, size);
        }
        let start = match rustix::fs::seek(self.file, SeekFrom::Data(from)) {
            Ok(pos) => pos,
            // No data at or after `from`.
            Err(Errno::NXIO) => return Ok(None),
            Err(Errno::INVAL | Errno::OPNOTSUPP) => {
                self.supported = false;
                return AllData.next_data(from, size);
            }
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            return Ok(None);
        }
        let end = rustix::fs::seek(self.file, SeekFrom::Hole(start)).map_err(io::Error::from)?;
        Ok(Some((start, end.min(size))))
    }
}

/// Copies the file `src` to a new file `dst` of the same size, writing only its data
/// extents, so holes stay holes.
pub fn copy_sparse(src: &std::path::Path, dst: &std::path::Path) -> io::Result<()> {
    use std::io::{Read, Seek, Write};
    let from = fs_err::File::open(src)?;
    let size = from.metadata()?.len();
    let mut to = fs_err::File::create(dst)?;
    to.set_len(size)?;
    let mut extents = FileExtents::new(from.file());
    let mut reader = from.file();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0;
    while let Some((start, end)) = extents.next_data(at, size)? {
        reader.seek(io::SeekFrom::Start(start))?;
        to.seek(io::SeekFrom::Start(start))?;
        let mut pos = start;
        while pos < end {
            let n = ((end - pos) as usize).min(buf.len());
            reader.read_exact(&mut buf[..n])?;
            to.write_all(&buf[..n])?;
            pos += n as u64;
        }
        at = end;
    }
    to.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn finds_data_in_a_sparse_file() {
        let mut f = tempfile::tempfile().unwrap();
        let mib = 1024 * 1024;
        f.set_len(64 * mib).unwrap();
        f.seek(io::SeekFrom::Start(10 * mib)).unwrap();
        f.write_all(&[1u8; 4096]).unwrap();
        let mut ext = FileExtents::new(&f);
        let (s, e) = ext.next_data(0, 64 * mib).unwrap().unwrap();
        // Filesystems may round extents; the data must lie inside.
        assert!(s <= 10 * mib && e >= 10 * mib + 4096, "{s}..{e}");
        if ext.supported {
            assert!(e < 64 * mib, "hole after the data not found: {s}..{e}");
            assert_eq!(ext.next_data(e, 64 * mib).unwrap(), None);
        }
        assert_eq!(AllData.next_data(3, 10).unwrap(), Some((3, 10)));
        assert_eq!(AllData.next_data(10, 10).unwrap(), None);
    }
}
