//! `recipe.lock`: the exact Debian package set a recipe resolved to.
//!
//! The lock records where the set came from (mirror, suite, components,
//! architecture, variant, requested names, and the signed Release's `Date` and
//! digest) and, per package, what the Debian Repository Format's `Packages` index
//! said about it (`Package`, `Version`, `Architecture`, `Filename`, `Size`,
//! `SHA256`). With a lock, [`super::fetch`] needs no index at all: every `.deb` is
//! fetched by path and checked by hash. Serialization is TOML with packages sorted
//! by name then architecture, so the file is stable under re-resolution.
//!
//! A lock also pins the other inputs of its unit: `[[boot_package]]`, the bootloader
//! packages of disk exports (with the mirror, suite and Release date they came from), and
//! `[[registry_base]]`, a registry base's reference and resolved manifest digest. A unit
//! whose base is not Debian has no `[source]`.
//!
//! A base that resolves from several repositories (`updates`, `security`,
//! `[[from.debian.source]]`) records each of them but the main one as an
//! `[[extra_source]]` (name, uri, suite, components, Release date and digest, keyring
//! digest), and each package that comes from one of them names it in `source`; a
//! package without `source` is from the main `[source]`, so locks of one source read
//! and write as before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cache::is_sha256_hex;
use super::release::Release;
use super::resolve::Resolution;

/// The lock format version written by this code.
pub const LOCK_VERSION: u32 = 1;

/// What a recipe asks of Debian: everything that determines the resolution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DebianRequest {
    /// Mirror base URL, e.g. `http://deb.debian.org/debian`.
    pub mirror: String,
    /// Suite or codename, e.g. `bookworm`.
    pub suite: String,
    /// Components, e.g. `["main"]`.
    pub components: Vec<String>,
    /// Debian architecture, e.g. `amd64`.
    pub architecture: String,
    /// `minbase`, `essential` or `custom`.
    pub variant: String,
    /// Requested packages (relations), in recipe order.
    pub requested: Vec<String>,
}

/// Where the locked set came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockSource {
    /// The request that was resolved.
    #[serde(flatten)]
    pub request: DebianRequest,
    /// `Date` of the signed Release used.
    pub release_date: String,
    /// SHA-256 of the `InRelease` used.
    pub inrelease_sha256: String,
    /// SHA-256 of the keyring that verified it (absent in locks of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring_sha256: Option<String>,
}

/// What a recipe asks of one repository other than the main one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRequest {
    /// `updates`, `security` or the name made from its host; packages name it.
    pub name: String,
    /// Repository base URL.
    pub uri: String,
    /// Suite.
    pub suite: String,
    /// Components.
    pub components: Vec<String>,
}

/// One `[[extra_source]]` of the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockExtraSource {
    /// The repository.
    #[serde(flatten)]
    pub request: SourceRequest,
    /// `Date` of its signed Release.
    pub release_date: String,
    /// SHA-256 of its `InRelease`.
    pub inrelease_sha256: String,
    /// SHA-256 of the keyring that verified it.
    pub keyring_sha256: String,
}

/// One locked `.deb`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64`, `all`, ...
    pub architecture: String,
    /// Lower-case hex SHA-256 of the `.deb`.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path relative to the mirror root (`pool/main/...`).
    pub filename: String,
    /// The `[[extra_source]]` it comes from; absent for the main source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A bootloader package pinned for disk exports: a [`LockedPackage`] plus where it was
/// resolved (the mirror to fetch it from, the suite, the Release `Date` for the snapshot
/// fallback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedBootPackage {
    /// Package name.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// `amd64`, `all`, ...
    pub architecture: String,
    /// Lower-case hex SHA-256 of the `.deb`.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Path relative to the mirror root (`pool/main/...`).
    pub filename: String,
    /// Mirror base URL it is fetched from.
    pub mirror: String,
    /// Suite it was resolved in.
    pub suite: String,
    /// `Date` of the signed Release it was resolved against.
    pub release_date: String,
}

