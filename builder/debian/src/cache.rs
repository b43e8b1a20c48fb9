//! The blob cache: downloaded files kept by SHA-256.
//!
//! Everything fetched from the archive (`Packages` indices, `.deb`s) is verified
//! against a digest from the signed Release chain before it enters a [`BlobCache`],
//! so a cache hit needs no re-download and no re-hash. Downloads are staged in
//! [`BlobCache::staging_dir`] and moved in atomically.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::http::{Http, HttpError};

/// A content-addressed store of downloaded files, keyed by lower-case hex SHA-256.
/// The lead backs this with the imgbuild store; [`DirCache`] is a plain directory.
pub trait BlobCache: Send + Sync {
    /// Path of the blob with this digest, if present.
    fn get(&self, sha256: &str) -> Option<PathBuf>;
    /// Moves (or copies) the verified file at `from` into the cache under `sha256`;
    /// returns its final path. Must be atomic: a reader never sees a partial blob.
    fn put(&self, sha256: &str, from: &Path) -> std::io::Result<PathBuf>;
    /// A directory on the same filesystem as the cache for in-progress downloads.
    fn staging_dir(&self) -> PathBuf;
}

/// A [`BlobCache`] that keeps blobs as `<root>/<sha256>`.
#[derive(Debug, Clone)]
pub struct DirCache {
    root: PathBuf,
}

impl DirCache {
    /// Creates `root` (and `root/.tmp`) if needed.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<DirCache> {
        let root = root.into();
        fs_err::create_dir_all(root.join(".tmp"))?;
        Ok(DirCache { root })
    }
}

impl BlobCache for DirCache {
    fn get(&self, sha256: &str) -> Option<PathBuf> {
        let p = self.root.join(sha256);
        p.is_file().then_some(p)
    }

    fn put(&self, sha256: &str, from: &Path) -> std::io::Result<PathBuf> {
        let dest = self.root.join(sha256);
        fs_err::rename(from, &dest)?;
        Ok(dest)
    }

    fn staging_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }
}

/// Downloads `url` unless the cache already has `expected_sha256`; verifies size and SHA-256 and stores it in `cache`.
pub(crate) fn fetch_verified(
    http: &Http,
    url: &str,
    expected_sha256: &str,
    expected_size: u64,
    cache: &dyn BlobCache,
) -> Result<PathBuf, FetchVerifiedError> {
    // The digest becomes a file name: never let a malformed one escape the cache.
    if !is_sha256_hex(expected_sha256) {
        return Err(FetchVerifiedError::BadDigest);
    }
    // A content-addressed cache only holds verified blobs (see `BlobCache::put`).
    if let Some(p) = cache.get(expected_sha256) {
        return Ok(p);
    }
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = cache.staging_dir().join(format!(
        "{expected_sha256}.part.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let got = http
        .get_to_file(url, &tmp, expected_size.saturating_add(1))
        .inspect_err(|_| {
            let _ = fs_err::remove_file(&tmp);
        })
        .map_err(FetchVerifiedError::Http)?;
    if got.sha256 != expected_sha256 || got.size != expected_size {
        let _ = fs_err::remove_file(&tmp);
        return Err(FetchVerifiedError::Mismatch {
            found: got.sha256,
            found_size: got.size,
        });
    }
    cache
        .put(expected_sha256, &tmp)
        .map_err(|source| FetchVerifiedError::Cache {
            path: tmp.clone(),
            source,
        })
}

/// Internal error of [`fetch_verified`], mapped by callers to their own error type.
#[derive(Debug)]
pub(crate) enum FetchVerifiedError {
    BadDigest,
    Http(HttpError),
    Mismatch {
        found: String,
        found_size: u64,
    },
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether `s` is a lower-case hex SHA-256 digest.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = fs_err::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_cache() {
        let d = tempfile::tempdir().unwrap();
        let c = DirCache::new(d.path()).unwrap();
        assert!(c.get("ab").is_none());
        let f = c.staging_dir().join("x");
        fs_err::write(&f, b"hi").unwrap();
        let p = c.put("ab", &f).unwrap();
        assert_eq!(c.get("ab"), Some(p));
    }
}
