//! SLSA provenance of a build: the recipe, its includes and lock, the build's parameters,
//! and every resolved input (each `.deb` of every unit's lock, the bootloader packages of
//! a disk, the base), rendered by [`imgbuild_builder::provenance`] and written as
//! `NAME.provenance.json`.

use std::collections::BTreeMap;
use std::path::Path;

use imgbuild_builder::debian::Lockfile;
use imgbuild_builder::prepare::{unit_lock_path, Unit};
use imgbuild_builder::provenance::{self, Artifact, Dependency, Provenance};
use imgbuild_builder::recipe::{Recipe, SbomFormat};
use imgbuild_builder::BuildReport;
use imgbuild_store::Digest;

use super::sbom::{read_lock, write_document, Document, Inputs};
use super::{BuildRequest, PipelineError};

/// The media type (and OCI artifact type) of an in-toto statement.
pub(super) const MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// What the provenance needs to know about the build beyond the recipe and its report.
pub(super) struct Run<'a> {
    pub request: &'a BuildRequest,
    pub sbom: &'a [SbomFormat],
    /// The base and the image's lock, as the SBOMs have them.
    pub inputs: &'a Inputs,
    /// When the build started and finished (seconds since the epoch), recorded only
    /// when `SOURCE_DATE_EPOCH` was not given.
    pub times: Option<(u64, u64)>,
}

/// Writes `NAME.provenance.json` for the build into the request's output directory.
pub(super) fn write_provenance(
    recipe: &Recipe,
    report: &BuildReport,
    run: &Run<'_>,
    file_stem: &str,
) -> Result<(Document, Vec<u8>), PipelineError> {
    let bytes = provenance::render(&model(recipe, report, run)?);
    let name = format!("{file_stem}.provenance.json");
    let path = write_document(&run.request.out, &name, &bytes)?;
    Ok((
        Document {
            kind: "provenance".to_owned(),
            path,
            media_type: MEDIA_TYPE.to_owned(),
            digest: Digest::of(&bytes),
        },
        bytes,
    ))
}

/// The provenance model of the build.
fn model(
    recipe: &Recipe,
    report: &BuildReport,
    run: &Run<'_>,
) -> Result<Provenance, PipelineError> {
    let main = recipe.source.main();
    let main_dir = main.path.parent().unwrap_or(Path::new(""));
    // Paths relative to the recipe's directory, so another checkout gives the same bytes.
    let relative = |path: &Path| -> String {
        path.strip_prefix(main_dir)
            .unwrap_or(path)
            .display()
            .to_string()
    };
    let recipe_artifact = Artifact {
        uri: relative(&main.path),
        sha256: Digest::of(main.text.as_bytes()).hex(),
    };
    let includes = recipe.source.files()[1..]
        .iter()
        .map(|f| Artifact {
            uri: relative(&f.path),
            sha256: Digest::of(f.text.as_bytes()).hex(),
        })
        .collect();
    let artifact = |path: &Path, digest: &Digest| Artifact {
        uri: relative(path),
        sha256: digest.hex(),
    };
    let mut dependencies = Vec::new();
    let wants_disk = run.request.formats.iter().any(|f| f.is_disk());
    if let Some((lock, _)) = &run.inputs.lock {
        dependencies.extend(debs(lock, wants_disk));
    }
    for stage in &recipe.stages {
        let path = unit_lock_path(recipe, &Unit::Stage(stage.name.clone()));
        if path.exists() {
            dependencies.extend(debs(&read_lock(&path)?.0, false));
        }
    }
    if let Some(base) = run.inputs.base.clone() {
        dependencies.push(Dependency {
            uri: base.purl.clone().unwrap_or_else(|| base.name.clone()),
            name: Some(base.name),
            sha256: base.digest.hex(),
            media_type: None,
            annotations: BTreeMap::new(),
        });
    }
    let mut parameters = BTreeMap::new();
    let mut formats: Vec<&str> = run.request.formats.iter().map(|f| f.name()).collect();
    formats.sort_unstable();
    formats.dedup();
    parameters.insert("formats".to_owned(), serde_json::json!(formats));
    parameters.insert(
        "platform".to_owned(),
        serde_json::json!(recipe.image.platform.to_string()),
    );
    parameters.insert(
        "compression".to_owned(),
        serde_json::json!(match run.request.compression {
            imgbuild_store::Compression::Zstd => "zstd",
            imgbuild_store::Compression::Gzip => "gzip",
            imgbuild_store::Compression::None => "none",
        }),
    );
    if !run.sbom.is_empty() {
        let sbom: Vec<String> = run.sbom.iter().map(ToString::to_string).collect();
        parameters.insert("sbom".to_owned(), serde_json::json!(sbom));
    }
    Ok(Provenance {
        subject_name: recipe.image.name.clone(),
        subject_digest: report.digest.clone(),
        recipe: recipe_artifact,
        lock: match (&report.lock, &run.inputs.lock) {
            (Some(path), Some((_, digest))) => Some(artifact(path, digest)),
            _ => None,
        },
        includes,
        parameters,
        source_date_epoch: run.times.is_none().then_some(run.request.epoch),
        dependencies,
        builder_id: provenance::LOCAL_BUILDER_ID.to_owned(),
        started: run.times.map(|t| t.0),
        finished: run.times.map(|t| t.1),
    })
}

/// One dependency per `.deb` of `lock`, and per bootloader package when `with_boot`.
fn debs(lock: &Lockfile, with_boot: bool) -> Vec<Dependency> {
    let annotations = |version: &str, architecture: &str| {
        BTreeMap::from([
            ("architecture".to_owned(), architecture.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ])
    };
    let mut out: Vec<Dependency> = lock
        .packages
        .iter()
        .map(|p| Dependency {
            uri: match lock.uri_of(p) {
                Some(mirror) => format!("{}/{}", mirror.trim_end_matches('/'), p.filename),
                None => p.filename.clone(),
            },
            name: Some(p.name.clone()),
            sha256: p.sha256.clone(),
            media_type: Some(DEB_MEDIA_TYPE.to_owned()),
            annotations: annotations(&p.version, &p.architecture),
        })
        .collect();
    if with_boot {
        out.extend(lock.boot_packages.iter().map(|p| Dependency {
            uri: format!("{}/{}", p.mirror.trim_end_matches('/'), p.filename),
            name: Some(p.name.clone()),
            sha256: p.sha256.clone(),
            media_type: Some(DEB_MEDIA_TYPE.to_owned()),
            annotations: annotations(&p.version, &p.architecture),
        }));
    }
    out
}

/// The media type of a Debian binary package.
const DEB_MEDIA_TYPE: &str = "application/vnd.debian.binary-package";
