//! imgbuild's own Debian repository client.
//!
//! Turns a recipe's `[from] debian = { suite, variant, ... }` plus the packages of its
//! steps into an exact, locked set of `.deb` files:
//!
//! 1. [`release`]: fetch `dists/<suite>/InRelease` of every source (the main one,
//!    `-updates`, `-security`, extra repositories; [`DebianFrom::apt_sources`]), verify its
//!    OpenPGP signature against that source's keyring, parse its `SHA256` list;
//! 2. [`index`]: fetch each component's `Packages` index, checked against the Release;
//! 3. [`resolve`]: close the requested set under `Pre-Depends`/`Depends`;
//! 4. [`lock`]: record the result as `recipe.lock`;
//! 5. [`fetch`]: download the `.deb`s by hash into a [`cache::BlobCache`];
//! 6. [`deb`]: read a `.deb`'s control fields and data tarball.
//!
//! Downloads are verified before they enter a [`cache::BlobCache`]; [`http`] is a
//! small blocking client.
//!
//! [`control`] (deb822) and [`version`] (Policy §5.6.12 versions, §7 relations)
//! are the shared parsers.
#![forbid(unsafe_code)]

pub mod cache;
pub mod control;
pub mod deb;
pub mod fetch;
pub mod http;
pub mod index;
pub mod lock;
pub mod release;
pub mod resolve;
pub mod version;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use cache::{BlobCache, DirCache};
pub use index::PackageRecord;
pub use lock::{DebianRequest, LockedPackage, Lockfile, SourceRequest};
pub use release::Release;
pub use resolve::{Resolution, Universe, Variant};

/// The default mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Where `security = true` resolves `SUITE-security` from.
pub const SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";

/// The recipe's `[from] debian = { ... }` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianFrom {
    /// Suite or codename (`bookworm`).
    pub suite: String,
    /// `minbase` (default), `essential` or `custom`.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Mirror base URL (default [`DEFAULT_MIRROR`]).
    #[serde(default = "default_mirror")]
    pub mirror: String,
    /// Components (default `["main"]`).
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// OpenPGP keyring (default [`release::DEFAULT_KEYRING`]).
    #[serde(default)]
    pub keyring: Option<PathBuf>,
    /// Debian architecture (default `amd64`).
    #[serde(default = "default_arch")]
    pub architecture: String,
    /// Snapshot server for locked `.deb`s gone from the mirror (default
    /// [`fetch::DEFAULT_SNAPSHOT`]).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// Also resolve from `SUITE-updates` on the same mirror.
    #[serde(default)]
    pub updates: bool,
    /// Also resolve from `SUITE-security` on [`SECURITY_MIRROR`].
    #[serde(default)]
    pub security: bool,
    /// Write the sources as deb822 files (and their keyrings) into the image.
    #[serde(default = "default_apt")]
    pub apt: bool,
    /// More repositories (`[[from.debian.source]]`), each verified with its own keyring.
    #[serde(default, rename = "source")]
    pub sources: Vec<ExtraSource>,
}

/// One `[[from.debian.source]]`: a third-party repository.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraSource {
    /// Repository base URL (`http://` or `https://`).
    pub uri: String,
    /// Suite or codename.
    pub suite: String,
    /// Components (default `["main"]`).
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// The OpenPGP keyring its `InRelease` must be signed with.
    pub keyring: PathBuf,
}

/// One repository a Debian base resolves from, with the keyring that verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// `None` for the main source; `updates`, `security` or a name made from the host.
    pub name: Option<String>,
    /// Repository base URL.
    pub uri: String,
    /// Suite.
    pub suite: String,
    /// Components.
    pub components: Vec<String>,
    /// Keyring on the host.
    pub keyring: PathBuf,
}

impl AptSource {
    /// The lock's description of this source (extra sources only have a name).
    pub fn request(&self) -> SourceRequest {
        SourceRequest {
            name: self.name.clone().unwrap_or_default(),
            uri: self.uri.clone(),
            suite: self.suite.clone(),
            components: self.components.clone(),
        }
    }
}

fn default_variant() -> String {
    "minbase".to_owned()
}
fn default_mirror() -> String {
    DEFAULT_MIRROR.to_owned()
}
fn default_components() -> Vec<String> {
    vec!["main".to_owned()]
}
fn default_arch() -> String {
    "amd64".to_owned()
}
fn default_apt() -> bool {
    true
}

/// A file-name-safe name for a repository: its host, other characters than ASCII
/// letters, digits, `.` and `-` replaced by `-` (`packages.example.com`).
fn name_of(uri: &str) -> String {
    let host = uri
        .split_once("://")
        .map_or(uri, |(_, rest)| rest)
        .split(['/', ':', '@'])
        .next()
        .unwrap_or_default();
    let name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "source".to_owned()
    } else {
        name
    }
}

impl DebianFrom {
    /// The lock-relevant request for this source plus the recipe's packages.
    pub fn request(&self, packages: &[String]) -> DebianRequest {
        DebianRequest {
            mirror: self.mirror.clone(),
            suite: self.suite.clone(),
            components: self.components.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
            requested: packages.to_vec(),
        }
    }

