//! `imgbuild build`.

use super::progress::{Display, Reporter};
use super::registry_args::{reference, RegistryArgs};
use super::{print_json, Failure};
use clap::Args;
use imgbuild::pipeline::{self, BuildRequest};
use imgbuild_builder::recipe::{PlatformSpec, SbomFormat};
use imgbuild_builder::{LockMode, Unit};
use imgbuild_formats::Format;
use imgbuild_store::tarball::{Change, Difference};
use imgbuild_store::Compression;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The recipe file.
    recipe: PathBuf,
    /// Output format; repeat for several: oci, oci-archive, docker-archive, tar, raw, qcow2,
    /// vmdk, vhd, vhdx, gce, initramfs.
    #[arg(short, long = "format", value_name = "FORMAT", default_value = "oci", value_parser = parse_format)]
    formats: Vec<Format>,
    /// Output directory.
    #[arg(short, long = "output", value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Layer compression: zstd (smaller, faster) or gzip (read by every runtime).
    #[arg(long, value_name = "ALGO", default_value = "zstd", value_parser = parse_compression)]
    compression: Compression,
    /// Timestamp for every file and the image's creation date, in seconds since the epoch.
    /// [default: 0]
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        value_parser = super::units::epoch
    )]
    source_date_epoch: Option<u64>,
    /// Print one JSON object (image, digest, artifacts, steps, pushed) to stdout.
    #[arg(long)]
    json: bool,
    /// After building, push the image to this reference (HOST[:PORT]/REPO:TAG); repeat
    /// for several.
    #[arg(long = "push", value_name = "REF")]
    push: Vec<String>,
    /// Export this build's step cache entries and their layers to this reference as an
    /// imgbuild cache artifact.
    #[arg(long = "cache-to", value_name = "REF")]
    cache_to: Option<String>,
    /// Import step cache entries from a cache artifact before building (layers are only
    /// downloaded when an output needs them); repeat for several. A missing cache is a
    /// warning, not an error.
    #[arg(long = "cache-from", value_name = "REF")]
    cache_from: Vec<String>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Fail unless the recipe's lock file exists and matches the recipe (for CI).
    #[arg(long)]
    locked: bool,
    /// A build secret for `run` steps that name it: id=ID,src=FILE. Mounted read-only at
    /// /run/secrets/ID; never stored in a layer or a cache key.
    #[arg(long = "secret", value_name = "id=ID,src=FILE", value_parser = parse_secret)]
    secrets: Vec<(String, PathBuf)>,
    /// Print the plan (every step of every stage, its key, whether it is cached and why
    /// not) and stop: nothing is built, fetched or written, the lock included.
    #[arg(long)]
    dry_run: bool,
    /// Say why each step that is not cached missed: the first input of its key that
    /// differs from the last build of this recipe (always in --json, as `why`).
    #[arg(long)]
    explain: bool,
    /// After building, make every layer again (each step on the stored layers below it,
    /// the Debian bootstrap from the same .debs) and compare: print each step whose layer
    /// differs with the paths that differ, and exit 1 if any does.
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// Write a software bill of materials beside the outputs: spdx (NAME.spdx.json, SPDX
    /// 2.3) or cyclonedx (NAME.cdx.json, CycloneDX 1.6); repeat for both. With --push,
    /// each is attached to the pushed image. Adds to the recipe's `[image] sbom`.
    #[arg(long = "sbom", value_name = "FORMAT", value_parser = parse_sbom)]
    sbom: Vec<SbomFormat>,
    /// Write SLSA provenance (NAME.provenance.json, an in-toto statement) beside the
    /// outputs; with --push, attach it to the pushed image.
    #[arg(long)]
    provenance: bool,
    /// Build for this platform instead of the recipe's `platform`/`platforms`:
    /// linux/amd64 or linux/arm64; repeat (or separate with commas) for several, written
    /// as one OCI image index by `--format oci`/`oci-archive` and `--push`. Foreign
    /// `run` and `packages` steps run under qemu-user (`qemu-user-static`).
    #[arg(long = "platform", value_name = "OS/ARCH", value_delimiter = ',', value_parser = parse_platform)]
    platforms: Vec<PlatformSpec>,
}

fn parse_platform(s: &str) -> Result<PlatformSpec, String> {
    s.parse()
}

/// Each platform once, in the order first given.
fn dedup(platforms: &[PlatformSpec]) -> Vec<PlatformSpec> {
    let mut out: Vec<PlatformSpec> = Vec::new();
    for p in platforms {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

fn parse_sbom(s: &str) -> Result<SbomFormat, String> {
    s.parse()
}

fn parse_secret(s: &str) -> Result<(String, PathBuf), String> {
    let mut id = None;
    let mut src = None;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("id", v)) => id = Some(v.to_owned()),
            Some(("src" | "source", v)) => src = Some(PathBuf::from(v)),
            _ => return Err(format!("`{part}`: write secrets as id=ID,src=FILE")),
        }
    }
    let (Some(id), Some(src)) = (id, src) else {
        return Err("write secrets as id=ID,src=FILE".into());
    };
    let simple = !id.is_empty()
        && id != "."
        && id != ".."
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !simple {
        return Err(format!(
            "secret id `{}` is not a simple file name: use letters, digits, `.`, `_` and `-`, not `.` or `..`",
            id.escape_debug()
        ));
    }
    if !src.is_file() {
        return Err(format!("secret file {} does not exist", src.display()));
    }
    Ok((id, src))
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "zstd" => Ok(Compression::Zstd),
        "gzip" => Ok(Compression::Gzip),
        other => Err(format!(
            "unknown compression `{other}`; choose zstd or gzip"
        )),
    }
}

