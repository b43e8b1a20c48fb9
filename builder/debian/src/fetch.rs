//! Parallel, hash-checked download of `.deb` files into a [`BlobCache`].
//!
//! Each `.deb` is fetched from `<mirror>/<Filename>` (Debian Repository Format,
//! "Pool" layout) and must match the `Size` and `SHA256` recorded in the signed
//! `Packages` index (or in `recipe.lock`, which copies them). See [`super::cache`]:
//! the cache never holds a partial or wrong blob; already-cached blobs are not fetched.
//!
//! A `.deb` the mirror no longer has (404 or 410) is fetched from a [`Snapshot`] server
//! instead, at the lock's Release date, and checked against the same hash.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::cache::{fetch_verified, BlobCache, FetchVerifiedError};
use super::http::{self, Http, HttpError};
use super::lock::{LockedPackage, Lockfile};

/// Default number of concurrent downloads.
pub const DEFAULT_JOBS: usize = 8;

/// The default snapshot server.
pub const DEFAULT_SNAPSHOT: &str = "https://snapshot.debian.org";

/// Where `.deb`s gone from the mirror are fetched instead: a snapshot.debian.org-style
/// server, `{url}/archive/debian/{YYYYMMDDTHHMMSSZ}/{filename}`, at the Release date of
/// the lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Base URL, e.g. [`DEFAULT_SNAPSHOT`].
    pub url: String,
    /// The lock's Release `Date` (`Sat, 11 Jul 2026 10:16:37 UTC`).
    pub release_date: String,
}

impl Snapshot {
    /// The snapshot timestamp of the Release date, `YYYYMMDDTHHMMSSZ` (UTC).
    pub fn timestamp(&self) -> Option<String> {
        let t = super::release::parse_release_date(&self.release_date)?;
        let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        Some(format!(
            "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
            secs / 3600,
            secs % 3600 / 60,
            secs % 60
        ))
    }

    /// The URL of `filename` (relative to the archive root) on the snapshot server.
    pub fn url_for(&self, filename: &str) -> Option<String> {
        let archive = format!(
            "{}/archive/debian/{}",
            self.url.trim_end_matches('/'),
            self.timestamp()?
        );
        Some(http::join(&archive, filename))
    }
}

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
    /// The mirror no longer has the file and the snapshot server failed too.
    #[error("{package} {version} is gone from the mirror ({mirror_url}) and the snapshot server failed: {source}; set `snapshot` in `[from] debian` to a reachable snapshot.debian.org mirror, or re-resolve the lock with `imgbuild lock --update`")]
    Snapshot {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// The URL the mirror answered 404 or 410 for.
        mirror_url: String,
        /// The snapshot server's error (names the URL).
        #[source]
        source: Box<HttpError>,
    },
    /// The file is gone from the mirror and the lock's Release date cannot name a snapshot.
    #[error("{package} {version} is gone from the mirror ({mirror_url}) and the lock's Release date {release_date:?} names no snapshot; re-resolve the lock with `imgbuild lock --update`")]
    NoSnapshotDate {
        /// Package name.
        package: String,
        /// Version.
        version: String,
        /// The URL the mirror answered 404 or 410 for.
        mirror_url: String,
        /// The lock's Release date.
        release_date: String,
    },
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
            Self::Snapshot { source, .. } => source.is_user_error(),
            Self::BadDigest { .. } | Self::NoSnapshotDate { .. } => true,
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
    snapshot: Option<&Snapshot>,
    p: &LockedPackage,
    cache: &dyn BlobCache,
) -> Result<PathBuf, FetchError> {
    let url = http::join(mirror, &p.filename);
    match fetch_verified(http, &url, &p.sha256, p.size, cache) {
        Err(FetchVerifiedError::Http(e)) if e.is_not_found() => {
            let Some(snapshot) = snapshot else {
                return Err(fetch_error(p, url, FetchVerifiedError::Http(e)));
            };
            let Some(snap_url) = snapshot.url_for(&p.filename) else {
                return Err(FetchError::NoSnapshotDate {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    mirror_url: url,
                    release_date: snapshot.release_date.clone(),
                });
            };
            fetch_verified(http, &snap_url, &p.sha256, p.size, cache).map_err(|e| match e {
                FetchVerifiedError::Http(source) => FetchError::Snapshot {
                    package: p.name.clone(),
                    version: p.version.clone(),
                    mirror_url: url,
                    source: Box::new(source),
                },
                e => fetch_error(p, snap_url.clone(), e),
            })
        }
        r => r.map_err(|e| fetch_error(p, url, e)),
    }
}

fn fetch_error(p: &LockedPackage, url: String, e: FetchVerifiedError) -> FetchError {
    match e {
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
    }
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
    fetch_each(http, &move |_| (mirror, None), pkgs, cache, jobs)
}

/// [`fetch_debs`], fetching what the mirror answers 404 or 410 for from `snapshot`.
pub fn fetch_debs_or_snapshot(
    http: &Http,
    mirror: &str,
    snapshot: Option<&Snapshot>,
    pkgs: &[LockedPackage],
    cache: &dyn BlobCache,
    jobs: usize,
) -> Result<Vec<PathBuf>, FetchError> {
    fetch_each(http, &move |_| (mirror, snapshot), pkgs, cache, jobs)
}

/// Fetches every package of `lock`, each from the repository it names (see
/// [`Lockfile::uri_of`]), as [`fetch_debs`] does. What the main source (and its
/// `-updates` suite, on the same mirror) no longer has comes from `snapshot`; other
/// repositories have no snapshot server.
pub fn fetch_locked(
    http: &Http,
    lock: &Lockfile,
    snapshot: Option<&Snapshot>,
    cache: &dyn BlobCache,
    jobs: usize,
) -> Result<Vec<PathBuf>, FetchError> {
    let main = lock
        .source
        .as_ref()
        .map_or("", |s| s.request.mirror.as_str());
    let source_of = |p: &LockedPackage| match lock.uri_of(p) {
        Some(uri) if uri != main => (uri, None),
        _ => (main, snapshot),
    };
    fetch_each(http, &source_of, &lock.packages, cache, jobs)
}

/// Where a package is fetched from: its repository and the snapshot server, if any.
type SourceOf<'m> = dyn Fn(&LockedPackage) -> (&'m str, Option<&'m Snapshot>) + Sync + 'm;

fn fetch_each<'m>(
    http: &Http,
    source_of: &SourceOf<'m>,
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
                let (mirror, snapshot) = source_of(p);
                let r = fetch_one(http, mirror, snapshot, p, cache);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_urls_use_the_release_date_in_utc() {
        let s = Snapshot {
            url: "https://snapshot.debian.org/".into(),
            release_date: "Sat, 10 Jun 2023 08:55:33 UTC".into(),
        };
        assert_eq!(
            s.url_for("pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb").unwrap(),
            "https://snapshot.debian.org/archive/debian/20230610T085533Z/pool/main/b/bash/bash_5.2.15-2+b2_amd64.deb"
        );
        let leap = Snapshot {
            release_date: "Thu, 29 Feb 2024 23:59:59 +0100".into(),
            ..s.clone()
        };
        assert_eq!(leap.timestamp().unwrap(), "20240229T225959Z");
        let bad = Snapshot {
            release_date: "yesterday".into(),
            ..s
        };
        assert_eq!(bad.url_for("pool/x.deb"), None);
    }
}
