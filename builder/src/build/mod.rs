//! Running a build: plan, look every step up in the store, execute the misses, and write
//! the image config and manifest.

use crate::plan::{plan, Plan};
use crate::plan::{PlanInputs, PlannedStep};
use crate::recipe::{Base, ConfigSpec, Recipe};
use crate::recipe::{Step, StepOp};
use crate::sandbox::OutputLine;
use crate::sources::debian::{prepare, LockMode, PackageSets};
use crate::sources::oci::{import_layout, resolve_layout, unpack_archive, BaseImage};
use crate::sources::registry::{self, resolve_base, ResolvedBase};
use crate::sources::{rootfs, SourceError};
use crate::steps::from_stage::{stage_copy_layer, StageCopy};
use crate::steps::install::{bootstrap_layer, dpkg_layer, unpack_layer, Install};
use crate::steps::{run_to_layer, write_layer, StepError};
use imgbuild_store::oci::{
    rfc3339, History, Manifest, OciDescriptor, RootFs, MEDIA_TYPE_CONFIG, MEDIA_TYPE_MANIFEST,
};
use imgbuild_store::tarball::MergedTree;
use imgbuild_store::{Compression, Digest, LayerRecord, Store, StoreError};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// How to build.
pub struct BuildOptions<'a> {
    /// Every timestamp in the image (`SOURCE_DATE_EPOCH`).
    pub epoch: u64,
    /// How layers are compressed in the image.
    pub compression: Compression,
    /// Told about each step as it starts and ends, and each line a command prints.
    pub progress: &'a (dyn Fn(&Progress<'_>) + Sync),
    /// How the Debian lock file is used.
    pub lock_mode: LockMode,
    /// Build secrets: id -> host file, mounted for the `run` steps that name them.
    pub secrets: BTreeMap<String, PathBuf>,
    /// Pulls registry bases.
    pub registry: &'a imgbuild_registry::Client,
}

/// What a build is doing.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A step is about to be looked up (and run on a miss).
    StepStarted {
        /// Step number.
        number: usize,
        /// Number of steps.
        total: usize,
        /// What it does.
        description: &'a str,
    },
    /// A step is done.
    StepFinished(&'a StepReport),
    /// A line a step's command printed.
    Output {
        /// Step number (0 for the base).
        number: usize,
        /// The line.
        line: &'a str,
    },
    /// Something worth telling that is not a step (resolving packages, bootstrapping).
    Note(&'a str),
}

/// Whether a step came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheOutcome {
    /// Found in the store; nothing ran.
    Hit,
    /// Executed.
    Miss,
}

/// What happened to one step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    /// Step number (1-based).
    pub index: usize,
    /// `copy`, `write`, ...
    pub kind: &'static str,
    /// One line describing it.
    pub description: String,
    /// Hit or miss.
    pub cache: CacheOutcome,
    /// Wall time.
    pub seconds: f64,
    /// The compressed layer's digest, as the manifest lists it.
    pub layer: Digest,
    /// The uncompressed layer's digest.
    pub diff_id: Digest,
    /// The step's cache key.
    pub key: Digest,
    /// False when the step had network access, so its result may not be reproducible.
    pub hermetic: bool,
}

/// The outcome of a build.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BuildReport {
    /// The image name.
    pub image: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The manifest's digest.
    pub digest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config's digest.
    pub config: Digest,
    /// Each step.
    pub steps: Vec<StepReport>,
    /// The Debian lock file, when the recipe has a Debian base.
    pub lock: Option<PathBuf>,
    /// The registry base and the manifest digest it resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<ResolvedBase>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The base or an input could not be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A step failed.
    #[error(transparent)]
    Step(#[from] StepError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A `run` step names a secret the build was not given.
    #[error("step {step} needs the secret `{id}`: pass it with --secret id={id},src=FILE")]
    MissingSecret {
        /// The step number.
        step: usize,
        /// The secret id.
        id: String,
    },
    /// Reading a layer back failed.
    #[error("reading layer {diff_id}: {source}")]
    Layer {
        /// The layer.
        diff_id: Digest,
        /// What failed.
        #[source]
        source: imgbuild_store::tarball::LayerReadError,
    },
}