pub(crate) fn run(store_dir: &Path, display: Display, args: BuildArgs) -> Result<(), Failure> {
    if args.dry_run {
        return super::inspect::show_plan(
            &args.recipe,
            store_dir,
            args.source_date_epoch.unwrap_or(0),
            args.json,
        );
    }
    let request = BuildRequest {
        recipe: args.recipe.clone(),
        store: store_dir.to_owned(),
        formats: args.formats.clone(),
        out: args.out.clone(),
        compression: args.compression,
        epoch: args.source_date_epoch.unwrap_or(0),
        epoch_is_set: args.source_date_epoch.is_some(),
        lock_mode: if args.locked {
            LockMode::Locked
        } else {
            LockMode::Update
        },
        secrets: args.secrets.clone(),
        push: args
            .push
            .iter()
            .map(|r| reference(r))
            .collect::<Result<_, _>>()?,
        cache_to: args.cache_to.as_deref().map(reference).transpose()?,
        cache_from: args
            .cache_from
            .iter()
            .map(|r| reference(r))
            .collect::<Result<_, _>>()?,
        registry: Arc::new(args.registry.client()?),
        check: args.check,
        sbom: args.sbom.clone(),
        provenance: args.provenance,
        platforms: dedup(&args.platforms),
    };
    let reporter = Reporter::new(display, Some(store_dir), args.explain);
    let outcome = pipeline::build(&request, &|event| reporter.observe(event))
        .map_err(|e| reporter.fail(e.into()))?;
    reporter.finish();
    if args.json {
        print_json(&outcome)?;
    } else if outcome.check.is_some() {
        print_check(&args.recipe, &outcome);
    }
    match &outcome.check {
        Some(check) if !check.reproducible => Err(Failure::reported(format!(
            "{} of {} layers were not reproducible",
            check.differing, check.checked
        ))),
        _ => Ok(()),
    }
}

/// Prints what `--check` found on stdout: a block per layer that differs, naming the
/// step (number, recipe file:line, kind) and each path that differs, then a summary.
fn print_check(recipe_path: &Path, outcome: &pipeline::BuildOutcome) {
    let Some(check) = &outcome.check else {
        return;
    };
    // The build loaded it a moment ago; without it the blocks only lack file:line.
    let recipe = imgbuild_builder::recipe::load(recipe_path).ok();
    let place = |unit: &Unit, index: usize| -> Option<String> {
        let recipe = recipe.as_ref()?;
        let stage = match unit {
            Unit::Image => None,
            Unit::Stage(name) => Some(name.as_str()),
        };
        let (_, step) = recipe
            .all_steps()
            .find(|(s, step)| *s == stage && step.number == index)?;
        let file = recipe.source.file_at(step.table.start);
        Some(format!("{}:{}", file.path.display(), step.line))
    };
    let unit_name = |unit: &Unit| match unit {
        Unit::Image => String::new(),
        Unit::Stage(name) => format!("stage {name} "),
    };
    for base in check.bases.iter().filter(|b| !b.reproducible) {
        println!(
            "{}base ({}) is not reproducible:",
            unit_name(&base.unit),
            base.description
        );
        print_differences(&base.differences);
    }
    let steps = outcome
        .report
        .stage_steps
        .iter()
        .chain(&outcome.report.steps);
    for step in steps.filter(|s| s.reproducible == Some(false)) {
        let at = place(&step.unit, step.index).map_or_else(String::new, |p| format!(", {p}"));
        println!(
            "{}step {} ({}{at}) is not reproducible: {}",
            unit_name(&step.unit),
            step.index,
            step.kind,
            step.description
        );
        print_differences(&step.differences);
    }
    if check.reproducible {
        println!(
            "reproducible: all {} layers were made again bit for bit",
            check.checked
        );
    } else {
        println!(
            "not reproducible: {} of {} layers differ",
            check.differing, check.checked
        );
    }
}

/// How many paths a block lists before it says how many more differ.
const PATHS_SHOWN: usize = 50;

fn print_differences(differences: &[Difference]) {
    for d in differences.iter().take(PATHS_SHOWN) {
        let what = match d.change {
            Change::Added => "only in the layer made again".to_owned(),
            Change::Removed => "only in the stored layer".to_owned(),
            Change::Changed if d.fields == ["order"] => {
                "the same entries, in another order or encoding".to_owned()
            }
            Change::Changed if d.fields.len() == 1 => format!("{} differs", d.fields[0]),
            Change::Changed => format!("{} differ", d.fields.join(", ")),
        };
        println!("  {}: {what}", d.path);
        if let Some(lines) = &d.lines {
            for (i, line) in lines.stored.iter().enumerate() {
                println!("    stored  {}: {line}", lines.line + i);
            }
            for (i, line) in lines.rebuilt.iter().enumerate() {
                println!("    again   {}: {line}", lines.line + i);
            }
        }
    }
    if differences.len() > PATHS_SHOWN {
        println!(
            "  ... and {} more paths (all of them in --json)",
            differences.len() - PATHS_SHOWN
        );
    }
}
