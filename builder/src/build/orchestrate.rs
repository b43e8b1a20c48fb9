//! The build's orchestration: stages in dependency order, then for each the plan, the
//! base, and every step looked up in the store and run on a miss.

use std::collections::BTreeMap;
use std::time::Instant;

use imgbuild_store::tarball::MergedTree;
use imgbuild_store::{Digest, LayerRecord, Store, StoreError};
use rayon::prelude::*;

use super::base::import_base;
use super::image::write_image;
use super::step::StepContext;
use super::{BuildError, BuildOptions, BuildReport, CacheOutcome, Progress, StepReport};
use crate::plan::{plan, Plan, PlanInputs};
use crate::recipe::{Base, ConfigSpec, Recipe, StepOp};
use crate::sources::debian::{prepare, LockMode, PackageSets};
use crate::sources::oci::BaseImage;
use crate::sources::registry::{resolve_base, ResolvedBase};
use crate::sources::SourceError;

/// Builds `recipe` into `store` and returns what happened.
pub fn build(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions<'_>,
) -> Result<BuildReport, BuildError> {
    let stages = build_stages(store, recipe, options)?;
    let mut built = build_layers(store, recipe, options, &stages)?;
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
    let (manifest, manifest_size, config) =
        write_image(store, recipe, &built, &layers, options.epoch)?;
    for tag in &recipe.image.tags {
        store.set_ref(&format!("{}:{tag}", recipe.image.name), &manifest)?;
    }
    Ok(BuildReport {
        image: recipe.image.name.clone(),
        tags: recipe.image.tags.clone(),
        digest: manifest,
        manifest_size,
        config,
        steps: built.reports,
        base: built.resolved,
        lock: built.packages.map(|p| p.lock_path),
    })
}

/// The layers of a built recipe or stage.
pub(super) struct Built {
    pub(super) base: BaseImage,
    pub(super) plan: Plan,
    pub(super) diff_ids: Vec<Digest>,
    pub(super) reports: Vec<StepReport>,
    pub(super) resolved: Option<ResolvedBase>,
    pub(super) packages: Option<PackageSets>,
}

/// A built stage: its final key and its layers.
pub(super) struct StageOutput {
    pub(super) key: Digest,
    pub(super) diff_ids: Vec<Digest>,
}

/// Builds every stage, each after the stages it copies from; stages that do not depend on
/// each other build in parallel.
fn build_stages(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions<'_>,
) -> Result<BTreeMap<String, StageOutput>, BuildError> {
    let mut outputs = BTreeMap::new();
    let stem = recipe
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut pending: Vec<&crate::recipe::Stage> = recipe.stages.iter().collect();
    while !pending.is_empty() {
        // Every stage whose inputs are built goes now, in parallel with the others.
        let (ready, waiting): (Vec<_>, Vec<_>) = pending
            .into_iter()
            .partition(|s| s.depends_on().all(|d| outputs.contains_key(d)));
        let built: Vec<(String, StageOutput)> = ready
            .par_iter()
            .map(|stage| -> Result<_, BuildError> {
                (options.progress)(&Progress::Note(&format!("stage {}", stage.name)));
                let sub = Recipe {
                    // A stage with a Debian base keeps its own lock: `<recipe>.<stage>.lock`.
                    path: recipe
                        .path
                        .with_file_name(format!("{stem}.{}.toml", stage.name)),
                    source: recipe.source.clone(),
                    dir: recipe.dir.clone(),
                    image: recipe.image.clone(),
                    base: stage.base.clone(),
                    steps: stage.steps.clone(),
                    config: ConfigSpec::default(),
                    disk: crate::recipe::DiskSpec::default(),
                    initramfs: crate::recipe::InitramfsSpec::default(),
                    stages: Vec::new(),
                };
                let built = build_layers(store, &sub, options, &outputs)?;
                let key = built
                    .plan
                    .steps
                    .last()
                    .map_or(built.plan.base_key.clone(), |s| s.key.clone());
                Ok((
                    stage.name.clone(),
                    StageOutput {
                        key,
                        diff_ids: built.diff_ids,
                    },
                ))
            })
            .collect::<Result<_, _>>()?;
        outputs.extend(built);
        pending = waiting;
    }
    Ok(outputs)
}

