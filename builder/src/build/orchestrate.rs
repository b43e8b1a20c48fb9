//! The build's orchestration: prepare, plan, then for each unit (stages in dependency
//! order, independent ones in parallel, the image last) the base and every step looked up
//! in the store and run on a miss.

use std::collections::BTreeMap;
use std::time::Instant;

use imgbuild_store::tarball::MergedTree;
use imgbuild_store::{Digest, LayerRecord, Store, StoreError};
use rayon::prelude::*;

use super::base::import_base;
use super::image::write_image;
use super::step::StepContext;
use super::{BuildError, BuildOptions, BuildReport, CacheOutcome, Progress, StepReport};
use crate::explain::{self, Cause};
use crate::plan::{plan, Plan, UnitPlan};
use crate::prepare::{prepare, Access, Prepared, PreparedUnit, Unit};
use crate::recipe::{stage_refs, PlatformSpec, Recipe, StepOp};
use crate::sources::oci::BaseImage;

/// Builds `recipe` into `store`: [`prepare`], [`plan`], then [`execute`].
pub fn build(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions<'_>,
) -> Result<BuildReport, BuildError> {
    let note = |n: &str| (options.progress)(&Progress::Note(n));
    let access = Access::Fetch {
        lock_mode: options.lock_mode,
        registry: options.registry,
    };
    let prepared = prepare(store, recipe, access, &note)?;
    let plan = plan(
        &prepared,
        options.epoch,
        &recipe.image.platform.to_string(),
        &|key| store.cache_peek(key).unwrap_or(false),
        store,
    )?;
    execute(store, recipe, &prepared, &plan, options)
}

/// Executes `plan` (made from `prepared`): every unit's misses run, then the image's
/// config and manifest are written and its tags set. The plan is recorded for the next
/// build's explanations.
pub fn execute(
    store: &Store,
    recipe: &Recipe,
    prepared: &Prepared<'_>,
    plan: &Plan,
    options: &BuildOptions<'_>,
) -> Result<BuildReport, BuildError> {
    // The record is large for a big `copy` (an input per file): read only to explain a miss.
    let previous = (!plan.all_cached())
        .then(|| explain::load(store, &recipe.path))
        .flatten();
    let causes = explain::explain(plan, previous.as_ref());
    let stages = prepared.stages.iter().zip(&plan.stages).collect();
    let (stages, stage_steps) =
        build_stages(store, &recipe.image.platform, stages, options, &causes)?;
    let (image, image_plan) = (&prepared.image, &plan.image);
    let mut built = build_unit(
        store,
        &recipe.image.platform,
        image,
        image_plan,
        options,
        &stages,
        &causes,
    )?;
    // A registry base's layers are reused exactly as pulled; everything else is compressed
    // as asked.
    let kept = built.base.layers.as_deref().unwrap_or_default();
    let mut layers: Vec<LayerRecord> = kept.to_vec();
    layers.extend(
        built.diff_ids[kept.len()..]
            .par_iter()
            .map(|d| store.layer_as(d, options.compression))
            .collect::<Result<Vec<_>, _>>()?,
    );
    for (report, layer) in built
        .reports
        .iter_mut()
        .zip(&layers[built.base.diff_ids.len()..])
    {
        report.layer = layer.digest.clone();
    }
    let resolved = image.base.resolved();
    let (manifest, manifest_size, config) = write_image(
        store,
        recipe,
        &built,
        image_plan,
        &layers,
        resolved,
        options.epoch,
    )?;
    for tag in &recipe.image.tags {
        store.set_ref(&format!("{}:{tag}", recipe.image.name), &manifest)?;
    }
    if let Err(e) = explain::save(store, &recipe.path, plan) {
        (options.progress)(&Progress::Note(&format!(
            "warning: could not record this build's plan for --explain: {e}"
        )));
    }
    Ok(BuildReport {
        image: recipe.image.name.clone(),
        tags: recipe.image.tags.clone(),
        digest: manifest,
        manifest_size,
        config,
        steps: std::mem::take(&mut built.reports),
        stage_steps,
        base: resolved.cloned(),
        lock: image.base.packages().map(|p| p.lock_path.clone()),
    })
}

/// The layers of a built unit.
pub(super) struct Built {
    pub(super) base: BaseImage,
    pub(super) diff_ids: Vec<Digest>,
    pub(super) reports: Vec<StepReport>,
}

/// A built stage: its layers.
pub(super) struct StageOutput {
    pub(super) diff_ids: Vec<Digest>,
}

type Causes = BTreeMap<(Unit, usize), Cause>;

