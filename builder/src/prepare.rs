//! Preparing a build: every input a key depends on, resolved to content before anything is
//! planned (bootc's `prepare`, then execute).
//!
//! A recipe is a list of [`Unit`]s: its stages, in dependency order, then the image. For
//! each, the base is resolved to what its key covers: a rootfs tarball or OCI archive to
//! its sha256, an OCI layout to a manifest digest, a registry reference to a manifest
//! digest (pinned in the unit's lock as `[[registry_base]]`), a Debian base to the locked
//! package sets. With [`Access::Offline`] nothing is fetched or written: what is not on
//! disk yet is a [`SourceError::NotLocal`].

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use imgbuild_registry::Client;
use imgbuild_store::{Digest, Store};

use crate::debian::lock::{LockedRegistryBase, Lockfile};
use crate::debian::DebianFrom;
use crate::recipe::{Base, Recipe, Step, StepOp};
use crate::sources::debian::{self, LockMode, PackageSets};
use crate::sources::registry::{self, ResolvedBase};
use crate::sources::{self as sources, SourceError};

/// One unit of a recipe: a stage or the image itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// `[stage.NAME]`.
    Stage(String),
    /// The recipe's own steps, which make the image.
    Image,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unit::Stage(name) => write!(f, "stage {name}"),
            Unit::Image => f.write_str("image"),
        }
    }
}

impl serde::Serialize for Unit {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How preparation may reach out.
#[derive(Clone, Copy)]
pub enum Access<'a> {
    /// Resolve and fetch what is missing: Debian packages (the lock used as `lock_mode`
    /// says), registry manifests.
    Fetch {
        /// How the lock file is used.
        lock_mode: LockMode,
        /// Resolves registry references.
        registry: &'a Client,
    },
    /// Only what is on disk: the lock as it is, `.deb`s and manifests already in the
    /// store. Nothing is fetched or written.
    Offline,
}

/// A unit's base, resolved to what its key covers.
#[derive(Debug, Clone)]
pub enum PreparedBase {
    /// Nothing.
    Scratch,
    /// A rootfs tarball and its sha256.
    Rootfs {
        /// The tarball.
        path: PathBuf,
        /// Its sha256.
        digest: Digest,
    },
    /// An image in an OCI layout, resolved to its manifest.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The chosen manifest.
        manifest: Digest,
    },
    /// An OCI archive and its sha256.
    OciArchive {
        /// The archive.
        path: PathBuf,
        /// Its sha256.
        digest: Digest,
    },
    /// A registry image resolved to a manifest digest.
    Registry(ResolvedBase),
    /// A Debian userland and its locked package sets.
    Debian {
        /// The recipe's `[from] debian` table (boxed: it is the largest variant by far).
        from: Box<DebianFrom>,
        /// The packages of the base and of each `packages` step.
        packages: PackageSets,
    },
}

impl PreparedBase {
    /// The Debian package sets, for a Debian base.
    pub fn packages(&self) -> Option<&PackageSets> {
        match self {
            PreparedBase::Debian { packages, .. } => Some(packages),
            _ => None,
        }
    }

    /// The registry resolution, for a registry base.
    pub fn resolved(&self) -> Option<&ResolvedBase> {
        match self {
            PreparedBase::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// A unit with its base prepared.
#[derive(Debug, Clone)]
pub struct PreparedUnit<'r> {
    /// Which unit.
    pub unit: Unit,
    /// Its base.
    pub base: PreparedBase,
    /// Its steps, as the recipe has them.
    pub steps: &'r [Step],
}

/// Every unit of a recipe, prepared.
#[derive(Debug, Clone)]
pub struct Prepared<'r> {
    /// The stages, in dependency order.
    pub stages: Vec<PreparedUnit<'r>>,
    /// The image.
    pub image: PreparedUnit<'r>,
}

impl<'r> Prepared<'r> {
    /// Every unit: the stages, then the image.
    pub fn units(&self) -> impl Iterator<Item = &PreparedUnit<'r>> {
        self.stages.iter().chain(std::iter::once(&self.image))
    }
}

/// A unit of a recipe before preparation.
#[derive(Debug, Clone)]
pub struct UnitSource<'r> {
    /// Which unit.
    pub unit: Unit,
    /// Its base as written.
    pub base: &'r Base,
    /// Its steps.
    pub steps: &'r [Step],
}