/// Builds `recipe` into `store` and returns what happened.
pub fn build(
    store: &Store,
    recipe: &Recipe,
    options: &BuildOptions<'_>,
) -> Result<BuildReport, BuildError> {
    let stages = build_stages(store, recipe, options)?;
    let Built {
        base,
        plan,
        diff_ids,
        mut reports,
        resolved,
        packages,
    } = build_layers(store, recipe, options, &stages)?;
    // A registry base's layers are reused exactly as pulled; everything else is compressed
    // as asked.
    let kept = base.layers.as_deref().unwrap_or_default();
    let mut layers: Vec<LayerRecord> = kept.to_vec();
    layers.extend(
        diff_ids[kept.len()..]
            .par_iter()
            .map(|d| store.layer_as(d, options.compression))
            .collect::<Result<Vec<_>, _>>()?,
    );
    for (report, layer) in reports.iter_mut().zip(&layers[base.diff_ids.len()..]) {
        report.layer = layer.digest.clone();
    }
    let (manifest, manifest_size, config) = write_image(
        store,
        recipe,
        &plan,
        &base,
        &layers,
        resolved.as_ref(),
        options,
    )?;
    for tag in &recipe.image.tags {
        store.set_ref(&format!("{}:{tag}", recipe.image.name), &manifest)?;
    }
    Ok(BuildReport {
        image: recipe.image.name.clone(),
        tags: recipe.image.tags.clone(),
        digest: manifest,
        manifest_size,
        config,
        steps: reports,
        base: resolved,
        lock: packages.map(|p| p.lock_path),
    })
}

/// The layers of a built recipe or stage.
struct Built {
    base: BaseImage,
    plan: Plan,
    diff_ids: Vec<Digest>,
    reports: Vec<StepReport>,
    resolved: Option<ResolvedBase>,
    packages: Option<PackageSets>,
}

/// A built stage: its final key and its layers.
struct StageOutput {
    key: Digest,
    diff_ids: Vec<Digest>,
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
                let below = tree.as_ref().unwrap_or_else(|| unreachable!());
                let record = execute(
                    store,
                    step,
                    planned,
                    &Below {
                        tree: below,
                        layers: &diff_ids,
                    },
                    packages.as_ref(),
                    stages,
                    options,
                )?;
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

/// The image below a step: its layers and their merged tree.
struct Below<'a> {
    tree: &'a MergedTree,
    layers: &'a [Digest],
}

/// Runs one step that missed the cache.
fn execute(
    store: &Store,
    step: &Step,
    planned: &PlannedStep,
    below: &Below<'_>,
    packages: Option<&PackageSets>,
    stages: &BTreeMap<String, StageOutput>,
    options: &BuildOptions<'_>,
) -> Result<LayerRecord, BuildError> {
    let (below_tree, below) = (below.tree, below.layers);
    let number = step.number;
    let mut on_line = |line: &OutputLine<'_>| {
        (options.progress)(&Progress::Output {
            number,
            line: line.line,
        });
    };
    Ok(match &step.op {
        StepOp::Run(run) => {
            let mut sandbox_step =
                crate::sandbox::Step::shell(format!("step {number}"), run.script.clone());
            sandbox_step.env = run.env.clone();
            // Tools that stamp times (useradd's lastchg, man-db, python's pyc) honour it.
            sandbox_step
                .env
                .entry("SOURCE_DATE_EPOCH".into())
                .or_insert_with(|| options.epoch.to_string());
            sandbox_step.workdir = run.workdir.clone();
            sandbox_step.user = crate::sandbox::User {
                uid: run.user.uid,
                gid: run.user.gid,
            };
            sandbox_step.network = run.network;
            for id in &run.secrets {
                let file = options
                    .secrets
                    .get(id)
                    .ok_or_else(|| BuildError::MissingSecret {
                        step: number,
                        id: id.clone(),
                    })?;
                sandbox_step.secrets.insert(id.clone(), file.clone());
            }
            run_to_layer(
                store,
                number,
                below,
                &sandbox_step,
                options.epoch,
                options.compression,
                &mut on_line,
            )?
        }
        StepOp::Packages { .. } => {
            let sets = packages
                .ok_or_else(|| SourceError::Debian("packages step without a Debian base".into()))?;
            let list = sets.steps.get(&number).cloned().unwrap_or_default();
            let install = Install {
                packages: &list,
                debs: &sets.debs,
                essential: &sets.essential,
                epoch: options.epoch,
                compression: options.compression,
            };
            if below_tree.get("usr/bin/dpkg").is_some() {
                dpkg_layer(store, number, below, &install, &mut on_line)?
            } else {
                unpack_layer(store, number, &install, below_tree.get("usr").is_none())?
            }
        }
        StepOp::Copy {
            source,
            to,
            mode,
            owner,
            from_stage: Some(stage),
            ..
        } => {
            let copy = StageCopy {
                layers: &stages[stage].diff_ids,
                source,
                to,
                mode: *mode,
                owner: *owner,
            };
            stage_copy_layer(
                store,
                number,
                &copy,
                below_tree,
                options.epoch,
                options.compression,
            )?
        }
        op => write_layer(
            store,
            number,
            op,
            &planned.items,
            below_tree,
            options.epoch,
            options.compression,
        )?,
    })
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