/// Plans `recipe` and produces its layers: base import, cache look-ups, the misses run.
fn build_layers(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions<'_>,
    stages: &BTreeMap<String, StageOutput>,
) -> Result<Built, BuildError> {
    if let Base::Debian(from) = &recipe.base {
        (options.progress)(&Progress::Note(&format!(
            "resolving Debian packages ({} {})",
            from.suite, from.variant
        )));
    }
    let packages = resolve_packages(store, recipe, options.lock_mode)?;
    let resolved = resolve_base(store, options.registry, recipe)?;
    let stage_keys: BTreeMap<String, Digest> = stages
        .iter()
        .map(|(n, o)| (n.clone(), o.key.clone()))
        .collect();
    let inputs = PlanInputs {
        resolved: resolved.as_ref(),
        packages: packages.as_ref(),
        stages: &stage_keys,
    };
    let plan = plan(recipe, options.epoch, &inputs)?;
    let base = import_base(
        store,
        recipe,
        &plan,
        resolved.as_ref(),
        packages.as_ref(),
        options,
    )?;
    let mut diff_ids = base.diff_ids.clone();
    let mut tree: Option<MergedTree> = None;
    let mut reports = Vec::new();
    let total = plan.steps.len();
    for (step, planned) in recipe.steps.iter().zip(&plan.steps) {
        (options.progress)(&Progress::StepStarted {
            number: planned.number,
            total,
            description: &planned.description,
        });
        let start = Instant::now();
        let (diff_id, cache) = match store.cache_get(&planned.key)? {
            Some(entry) => (entry.diff_id, CacheOutcome::Hit),
            None => {
                if tree.is_none() {
                    tree = Some(merged_tree(store, &diff_ids)?);
                }
                let context = StepContext {
                    store,
                    options,
                    packages: packages.as_ref(),
                    stages,
                    below: &diff_ids,
                    tree: tree.as_ref().unwrap_or_else(|| unreachable!()),
                };
                let record = context.execute(step, planned)?;
                store.cache_put(&planned.key, &record.diff_id, &planned.description)?;
                (record.diff_id, CacheOutcome::Miss)
            }
        };
        if let Some(t) = tree.as_mut() {
            t.push_layer(store.open_layer(&diff_id)?)
                .map_err(|source| BuildError::Layer {
                    diff_id: diff_id.clone(),
                    source,
                })?;
        }
        let layer = store
            .layer_forms(&diff_id)?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::MissingBlob(diff_id.clone()))?;
        diff_ids.push(diff_id.clone());
        let report = StepReport {
            index: planned.number,
            kind: planned.kind,
            description: planned.description.clone(),
            cache,
            seconds: start.elapsed().as_secs_f64(),
            layer: layer.digest,
            diff_id,
            key: planned.key.clone(),
            hermetic: !matches!(&step.op, StepOp::Run(run) if run.network),
        };
        (options.progress)(&Progress::StepFinished(&report));
        reports.push(report);
    }
    Ok(Built {
        base,
        plan,
        diff_ids,
        reports,
        resolved,
        packages,
    })
}

/// Resolves (or reads from the lock) and fetches the Debian packages of a recipe with a
/// Debian base; `None` for other bases.
pub fn resolve_packages(
    store: &Store,
    recipe: &Recipe,
    mode: LockMode,
) -> Result<Option<PackageSets>, SourceError> {
    let Base::Debian(from) = &recipe.base else {
        return Ok(None);
    };
    let steps: Vec<(usize, Vec<String>)> = recipe
        .steps
        .iter()
        .filter_map(|s| match &s.op {
            StepOp::Packages { names } => Some((s.number, names.clone())),
            _ => None,
        })
        .collect();
    prepare(store, &recipe.path, from, &steps, mode).map(Some)
}

fn merged_tree(store: &Store, diff_ids: &[Digest]) -> Result<MergedTree, BuildError> {
    let mut tree = MergedTree::default();
    for d in diff_ids {
        tree.push_layer(store.open_layer(d)?)
            .map_err(|source| BuildError::Layer {
                diff_id: d.clone(),
                source,
            })?;
    }
    Ok(tree)
}
