//! Reading blobs for output: every byte is hashed on the way, and a blob that no longer
//! hashes to its digest (or has another size than the index recorded) is an error before
//! the reader reports its end, so a corrupt byte never completes an output.

use crate::{Digest, Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};

/// A stored blob being read and checked: yields an error instead of EOF when the bytes do
/// not hash to the blob's digest, and as soon as more bytes than the recorded size arrive.
pub struct VerifiedReader {
    file: fs_err::File,
    digest: Digest,
    expected_size: u64,
    hasher: Sha256,
    read: u64,
    checked: bool,
}

impl std::fmt::Debug for VerifiedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedReader")
            .field("digest", &self.digest)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl VerifiedReader {
    /// The blob's size (as the index recorded it, which the reader enforces).
    pub fn size(&self) -> u64 {
        self.expected_size
    }

    /// The digest being checked.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Reads (and checks) whatever is left, so the whole blob has been verified.
    pub fn finish(mut self) -> io::Result<()> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(())
    }

    fn corrupt(&self, detail: String) -> io::Error {
        StoreError::CorruptBlob {
            digest: self.digest.clone(),
            detail,
        }
        .into()
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.checked {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.expected_size {
            return Err(self.corrupt(format!(
                "it is longer than the {} bytes recorded",
                self.expected_size
            )));
        }
        if n == 0 && !buf.is_empty() {
            if self.read != self.expected_size {
                return Err(self.corrupt(format!(
                    "{} bytes instead of the {} recorded",
                    self.read, self.expected_size
                )));
            }
            let found = Digest::from_bytes(std::mem::take(&mut self.hasher).finalize().into());
            if found != self.digest {
                return Err(self.corrupt(format!("its bytes hash to {found}")));
            }
            self.checked = true;
        }
        Ok(n)
    }
}

impl Store {
    /// Opens a blob for output: the reader hashes what it yields and fails at the end (or as
    /// soon as the blob is too long) unless the bytes are the blob's. Downloads a blob only
    /// known remotely first, like [`Store::open_blob`].
    pub fn open_blob_verified(&self, digest: &Digest) -> Result<VerifiedReader, StoreError> {
        let file = self.open_blob(digest)?;
        let on_disk = file.metadata()?.len();
        let expected_size = self
            .with_index(|ix| ix.blob_size(digest))?
            .unwrap_or(on_disk);
        Ok(VerifiedReader {
            file,
            digest: digest.clone(),
            expected_size,
            hasher: Sha256::new(),
            read: 0,
            checked: false,
        })
    }

    /// Hashes a whole stored blob; a [`StoreError::CorruptBlob`] if it is not what its digest says.
    /// Each blob is checked at most once per open store.
    pub fn check_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        if self.is_checked(digest) {
            return Ok(());
        }
        let reader = self.open_blob_verified(digest)?;
        reader.finish().map_err(StoreError::from_io)?;
        self.mark_checked(digest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn flip_first_byte(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut bytes = std::fs::read(path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_flipped_byte_fails_at_the_end_naming_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.put_bytes(&vec![7u8; 100_000]).unwrap();
        let mut good = Vec::new();
        store
            .open_blob_verified(&blob.digest)
            .unwrap()
            .read_to_end(&mut good)
            .unwrap();
        assert_eq!(good.len(), 100_000);

        flip_first_byte(&store.blob_path(&blob.digest));
        let err = store
            .open_blob_verified(&blob.digest)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&blob.digest.to_string()), "{text}");
        assert!(text.contains("imgbuild store verify --repair"), "{text}");
        assert!(matches!(
            store.check_blob(&blob.digest),
            Err(StoreError::CorruptBlob { .. })
        ));
    }

    #[test]
    fn a_longer_blob_fails_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.put_bytes(b"short").unwrap();
        let path = store.blob_path(&blob.digest);
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
        let mut r = store.open_blob_verified(&blob.digest).unwrap();
        let mut buf = [0u8; 1024];
        let err = r.read(&mut buf).unwrap_err();
        assert!(err.to_string().contains("longer than the 5 bytes"), "{err}");
    }

    #[test]
    fn open_layer_refuses_a_corrupt_blob_even_when_read_partly() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut lw = store.layer_writer(crate::Compression::Zstd).unwrap();
        lw.write_all(&vec![1u8; 300_000]).unwrap();
        let layer = lw.commit(&store).unwrap();
        let path = store.blob_path(&layer.digest);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x80;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(&path, bytes).unwrap();
        let err = match store.open_layer(&layer.diff_id) {
            Ok(_) => panic!("a corrupt layer opened"),
            Err(e) => e,
        };
        assert!(err.to_string().contains(&layer.digest.to_string()), "{err}");
    }
}