impl LockedBootPackage {
    /// Pins `p`, resolved from `mirror`/`suite` at Release `release_date`.
    pub fn new(p: &LockedPackage, mirror: &str, suite: &str, release_date: &str) -> Self {
        LockedBootPackage {
            name: p.name.clone(),
            version: p.version.clone(),
            architecture: p.architecture.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            filename: p.filename.clone(),
            mirror: mirror.to_owned(),
            suite: suite.to_owned(),
            release_date: release_date.to_owned(),
        }
    }

    /// The package part, as [`super::fetch`] takes it.
    pub fn package(&self) -> LockedPackage {
        LockedPackage {
            name: self.name.clone(),
            version: self.version.clone(),
            architecture: self.architecture.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
            filename: self.filename.clone(),
            source: None,
        }
    }
}

/// A registry base pinned to a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedRegistryBase {
    /// The reference as the recipe writes it.
    pub reference: String,
    /// The manifest digest it resolved to for the recipe's platform (`sha256:...`).
    pub digest: String,
}

/// The whole lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockfile {
    /// Format version ([`LOCK_VERSION`]).
    pub lock_version: u32,
    /// Provenance of the Debian packages; `None` for a unit whose base is not Debian.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<LockSource>,
    /// The other repositories, in recipe order.
    #[serde(
        rename = "extra_source",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub extra_sources: Vec<LockExtraSource>,
    /// The packages, sorted by name then architecture.
    #[serde(rename = "package", default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<LockedPackage>,
    /// The registry base, pinned to its manifest digest.
    #[serde(
        rename = "registry_base",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub registry_bases: Vec<LockedRegistryBase>,
    /// The bootloader packages of disk exports (image locks only), sorted by name.
    #[serde(
        rename = "boot_package",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub boot_packages: Vec<LockedBootPackage>,
}