    /// The snapshot server for `.deb`s of a lock resolved at Release `release_date`.
    pub fn snapshot(&self, release_date: &str) -> fetch::Snapshot {
        fetch::Snapshot {
            url: self
                .snapshot
                .clone()
                .unwrap_or_else(|| fetch::DEFAULT_SNAPSHOT.to_owned()),
            release_date: release_date.to_owned(),
        }
    }

    /// The keyring to verify with.
    pub fn keyring_path(&self) -> &Path {
        self.keyring
            .as_deref()
            .unwrap_or(Path::new(release::DEFAULT_KEYRING))
    }

    /// Every repository to resolve from: the main one, `SUITE-updates`, `SUITE-security`,
    /// then the extra sources in recipe order, each named uniquely (the host, then
    /// `-2`, `-3`... when taken).
    pub fn apt_sources(&self) -> Vec<AptSource> {
        let main_keyring = self.keyring_path().to_owned();
        let mut out = vec![AptSource {
            name: None,
            uri: self.mirror.clone(),
            suite: self.suite.clone(),
            components: self.components.clone(),
            keyring: main_keyring.clone(),
        }];
        let mut taken: Vec<String> = vec!["debian".into(), "updates".into(), "security".into()];
        if self.updates {
            out.push(AptSource {
                name: Some("updates".into()),
                uri: self.mirror.clone(),
                suite: format!("{}-updates", self.suite),
                components: self.components.clone(),
                keyring: main_keyring.clone(),
            });
        }
        if self.security {
            out.push(AptSource {
                name: Some("security".into()),
                uri: SECURITY_MIRROR.into(),
                suite: format!("{}-security", self.suite),
                components: self.components.clone(),
                keyring: main_keyring,
            });
        }
        for s in &self.sources {
            let base = name_of(&s.uri);
            let mut name = base.clone();
            let mut n = 1;
            while taken.contains(&name) {
                n += 1;
                name = format!("{base}-{n}");
            }
            taken.push(name.clone());
            out.push(AptSource {
                name: Some(name),
                uri: s.uri.clone(),
                suite: s.suite.clone(),
                components: s.components.clone(),
                keyring: s.keyring.clone(),
            });
        }
        out
    }

    /// The lock's description of every source but the main one.
    pub fn extra_requests(&self) -> Vec<SourceRequest> {
        self.apt_sources()
            .iter()
            .skip(1)
            .map(AptSource::request)
            .collect()
    }
}

/// Any failure of [`resolve_from_mirror`].
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// Release fetch/verification.
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// Index fetch/parse.
    #[error(transparent)]
    Index(#[from] index::IndexError),
    /// Resolution.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
}

impl DebianError {
    /// True when the user has to fix something (see each error's `is_user_error`).
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Release(e) => e.is_user_error(),
            Self::Index(e) => e.is_user_error(),
            Self::Resolve(e) => e.is_user_error(),
        }
    }
}

/// Everything one resolution produced.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The verified Release of the main source.
    pub release: Release,
    /// The package set.
    pub resolution: Resolution,
    /// The lock for it.
    pub lock: Lockfile,
}

/// Fetches and verifies the Release of every source (each with its keyring), fetches
/// the indices of all their components, resolves `packages` on top of the variant's base
/// set over all of them together (the highest version wins, as with apt) and builds the
/// lock, which names the source of every package that is not from the main one.
pub fn resolve_from_mirror(
    http: &http::Http,
    from: &DebianFrom,
    packages: &[String],
    cache: &dyn BlobCache,
    opts: &release::ReleaseOptions,
) -> Result<Resolved, DebianError> {
    let variant: Variant = from.variant.parse()?;
    let mut pkgs = Vec::new();
    let mut releases = Vec::new();
    for src in from.apt_sources() {
        let release = release::fetch_release(http, &src.uri, &src.suite, &src.keyring, opts)?;
        for c in &src.components {
            let mut records = index::fetch_packages(
                http,
                &src.uri,
                &src.suite,
                &release,
                c,
                &from.architecture,
                cache,
            )?;
            for r in &mut records {
                r.source.clone_from(&src.name);
            }
            pkgs.extend(records);
        }
        let keyring_sha256 = cache::sha256_file(&src.keyring).map_err(|source| {
            release::ReleaseError::KeyringRead {
                path: src.keyring.clone(),
                source,
            }
        })?;
        releases.push((src, release, keyring_sha256));
    }
    let origin = releases
        .iter()
        .map(|(s, _, _)| format!("{} {}", s.suite, s.components.join(" ")))
        .collect::<Vec<_>>()
        .join(", ");
    let origin = format!("{origin} {}", from.architecture);
    let universe = Universe::new(pkgs, &from.architecture, &origin);
    let resolution = resolve::resolve(&universe, variant, packages)?;
    let mut releases = releases.into_iter();
    let Some((_, release, main_keyring)) = releases.next() else {
        unreachable!("apt_sources always holds the main source")
    };
    let mut lock = lock::lock_from_resolution(&from.request(packages), &release, &resolution);
    if let Some(source) = lock.source.as_mut() {
        source.keyring_sha256 = Some(main_keyring);
    }
    lock.extra_sources = releases
        .map(|(src, r, keyring_sha256)| lock::LockExtraSource {
            request: src.request(),
            release_date: r.date.clone(),
            inrelease_sha256: r.inrelease_sha256.clone(),
            keyring_sha256,
        })
        .collect();
    Ok(Resolved {
        release,
        resolution,
        lock,
    })
}
