//! The pipeline: typed requests in, typed outcomes out.
//!
//! - [`build`]: recipe -> prepare -> plan -> build -> (check) -> export -> push -> cache
//!   export (`imgbuild build`, and `imgbuild run` before it boots); the check
//!   (`build --check`, [`check`]) makes every layer again and compares;
//! - [`dry_run`]: recipe -> prepare offline -> plan, writing nothing (`build --dry-run`,
//!   `inspect RECIPE`);
//! - [`lock`]: recipe -> prepare every Debian unit, writing their locks (`imgbuild lock`);
//! - [`push`]: an image of the store or an OCI layout -> a registry (`imgbuild push`);
//! - [`stored_disk`]: an image of the store -> a qcow2 with default `[disk]` settings
//!   (`imgbuild run NAME:TAG`).
//!
//! Progress goes to the request's observer as [`Progress`] events; nothing here prints.

mod cache;
mod check;
mod dry_run;
mod emulation;
mod error;
mod export;
mod located;
mod lock;
mod outputs;
mod platforms;
mod provenance;
mod push;
mod sbom;
mod stored_disk;

pub use check::{BaseCheck, CheckError, CheckOutcome, CompareError};
pub use dry_run::StepPreview;
pub use dry_run::{dry_run, DryRun, DryRunRequest, UnitPreview};
pub use error::PipelineError;
pub use lock::{lock, LockOutcome, LockRequest, LockedUnit};
pub use push::{push, PushRequest, PushSource};
pub use sbom::{image_contents, Document};
pub use stored_disk::stored_disk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use imgbuild_builder::recipe::{PlatformSpec, Recipe, SbomFormat, StepOp};
use imgbuild_builder::{Access, BuildOptions, BuildReport, LockMode, Progress};
use imgbuild_formats::{Artifact, Format, StoredImage};
use imgbuild_registry::{
    AttachReport, Attachment, CacheImport, Client, PushReport, Reference, RegistryFetcher,
};
use imgbuild_store::{Compression, Store};

/// What to build and where it goes.
pub struct BuildRequest {
    /// The recipe file.
    pub recipe: PathBuf,
    /// The store directory.
    pub store: PathBuf,
    /// The formats to write (each once, in a fixed order).
    pub formats: Vec<Format>,
    /// The output directory.
    pub out: PathBuf,
    /// Layer compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`.
    pub epoch: u64,
    /// Whether `SOURCE_DATE_EPOCH` was given (else provenance records the build's times).
    pub epoch_is_set: bool,
    /// How the Debian locks are used.
    pub lock_mode: LockMode,
    /// Build secrets: id and host file.
    pub secrets: Vec<(String, PathBuf)>,
    /// References to push the image to.
    pub push: Vec<Reference>,
    /// Where to export the step cache.
    pub cache_to: Option<Reference>,
    /// Step caches to import first.
    pub cache_from: Vec<Reference>,
    /// Talks to registries.
    pub registry: Arc<Client>,
    /// After building, make every layer again and compare (`build --check`).
    pub check: bool,
    /// SBOMs to write beside the outputs, besides the recipe's `[image] sbom`.
    pub sbom: Vec<SbomFormat>,
    /// Write SLSA provenance beside the outputs (also when the recipe asks for it).
    pub provenance: bool,
    /// The platforms to build (`--platform`); empty: the recipe's.
    pub platforms: Vec<PlatformSpec>,
}

impl BuildRequest {
    /// Building `recipe` into `store` as `format` into `out`, with every default: zstd
    /// layers, epoch 0, the lock updated as needed, no secrets, no push, no cache.
    pub fn new(
        recipe: PathBuf,
        store: PathBuf,
        format: Format,
        out: PathBuf,
        registry: Arc<Client>,
    ) -> Self {
        Self {
            recipe,
            store,
            formats: vec![format],
            out,
            compression: Compression::Zstd,
            epoch: 0,
            epoch_is_set: false,
            lock_mode: LockMode::Update,
            secrets: Vec::new(),
            push: Vec::new(),
            cache_to: None,
            cache_from: Vec::new(),
            registry,
            check: false,
            sbom: Vec::new(),
            provenance: false,
            platforms: Vec::new(),
        }
    }
}