/// Builds every stage, each after the stages it copies from; stages that do not depend on
/// each other build in parallel. Returns their outputs and their steps' reports.
fn build_stages(
    store: &Store,
    platform: &PlatformSpec,
    mut pending: Vec<(&PreparedUnit<'_>, &UnitPlan)>,
    options: &BuildOptions<'_>,
    causes: &Causes,
) -> Result<(BTreeMap<String, StageOutput>, Vec<StepReport>), BuildError> {
    let mut outputs = BTreeMap::new();
    let mut reports = Vec::new();
    while !pending.is_empty() {
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|(u, _)| stage_refs(u.steps).all(|d| outputs.contains_key(d)));
        // The plan lists stages in dependency order, so the first one is always ready.
        let (ready, waiting) = if ready.is_empty() {
            let mut rest = waiting;
            let first = rest.remove(0);
            (vec![first], rest)
        } else {
            (ready, waiting)
        };
        let built: Vec<(String, StageOutput, Vec<StepReport>)> = ready
            .par_iter()
            .map(|&(unit, planned)| -> Result<_, BuildError> {
                (options.progress)(&Progress::Note(&unit.unit.to_string()));
                let built = build_unit(store, platform, unit, planned, options, &outputs, causes)?;
                let name = match &unit.unit {
                    Unit::Stage(name) => name.as_str(),
                    Unit::Image => "image",
                };
                Ok((
                    name.to_owned(),
                    StageOutput {
                        diff_ids: built.diff_ids,
                    },
                    built.reports,
                ))
            })
            .collect::<Result<_, _>>()?;
        for (name, output, steps) in built {
            outputs.insert(name, output);
            reports.extend(steps);
        }
        pending = waiting;
    }
    Ok((outputs, reports))
}

/// Produces a unit's layers: base import, cache look-ups, the misses run.
fn build_unit(
    store: &Store,
    platform: &PlatformSpec,
    unit: &PreparedUnit<'_>,
    planned: &UnitPlan,
    options: &BuildOptions<'_>,
    stages: &BTreeMap<String, StageOutput>,
    causes: &Causes,
) -> Result<Built, BuildError> {
    let base = import_base(store, &unit.base, &planned.base_key, platform, options)?;
    let mut diff_ids = base.diff_ids.clone();
    let mut tree: Option<MergedTree> = None;
    let mut reports = Vec::new();
    let total = planned.steps.len();
    for (at, (step, planned)) in unit.steps.iter().zip(&planned.steps).enumerate() {
        (options.progress)(&Progress::StepStarted {
            number: planned.number,
            total,
            description: &planned.description,
        });
        let start = Instant::now();
        let (diff_id, cache, written) = match store.cache_get(&planned.key)? {
            Some(entry) => (entry.diff_id, CacheOutcome::Hit, None),
            None => {
                if tree.is_none() {
                    tree = Some(store.merged_tree(&diff_ids)?);
                }
                let context = StepContext {
                    store,
                    options,
                    packages: unit.base.packages(),
                    stages,
                    below: &diff_ids,
                    tree: tree.as_ref().unwrap_or_else(|| unreachable!()),
                };
                let layer = context.execute(step, planned)?;
                store.cache_put(&planned.key, &layer.record.diff_id, &planned.description)?;
                (layer.record.diff_id, CacheOutcome::Miss, layer.written)
            }
        };
        if let Some(written) = &written {
            // Only a cache: a later merge without it reads the layer.
            let _ = store.add_layer_toc(&diff_id, written);
        }
        // Only a later step looks at the tree; one the step wrote itself is not read back.
        let last = at + 1 == total;
        match (tree.as_mut(), written) {
            (Some(_), _) if last => {}
            (Some(t), Some(written)) => t.push_written(written),
            (Some(t), None) => store.merge_layer(t, &diff_id)?,
            (None, _) => {}
        }
        let layer = store
            .layer_forms(&diff_id)?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::MissingBlob(diff_id.clone()))?;
        diff_ids.push(diff_id.clone());
        let why = match cache {
            CacheOutcome::Hit => None,
            CacheOutcome::Miss => Some(
                causes
                    .get(&(unit.unit.clone(), planned.number))
                    .cloned()
                    // Planned as cached, then gone before it was looked up (a concurrent gc).
                    .unwrap_or(Cause::Evicted),
            ),
        };
        let report = StepReport {
            unit: unit.unit.clone(),
            index: planned.number,
            kind: planned.kind,
            description: planned.description.clone(),
            cache,
            why,
            seconds: start.elapsed().as_secs_f64(),
            layer: layer.digest,
            diff_id,
            key: planned.key.clone(),
            network: matches!(&step.op, StepOp::Run(run) if run.network),
            emulated: cache == CacheOutcome::Miss
                && crate::emulation::runs_image_code(planned.kind)
                && crate::emulation::needs_emulation(&platform.architecture),
            reproducible: None,
            differences: Vec::new(),
        };
        (options.progress)(&Progress::StepFinished(&report));
        reports.push(report);
    }
    Ok(Built {
        base,
        diff_ids,
        reports,
    })
}
