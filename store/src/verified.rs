//! Reading blobs for output: every byte is hashed on the way, and a blob that no longer
//! hashes to its digest (or has another size than the index recorded) is an error before
//! its last byte is handed out, so a corrupt byte never completes an output.
//!
//! One pass: a reader hashes what it reads and checks the digest when it reaches the size
//! the index recorded. A blob that checked out is remembered in the store's verified set
//! and not hashed again while the store is open (a blob it wrote is not: it is checked
//! the first time it is read back).
//! [`LayerReader`] decompresses a layer the same way; a consumer that stops before the end
//! (a tar parser stops at the end-of-archive blocks) must read it to its end, which drains
//! the rest of the compressed blob through the hash without decompressing it.

use crate::{Digest, Store, StoreError};
use sha2::{Digest as _, Sha256};
use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// Buffer size for reading blobs: few syscalls, and the hash works on large chunks.
const CHUNK: usize = 1 << 20;

/// The blobs an open store has found intact since it was opened.
#[derive(Debug, Default, Clone)]
pub(crate) struct VerifiedSet(Arc<Mutex<HashSet<Digest>>>);

impl VerifiedSet {
    pub(crate) fn contains(&self, digest: &Digest) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(digest)
    }

    pub(crate) fn insert(&self, digest: &Digest) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest.clone());
    }
}

/// A stored blob being read and checked: the read that reaches the recorded size fails
/// unless the bytes hash to the blob's digest, and so does any read past that size or an
/// end before it. Errors are [`StoreError::CorruptBlob`] (inside the `io::Error`) and
/// repeat on every later read.
pub struct VerifiedReader {
    file: fs_err::File,
    digest: Digest,
    expected_size: u64,
    /// `None` once the digest is checked, or from the start for an already verified blob.
    hasher: Option<Sha256>,
    read: u64,
    failed: Option<String>,
    verified: VerifiedSet,
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
        self.drain()
    }

    /// Reads whatever is left (through the hash) and checks the blob's end.
    fn drain(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        while self.read(&mut buf)? > 0 {}
        Ok(())
    }

    fn fail(&mut self, detail: String) -> io::Error {
        self.failed = Some(detail);
        self.corrupt()
    }

    fn corrupt(&self) -> io::Error {
        StoreError::CorruptBlob {
            digest: self.digest.clone(),
            detail: self.failed.clone().unwrap_or_default(),
        }
        .into()
    }

    /// Compares the hash of the whole blob (all `expected_size` bytes read) with its digest
    /// and makes sure the file ends there.
    fn check(&mut self) -> io::Result<()> {
        let Some(hasher) = self.hasher.take() else {
            return Ok(());
        };
        let found = Digest::from_bytes(hasher.finalize().into());
        if found != self.digest {
            return Err(self.fail(format!("its bytes hash to {found}")));
        }
        let on_disk = self.file.metadata()?.len();
        if on_disk != self.expected_size {
            return Err(self.fail(format!(
                "it is {on_disk} bytes long, not the {} recorded",
                self.expected_size
            )));
        }
        self.verified.insert(&self.digest);
        Ok(())
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed.is_some() {
            return Err(self.corrupt());
        }
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if self.read > self.expected_size {
            return Err(self.fail(format!(
                "it is longer than the {} bytes recorded",
                self.expected_size
            )));
        }
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.update(&buf[..n]);
        }
        if self.read == self.expected_size {
            self.check()?;
        } else if n == 0 && !buf.is_empty() {
            return Err(self.fail(format!(
                "{} bytes instead of the {} recorded",
                self.read, self.expected_size
            )));
        }
        Ok(n)
    }
}

/// A layer's uncompressed tar stream, read from a [`VerifiedReader`]: its end (the
/// decompressor's) comes only after the whole compressed blob was read and checked, and a
/// decompression error on a corrupt blob is reported as the corruption.
///
/// Read it to its end: a reader that stops early has used bytes the digest never vouched
/// for. [`LayerReader::finish`] reads the rest of the compressed blob without
/// decompressing it.
pub struct LayerReader {
    decoded: Decoded,
}

enum Decoded {
    Zstd(zstd::stream::read::Decoder<'static, BufReader<VerifiedReader>>),
    Gzip(Box<flate2::read::MultiGzDecoder<BufReader<VerifiedReader>>>),
    Plain(BufReader<VerifiedReader>),
}

impl std::fmt::Debug for LayerReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerReader").finish_non_exhaustive()
    }
}

impl LayerReader {
    pub(crate) fn new(blob: VerifiedReader, compression: crate::Compression) -> io::Result<Self> {
        let raw = BufReader::with_capacity(CHUNK, blob);
        let decoded = match compression {
            crate::Compression::Zstd => {
                Decoded::Zstd(zstd::stream::read::Decoder::with_buffer(raw)?)
            }
            crate::Compression::Gzip => {
                Decoded::Gzip(Box::new(flate2::read::MultiGzDecoder::new(raw)))
            }
            crate::Compression::None => Decoded::Plain(raw),
        };
        Ok(Self { decoded })
    }