/// What a build did.
#[derive(Debug, serde::Serialize)]
pub struct BuildOutcome {
    /// The build itself: image, digest, steps.
    #[serde(flatten)]
    pub report: BuildReport,
    /// Every output written.
    pub artifacts: Vec<Artifact>,
    /// SBOMs and provenance written beside the outputs.
    pub documents: Vec<Document>,
    /// Every push.
    pub pushed: Vec<PushReport>,
    /// The documents attached to each pushed image.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<AttachReport>,
    /// Every cache imported.
    pub cache_from: Vec<CacheImport>,
    /// The cache export.
    pub cache_to: Option<PushReport>,
    /// What `check` found, when asked (the first platform's, for several).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckOutcome>,
    /// The image index of a multi-platform build (the flattened report is then the
    /// first platform's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<imgbuild_store::Digest>,
    /// Each platform's build, in the index's order (multi-platform builds only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<BuildReport>,
    /// Wall time.
    pub seconds: f64,
}

/// The progress observer of a request.
pub type Observer<'a> = &'a (dyn Fn(&Progress<'_>) + Sync);

/// Builds the recipe, writes every requested format, pushes, exports the cache. A recipe
/// (or `--platform`) with several platforms is built once per platform into an image
/// index ([`platforms`]).
pub fn build(
    request: &BuildRequest,
    progress: Observer<'_>,
) -> Result<BuildOutcome, PipelineError> {
    let start = Instant::now();
    let started = unix_now();
    let note = |text: &str| progress(&Progress::Note(text));
    let mut recipes = platforms::recipes(request)?;
    let store = open_store(request)?;
    if recipes.len() > 1 {
        return platforms::build_index(&store, recipes, request, progress, (start, started));
    }
    let recipe = recipes.remove(0);
    export::check_locked_boot_packages(&store, &recipe, request)?;
    let cache_from = cache::import_all(&request.registry, &store, &request.cache_from, &note);
    // The refs the build sets are taken back if an export fails.
    let refs = store.ref_rollback(&store_tags(&recipe))?;
    let built = build_platform(&store, &recipe, request, progress)?;
    let report = &built.report;
    let image = StoredImage::load(&store, &report.image, &report.tags, &report.digest)?;
    let artifacts = export::export_all(&store, &recipe, &image, request, progress)?;
    let documents = write_documents(
        &store,
        &recipe,
        &built,
        &sbom::Subject {
            image: &image,
            stem: image.file_stem(),
        },
        request,
        started,
        &note,
    )?;
    refs.keep();
    note_built(&built.report, start, &note);
    let mut pushed = Vec::new();
    let mut attached = Vec::new();
    for target in &request.push {
        let done = imgbuild_registry::push_image(
            &request.registry,
            &store,
            &built.report.digest,
            imgbuild_store::oci::MEDIA_TYPE_MANIFEST,
            target,
        )?;
        note_pushed(&done, &note);
        pushed.push(done);
        attached.extend(attach_documents(
            &request.registry,
            &store,
            &built.report,
            &documents,
            target,
            request.epoch,
            &note,
        )?);
    }
    let cache_to = match &request.cache_to {
        Some(target) => Some(cache::export(
            &request.registry,
            &store,
            &built.report,
            target,
            &note,
        )?),
        None => None,
    };
    Ok(BuildOutcome {
        report: built.report,
        artifacts,
        documents: documents.into_iter().map(|(doc, _)| doc).collect(),
        pushed,
        attached,
        cache_from,
        cache_to,
        check: built.check,
        index: None,
        platforms: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The store of the request, fetching blobs of `--cache-from` layers from their registry.
fn open_store(request: &BuildRequest) -> Result<Store, PipelineError> {
    let mut store = Store::open(&request.store)?;
    store.set_fetcher(Box::new(RegistryFetcher::new(Arc::clone(
        &request.registry,
    ))));
    Ok(store)
}

/// The store refs a build of `recipe` sets: `NAME:TAG` for each tag.
fn store_tags(recipe: &Recipe) -> Vec<String> {
    recipe
        .image
        .tags
        .iter()
        .map(|t| format!("{}:{t}", recipe.image.name))
        .collect()
}

/// One platform's image, built.
struct Built {
    report: BuildReport,
    check: Option<CheckOutcome>,
    /// What the documents say it was built from, read only when one is asked for.
    inputs: Option<sbom::Inputs>,
}

/// Prepares, plans and builds `recipe` (one platform) into the store, and checks it when
/// asked.
fn build_platform(
    store: &Store,
    recipe: &Recipe,
    request: &BuildRequest,
    progress: Observer<'_>,
) -> Result<Built, PipelineError> {
    let note = |text: &str| progress(&Progress::Note(text));
    check_secrets(recipe, &request.secrets)?;
    let options = BuildOptions {
        epoch: request.epoch,
        compression: request.compression,
        progress,
        lock_mode: request.lock_mode,
        secrets: request.secrets.iter().cloned().collect(),
        registry: &request.registry,
    };
    let located = |e| located::build_error(recipe, e);
    let access = Access::Fetch {
        lock_mode: request.lock_mode,
        registry: &request.registry,
    };
    let prepared =
        imgbuild_builder::prepare(store, recipe, access, &note).map_err(|e| located(e.into()))?;
    let platform = &recipe.image.platform;
    let plan = imgbuild_builder::plan(
        &prepared,
        request.epoch,
        &platform.to_string(),
        &|key| store.cache_peek(key).unwrap_or(false),
        store,
    )
    .map_err(|e| located(e.into()))?;
    emulation::check(recipe, &prepared, &plan, request.check)?;
    let mut report =
        imgbuild_builder::execute(store, recipe, &prepared, &plan, &options).map_err(located)?;
    let check = if request.check {
        let found = check::check(store, platform, &prepared, &plan, &options, &mut report)
            .map_err(|e| match e {
                PipelineError::Build(e) => located(e),
                e => e,
            })?;
        note(&if found.reproducible {
            format!("check: {} layers made again, all the same", found.checked)
        } else {
            format!(
                "check: {} layers made again, {} differ",
                found.checked, found.differing
            )
        });
        Some(found)
    } else {
        None
    };
    let inputs = if wants_documents(recipe, request) {
        Some(sbom::Inputs::read(recipe, &prepared.image.base, &report)?)
    } else {
        None
    };
    Ok(Built {
        report,
        check,
        inputs,
    })
}

/// Says what was built, how fast, and how much came from the cache.
fn note_built(report: &BuildReport, start: Instant, note: &dyn Fn(&str)) {
    let hits = report
        .steps
        .iter()
        .filter(|s| s.cache == imgbuild_builder::CacheOutcome::Hit)
        .count();
    note(&format!(
        "built {}:{} {} in {:.2}s ({hits}/{} steps cached)",
        report.image,
        report.tags.join(","),
        report.digest,
        start.elapsed().as_secs_f64(),
        report.steps.len()
    ));
}

fn note_pushed(done: &PushReport, note: &dyn Fn(&str)) {
    note(&format!(
        "pushed {} ({} blobs uploaded, {} already there)",
        done.reference,
        done.uploaded.len(),
        done.skipped.len()
    ));
}

/// The SBOM formats of the request and the recipe, each once.
fn sbom_formats(recipe: &Recipe, request: &BuildRequest) -> Vec<SbomFormat> {
    let mut formats: Vec<SbomFormat> = request
        .sbom
        .iter()
        .chain(&recipe.image.sbom)
        .copied()
        .collect();
    formats.sort();
    formats.dedup();
    formats
}

/// Whether the build writes an SBOM or provenance.
fn wants_documents(recipe: &Recipe, request: &BuildRequest) -> bool {
    !sbom_formats(recipe, request).is_empty() || request.provenance || recipe.image.provenance
}

/// Writes the SBOMs (`--sbom` and the recipe's `[image] sbom`) and the provenance
/// (`--provenance` or `[image] provenance`) of the built image beside the outputs, named
/// `STEM.spdx.json`, `STEM.cdx.json`, `STEM.provenance.json`.
fn write_documents(
    store: &Store,
    recipe: &Recipe,
    built: &Built,
    subject: &sbom::Subject<'_>,
    request: &BuildRequest,
    started: u64,
    note: &dyn Fn(&str),
) -> Result<Vec<(Document, Vec<u8>)>, PipelineError> {
    let Some(inputs) = &built.inputs else {
        return Ok(Vec::new());
    };
    let report = &built.report;
    let formats = sbom_formats(recipe, request);
    let mut documents =
        sbom::write_sboms(store, recipe, report, subject, inputs, &formats, request)?;
    if request.provenance || recipe.image.provenance {
        let run = provenance::Run {
            request,
            sbom: &formats,
            inputs,
            times: (!request.epoch_is_set).then(|| (started, unix_now())),
        };
        documents.push(provenance::write_provenance(
            recipe,
            report,
            &run,
            subject.stem,
        )?);
    }
    for (doc, _) in &documents {
        note(&format!("wrote {} ({})", doc.path.display(), doc.kind));
    }
    Ok(documents)
}

/// Seconds since the epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Attaches the written documents to the image pushed to `target`, as OCI referrers.
fn attach_documents(
    client: &Client,
    store: &Store,
    report: &imgbuild_builder::BuildReport,
    documents: &[(Document, Vec<u8>)],
    target: &Reference,
    epoch: u64,
    note: &dyn Fn(&str),
) -> Result<Vec<AttachReport>, PipelineError> {
    if documents.is_empty() {
        return Ok(Vec::new());
    }
    let subject = imgbuild_store::oci::OciDescriptor {
        media_type: imgbuild_store::oci::MEDIA_TYPE_MANIFEST.to_owned(),
        digest: report.digest.clone(),
        size: report.manifest_size,
        platform: None,
        annotations: Default::default(),
    };
    let created = imgbuild_store::oci::rfc3339(epoch);
    let attachments: Vec<Attachment> = documents
        .iter()
        .map(|(doc, bytes)| Attachment {
            artifact_type: doc.media_type.clone(),
            media_type: doc.media_type.clone(),
            bytes: bytes.clone(),
            annotations: [(
                "org.opencontainers.image.created".to_owned(),
                created.clone(),
            )]
            .into(),
        })
        .collect();
    let reports = imgbuild_registry::attach(client, store, &subject, &attachments, target)?;
    note(&format!(
        "attached {} to {} ({})",
        reports
            .iter()
            .map(|r| r.artifact_type.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        target,
        match reports.first().and_then(|r| r.fallback_tag.as_deref()) {
            Some(tag) => format!("listed under the tag {tag}"),
            None => "through the registry's referrers API".to_owned(),
        }
    ));
    Ok(reports)
}

/// Every secret a `run` step names must be given, before anything runs.
fn check_secrets(recipe: &Recipe, given: &[(String, PathBuf)]) -> Result<(), PipelineError> {
    for (_, step) in recipe.all_steps() {
        let StepOp::Run(run) = &step.op else {
            continue;
        };
        if let Some(id) = run
            .secrets
            .iter()
            .find(|id| !given.iter().any(|(g, _)| g == *id))
        {
            let e = recipe
                .step_error(
                    step,
                    &format!("\"{id}\""),
                    format!(
                        "step {} needs the secret `{id}`, which was not given",
                        step.number
                    ),
                )
                .help(format!("pass it with --secret id={id},src=FILE"));
            return Err(e.into());
        }
    }
    Ok(())
}
