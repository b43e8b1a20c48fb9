//! Locking a recipe: every unit with a Debian or registry base (the image and each stage)
//! gets its package set or manifest digest resolved and written to its lock file; the
//! image's lock also pins the bootloader packages of disk exports.

use std::path::PathBuf;

use imgbuild_builder::prepare::{image, prepare_unit, stages, unit_lock_path, Access, Unit};
use imgbuild_builder::recipe::Base;
use imgbuild_builder::LockMode;
use imgbuild_registry::Client;
use imgbuild_store::Store;

use super::export::pinned_boot_packages;
use super::{Observer, PipelineError};
use imgbuild_builder::Progress;

/// What to lock.
pub struct LockRequest {
    /// The recipe file.
    pub recipe: PathBuf,
    /// The store directory (packages are fetched into it).
    pub store: PathBuf,
    /// Resolve again even where a lock still matches.
    pub refresh: bool,
    /// Resolves registry bases.
    pub registry: std::sync::Arc<Client>,
}

/// One lock file.
#[derive(Debug, serde::Serialize)]
pub struct LockedUnit {
    /// The unit it belongs to.
    pub unit: Unit,
    /// The platform it pins packages for.
    pub platform: String,
    /// The lock file.
    pub lock: PathBuf,
    /// Whether it was (re)written.
    pub written: bool,
    /// How many packages it pins.
    pub packages: usize,
    /// How many bootloader packages it pins (the image's lock only).
    pub boot_packages: usize,
    /// The manifest digest of a registry base.
    pub registry_digest: Option<String>,
}

/// Every lock of a recipe.
#[derive(Debug, serde::Serialize)]
pub struct LockOutcome {
    /// One entry per platform and unit with a Debian or registry base: per platform (in
    /// the recipe's order), stages first, then the image.
    pub units: Vec<LockedUnit>,
}

/// Resolves and writes the lock of every unit with a Debian or registry base, for each
/// platform of the recipe, and pins the bootloader packages of disks in the image's lock
/// (every recipe can be exported as a disk: its kernel may come from a stage).
pub fn lock(request: &LockRequest, progress: Observer<'_>) -> Result<LockOutcome, PipelineError> {
    let primary = imgbuild_builder::recipe::load(&request.recipe)?;
    let store = Store::open(&request.store)?;
    let mut units = Vec::new();
    for platform in &primary.image.platforms {
        let recipe = imgbuild_builder::recipe::load_for(&request.recipe, Some(platform))?;
        units.extend(lock_platform(&store, &recipe, request, progress)?);
    }
    Ok(LockOutcome { units })
}

/// The locks of one platform's build of the recipe.
fn lock_platform(
    store: &Store,
    recipe: &imgbuild_builder::recipe::Recipe,
    request: &LockRequest,
    progress: Observer<'_>,
) -> Result<Vec<LockedUnit>, PipelineError> {
    let note = |text: &str| progress(&Progress::Note(text));
    let lock_mode = if request.refresh {
        LockMode::Refresh
    } else {
        LockMode::Update
    };
    let access = Access::Fetch {
        lock_mode,
        registry: &request.registry,
    };
    let mut units = Vec::new();
    for source in stages(recipe).into_iter().chain([image(recipe)]) {
        let unit = source.unit.clone();
        let has_inputs = matches!(source.base, Base::Debian(_) | Base::Registry { .. });
        if !has_inputs && unit != Unit::Image {
            continue;
        }
        let lock = unit_lock_path(recipe, &unit);
        let before = fs_err::read(&lock).ok();
        let mut written = false;
        let mut packages = 0;
        let mut registry_digest = None;
        if has_inputs {
            let prepared = prepare_unit(store, recipe, source, access, &note)?;
            if let Some(sets) = prepared.base.packages() {
                written = sets.lock_written;
                packages = sets.base.len() + sets.steps.values().map(Vec::len).sum::<usize>();
            }
            registry_digest = prepared.base.resolved().map(|r| r.digest.to_string());
        }
        let mut boot_packages = 0;
        if unit == Unit::Image {
            let wanted = imgbuild_builder::boot_assets::packages(true, true);
            let (pinned, boot_written) =
                pinned_boot_packages(store, recipe, &wanted, lock_mode, &note)?;
            boot_packages = pinned.len();
            written |= boot_written;
        }
        written |= fs_err::read(&lock).ok() != before;
        units.push(LockedUnit {
            lock,
            unit,
            platform: recipe.image.platform.to_string(),
            written,
            packages,
            boot_packages,
            registry_digest,
        });
    }
    Ok(units)
}
