//! Locking a recipe: every unit with a Debian base (the image and each stage) gets its
//! package set resolved and written to its lock file.

use std::path::PathBuf;

use imgbuild_builder::prepare::{image, prepare_unit, stages, unit_lock_path, Access, Unit};
use imgbuild_builder::recipe::Base;
use imgbuild_builder::LockMode;
use imgbuild_registry::Client;
use imgbuild_store::Store;

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
    /// Talks to registries (unused by Debian units; kept for one preparation path).
    pub registry: std::sync::Arc<Client>,
}

/// One lock file.
#[derive(Debug, serde::Serialize)]
pub struct LockedUnit {
    /// The unit it belongs to.
    pub unit: Unit,
    /// The lock file.
    pub lock: PathBuf,
    /// Whether it was (re)written.
    pub written: bool,
    /// How many packages it pins.
    pub packages: usize,
}

/// Every lock of a recipe.
#[derive(Debug, serde::Serialize)]
pub struct LockOutcome {
    /// One entry per unit with a Debian base, stages first.
    pub units: Vec<LockedUnit>,
}

/// Resolves and writes the lock of every unit with a Debian base.
pub fn lock(request: &LockRequest, progress: Observer<'_>) -> Result<LockOutcome, PipelineError> {
    let recipe = imgbuild_builder::recipe::load(&request.recipe)?;
    let store = Store::open(&request.store)?;
    let note = |text: &str| progress(&Progress::Note(text));
    let access = Access::Fetch {
        lock_mode: if request.refresh {
            LockMode::Refresh
        } else {
            LockMode::Update
        },
        registry: &request.registry,
    };
    let mut units = Vec::new();
    for source in stages(&recipe).into_iter().chain([image(&recipe)]) {
        if !matches!(source.base, Base::Debian(_)) {
            continue;
        }
        let prepared = prepare_unit(&store, &recipe, source, access, &note)?;
        let Some(sets) = prepared.base.packages() else {
            continue;
        };
        units.push(LockedUnit {
            lock: unit_lock_path(&recipe.path, &prepared.unit),
            unit: prepared.unit.clone(),
            written: sets.lock_written,
            packages: sets.base.len() + sets.steps.values().map(Vec::len).sum::<usize>(),
        });
    }
    if units.is_empty() {
        return Err(PipelineError::NothingToLock {
            recipe: request.recipe.clone(),
        });
    }
    Ok(LockOutcome { units })
}
