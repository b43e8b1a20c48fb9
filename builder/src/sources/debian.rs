//! Debian packages as build inputs: the lock beside the recipe, `.deb`s fetched into the
//! store by hash, and the package set split into the base and each `packages` step.
//!
//! With a lock that matches the recipe, no index is read: every `.deb` is fetched by its
//! locked path and checked against its locked sha256, and the split is computed from the
//! packages' own control fields, so the result is the same on any machine.

use super::SourceError;
use crate::debian::{
    self, fetch, http::Http, lock::LockError, release::ReleaseOptions, BlobCache, DebianFrom,
    LockedPackage, Lockfile, Universe, Variant,
};
use imgbuild_store::{Bucket, Digest, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How the build treats the lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LockMode {
    /// Use the lock when it matches the recipe; otherwise resolve and rewrite it.
    #[default]
    Update,
    /// Fail unless the lock exists and matches the recipe (for CI).
    Locked,
    /// Resolve again from the mirror and rewrite the lock even if it matches.
    Refresh,
    /// Use the lock only if it matches and only `.deb`s already in the store; fetch and
    /// write nothing (for plans that must leave everything as they found it).
    Offline,
}

/// The resolved package sets of a recipe.
#[derive(Debug, Clone)]
pub struct PackageSets {
    /// Packages of the base (the variant's set).
    pub base: Vec<LockedPackage>,
    /// Packages each `packages` step adds, by step number.
    pub steps: BTreeMap<usize, Vec<LockedPackage>>,
    /// Where each `.deb` is in the store, by sha256.
    pub debs: BTreeMap<String, PathBuf>,
    /// The lock file and whether this build wrote it.
    pub lock_path: PathBuf,
    /// True when the lock was (re)written by this build.
    pub lock_written: bool,
    /// Packages with `Essential: yes`, installed first.
    pub essential: BTreeSet<String>,
    /// The apt configuration the base layer gets (empty with `apt = false`).
    pub apt_files: Vec<AptFile>,
}

/// One file of the image's apt configuration: a deb822 `.sources` file or a keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptFile {
    /// Path in the image, relative (`etc/apt/sources.list.d/debian.sources`).
    pub path: String,
    /// Its bytes.
    pub content: Vec<u8>,
}

