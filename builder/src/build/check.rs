//! `build --check`: every layer a build made (a Debian bootstrap or rootfs import, each
//! step of each stage and of the image) made once more, on the stored layers below it as
//! a cache miss would see them, so one random step does not make every step above it
//! differ. The new layers go into the store like any other (unreferenced, `gc` removes
//! them); the cache is neither read for them nor written.

use std::collections::BTreeMap;

use imgbuild_store::{Digest, Store};

use super::base::{import_base, run_bootstrap, with_apt_files};
use super::orchestrate::StageOutput;
use super::step::StepContext;
use super::{BuildError, BuildOptions, Progress};
use crate::plan::{Plan, UnitPlan};
use crate::prepare::{Prepared, PreparedBase, PreparedUnit, Unit};
use crate::recipe::PlatformSpec;
use crate::sources::rootfs;

/// One layer made again.
#[derive(Debug, Clone)]
pub struct Rebuild {
    /// The image or the stage.
    pub unit: Unit,
    /// The step number; 0 for the unit's base.
    pub index: usize,
    /// `debian bootstrap`, `rootfs NAME` or the step's description.
    pub description: String,
    /// The layer the build stored.
    pub stored: Digest,
    /// The layer made again.
    pub rebuilt: Digest,
}

impl Rebuild {
    /// True when both layers are the same.
    pub fn reproducible(&self) -> bool {
        self.stored == self.rebuilt
    }
}

/// Makes every layer of a built `plan` (made from `prepared`; every key must be in the
/// store) again: the stages in the plan's (dependency) order, then the image. Only bases
/// built here are checked: a Debian bootstrap and a rootfs import; image bases are inputs.
pub fn rebuild_all(
    store: &Store,
    platform: &PlatformSpec,
    prepared: &Prepared<'_>,
    plan: &Plan,
    options: &BuildOptions<'_>,
) -> Result<Vec<Rebuild>, BuildError> {
    let mut stages = BTreeMap::new();
    let mut rebuilt = Vec::new();
    let units = prepared
        .stages
        .iter()
        .zip(&plan.stages)
        .chain(std::iter::once((&prepared.image, &plan.image)));
    for (unit, planned) in units {
        let diff_ids = rebuild_unit(
            store,
            platform,
            unit,
            planned,
            options,
            &stages,
            &mut rebuilt,
        )?;
        if let Unit::Stage(name) = &unit.unit {
            stages.insert(name.clone(), StageOutput { diff_ids });
        }
    }
    Ok(rebuilt)
}

/// Makes a unit's base (when built here) and each step again; returns the unit's stored
/// layers.
fn rebuild_unit(
    store: &Store,
    platform: &PlatformSpec,
    unit: &PreparedUnit<'_>,
    planned: &UnitPlan,
    options: &BuildOptions<'_>,
    stages: &BTreeMap<String, StageOutput>,
    rebuilt: &mut Vec<Rebuild>,
) -> Result<Vec<Digest>, BuildError> {
    let note = |text: &str| (options.progress)(&Progress::Note(text));
    let prefix = match &unit.unit {
        Unit::Image => String::new(),
        stage => format!("{stage}: "),
    };
    // A cache hit now: the build just stored the base.
    let base = import_base(store, &unit.base, &planned.base_key, platform, options)?;
    let again = match &unit.base {
        PreparedBase::Debian { packages: sets, .. } if !sets.base.is_empty() => {
            note(&format!("check: {prefix}[0] debian bootstrap"));
            let bootstrap = run_bootstrap(store, sets, options)?;
            let diff_id = with_apt_files(store, bootstrap.diff_id, sets, options)?;
            Some(("debian bootstrap".to_owned(), diff_id))
        }
        PreparedBase::Rootfs { path, .. } => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            note(&format!("check: {prefix}[0] rootfs {name}"));
            let record = rootfs::import(store, path, options.epoch, options.compression)?;
            Some((format!("rootfs {name}"), record.diff_id))
        }
        _ => None,
    };
    if let (Some((description, rebuilt_id)), Some(stored)) = (again, base.diff_ids.first()) {
        rebuilt.push(Rebuild {
            unit: unit.unit.clone(),
            index: 0,
            description,
            stored: stored.clone(),
            rebuilt: rebuilt_id,
        });
    }
    let mut below = base.diff_ids.clone();
    let mut tree = store.merged_tree(&below)?;
    for (step, planned) in unit.steps.iter().zip(&planned.steps) {
        let stored = store
            .cache_get(&planned.key)?
            .ok_or_else(|| BuildError::LeftTheCache {
                unit: unit.unit.to_string(),
                step: planned.number,
            })?
            .diff_id;
        note(&format!(
            "check: {prefix}[{}] {}",
            planned.number, planned.description
        ));
        let context = StepContext {
            store,
            options,
            packages: unit.base.packages(),
            stages,
            below: &below,
            tree: &tree,
        };
        let record = context.execute(step, planned)?.record;
        rebuilt.push(Rebuild {
            unit: unit.unit.clone(),
            index: planned.number,
            description: planned.description.clone(),
            stored: stored.clone(),
            rebuilt: record.diff_id,
        });
        store.merge_layer(&mut tree, &stored)?;
        below.push(stored);
    }
    Ok(below)
}