    fn raw(&mut self) -> &mut VerifiedReader {
        match &mut self.decoded {
            Decoded::Zstd(d) => d.get_mut().get_mut(),
            Decoded::Gzip(d) => d.get_mut().get_mut(),
            Decoded::Plain(r) => r.get_mut(),
        }
    }

    /// Reads the rest of the compressed blob (bytes the decompressor already buffered were
    /// hashed when it read them) and checks its digest.
    pub fn finish(&mut self) -> io::Result<()> {
        self.raw().drain()
    }
}

impl Read for LayerReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match &mut self.decoded {
            Decoded::Zstd(d) => d.read(buf),
            Decoded::Gzip(d) => d.read(buf),
            Decoded::Plain(r) => r.read(buf),
        };
        match result {
            Ok(0) if !buf.is_empty() => self.finish().map(|()| 0),
            Ok(n) => Ok(n),
            // Garbage that fails to decompress is most likely a corrupt blob: say so.
            Err(e) => Err(self.finish().err().unwrap_or(e)),
        }
    }
}

impl Store {
    /// Opens a blob for output: the reader hashes what it yields and fails at the end (or as
    /// soon as the blob is too long) unless the bytes are the blob's. Downloads a blob only
    /// known remotely first, like [`Store::open_blob`]. A blob this store already verified
    /// is not hashed again (its size still is checked).
    pub fn open_blob_verified(&self, digest: &Digest) -> Result<VerifiedReader, StoreError> {
        let file = self.open_blob(digest)?;
        let on_disk = file.metadata()?.len();
        let expected_size = self
            .with_index(|ix| ix.blob_size(digest))?
            .unwrap_or(on_disk);
        let hasher = (!self.verified.contains(digest)).then(Sha256::new);
        let mut reader = VerifiedReader {
            file,
            digest: digest.clone(),
            expected_size,
            hasher,
            read: 0,
            failed: None,
            verified: self.verified.clone(),
        };
        if expected_size == 0 {
            reader.check().map_err(StoreError::from_io)?;
        }
        Ok(reader)
    }

