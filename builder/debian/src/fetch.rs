//! Parallel, hash-checked download of `.deb` files into a [`BlobCache`].
//!
//! Each `.deb` is fetched from `<mirror>/<Filename>` (Debian Repository Format,
//! "Pool" layout) and must match the `Size` and `SHA256` recorded in the signed
//! `Packages` index (or in `recipe.lock`, which copies them). See [`super::cache`]:
//! the cache never holds a partial or wrong blob; already-cached blobs are not fetched.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::cache::{fetch_verified, BlobCache, FetchVerifiedError};
use super::http::{self, Http, HttpError};
use super::lock::{LockedPackage, Lockfile};

/// Default number of concurrent downloads.
pub const DEFAULT_JOBS: usize = 8;

/// Downloading a `.deb` failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The HTTP request failed.
    #[error("downloading {package} {version} failed")]
    Download {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// The HTTP error (names the URL).
        #[source]
        source: HttpError,
    },
    /// The bytes do not match the index/lock.
    #[error("{}", .0)]
    HashMismatch(Box<HashMismatch>),
    /// The index or lock gives a malformed SHA-256.
    #[error("{package} {version}: {digest:?} is not a SHA-256 digest; the lock file is corrupt, delete it to re-resolve")]
    BadDigest {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// The malformed digest.
        digest: String,
    },
    /// Moving the verified file into the cache failed.
    #[error("{package}: storing {path} in the blob cache failed: {source}")]
    Cache {
        /// Package name.
        package: String,
        /// The staged file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl FetchError {
    /// True when the user has to fix something (a corrupt or stale lock); an
    /// unreachable or corrupt mirror is not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Download { source, .. } => source.is_user_error(),
            Self::BadDigest { .. } => true,
            Self::HashMismatch(_) | Self::Cache { .. } => false,
        }
    }
}

/// Details of [`FetchError::HashMismatch`].
#[derive(Debug, thiserror::Error)]
#[error("{package} {version}: hash mismatch for {url}: expected sha256 {expected} ({expected_size} bytes), found sha256 {found} ({found_size} bytes); the mirror is corrupt or tampered with, or the lock is stale")]
pub struct HashMismatch {
    /// Package name.
    pub package: String,
    /// Version.
    pub version: String,
    /// URL.
    pub url: String,
    /// Expected digest.
    pub expected: String,
    /// Found digest.
    pub found: String,
    /// Expected size.
    pub expected_size: u64,
    /// Found size.
    pub found_size: u64,
}

fn fetch_one(
    http: &Http,
    mirror: &str,
    p: &LockedPackage,
    cache: &dyn BlobCache,
) -> Result<PathBuf, FetchError> {
    let url = http::join(mirror, &p.filename);
    fetch_verified(http, &url, &p.sha256, p.size, cache).map_err(|e| match e {
        FetchVerifiedError::BadDigest => FetchError::BadDigest {
            package: p.name.clone(),
            version: p.version.clone(),
            digest: p.sha256.clone(),
        },
        FetchVerifiedError::Http(source) => FetchError::Download {
            package: p.name.clone(),
            version: p.version.clone(),
            source,
        },
        FetchVerifiedError::Mismatch { found, found_size } => {
            FetchError::HashMismatch(Box::new(HashMismatch {
                package: p.name.clone(),
                version: p.version.clone(),
                url,
                expected: p.sha256.clone(),
                found,
                expected_size: p.size,
                found_size,
            }))
        }
        FetchVerifiedError::Cache { path, source } => FetchError::Cache {
            package: p.name.clone(),
            path,
            source,
        },
    })
}

/// Fetches every package (at most `jobs` at once) and returns their cache paths in
/// the order of `pkgs`. On failure, all downloads still finish and the error of the
/// first failing package (in `pkgs` order) is returned.
pub fn fetch_debs(
    http: &Http,
    mirror: &str,
    pkgs: &[LockedPackage],
    cache: &dyn BlobCache,
    jobs: usize,
) -> Result<Vec<PathBuf>, FetchError> {
    fetch_each(http, &|_| mirror, pkgs, cache, jobs)
}

/// Fetches every package of `lock`, each from the repository it names (see
/// [`Lockfile::uri_of`]), as [`fetch_debs`] does.
pub fn fetch_locked(
    http: &Http,
    lock: &Lockfile,
    cache: &dyn BlobCache,
    jobs: usize,
) -> Result<Vec<PathBuf>, FetchError> {
    let mirror = |p: &LockedPackage| {
        lock.uri_of(p)
            .unwrap_or(lock.source.request.mirror.as_str())
    };
    fetch_each(http, &mirror, &lock.packages, cache, jobs)
}

fn fetch_each<'m>(
    http: &Http,
    mirror_of: &(dyn Fn(&LockedPackage) -> &'m str + Sync),
    pkgs: &[LockedPackage],
    cache: &dyn BlobCache,
    jobs: usize,
) -> Result<Vec<PathBuf>, FetchError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PathBuf, FetchError>>>> =
        Mutex::new((0..pkgs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, pkgs.len().max(1)) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(p) = pkgs.get(i) else { break };
                let r = fetch_one(http, mirror_of(p), p, cache);
                if let Ok(mut guard) = results.lock() {
                    guard[i] = Some(r);
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results
        .into_iter()
        .zip(pkgs)
        .map(|(r, p)| {
            r.unwrap_or_else(|| {
                Err(FetchError::Cache {
                    package: p.name.clone(),
                    path: PathBuf::new(),
                    source: std::io::Error::other("download worker panicked"),
                })
            })
        })
        .collect()
}