fn import_base(
    store: &Store,
    recipe: &Recipe,
    plan: &Plan,
    resolved: Option<&ResolvedBase>,
    packages: Option<&PackageSets>,
    options: &BuildOptions<'_>,
) -> Result<BaseImage, BuildError> {
    Ok(match &recipe.base {
        Base::Debian(_) => {
            let sets = packages
                .ok_or_else(|| SourceError::Debian("Debian base without packages".into()))?;
            if sets.base.is_empty() {
                return Ok(BaseImage::default());
            }
            let diff_id = match store.cache_get(&plan.base_key)? {
                Some(hit) => hit.diff_id,
                None => {
                    (options.progress)(&Progress::Note(&format!(
                        "bootstrapping {} Debian packages",
                        sets.base.len()
                    )));
                    let install = Install {
                        packages: &sets.base,
                        debs: &sets.debs,
                        essential: &sets.essential,
                        epoch: options.epoch,
                        compression: options.compression,
                    };
                    let mut on_line = |line: &OutputLine<'_>| {
                        (options.progress)(&Progress::Output {
                            number: 0,
                            line: line.line,
                        })
                    };
                    let record = bootstrap_layer(store, &install, &mut on_line)?;
                    store.cache_put(&plan.base_key, &record.diff_id, "debian bootstrap")?;
                    record.diff_id
                }
            };
            BaseImage {
                diff_ids: vec![diff_id],
                config: None,
                layers: None,
            }
        }
        Base::Scratch => BaseImage::default(),
        Base::Rootfs(path) => {
            let diff_id = match store.cache_get(&plan.base_key)? {
                Some(hit) => hit.diff_id,
                None => {
                    let record = rootfs::import(store, path, options.epoch, options.compression)?;
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    store.cache_put(&plan.base_key, &record.diff_id, &format!("rootfs {name}"))?;
                    record.diff_id
                }
            };
            BaseImage {
                diff_ids: vec![diff_id],
                config: None,
                layers: None,
            }
        }
        Base::OciLayout { dir, tag } => {
            let manifest = resolve_layout(dir, tag.as_deref(), &recipe.image.platform)?;
            import_layout(store, dir, &manifest)?
        }
        Base::OciArchive(path) => {
            let tmp = tempfile::tempdir_in(store.root()).map_err(SourceError::Io)?;
            unpack_archive(path, tmp.path())?;
            let manifest = resolve_layout(tmp.path(), None, &recipe.image.platform)?;
            import_layout(store, tmp.path(), &manifest)?
        }
        Base::Registry { reference } => {
            let resolved = resolved.ok_or_else(|| SourceError::Unresolved {
                reference: reference.clone(),
                message: "not resolved to a digest".into(),
            })?;
            registry::import(store, options.registry, resolved)?
        }
    })
}

