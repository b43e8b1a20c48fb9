//! The plan without the build: what `build --dry-run` and `inspect RECIPE` show. Inputs
//! are prepared offline (the lock as it is, `.deb`s and manifests already in the store),
//! and nothing is fetched or written: a unit whose inputs are not all here is shown with
//! the reason and without keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use imgbuild_builder::explain::{self, Cause};
use imgbuild_builder::plan::plan_unit;
use imgbuild_builder::prepare::{image, prepare_unit, stages, Access, Unit};
use imgbuild_builder::recipe::stage_refs;
use imgbuild_builder::ResolvedBase;
use imgbuild_store::{Digest, Store};

use super::PipelineError;

/// What to plan.
pub struct DryRunRequest {
    /// The recipe file.
    pub recipe: PathBuf,
    /// The store directory.
    pub store: PathBuf,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
}

/// The plan of a recipe.
#[derive(Debug, serde::Serialize)]
pub struct DryRun {
    /// The image name.
    pub image: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its platform.
    pub platform: String,
    /// The epoch the keys are for.
    pub epoch: u64,
    /// Stages in build order, then the image.
    pub units: Vec<UnitPreview>,
}

/// One unit's plan.
#[derive(Debug, serde::Serialize)]
pub struct UnitPreview {
    /// Which unit.
    pub unit: Unit,
    /// The base's key (none when the unit could not be planned offline).
    pub base_key: Option<Digest>,
    /// Whether the base is cached.
    pub base_cached: bool,
    /// For a miss of the base: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_why: Option<Cause>,
    /// A registry base and the digest it resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<ResolvedBase>,
    /// Why the unit has no keys: what is missing to plan it offline.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unresolved: Option<String>,
    /// Its steps.
    pub steps: Vec<StepPreview>,
}

/// One step's plan.
#[derive(Debug, serde::Serialize)]
pub struct StepPreview {
    /// Step number.
    pub index: usize,
    /// Kind of step.
    pub kind: &'static str,
    /// What it does.
    pub description: String,
    /// Its key.
    pub key: Option<Digest>,
    /// Whether the store has it.
    pub cached: bool,
    /// For a miss: why, compared with the last build of the recipe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<Cause>,
}

/// Plans the recipe without building, fetching or writing anything.
pub fn dry_run(request: &DryRunRequest) -> Result<DryRun, PipelineError> {
    let recipe = imgbuild_builder::recipe::load(&request.recipe)?;
    let store = Store::open(&request.store)?;
    let platform = recipe.image.platform.to_string();
    let previous = explain::load(&store, &recipe.path);
    let cached = |key: &Digest| store.cache_peek(key).unwrap_or(false);
    let mut stage_keys: BTreeMap<String, Digest> = BTreeMap::new();
    let mut units = Vec::new();
    for source in stages(&recipe).into_iter().chain([image(&recipe)]) {
        let missing_stage = stage_refs(source.steps).find(|s| !stage_keys.contains_key(*s));
        let prepared = match missing_stage {
            Some(stage) => Err(format!("stage `{stage}` could not be planned")),
            None => prepare_unit(&store, &recipe, source.clone(), Access::Offline, &|_| {})
                .map_err(|e| e.to_string()),
        };
        let planned = prepared.and_then(|unit| {
            let memo = imgbuild_builder::plan::ReadOnlyMemo(&store);
            let planned = plan_unit(&unit, request.epoch, &platform, &stage_keys, &cached, &memo)
                .map_err(|e| e.to_string())?;
            Ok((unit, planned))
        });
        units.push(match planned {
            Ok((unit, planned)) => {
                if let Unit::Stage(name) = &planned.unit {
                    stage_keys.insert(name.clone(), planned.final_key().clone());
                }
                let mut why = explain::explain_unit(&planned, previous.as_ref());
                UnitPreview {
                    unit: planned.unit.clone(),
                    base_key: Some(planned.base_key.clone()),
                    base_cached: planned.base_cached,
                    base_why: why.remove(&0),
                    base: unit.base.resolved().cloned(),
                    unresolved: None,
                    steps: planned
                        .steps
                        .iter()
                        .map(|s| StepPreview {
                            index: s.number,
                            kind: s.kind,
                            description: s.description.clone(),
                            key: Some(s.key.clone()),
                            cached: s.cached,
                            why: why.remove(&s.number),
                        })
                        .collect(),
                }
            }
            Err(reason) => UnresolvedUnit {
                unit: source.unit.clone(),
                steps: source.steps,
            }
            .preview(reason),
        });
    }
    Ok(DryRun {
        image: recipe.image.name.clone(),
        tags: recipe.image.tags.clone(),
        platform,
        epoch: request.epoch,
        units,
    })
}

/// A unit that could not be planned offline.
struct UnresolvedUnit<'r> {
    unit: Unit,
    steps: &'r [imgbuild_builder::recipe::Step],
}

impl UnresolvedUnit<'_> {
    fn preview(self, reason: String) -> UnitPreview {
        UnitPreview {
            unit: self.unit,
            base_key: None,
            base_cached: false,
            base_why: None,
            base: None,
            unresolved: Some(reason),
            steps: self
                .steps
                .iter()
                .map(|s| StepPreview {
                    index: s.number,
                    kind: s.op.kind(),
                    description: s.op.describe(),
                    key: None,
                    cached: false,
                    why: None,
                })
                .collect(),
        }
    }
}