/// Reading, writing or checking a lock failed.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// I/O on the lock file.
    #[error("cannot access lock file {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The lock file is not valid TOML of the expected shape.
    #[error("lock file {path} is malformed; delete it to re-resolve")]
    Parse {
        /// Path.
        path: PathBuf,
        /// Parser error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A locked package entry is unusable.
    #[error("lock file {path}: package {package}: {reason}; delete the lock to re-resolve")]
    Invalid {
        /// Path.
        path: PathBuf,
        /// Package name.
        package: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Serialization failed (should not happen).
    #[error("cannot serialize lock file")]
    Serialize(#[source] toml::ser::Error),
    /// Unknown format version.
    #[error("lock file {path} has lock_version {found}, this imgbuild understands {LOCK_VERSION}; re-resolve without --locked")]
    Version {
        /// Path.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The lock was made for a different request.
    #[error("the lock is out of date: it was resolved with {field} = {locked}, the recipe now says {recipe}")]
    Mismatch {
        /// Which setting differs.
        field: &'static str,
        /// Locked value.
        locked: String,
        /// Recipe value.
        recipe: String,
    },
}

impl LockError {
    /// True when the user has to fix the lock file (or its directory); only a failed
    /// serialization is imgbuild's fault.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Serialize(_))
    }
}

/// Builds the lock for a resolution of `request` against `release`.
pub fn lock_from_resolution(
    request: &DebianRequest,
    release: &Release,
    resolution: &Resolution,
) -> Lockfile {
    let mut packages: Vec<LockedPackage> = resolution
        .packages
        .iter()
        .map(|p| LockedPackage {
            name: p.name.clone(),
            version: p.version.to_string(),
            architecture: p.architecture.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            filename: p.filename.clone(),
            source: p.source.clone(),
        })
        .collect();
    packages.sort_by(|a, b| {
        (a.name.as_str(), a.architecture.as_str()).cmp(&(b.name.as_str(), b.architecture.as_str()))
    });
    Lockfile {
        lock_version: LOCK_VERSION,
        source: Some(LockSource {
            request: request.clone(),
            release_date: release.date.clone(),
            inrelease_sha256: release.inrelease_sha256.clone(),
            keyring_sha256: None,
        }),
        extra_sources: Vec::new(),
        packages,
        registry_bases: Vec::new(),
        boot_packages: Vec::new(),
    }
}

fn normalized(v: &[String]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.trim().to_owned()).collect();
    v.sort();
    v.dedup();
    v
}

impl Lockfile {
    /// A lock that pins nothing yet.
    pub fn empty() -> Lockfile {
        Lockfile {
            lock_version: LOCK_VERSION,
            source: None,
            extra_sources: Vec::new(),
            packages: Vec::new(),
            registry_bases: Vec::new(),
            boot_packages: Vec::new(),
        }
    }

    /// The pinned bootloader packages named `names`, when every one is pinned and was
    /// resolved from `mirror` (ignoring a trailing `/`) and `suite`.
    pub fn boot_packages_for(
        &self,
        mirror: &str,
        suite: &str,
        names: &[String],
    ) -> Option<Vec<LockedBootPackage>> {
        names
            .iter()
            .map(|n| {
                self.boot_packages
                    .iter()
                    .find(|b| {
                        &b.name == n
                            && b.suite == suite
                            && b.mirror.trim_end_matches('/') == mirror.trim_end_matches('/')
                    })
                    .cloned()
            })
            .collect()
    }

    /// Fails with [`LockError::Mismatch`] unless this lock pins the registry base
    /// `reference` (as the recipe writes it); returns its digest.
    pub fn registry_digest(&self, reference: &str) -> Result<&str, LockError> {
        match self.registry_bases.first() {
            Some(b) if b.reference == reference => Ok(&b.digest),
            Some(b) => Err(LockError::Mismatch {
                field: "image",
                locked: b.reference.clone(),
                recipe: reference.to_owned(),
            }),
            None => Err(LockError::Mismatch {
                field: "image",
                locked: "nothing (no [[registry_base]])".to_owned(),
                recipe: reference.to_owned(),
            }),
        }
    }

    /// Fails with [`LockError::Mismatch`] unless this lock was resolved for `request`
    /// (requested names and components compared as sets; mirror ignoring a trailing `/`).
    pub fn check_matches(&self, request: &DebianRequest) -> Result<(), LockError> {
        let mismatch = |field, locked: String, recipe: String| {
            Err(LockError::Mismatch {
                field,
                locked,
                recipe,
            })
        };
        let Some(source) = &self.source else {
            return mismatch(
                "mirror",
                "nothing (no [source])".to_owned(),
                request.mirror.clone(),
            );
        };
        let l = &source.request;
        if l.mirror.trim_end_matches('/') != request.mirror.trim_end_matches('/') {
            return mismatch("mirror", l.mirror.clone(), request.mirror.clone());
        }
        if l.suite != request.suite {
            return mismatch("suite", l.suite.clone(), request.suite.clone());
        }
        if l.architecture != request.architecture {
            return mismatch(
                "architecture",
                l.architecture.clone(),
                request.architecture.clone(),
            );
        }
        if l.variant != request.variant {
            return mismatch("variant", l.variant.clone(), request.variant.clone());
        }
        if normalized(&l.components) != normalized(&request.components) {
            return mismatch(
                "components",
                format!("{:?}", l.components),
                format!("{:?}", request.components),
            );
        }
        if normalized(&l.requested) != normalized(&request.requested) {
            return mismatch(
                "packages",
                format!("{:?}", normalized(&l.requested)),
                format!("{:?}", normalized(&request.requested)),
            );
        }
        Ok(())
    }

    /// Fails with [`LockError::Mismatch`] unless this lock resolved from exactly the
    /// repositories `extra` (besides the main one; components compared as sets).
    pub fn check_sources(&self, extra: &[SourceRequest]) -> Result<(), LockError> {
        let show = |v: &mut dyn Iterator<Item = &SourceRequest>| {
            v.map(|s| {
                format!(
                    "{} {} {}",
                    s.uri,
                    s.suite,
                    normalized(&s.components).join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
        };
        let same = self.extra_sources.len() == extra.len()
            && self.extra_sources.iter().zip(extra).all(|(l, r)| {
                let l = &l.request;
                l.name == r.name
                    && l.uri.trim_end_matches('/') == r.uri.trim_end_matches('/')
                    && l.suite == r.suite
                    && normalized(&l.components) == normalized(&r.components)
            });
        if same {
            return Ok(());
        }
        let none = |s: String| if s.is_empty() { "none".to_owned() } else { s };
        Err(LockError::Mismatch {
            field: "sources",
            locked: none(show(&mut self.extra_sources.iter().map(|s| &s.request))),
            recipe: none(show(&mut extra.iter())),
        })
    }

    /// The base URL of the repository `p` comes from (`None`: the lock does not list
    /// its source; [`Lockfile::from_toml`] refuses a `source` naming no `[[extra_source]]`).
    pub fn uri_of(&self, p: &LockedPackage) -> Option<&str> {
        match &p.source {
            None => self.source.as_ref().map(|s| s.request.mirror.as_str()),
            Some(name) => self
                .extra_sources
                .iter()
                .find(|s| &s.request.name == name)
                .map(|s| s.request.uri.as_str()),
        }
    }

    /// Serializes to TOML (packages re-sorted, so output is canonical).
    pub fn to_toml(&self) -> Result<String, LockError> {
        let mut me = self.clone();
        me.packages.sort_by(|a, b| {
            (a.name.as_str(), a.architecture.as_str())
                .cmp(&(b.name.as_str(), b.architecture.as_str()))
        });
        me.boot_packages.sort_by(|a, b| {
            (a.name.as_str(), a.architecture.as_str())
                .cmp(&(b.name.as_str(), b.architecture.as_str()))
        });
        let body = toml::to_string(&me).map_err(LockError::Serialize)?;
        Ok(format!(
            "# Generated by imgbuild from the recipe; do not edit.\n{body}"
        ))
    }

    /// Parses TOML text; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Lockfile, LockError> {
        let lock: Lockfile = toml::from_str(text).map_err(|e| LockError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        if lock.lock_version != LOCK_VERSION {
            return Err(LockError::Version {
                path: path.to_owned(),
                found: lock.lock_version,
            });
        }
        let boot = lock.boot_packages.iter().map(LockedBootPackage::package);
        for p in lock.packages.iter().cloned().chain(boot) {
            let invalid = |reason| LockError::Invalid {
                path: path.to_owned(),
                package: p.name.clone(),
                reason,
            };
            if !is_sha256_hex(&p.sha256) {
                return Err(invalid("sha256 is not 64 lower-case hex digits"));
            }
            if p.filename.starts_with('/') || p.filename.split('/').any(|c| c == "..") {
                return Err(invalid(
                    "filename must be a relative path inside the mirror",
                ));
            }
            if p.source.is_some() && lock.uri_of(&p).is_none() {
                return Err(invalid(
                    "its `source` is not an [[extra_source]] of the lock",
                ));
            }
        }
        for b in &lock.registry_bases {
            if !b.digest.strip_prefix("sha256:").is_some_and(is_sha256_hex) {
                return Err(LockError::Invalid {
                    path: path.to_owned(),
                    package: b.reference.clone(),
                    reason: "digest is not sha256: and 64 lower-case hex digits",
                });
            }
        }
        Ok(lock)
    }

    /// Reads a lock file.
    pub fn read(path: &Path) -> Result<Lockfile, LockError> {
        let text = fs_err::read_to_string(path).map_err(|source| LockError::Io {
            path: path.to_owned(),
            source,
        })?;
        Lockfile::from_toml(path, &text)
    }

    /// Writes the lock atomically (temp file + rename in the same directory).
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        let io = |source| LockError::Io {
            path: path.to_owned(),
            source,
        };
        let text = self.to_toml()?;
        let tmp = path.with_extension("lock.tmp");
        fs_err::write(&tmp, text).map_err(io)?;
        fs_err::rename(&tmp, path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> DebianRequest {
        DebianRequest {
            mirror: "http://deb.debian.org/debian".into(),
            suite: "bookworm".into(),
            components: vec!["main".into()],
            architecture: "amd64".into(),
            variant: "minbase".into(),
            requested: vec!["b".into(), "a".into()],
        }
    }

    fn lock() -> Lockfile {
        Lockfile {
            lock_version: LOCK_VERSION,
            source: Some(LockSource {
                request: req(),
                release_date: "Sat, 11 Jul 2026 10:16:37 UTC".into(),
                inrelease_sha256: "00".into(),
                keyring_sha256: None,
            }),
            extra_sources: Vec::new(),
            packages: vec![
                LockedPackage {
                    name: "zlib1g".into(),
                    version: "1:1.2.13.dfsg-1".into(),
                    architecture: "amd64".into(),
                    sha256: "a".repeat(64),
                    size: 1,
                    filename: "pool/z.deb".into(),
                    source: None,
                },
                LockedPackage {
                    name: "bash".into(),
                    version: "5.2.15-2+b7".into(),
                    architecture: "amd64".into(),
                    sha256: "c".repeat(64),
                    size: 2,
                    filename: "pool/b.deb".into(),
                    source: None,
                },
            ],
            registry_bases: Vec::new(),
            boot_packages: Vec::new(),
        }
    }

    #[test]
    fn round_trip_sorted() {
        let l = lock();
        let text = l.to_toml().unwrap();
        assert!(
            text.find("bash").unwrap() < text.find("zlib1g").unwrap(),
            "{text}"
        );
        let back = Lockfile::from_toml(Path::new("x"), &text).unwrap();
        assert_eq!(back.packages[0].name, "bash");
        assert_eq!(back.source, l.source);
        assert_eq!(back.to_toml().unwrap(), text);
    }

    #[test]
    fn check() {
        let l = lock();
        let mut r = req();
        r.requested = vec!["a".into(), "b".into(), "a".into()];
        l.check_matches(&r).unwrap();
        r.suite = "trixie".into();
        let e = l.check_matches(&r).unwrap_err().to_string();
        assert!(
            e.contains("suite = bookworm") && e.contains("trixie"),
            "{e}"
        );
        let mut r = req();
        r.requested.push("c".into());
        assert!(matches!(
            l.check_matches(&r),
            Err(LockError::Mismatch {
                field: "packages",
                ..
            })
        ));
    }

    #[test]
    fn invalid_entries() {
        let text = lock().to_toml().unwrap();
        let bad = text.replace(&"a".repeat(64), "../../etc/passwd");
        assert!(matches!(
            Lockfile::from_toml(Path::new("x"), &bad),
            Err(LockError::Invalid { .. })
        ));
        let bad = text.replace("pool/z.deb", "../z.deb");
        assert!(matches!(
            Lockfile::from_toml(Path::new("x"), &bad),
            Err(LockError::Invalid { .. })
        ));
    }

    #[test]
    fn a_bad_or_stale_lock_is_the_users_to_fix() {
        let text = lock().to_toml().unwrap();
        let errors = [
            Lockfile::from_toml(Path::new("x"), "lock_version = \"").unwrap_err(),
            Lockfile::from_toml(Path::new("x"), &text.replace("pool/z.deb", "../z.deb"))
                .unwrap_err(),
            lock()
                .check_matches(&DebianRequest {
                    suite: "trixie".into(),
                    ..req()
                })
                .unwrap_err(),
        ];
        for e in errors {
            assert!(e.is_user_error(), "{e}");
        }
    }

    #[test]
    fn boot_packages_and_registry_bases_round_trip_and_are_checked() {
        let mut l = lock();
        let p = &l.packages[0].clone();
        l.boot_packages = vec![LockedBootPackage::new(
            p,
            "http://deb.debian.org/debian/",
            "bookworm",
            "Sat, 11 Jul 2026 10:16:37 UTC",
        )];
        let text = l.to_toml().unwrap();
        assert!(text.contains("[[boot_package]]"), "{text}");
        let back = Lockfile::from_toml(Path::new("x"), &text).unwrap();
        assert_eq!(back.boot_packages, l.boot_packages);
        assert_eq!(back.to_toml().unwrap(), text);
        let names = vec!["zlib1g".to_owned()];
        let mirror = "http://deb.debian.org/debian";
        assert_eq!(
            back.boot_packages_for(mirror, "bookworm", &names).unwrap()[0].sha256,
            p.sha256
        );
        assert!(back.boot_packages_for(mirror, "trixie", &names).is_none());
        let more = vec!["zlib1g".to_owned(), "syslinux".to_owned()];
        assert!(back.boot_packages_for(mirror, "bookworm", &more).is_none());

        let mut r = Lockfile::empty();
        r.registry_bases = vec![LockedRegistryBase {
            reference: "localhost:5000/base:1".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
        }];
        let text = r.to_toml().unwrap();
        assert!(!text.contains("[source]"), "{text}");
        let back = Lockfile::from_toml(Path::new("x"), &text).unwrap();
        assert_eq!(back.source, None);
        assert_eq!(
            back.registry_digest("localhost:5000/base:1").unwrap(),
            r.registry_bases[0].digest
        );
        let e = back.registry_digest("localhost:5000/base:2").unwrap_err();
        assert!(e.to_string().contains("out of date"), "{e}");
        assert!(back.check_matches(&req()).is_err());
        let bad = text.replace("sha256:", "sha512:");
        assert!(matches!(
            Lockfile::from_toml(Path::new("x"), &bad),
            Err(LockError::Invalid { .. })
        ));
    }

    #[test]
    fn wrong_version() {
        let text = lock()
            .to_toml()
            .unwrap()
            .replace("lock_version = 1", "lock_version = 9");
        assert!(matches!(
            Lockfile::from_toml(Path::new("x"), &text),
            Err(LockError::Version { found: 9, .. })
        ));
    }

    fn extra(name: &str) -> SourceRequest {
        SourceRequest {
            name: name.into(),
            uri: format!("http://{name}.example/debian"),
            suite: "stable".into(),
            components: vec!["main".into()],
        }
    }

    #[test]
    fn extra_sources_round_trip_and_name_each_package_source() {
        let old_text = lock().to_toml().unwrap();
        assert!(
            !old_text.contains("source =") && !old_text.contains("extra_source"),
            "a lock of one source must read as before:\n{old_text}"
        );
        let mut l = lock();
        l.extra_sources.push(LockExtraSource {
            request: extra("security"),
            release_date: "d".into(),
            inrelease_sha256: "11".into(),
            keyring_sha256: "22".into(),
        });
        l.packages[0].source = Some("security".into());
        let text = l.to_toml().unwrap();
        assert!(text.contains("[[extra_source]]"), "{text}");
        assert!(text.contains("source = \"security\""), "{text}");
        let back = Lockfile::from_toml(Path::new("x"), &text).unwrap();
        assert_eq!(back, {
            let mut sorted = l.clone();
            sorted.packages.reverse();
            sorted
        });
        let zlib = back.packages.iter().find(|p| p.name == "zlib1g").unwrap();
        assert_eq!(back.uri_of(zlib), Some("http://security.example/debian"));
        let bash = back.packages.iter().find(|p| p.name == "bash").unwrap();
        assert_eq!(back.uri_of(bash), Some("http://deb.debian.org/debian"));
        back.check_sources(&[extra("security")]).unwrap();
        let e = back.check_sources(&[]).unwrap_err().to_string();
        assert!(e.contains("sources") && e.contains("none"), "{e}");
        assert!(back.check_sources(&[extra("other")]).is_err());
        lock().check_sources(&[]).unwrap();

        let unknown = text.replace("source = \"security\"", "source = \"nowhere\"");
        let e = Lockfile::from_toml(Path::new("x"), &unknown).unwrap_err();
        assert!(e.to_string().contains("extra_source"), "{e}");
    }
}
