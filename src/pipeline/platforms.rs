//! Multi-platform builds: `[image] platforms` (or several `--platform`) builds the recipe
//! once per platform, each with its own lock (see
//! [`imgbuild_builder::prepare::unit_lock_path`]), and puts the images into one OCI image
//! index, which the `oci` and `oci-archive` outputs and `--push` carry. Every other format
//! holds one platform.
//!
//! In the store each platform's image is tagged `NAME:TAG-ARCH`, and `NAME:TAG` is the
//! first platform's; SBOMs and provenance are written per platform as `NAME-ARCH.*`.

use std::time::Instant;

use imgbuild_builder::recipe::{load_for, PlatformSpec, Recipe};
use imgbuild_builder::Progress;
use imgbuild_formats::{Format, StoredImage, StoredIndex};
use imgbuild_store::Store;

use super::{
    build_platform, cache, note_built, note_pushed, store_tags, write_documents, BuildOutcome,
    BuildRequest, Observer, PipelineError,
};

/// The recipe once per platform to build: `--platform`'s, else the recipe's, in order.
/// Several platforms need formats that hold them all and no `--cache-to`.
pub(super) fn recipes(request: &BuildRequest) -> Result<Vec<Recipe>, PipelineError> {
    let primary = imgbuild_builder::recipe::load(&request.recipe)?;
    let wanted = if request.platforms.is_empty() {
        primary.image.platforms.clone()
    } else {
        request.platforms.clone()
    };
    if wanted.len() > 1 {
        check_outputs(&primary, request, &wanted)?;
    }
    wanted
        .iter()
        .map(|p| {
            if *p == primary.image.platform {
                Ok(primary.clone())
            } else {
                Ok(load_for(&request.recipe, Some(p))?)
            }
        })
        .collect()
}

/// Refuses what one build of several platforms cannot write: a single-platform format,
/// or a step cache export.
fn check_outputs(
    recipe: &Recipe,
    request: &BuildRequest,
    platforms: &[PlatformSpec],
) -> Result<(), PipelineError> {
    let single = request
        .formats
        .iter()
        .find(|f| !matches!(f, Format::Oci | Format::OciArchive))
        .map(|f| format!("--format {}", f.name()));
    let cache = request.cache_to.as_ref().map(|_| "--cache-to".to_owned());
    let Some(what) = single.or(cache) else {
        return Ok(());
    };
    let list = platforms
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let message = format!(
        "{what} takes one platform, and this build has {} ({list})",
        platforms.len()
    );
    let help = format!(
        "add --platform {} (or another) to build one of them; oci, oci-archive and --push hold every platform",
        platforms[0]
    );
    if request.platforms.is_empty() {
        let span = recipe.image.platforms_span.clone();
        Err(recipe.source.error(span, message).help(help).into())
    } else {
        Err(PipelineError::Platforms {
            message: format!("{message} (from --platform)"),
            help,
        })
    }
}

/// Builds each recipe (one per platform), writes the image index into the store and the
/// `oci`/`oci-archive` outputs, pushes it and attaches each platform's documents.
pub(super) fn build_index(
    store: &Store,
    mut recipes: Vec<Recipe>,
    request: &BuildRequest,
    progress: Observer<'_>,
    (start, started): (Instant, u64),
) -> Result<BuildOutcome, PipelineError> {
    let note = |text: &str| progress(&Progress::Note(text));
    let cache_from = cache::import_all(&request.registry, store, &request.cache_from, &note);
    let index_tags = recipes[0].image.tags.clone();
    let mut all_tags = store_tags(&recipes[0]);
    for (i, recipe) in recipes.iter_mut().enumerate() {
        let arch = recipe.image.platform.architecture.clone();
        let mut tags: Vec<String> = index_tags.iter().map(|t| format!("{t}-{arch}")).collect();
        if i == 0 {
            tags.splice(0..0, index_tags.iter().cloned());
        }
        recipe.image.tags = tags;
        all_tags.extend(store_tags(recipe));
    }
    all_tags.sort();
    all_tags.dedup();
    let refs = store.ref_rollback(&all_tags)?;
    let mut built = Vec::new();
    let mut images = Vec::new();
    let mut documents = Vec::new();
    for recipe in &recipes {
        note(&format!("building {}", recipe.image.platform));
        let one = build_platform(store, recipe, request, progress)?;
        let report = &one.report;
        let image = StoredImage::load(store, &report.image, &report.tags, &report.digest)?;
        let stem = format!(
            "{}-{}",
            image.file_stem(),
            recipe.image.platform.architecture
        );
        let subject = super::sbom::Subject {
            image: &image,
            stem: &stem,
        };
        documents.push(write_documents(
            store, recipe, &one, &subject, request, started, &note,
        )?);
        images.push(image);
        built.push(one);
    }
    let name = &recipes[0].image.name;
    let index = StoredIndex::assemble(store, name, &index_tags, images)?;
    let options = imgbuild_formats::ExportOptions::new(&request.out);
    let mut formats = request.formats.clone();
    formats.sort();
    formats.dedup();
    let mut artifacts = Vec::new();
    for format in formats {
        let artifact = imgbuild_formats::export_index(store, &index, format, &options)?;
        note(&format!("wrote {}", artifact.path.display()));
        artifacts.push(artifact);
    }
    refs.keep();
    for one in &built {
        note_built(&one.report, start, &note);
    }
    note(&format!(
        "image index {} ({} platforms)",
        index.digest,
        index.images.len()
    ));
    let mut pushed = Vec::new();
    let mut attached = Vec::new();
    for target in &request.push {
        let done = imgbuild_registry::push_index(&request.registry, store, &index.digest, target)?;
        note_pushed(&done, &note);
        pushed.push(done);
        for (one, docs) in built.iter().zip(&documents) {
            attached.extend(super::attach_documents(
                &request.registry,
                store,
                &one.report,
                docs,
                target,
                request.epoch,
                &note,
            )?);
        }
    }
    let mut reports = built.into_iter();
    let first = reports.next().expect("several platforms");
    let mut platforms = vec![first.report.clone()];
    platforms.extend(reports.map(|b| b.report));
    Ok(BuildOutcome {
        report: first.report,
        artifacts,
        documents: documents
            .into_iter()
            .flatten()
            .map(|(doc, _)| doc)
            .collect(),
        pushed,
        attached,
        cache_from,
        cache_to: None,
        check: first.check,
        index: Some(index.digest),
        platforms,
        seconds: start.elapsed().as_secs_f64(),
    })
}
