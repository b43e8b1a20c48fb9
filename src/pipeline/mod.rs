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

use imgbuild_builder::recipe::{Recipe, SbomFormat, StepOp};
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
    /// What `check` found, when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckOutcome>,
    /// Wall time.
    pub seconds: f64,
}

/// The progress observer of a request.
pub type Observer<'a> = &'a (dyn Fn(&Progress<'_>) + Sync);

/// Builds the recipe, writes every requested format, pushes, exports the cache.
pub fn build(
    request: &BuildRequest,
    progress: Observer<'_>,
) -> Result<BuildOutcome, PipelineError> {
    let start = Instant::now();
    let started = unix_now();
    let note = |text: &str| progress(&Progress::Note(text));
    let recipe = imgbuild_builder::recipe::load(&request.recipe)?;
    check_secrets(&recipe, &request.secrets)?;
    let mut store = Store::open(&request.store)?;
    store.set_fetcher(Box::new(RegistryFetcher::new(Arc::clone(
        &request.registry,
    ))));
    export::check_locked_boot_packages(&store, &recipe, request)?;
    let cache_from = cache::import_all(&request.registry, &store, &request.cache_from, &note);
    let options = BuildOptions {
        epoch: request.epoch,
        compression: request.compression,
        progress,
        lock_mode: request.lock_mode,
        secrets: request.secrets.iter().cloned().collect(),
        registry: &request.registry,
    };
    // The refs the build sets are taken back if an export fails.
    let tags: Vec<String> = recipe
        .image
        .tags
        .iter()
        .map(|t| format!("{}:{t}", recipe.image.name))
        .collect();
    let refs = store.ref_rollback(&tags)?;
    let located = |e| located::build_error(&recipe, e);
    let access = Access::Fetch {
        lock_mode: request.lock_mode,
        registry: &request.registry,
    };
    let prepared =
        imgbuild_builder::prepare(&store, &recipe, access, &note).map_err(|e| located(e.into()))?;
    let platform = &recipe.image.platform;
    let plan = imgbuild_builder::plan(&prepared, request.epoch, &platform.to_string(), &|key| {
        store.cache_peek(key).unwrap_or(false)
    })
    .map_err(|e| located(e.into()))?;
    emulation::check(&recipe, &prepared, &plan, request.check)?;
    let mut report =
        imgbuild_builder::execute(&store, &recipe, &prepared, &plan, &options).map_err(located)?;
    let check = if request.check {
        let found = check::check(&store, platform, &prepared, &plan, &options, &mut report)
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
    let image = StoredImage::load(&store, &report.image, &report.tags, &report.digest)?;
    let artifacts = export::export_all(&store, &recipe, &image, request, &note)?;
    let documents = write_documents(
        &store, &recipe, &prepared, &report, &image, request, started,
    )?;
    for (doc, _) in &documents {
        note(&format!("wrote {} ({})", doc.path.display(), doc.kind));
    }
    refs.keep();
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
    let mut pushed = Vec::new();
    let mut attached = Vec::new();
    for target in &request.push {
        let done = imgbuild_registry::push_image(
            &request.registry,
            &store,
            &report.digest,
            imgbuild_store::oci::MEDIA_TYPE_MANIFEST,
            target,
        )?;
        note(&format!(
            "pushed {} ({} blobs uploaded, {} already there)",
            done.reference,
            done.uploaded.len(),
            done.skipped.len()
        ));
        pushed.push(done);
        if !documents.is_empty() {
            let reports = attach_documents(
                &request.registry,
                &store,
                &report,
                &documents,
                target,
                request.epoch,
            )?;
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
            attached.extend(reports);
        }
    }
    let cache_to = match &request.cache_to {
        Some(target) => Some(cache::export(
            &request.registry,
            &store,
            &report,
            target,
            &note,
        )?),
        None => None,
    };
    Ok(BuildOutcome {
        report,
        artifacts,
        documents: documents.into_iter().map(|(doc, _)| doc).collect(),
        pushed,
        attached,
        cache_from,
        cache_to,
        check,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Writes the SBOMs (`--sbom` and the recipe's `[image] sbom`) and the provenance
/// (`--provenance` or `[image] provenance`) of the built image beside the outputs.
fn write_documents(
    store: &Store,
    recipe: &Recipe,
    prepared: &imgbuild_builder::Prepared<'_>,
    report: &BuildReport,
    image: &StoredImage,
    request: &BuildRequest,
    started: u64,
) -> Result<Vec<(Document, Vec<u8>)>, PipelineError> {
    let mut formats: Vec<SbomFormat> = request
        .sbom
        .iter()
        .chain(&recipe.image.sbom)
        .copied()
        .collect();
    formats.sort();
    formats.dedup();
    if formats.is_empty() && !request.provenance && !recipe.image.provenance {
        return Ok(Vec::new());
    }
    let inputs = sbom::Inputs::read(recipe, &prepared.image.base, report)?;
    let mut documents =
        sbom::write_sboms(store, recipe, report, image, &inputs, &formats, request)?;
    if request.provenance || recipe.image.provenance {
        let run = provenance::Run {
            request,
            sbom: &formats,
            inputs: &inputs,
            times: (!request.epoch_is_set).then(|| (started, unix_now())),
        };
        documents.push(provenance::write_provenance(
            recipe,
            report,
            &run,
            image.file_stem(),
        )?);
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
) -> Result<Vec<AttachReport>, PipelineError> {
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
    Ok(imgbuild_registry::attach(
        client,
        store,
        &subject,
        &attachments,
        target,
    )?)
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