    /// Hashes a whole stored blob; a [`StoreError::CorruptBlob`] if it is not what its digest says.
    /// Each blob is checked at most once per open store.
    pub fn check_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        if self.verified.contains(digest) {
            return Ok(());
        }
        let reader = self.open_blob_verified(digest)?;
        reader.finish().map_err(StoreError::from_io)
    }

    /// Copies a blob to a new file `target` (mode 0644, fsynced) and returns its size: hashed
    /// while copied, or copied by the kernel (`copy_file_range`, a reflink where the
    /// filesystem has them) when this store already verified it.
    pub fn copy_blob_verified(&self, digest: &Digest, target: &Path) -> Result<u64, StoreError> {
        use std::os::unix::fs::PermissionsExt;
        let mut source = self.open_blob_verified(digest)?;
        let out =
            if source.hasher.is_none() && source.expected_size == source.file.metadata()?.len() {
                drop(source);
                fs_err::copy(self.blob_path(digest), target)?;
                fs_err::set_permissions(target, std::fs::Permissions::from_mode(0o644))?;
                fs_err::File::open(target)?
            } else {
                let mut out = fs_err::File::create(target)?;
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = source.read(&mut buf).map_err(StoreError::from_io)?;
                    if n == 0 {
                        break;
                    }
                    out.write_all(&buf[..n])?;
                }
                out.set_permissions(std::fs::Permissions::from_mode(0o644))?;
                out
            };
        out.sync_all()?;
        Ok(out.metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::{EntryKind, EntryMeta, MergedTree, TarWriter};

    fn writable(path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    fn flip_byte(path: &Path, at: impl FnOnce(usize) -> usize) {
        writable(path);
        let mut bytes = std::fs::read(path).unwrap();
        let i = at(bytes.len());
        bytes[i] ^= 0x80;
        std::fs::write(path, bytes).unwrap();
    }

    fn assert_corrupt(err: &dyn std::fmt::Display, digest: &Digest) {
        let text = err.to_string();
        assert!(
            text.contains(&format!("blob {digest} in the store is corrupt")),
            "{text}"
        );
        assert!(text.contains("imgbuild store verify --repair"), "{text}");
    }

    /// A layer of one 300 kB file with text-like (compressible, not constant) bytes, and
    /// `padding` zero bytes after its end-of-archive blocks (as tar's blocking factor adds).
    fn stored_layer(
        store: &Store,
        compression: crate::Compression,
        padding: usize,
    ) -> crate::LayerRecord {
        let mut lw = store.layer_writer(compression).unwrap();
        {
            let mut tar = TarWriter::new(&mut lw);
            let body: Vec<u8> = (0..300_000u32)
                .map(|i| b"abcdefgh"[(i * 7 % 8) as usize] ^ (i / 1000) as u8)
                .collect();
            let mut meta = EntryMeta::new("data", EntryKind::File, 0o644, 0);
            meta.size = body.len() as u64;
            tar.append(&meta, &mut body.as_slice()).unwrap();
            tar.finish().unwrap();
        }
        lw.write_all(&vec![0u8; padding]).unwrap();
        lw.commit(store).unwrap()
    }

    #[test]
    fn a_flipped_byte_fails_at_the_end_naming_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        let blob = {
            let store = Store::open(dir.path()).unwrap();
            let blob = store.put_bytes(&vec![7u8; 100_000]).unwrap();
            let mut good = Vec::new();
            store
                .open_blob_verified(&blob.digest)
                .unwrap()
                .read_to_end(&mut good)
                .unwrap();
            assert_eq!(good.len(), 100_000);
            flip_byte(&store.blob_path(&blob.digest), |_| 0);
            blob
        };
        // A store opened later (the next build) hashes it again.
        let store = Store::open(dir.path()).unwrap();
        let err = store
            .open_blob_verified(&blob.digest)
            .unwrap()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_corrupt(&err, &blob.digest);
        assert!(matches!(
            store.check_blob(&blob.digest),
            Err(StoreError::CorruptBlob { .. })
        ));
    }

    #[test]
    fn a_reader_that_stops_at_the_size_gets_the_error_with_the_last_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Store::open(dir.path())
            .unwrap()
            .put_bytes(&vec![3u8; 10_000])
            .unwrap()
            .digest;
        let store = Store::open(dir.path()).unwrap();
        flip_byte(&store.blob_path(&digest), |n| n - 1);
        let mut r = store.open_blob_verified(&digest).unwrap();
        // What an upload does: take exactly `size` bytes, never asking for the end.
        let mut first = vec![0u8; 9_000];
        r.read_exact(&mut first).unwrap();
        let mut last = vec![0u8; 1_000];
        let err = r.read_exact(&mut last).unwrap_err();
        assert_corrupt(&err, &digest);
        // The error repeats rather than turning into an end.
        assert_corrupt(&r.read(&mut last).unwrap_err(), &digest);
    }

    #[test]
    fn a_longer_blob_fails_before_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let blob = store.put_bytes(b"short").unwrap();
        let path = store.blob_path(&blob.digest);
        writable(&path);
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
    fn a_layer_read_by_a_tar_parser_is_checked_to_its_end() {
        // zstd, and a plain tar whose padding runs past the reader's buffer: the parser stops
        // at the end-of-archive blocks, long before the last byte.
        for (compression, padding) in [
            (crate::Compression::Zstd, 0),
            (crate::Compression::None, 3 * CHUNK),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let layer = stored_layer(&Store::open(dir.path()).unwrap(), compression, padding);
            let store = Store::open(dir.path()).unwrap();
            let tree = MergedTree::build([store.open_layer(&layer.diff_id).unwrap()]).unwrap();
            assert_eq!(tree.get("data").map(|m| m.size), Some(300_000));
            assert!(store.verified.contains(&layer.digest), "{compression:?}");

            // The last byte (after every tar block), then one in the middle of the file data.
            for at in [|n: usize| n - 1, |n: usize| n / 20] {
                let store = Store::open(dir.path()).unwrap();
                flip_byte(&store.blob_path(&layer.digest), at);
                let err =
                    MergedTree::build([store.open_layer(&layer.diff_id).unwrap()]).unwrap_err();
                assert_corrupt(&err, &layer.digest);
                flip_byte(&store.blob_path(&layer.digest), at);
            }
        }
    }

    #[test]
    fn unpacking_a_corrupt_layer_fails_and_leaves_no_directory() {
        let dir = tempfile::tempdir().unwrap();
        let layer = stored_layer(
            &Store::open(dir.path()).unwrap(),
            crate::Compression::None,
            3 * CHUNK,
        );
        let store = Store::open(dir.path()).unwrap();
        flip_byte(&store.blob_path(&layer.digest), |n| n - 1);
        let err = store
            .unpack_layer_with(
                &layer.diff_id,
                "test",
                |r, root| -> Result<(), StoreError> {
                    tar::Archive::new(r).unpack(root)?;
                    Ok(())
                },
            )
            .unwrap_err();
        assert_corrupt(&err, &layer.digest);
        assert!(!store.unpacked_dir(&layer.diff_id, "test").exists());
    }

    #[test]
    fn copying_a_blob_hashes_it_once_per_open_store() {
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest = store.put_bytes(&vec![9u8; 50_000]).unwrap().digest;
        assert!(store.verified.contains(&digest), "hashed as written");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.put_bytes(&vec![9u8; 50_000]).unwrap().digest, digest);
        assert!(
            !store.verified.contains(&digest),
            "a blob already there was not written by this store"
        );
        // Hashed while copied, then copied by the kernel: the same bytes, 0644, both times.
        for name in ["a", "b"] {
            let target = out.path().join(name);
            assert_eq!(store.copy_blob_verified(&digest, &target).unwrap(), 50_000);
            assert!(store.verified.contains(&digest));
            assert_eq!(fs_err::read(&target).unwrap(), vec![9u8; 50_000]);
            let mode = fs_err::metadata(&target).unwrap().permissions();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
                0o644
            );
        }
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        flip_byte(&store.blob_path(&digest), |n| n / 2);
        let err = store
            .copy_blob_verified(&digest, &out.path().join("c"))
            .unwrap_err();
        assert_corrupt(&err, &digest);
    }
}