fn write_image(
    store: &Store,
    recipe: &Recipe,
    plan: &Plan,
    base: &BaseImage,
    layers: &[LayerRecord],
    resolved: Option<&ResolvedBase>,
    options: &BuildOptions<'_>,
) -> Result<(Digest, u64, Digest), BuildError> {
    let created = rfc3339(options.epoch);
    let mut config = base.config.clone().unwrap_or_default();
    config.created = Some(created.clone());
    config
        .architecture
        .clone_from(&recipe.image.platform.architecture);
    config.os.clone_from(&recipe.image.platform.os);
    config.variant.clone_from(&recipe.image.platform.variant);
    config.rootfs = RootFs {
        kind: "layers".into(),
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    if let Base::Rootfs(path) = &recipe.base {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        config
            .history
            .push(history(&created, &format!("rootfs {name}")));
    }
    for step in &plan.steps {
        config.history.push(history(&created, &step.description));
    }
    apply_config(&mut config.config, &recipe.config);
    let config_bytes =
        serde_json::to_vec(&config).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    let config_blob = store.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST.into(),
        config: OciDescriptor {
            media_type: MEDIA_TYPE_CONFIG.into(),
            digest: config_blob.digest.clone(),
            size: config_blob.size,
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers: layers
            .iter()
            .map(|l| OciDescriptor {
                media_type: Compression::from_media_type(&l.media_type)
                    .map_or_else(|| l.media_type.clone(), |c| c.media_type().to_owned()),
                digest: l.digest.clone(),
                size: l.size,
                platform: None,
                annotations: BTreeMap::new(),
            })
            .collect(),
        annotations: annotations(created, resolved),
    };
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
    let manifest_blob = store.put_bytes(&manifest_bytes)?;
    Ok((manifest_blob.digest, manifest_blob.size, config_blob.digest))
}

/// The manifest's annotations: the creation date, and for a registry base the standard
/// `org.opencontainers.image.base.*` pair naming it and its resolved digest.
fn annotations(created: String, resolved: Option<&ResolvedBase>) -> BTreeMap<String, String> {
    let mut all = BTreeMap::from([("org.opencontainers.image.created".to_owned(), created)]);
    if let Some(base) = resolved {
        all.insert(
            "org.opencontainers.image.base.name".to_owned(),
            base.reference.clone(),
        );
        all.insert(
            "org.opencontainers.image.base.digest".to_owned(),
            base.digest.to_string(),
        );
    }
    all
}

fn history(created: &str, what: &str) -> History {
    History {
        created: Some(created.to_owned()),
        created_by: Some(format!("imgbuild: {what}")),
        comment: None,
        empty_layer: None,
    }
}

/// Lays the recipe's `[config]` over the base image's runtime config.
fn apply_config(rc: &mut imgbuild_store::oci::RuntimeConfig, spec: &ConfigSpec) {
    if !spec.env.is_empty() {
        let mut env: Vec<String> = rc.env.take().unwrap_or_default();
        for (k, v) in &spec.env {
            let entry = format!("{k}={v}");
            match env
                .iter_mut()
                .find(|e| e.split('=').next() == Some(k.as_str()))
            {
                Some(existing) => *existing = entry,
                None => env.push(entry),
            }
        }
        rc.env = Some(env);
    }
    if let Some(ep) = &spec.entrypoint {
        rc.entrypoint = Some(ep.clone());
        // As with Dockerfiles, a new entrypoint drops the inherited default arguments.
        rc.cmd = None;
    }
    if let Some(cmd) = &spec.cmd {
        rc.cmd = Some(cmd.clone());
    }
    if let Some(w) = &spec.workdir {
        rc.working_dir = Some(w.clone());
    }
    if let Some(u) = &spec.user {
        rc.user = Some(u.clone());
    }
    if !spec.labels.is_empty() {
        let labels = rc.labels.get_or_insert_with(BTreeMap::new);
        labels.extend(spec.labels.clone());
    }
    if !spec.ports.is_empty() {
        let ports = rc.exposed_ports.get_or_insert_with(BTreeMap::new);
        for p in &spec.ports {
            ports.insert(p.clone(), serde_json::json!({}));
        }
    }
    if !spec.volumes.is_empty() {
        let volumes = rc.volumes.get_or_insert_with(BTreeMap::new);
        for v in &spec.volumes {
            volumes.insert(v.clone(), serde_json::json!({}));
        }
    }
    if let Some(s) = &spec.stop_signal {
        rc.stop_signal = Some(s.clone());
    }
}