/// The recipe's stages in dependency order (every stage after the stages it copies
/// from). The recipe parser has already refused cycles and unknown stages.
pub fn stages(recipe: &Recipe) -> Vec<UnitSource<'_>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut ordered = Vec::new();
    let mut pending: Vec<&crate::recipe::Stage> = recipe.stages.iter().collect();
    while !pending.is_empty() {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|s| s.depends_on().all(|d| done.contains(d)));
        if ready.is_empty() {
            // Unreachable for a parsed recipe; keep the rest in their order.
            ordered.extend(waiting.iter().map(|s| stage_source(s)));
            break;
        }
        done.extend(ready.iter().map(|s| s.name.as_str()));
        ordered.extend(ready.iter().map(|s| stage_source(s)));
        pending = waiting;
    }
    ordered
}

/// The recipe's own steps, which make the image.
pub fn image(recipe: &Recipe) -> UnitSource<'_> {
    UnitSource {
        unit: Unit::Image,
        base: &recipe.base,
        steps: &recipe.steps,
    }
}

fn stage_source(stage: &crate::recipe::Stage) -> UnitSource<'_> {
    UnitSource {
        unit: Unit::Stage(stage.name.clone()),
        base: &stage.base,
        steps: &stage.steps,
    }
}

/// The lock file of a unit: `RECIPE.lock` for the image, `RECIPE.STAGE.lock` for a stage.
/// Built for another platform than the recipe's primary (first) one, the architecture
/// goes before `.lock`, after an `@` no stage name has: `RECIPE@arm64.lock`,
/// `RECIPE.STAGE@arm64.lock`; each platform's package set is pinned on its own.
pub fn unit_lock_path(recipe: &Recipe, unit: &Unit) -> PathBuf {
    let path = &recipe.path;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let image = &recipe.image;
    let arch = match image.platforms.first() {
        Some(primary) if *primary != image.platform => format!("@{}", image.platform.architecture),
        _ => String::new(),
    };
    match unit {
        Unit::Image if arch.is_empty() => debian::lock_path(path),
        Unit::Image => path.with_file_name(format!("{stem}{arch}.lock")),
        Unit::Stage(name) => path.with_file_name(format!("{stem}.{name}{arch}.lock")),
    }
}

/// Prepares every unit of `recipe`.
pub fn prepare<'r>(
    store: &Store,
    recipe: &'r Recipe,
    access: Access<'_>,
    note: &dyn Fn(&str),
) -> Result<Prepared<'r>, SourceError> {
    let stages = stages(recipe)
        .into_iter()
        .map(|source| prepare_unit(store, recipe, source, access, note))
        .collect::<Result<_, _>>()?;
    let image = prepare_unit(store, recipe, image(recipe), access, note)?;
    Ok(Prepared { stages, image })
}

/// Prepares one unit.
pub fn prepare_unit<'r>(
    store: &Store,
    recipe: &Recipe,
    source: UnitSource<'r>,
    access: Access<'_>,
    note: &dyn Fn(&str),
) -> Result<PreparedUnit<'r>, SourceError> {
    let unit = source.unit;
    let base = match source.base {
        Base::Scratch => PreparedBase::Scratch,
        Base::Rootfs(path) => PreparedBase::Rootfs {
            path: path.clone(),
            digest: sources::file_digest(path)?,
        },
        Base::OciLayout { dir, tag } => PreparedBase::OciLayout {
            dir: dir.clone(),
            manifest: sources::oci::resolve_layout(dir, tag.as_deref(), &recipe.image.platform)?,
        },
        Base::OciArchive(path) => PreparedBase::OciArchive {
            path: path.clone(),
            digest: sources::file_digest(path)?,
        },
        Base::Registry { reference } => {
            PreparedBase::Registry(prepare_registry(store, recipe, &unit, reference, access)?)
        }
        Base::Debian(from) => {
            let mode = match access {
                Access::Fetch { lock_mode, .. } => {
                    note(&format!(
                        "resolving Debian packages for the {unit} ({} {})",
                        from.suite, from.variant
                    ));
                    lock_mode
                }
                Access::Offline => LockMode::Offline,
            };
            let steps: Vec<(usize, Vec<String>)> = source
                .steps
                .iter()
                .filter_map(|s| match &s.op {
                    StepOp::Packages { names } => Some((s.number, names.clone())),
                    _ => None,
                })
                .collect();
            let lock = unit_lock_path(recipe, &unit);
            PreparedBase::Debian {
                from: Box::new(from.clone()),
                packages: debian::prepare(store, &recipe.path, &lock, from, &steps, mode)?,
            }
        }
    };
    Ok(PreparedUnit {
        unit,
        base,
        steps: source.steps,
    })
}

