//! Writing blobs: to a temp file, hashed on the way, fsynced and renamed to their digest.

use crate::{Digest, Sha256Writer, Store, StoreError};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use tempfile::NamedTempFile;

/// What a blob is: its digest and size, as an OCI descriptor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// sha256 of the bytes.
    pub digest: Digest,
    /// Length in bytes.
    pub size: u64,
}

/// A blob being written into the store. Nothing is visible until [`BlobWriter::commit`];
/// dropping it leaves only a temp file that is removed at once (or by `gc` after a crash).
pub struct BlobWriter<'s> {
    store: &'s Store,
    out: Sha256Writer<BufWriter<NamedTempFile>>,
}

impl<'s> BlobWriter<'s> {
    pub(crate) fn new(store: &'s Store) -> Result<Self, StoreError> {
        let tmp = NamedTempFile::new_in(store.tmp_dir())?;
        Ok(Self {
            store,
            out: Sha256Writer::new(BufWriter::with_capacity(1 << 20, tmp)),
        })
    }

    /// Makes the blob durable and visible under its digest.
    pub fn commit(self) -> Result<Descriptor, StoreError> {
        self.commit_inner(None)
    }

    /// Like [`BlobWriter::commit`], but fails (storing nothing) unless the bytes hash to `expected`.
    pub fn commit_verified(self, expected: &Digest) -> Result<Descriptor, StoreError> {
        self.commit_inner(Some(expected))
    }

    fn commit_inner(self, expected: Option<&Digest>) -> Result<Descriptor, StoreError> {
        let (digest, size, buffered) = self.out.finish();
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(StoreError::DigestMismatch {
                    expected: expected.clone(),
                    found: digest,
                });
            }
        }
        let tmp = buffered
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        let final_path = self.store.blob_path(&digest);
        if !final_path.exists() {
            tmp.as_file().sync_all()?;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o444))?;
            tmp.persist(&final_path).map_err(|e| e.error)?;
            if let Some(dir) = final_path.parent() {
                fs_err::File::open(dir)?.sync_all()?;
            }
        }
        self.store.with_index(|ix| ix.add_blob(&digest, size))?;
        Ok(Descriptor { digest, size })
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