/// The keyring Debian's own images name in `Signed-By` (from `debian-archive-keyring`,
/// which `apt` depends on).
const IMAGE_DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Where a keyring copied from the host goes in the image: `.asc` stays armored (apt
/// reads `Signed-By` files by their extension).
fn image_keyring(name: &str, host: &Path) -> String {
    let ext = if host.extension().is_some_and(|e| e == "asc") {
        "asc"
    } else {
        "gpg"
    };
    format!("etc/apt/keyrings/{name}.{ext}")
}

fn stanza(uri: &str, suites: &[String], components: &[String], signed_by: &str) -> String {
    format!(
        "Types: deb\nURIs: {uri}\nSuites: {}\nComponents: {}\nSigned-By: {signed_by}\n",
        suites.join(" "),
        components.join(" ")
    )
}

/// The image's apt configuration for `from` (nothing with `apt = false`): Debian's own
/// repositories in `/etc/apt/sources.list.d/debian.sources` (the main suite, `-updates`
/// and `-security`), each extra source in `NAME.sources`, all in deb822 with `Signed-By`.
/// The main keyring is Debian's in the image unless the recipe names one; every other
/// keyring is copied from the host to `/etc/apt/keyrings/NAME.gpg` (or `.asc`).
pub(crate) fn apt_files(from: &DebianFrom) -> Result<Vec<AptFile>, SourceError> {
    if !from.apt {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    let main_signed_by = match &from.keyring {
        None => IMAGE_DEBIAN_KEYRING.to_owned(),
        Some(host) => {
            let path = image_keyring("debian", host);
            files.push(AptFile {
                path: path.clone(),
                content: fs_err::read(host)?,
            });
            format!("/{path}")
        }
    };
    let sources = from.apt_sources();
    let mut main_suites = vec![from.suite.clone()];
    let mut debian = String::new();
    for s in &sources[1..] {
        match s.name.as_deref() {
            Some("updates") => main_suites.push(s.suite.clone()),
            Some("security") => {
                debian.push('\n');
                debian.push_str(&stanza(
                    &s.uri,
                    std::slice::from_ref(&s.suite),
                    &s.components,
                    &main_signed_by,
                ));
            }
            _ => {}
        }
    }
    debian.insert_str(
        0,
        &stanza(
            &from.mirror,
            &main_suites,
            &from.components,
            &main_signed_by,
        ),
    );
    files.push(AptFile {
        path: "etc/apt/sources.list.d/debian.sources".into(),
        content: debian.into_bytes(),
    });
    // The extra sources come after `updates` and `security` (see `apt_sources`).
    let extras = sources.len() - from.sources.len();
    for s in &sources[extras..] {
        let name = s.name.as_deref().unwrap_or("source");
        let keyring = image_keyring(name, &s.keyring);
        files.push(AptFile {
            path: keyring.clone(),
            content: fs_err::read(&s.keyring)?,
        });
        files.push(AptFile {
            path: format!("etc/apt/sources.list.d/{name}.sources"),
            content: stanza(
                &s.uri,
                std::slice::from_ref(&s.suite),
                &s.components,
                &format!("/{keyring}"),
            )
            .into_bytes(),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// The store as a [`BlobCache`] (for packages and bootloaders): downloads become blobs
/// named by their SHA-256, staged in the store's `tmp` bucket.
pub(crate) struct StoreCache<'s>(pub &'s Store);

impl BlobCache for StoreCache<'_> {
    fn get(&self, sha256: &str) -> Option<PathBuf> {
        let digest = Digest::from_hex(sha256).ok()?;
        self.0
            .has_blob(&digest)
            .ok()?
            .then(|| self.0.blob_path(&digest))
    }

    fn put(&self, sha256: &str, from: &Path) -> std::io::Result<PathBuf> {
        let digest = Digest::from_hex(sha256).map_err(std::io::Error::other)?;
        // Staged in the store's own tmp bucket: renamed into place, not copied.
        self.0
            .adopt_verified(from, &digest)
            .map_err(std::io::Error::other)?;
        Ok(self.0.blob_path(&digest))
    }

    fn staging_dir(&self) -> PathBuf {
        self.0.bucket(Bucket::Tmp)
    }
}

/// The lock file of a recipe: `<recipe stem>.lock` beside it.
pub fn lock_path(recipe: &Path) -> PathBuf {
    recipe.with_extension("lock")
}

/// Resolves (or reads from the lock at `lock_path`) and fetches every package a unit of
/// `recipe_path` needs.
pub(crate) fn prepare(
    store: &Store,
    recipe_path: &Path,
    lock_path: &Path,
    from: &DebianFrom,
    steps: &[(usize, Vec<String>)],
    mode: LockMode,
) -> Result<PackageSets, SourceError> {
    let all_names: Vec<String> = steps
        .iter()
        .flat_map(|(_, names)| names.iter().cloned())
        .collect();
    let request = from.request(&all_names);
    let lock_path = lock_path.to_owned();
    let cache = StoreCache(store);
    let http = Http::new();
    let existing = if lock_path.exists() {
        Some(Lockfile::read(&lock_path).map_err(lock_err)?)
    } else {
        None
    };
    let kept_boot = existing
        .as_ref()
        .map(|l| l.boot_packages.clone())
        .unwrap_or_default();
    let extra = from.extra_requests();
    let matches = |l: &Lockfile| {
        l.check_matches(&request)
            .and_then(|()| l.check_sources(&extra))
    };
    let matching = existing.filter(|l| matches(l).is_ok());
    let (lock, lock_written) = match (matching, mode) {
        (Some(lock), LockMode::Update | LockMode::Locked | LockMode::Offline) => (lock, false),
        (None, LockMode::Offline) => {
            return Err(SourceError::NotLocal {
                what: format!(
                    "{} is missing or does not match the recipe; `imgbuild lock {}` writes it",
                    lock_path.display(),
                    recipe_path.display()
                ),
            })
        }
        (None, LockMode::Locked) => {
            let why = match Lockfile::read(&lock_path) {
                Ok(old) => matches(&old)
                    .err()
                    .map_or_else(String::new, |e| e.to_string()),
                Err(_) if !lock_path.exists() => "the lock file does not exist".into(),
                Err(e) => e.to_string(),
            };
            let help = format!(
                "run `imgbuild lock {}` (or build without --locked) and commit {}",
                recipe_path.display(),
                lock_path.display()
            );
            return Err(SourceError::Locked {
                path: lock_path,
                message: why,
                help,
            });
        }
        _ => {
            let resolved = debian::resolve_from_mirror(
                &http,
                from,
                &all_names,
                &cache,
                &ReleaseOptions::default(),
            )
            .map_err(SourceError::from)?;
            let mut lock = resolved.lock;
            // The bootloaders are checked against the recipe when a disk is exported.
            lock.boot_packages = kept_boot;
            lock.write(&lock_path).map_err(lock_err)?;
            (lock, true)
        }
    };
    if mode == LockMode::Offline {
        let missing = lock
            .packages
            .iter()
            .filter(|p| cache.get(&p.sha256).is_none())
            .count();
        if missing > 0 {
            return Err(SourceError::NotLocal {
                what: format!(
                    "{missing} of the {} packages in {} are not in the store yet (a build fetches them)",
                    lock.packages.len(),
                    lock_path.display()
                ),
            });
        }
    }
    let source = lock
        .source
        .as_ref()
        .ok_or(SourceError::Internal("a matching lock has a [source]"))?;
    let snapshot = from.snapshot(&source.release_date);
    let paths = fetch::fetch_locked(&http, &lock, Some(&snapshot), &cache, fetch::DEFAULT_JOBS)
        .map_err(SourceError::from)?;
    let debs: BTreeMap<String, PathBuf> = lock
        .packages
        .iter()
        .map(|p| p.sha256.clone())
        .zip(paths)
        .collect();
    let (universe, essential) = universe_from_debs(&lock, &debs, &from.architecture)?;
    let variant: Variant = from.variant.parse().map_err(SourceError::from)?;
    let by_name: BTreeMap<&str, &LockedPackage> =
        lock.packages.iter().map(|p| (p.name.as_str(), p)).collect();
    let resolve = |names: &[String]| -> Result<BTreeSet<String>, SourceError> {
        let r = debian::resolve::resolve(&universe, variant, names).map_err(SourceError::from)?;
        Ok(r.packages.into_iter().map(|p| p.name).collect())
    };
    let mut installed = resolve(&[])?;
    let pick = |names: &BTreeSet<String>| -> Vec<LockedPackage> {
        names
            .iter()
            .filter_map(|n| by_name.get(n.as_str()).map(|p| (*p).clone()))
            .collect()
    };
    let base = pick(&installed);
    let mut step_sets = BTreeMap::new();
    let mut asked = Vec::new();
    for (number, names) in steps {
        asked.extend(names.iter().cloned());
        let now = resolve(&asked)?;
        let added: BTreeSet<String> = now.difference(&installed).cloned().collect();
        step_sets.insert(*number, pick(&added));
        installed.extend(added);
    }
    Ok(PackageSets {
        base,
        steps: step_sets,
        debs,
        lock_path,
        lock_written,
        essential,
        apt_files: apt_files(from)?,
    })
}

fn lock_err(e: LockError) -> SourceError {
    SourceError::Lock(e)
}

/// A resolver universe made of exactly the locked packages, from their own control fields.
fn universe_from_debs(
    lock: &Lockfile,
    debs: &BTreeMap<String, PathBuf>,
    arch: &str,
) -> Result<(Universe, BTreeSet<String>), SourceError> {
    const FIELDS: [&str; 10] = [
        "Version",
        "Architecture",
        "Multi-Arch",
        "Essential",
        "Priority",
        "Pre-Depends",
        "Depends",
        "Provides",
        "Conflicts",
        "Breaks",
    ];
    let mut text = String::new();
    let mut essential = BTreeSet::new();
    for p in &lock.packages {
        let path = &debs[&p.sha256];
        let deb = debian::deb::Deb::open(path).map_err(SourceError::from)?;
        let control = deb.control();
        text.push_str(&format!("Package: {}\n", p.name));
        for field in FIELDS {
            if let Some(v) = control.get(field) {
                text.push_str(&format!("{field}: {}\n", v.replace('\n', " ")));
            }
        }
        if control.get("Essential") == Some("yes") {
            essential.insert(p.name.clone());
        }
        text.push_str(&format!(
            "Filename: {}\nSize: {}\nSHA256: {}\n\n",
            p.filename, p.size, p.sha256
        ));
    }
    let records =
        debian::index::parse_packages("recipe.lock", "main", &text).map_err(SourceError::from)?;
    Ok((Universe::new(records, arch, "the lock"), essential))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_files_name_each_source_and_copy_its_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let main_key = dir.path().join("main.gpg");
        let extra_key = dir.path().join("extra.asc");
        fs_err::write(&main_key, b"main key").unwrap();
        fs_err::write(&extra_key, b"extra key").unwrap();
        let mut from = DebianFrom {
            suite: "bookworm".into(),
            variant: "minbase".into(),
            mirror: "http://mirror.example/debian".into(),
            components: vec!["main".into(), "contrib".into()],
            keyring: Some(main_key),
            architecture: "amd64".into(),
            updates: false,
            security: true,
            apt: true,
            snapshot: None,
            sources: vec![crate::debian::ExtraSource {
                uri: "https://pkgs.example.com/apt".into(),
                suite: "stable".into(),
                components: vec!["main".into()],
                keyring: extra_key,
            }],
        };
        let files = apt_files(&from).unwrap();
        let by_path: BTreeMap<&str, &str> = files
            .iter()
            .map(|f| (f.path.as_str(), std::str::from_utf8(&f.content).unwrap()))
            .collect();
        assert_eq!(
            by_path.keys().copied().collect::<Vec<_>>(),
            [
                "etc/apt/keyrings/debian.gpg",
                "etc/apt/keyrings/pkgs.example.com.asc",
                "etc/apt/sources.list.d/debian.sources",
                "etc/apt/sources.list.d/pkgs.example.com.sources",
            ]
        );
        assert_eq!(by_path["etc/apt/keyrings/debian.gpg"], "main key");
        assert_eq!(
            by_path["etc/apt/keyrings/pkgs.example.com.asc"],
            "extra key"
        );
        assert_eq!(
            by_path["etc/apt/sources.list.d/debian.sources"],
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main contrib\nSigned-By: /etc/apt/keyrings/debian.gpg\n\n\
             Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main contrib\nSigned-By: /etc/apt/keyrings/debian.gpg\n"
        );
        assert_eq!(
            by_path["etc/apt/sources.list.d/pkgs.example.com.sources"],
            "Types: deb\nURIs: https://pkgs.example.com/apt\nSuites: stable\nComponents: main\nSigned-By: /etc/apt/keyrings/pkgs.example.com.asc\n"
        );
        from.apt = false;
        assert!(apt_files(&from).unwrap().is_empty());
    }
}
