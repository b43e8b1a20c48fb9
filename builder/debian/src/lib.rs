//! imgbuild's own Debian repository client.
//!
//! Turns a recipe's `[from] debian = { suite, variant, ... }` plus the packages of its
//! steps into an exact, locked set of `.deb` files:
//!
//! 1. [`release`]: fetch `dists/<suite>/InRelease`, verify its OpenPGP signature
//!    against a keyring, parse its `SHA256` list;
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
pub use lock::{DebianRequest, LockedPackage, Lockfile};
pub use release::Release;
pub use resolve::{Resolution, Universe, Variant};

/// The default mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

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
    /// The verified Release.
    pub release: Release,
    /// The package set.
    pub resolution: Resolution,
    /// The lock for it.
    pub lock: Lockfile,
}

/// Fetches and verifies the Release, fetches the indices of all components, resolves
/// `packages` on top of the variant's base set and builds the lock.
pub fn resolve_from_mirror(
    http: &http::Http,
    from: &DebianFrom,
    packages: &[String],
    cache: &dyn BlobCache,
    opts: &release::ReleaseOptions,
) -> Result<Resolved, DebianError> {
    let variant: Variant = from.variant.parse()?;
    let release =
        release::fetch_release(http, &from.mirror, &from.suite, from.keyring_path(), opts)?;
    let mut pkgs = Vec::new();
    for c in &from.components {
        pkgs.extend(index::fetch_packages(
            http,
            &from.mirror,
            &from.suite,
            &release,
            c,
            &from.architecture,
            cache,
        )?);
    }
    let origin = format!(
        "{} {} {}",
        from.suite,
        from.components.join(" "),
        from.architecture
    );
    let universe = Universe::new(pkgs, &from.architecture, &origin);
    let resolution = resolve::resolve(&universe, variant, packages)?;
    let lock = lock::lock_from_resolution(&from.request(packages), &release, &resolution);
    Ok(Resolved {
        release,
        resolution,
        lock,
    })
}