/// Resolves a registry base through the unit's lock: a lock that pins `reference` gives
/// the manifest digest and the tag is not resolved again; otherwise the registry resolves
/// it and the digest is written into the lock (an error with `--locked`).
fn prepare_registry(
    store: &Store,
    recipe: &Recipe,
    unit: &Unit,
    reference: &imgbuild_registry::Reference,
    access: Access<'_>,
) -> Result<ResolvedBase, SourceError> {
    let lock_path = unit_lock_path(recipe, unit);
    let text = reference.to_string();
    let existing = if lock_path.exists() {
        Some(Lockfile::read(&lock_path)?)
    } else {
        None
    };
    let locked = existing.as_ref().map(|l| l.registry_digest(&text));
    let (client, mode) = match access {
        Access::Fetch {
            lock_mode,
            registry,
        } => (Some(registry), lock_mode),
        Access::Offline => (None, LockMode::Offline),
    };
    let platform = &recipe.image.platform;
    match (locked, mode, client) {
        (Some(Ok(digest)), LockMode::Update | LockMode::Locked | LockMode::Offline, client) => {
            let digest: Digest = digest.parse().map_err(|_| SourceError::Locked {
                path: lock_path.clone(),
                message: format!("{digest:?} is not a digest"),
                help: "delete the lock and build again".to_owned(),
            })?;
            let pinned = reference.with_digest(&digest);
            let resolved = match client {
                Some(client) => registry::resolve(store, client, &pinned, platform)?,
                None => registry::resolve_offline(store, &pinned)?,
            };
            Ok(ResolvedBase {
                reference: reference.clone(),
                digest: resolved.digest,
            })
        }
        (locked, LockMode::Locked, _) => Err(SourceError::Locked {
            message: match locked {
                Some(Err(e)) => e.to_string(),
                _ => "the lock file does not exist".to_owned(),
            },
            help: format!(
                "run `imgbuild lock {}` (or build without --locked) and commit {}",
                recipe.path.display(),
                lock_path.display()
            ),
            path: lock_path,
        }),
        (_, _, Some(client)) if mode != LockMode::Offline => {
            let resolved = registry::resolve(store, client, reference, platform)?;
            // A unit has one base: Debian packages of an earlier base go.
            let mut lock = existing.unwrap_or_else(Lockfile::empty);
            lock.source = None;
            lock.packages.clear();
            lock.registry_bases = vec![LockedRegistryBase {
                reference: text,
                digest: resolved.digest.to_string(),
            }];
            lock.write(&lock_path)?;
            Ok(resolved)
        }
        _ => registry::resolve_offline(store, reference),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::{parse_for, PlatformSpec};
    use std::path::Path;

    #[test]
    fn each_platform_but_the_first_has_its_own_locks() {
        let text = "[image]\nname = \"x\"\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\
                    [stage.build]\nfrom = { scratch = true }\n";
        let path = Path::new("/r/app.toml");
        let lock = |platform: Option<&PlatformSpec>, unit: &Unit| {
            let recipe = parse_for(path, text, platform).unwrap();
            unit_lock_path(&recipe, unit).display().to_string()
        };
        let stage = Unit::Stage("build".into());
        let arm = PlatformSpec::arm64();
        assert_eq!(lock(None, &Unit::Image), "/r/app.lock");
        assert_eq!(lock(None, &stage), "/r/app.build.lock");
        assert_eq!(
            lock(Some(&PlatformSpec::amd64()), &Unit::Image),
            "/r/app.lock"
        );
        assert_eq!(lock(Some(&arm), &Unit::Image), "/r/app@arm64.lock");
        assert_eq!(lock(Some(&arm), &stage), "/r/app.build@arm64.lock");
        let recipe = parse_for(path, text, Some(&arm)).unwrap();
        assert_eq!(recipe.image.platform, arm);
        assert_eq!(recipe.image.platforms.len(), 2);
    }
}
