//! `imgbuild build`.

use super::registry_args::{reference, RegistryArgs};
use super::{print_json, Failure};
use clap::Args;
use imgbuild_builder::recipe::{Base, BootMode, InitramfsCompression, Recipe};
use imgbuild_builder::{BuildOptions, BuildReport, CacheOutcome, LockMode, Progress};
use imgbuild_formats::bootdisk::{BootAssets, DiskOptions, Firmware, SyslinuxAssets};
use imgbuild_formats::initramfs::export::{Compression as CpioCompression, InitramfsOptions};
use imgbuild_formats::{export, Artifact, ExportOptions, Format, StoredImage};
use imgbuild_registry::{
    export_cache, import_cache, push_image, CacheImport, CacheRecord, Client, Reference,
    RegistryFetcher,
};
use imgbuild_store::oci::OciDescriptor;
use imgbuild_store::{Compression, Store};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// The recipe file.
    recipe: PathBuf,
    /// Output format; repeat for several: oci, oci-archive, docker-archive, tar, raw, qcow2,
    /// initramfs.
    #[arg(short, long = "format", value_name = "FORMAT", default_value = "oci", value_parser = parse_format)]
    formats: Vec<Format>,
    /// Output directory.
    #[arg(short, long = "output", value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Layer compression: zstd (smaller, faster) or gzip (read by every runtime).
    #[arg(long, value_name = "ALGO", default_value = "zstd", value_parser = parse_compression)]
    compression: Compression,
    /// Timestamp for every file and the image's creation date, in seconds since the epoch.
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        default_value = "0",
        value_parser = super::units::epoch
    )]
    source_date_epoch: u64,
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

/// A build error that is a mistake in the recipe, pointed at in it (exit 2); any other
/// as it is.
fn located_build_error(recipe: &Recipe, e: imgbuild_builder::BuildError) -> Failure {
    use imgbuild_builder::recipe::StepOp;
    use imgbuild_builder::{BuildError, StepError};
    if let BuildError::Step(StepError::NothingInStage { step, path }) = &e {
        let found = recipe.all_steps().find_map(|(_, s)| match &s.op {
            StepOp::Copy {
                source,
                from_stage: Some(stage),
                ..
            } if s.number == *step && source == path => Some((s, stage)),
            _ => None,
        });
        if let Some((s, stage)) = found {
            return recipe
                .step_error(
                    s,
                    "",
                    format!("step {step} copies {path}, but stage `{stage}` has nothing there"),
                )
                .help(format!(
                    "check the path, or make an earlier step of [stage.{stage}] create it"
                ))
                .into();
        }
    }
    e.into()
}

/// Every secret a `run` step names must be given with `--secret`, before anything runs.
fn check_secrets(recipe: &Recipe, given: &[(String, PathBuf)]) -> Result<(), Failure> {
    for (_, step) in recipe.all_steps() {
        let imgbuild_builder::recipe::StepOp::Run(run) = &step.op else {
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

pub(crate) fn run(store_dir: &Path, args: BuildArgs) -> Result<(), Failure> {
    build_and_export(store_dir, &args).map(drop)
}

/// Builds the recipe, exports every requested format and returns the artifacts.
pub(crate) fn build_and_export(
    store_dir: &Path,
    args: &BuildArgs,
) -> Result<Vec<Artifact>, Failure> {
    let start = Instant::now();
    let recipe = imgbuild_builder::recipe::load(&args.recipe)?;
    check_secrets(&recipe, &args.secrets)?;
    let push_to = args
        .push
        .iter()
        .map(|r| reference(r))
        .collect::<Result<Vec<_>, _>>()?;
    let cache_to = args.cache_to.as_deref().map(reference).transpose()?;
    let cache_from = args
        .cache_from
        .iter()
        .map(|r| reference(r))
        .collect::<Result<Vec<_>, _>>()?;
    let client = Arc::new(args.registry.client()?);
    let mut store = Store::open(store_dir)?;
    store.set_fetcher(Box::new(RegistryFetcher::new(Arc::clone(&client))));
    let imported = import_caches(&client, &store, &cache_from);
    let tty = std::io::stderr().is_terminal();
    let progress = |event: &Progress<'_>| match event {
        Progress::StepStarted {
            number,
            total,
            description,
        } if tty => {
            eprint!("[{number}/{total}] {description} ...");
        }
        Progress::StepStarted { .. } => {}
        Progress::Output { number, line } => {
            if tty {
                eprintln!();
            }
            eprintln!("  [{number}] {line}");
        }
        Progress::Note(note) => eprintln!("{note}"),
        Progress::StepFinished(step) => {
            let how = match step.cache {
                CacheOutcome::Hit => "cached".to_owned(),
                CacheOutcome::Miss => format!("built in {:.2}s", step.seconds),
            };
            if tty {
                eprintln!(" {how}");
            } else {
                eprintln!("[{}] {} ... {how}", step.index, step.description);
            }
        }
    };
    let options = BuildOptions {
        epoch: args.source_date_epoch,
        compression: args.compression,
        progress: &progress,
        lock_mode: if args.locked {
            LockMode::Locked
        } else {
            LockMode::Update
        },
        secrets: args.secrets.iter().cloned().collect(),
        registry: &client,
    };
    // The refs the build sets are taken back if an export fails.
    let tags: Vec<String> = recipe
        .image
        .tags
        .iter()
        .map(|t| format!("{}:{t}", recipe.image.name))
        .collect();
    let refs = store.ref_rollback(&tags)?;
    let report = imgbuild_builder::build(&store, &recipe, &options)
        .map_err(|e| located_build_error(&recipe, e))?;
    let image = StoredImage::load(&store, &report.image, &report.tags, &report.digest)?;
    let mut formats = args.formats.clone();
    formats.sort();
    formats.dedup();
    let mut options = export_options(&recipe, &args.out);
    if formats.iter().any(|f| f.is_disk()) {
        let from = match &recipe.base {
            Base::Debian(from) => Some(from),
            _ => None,
        };
        options.boot_assets = boot_assets(&store, from, options.disk.firmware)?;
    }
    // Staged outputs of builds killed while exporting here (their locks are free); best
    // effort, as each export sweeps again and reports what it cannot write.
    if let Ok(swept) = imgbuild_formats::sweep_staged(&args.out) {
        if !swept.is_empty() {
            eprintln!(
                "removed {} staged output(s) of interrupted builds from {}",
                swept.len(),
                args.out.display()
            );
        }
    }
    let mut artifacts = Vec::new();
    for format in formats {
        let artifact = export(&store, &image, format, &options)?;
        eprintln!("wrote {} ({})", artifact.path.display(), artifact.format);
        artifacts.push(artifact);
    }
    refs.keep();
    let hits = report
        .steps
        .iter()
        .filter(|s| s.cache == CacheOutcome::Hit)
        .count();
    eprintln!(
        "built {}:{} {} in {:.2}s ({hits}/{} steps cached)",
        report.image,
        report.tags.join(","),
        report.digest,
        start.elapsed().as_secs_f64(),
        report.steps.len()
    );
    let mut pushed = Vec::new();
    for target in &push_to {
        let done = push_image(
            &client,
            &store,
            &report.digest,
            imgbuild_store::oci::MEDIA_TYPE_MANIFEST,
            target,
        )?;
        eprintln!(
            "pushed {} ({} blobs uploaded, {} already there)",
            done.reference,
            done.uploaded.len(),
            done.skipped.len()
        );
        pushed.push(done);
    }
    let cache_pushed = match &cache_to {
        Some(target) => {
            let records = cache_records(&store, &report)?;
            let done = export_cache(&client, &store, &records, target)?;
            eprintln!(
                "exported {} cache entries to {}",
                records.len(),
                done.reference
            );
            Some(done)
        }
        None => None,
    };
    if args.json {
        print_json(&serde_json::json!({
            "image": report.image,
            "tags": report.tags,
            "digest": report.digest,
            "base": report.base,
            "artifacts": artifacts,
            "steps": report.steps,
            "lock": report.lock,
            "pushed": pushed,
            "cache_from": imported,
            "cache_to": cache_pushed,
            "seconds": start.elapsed().as_secs_f64(),
        }))?;
    }
    Ok(artifacts)
}

impl BuildArgs {
    /// Arguments for building `recipe` into `out` as `format`, for `imgbuild run`.
    pub(crate) fn for_run(recipe: PathBuf, format: Format, out: PathBuf) -> Result<Self, Failure> {
        let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => super::units::epoch(&v).map_err(Failure::user)?,
            _ => 0,
        };
        Ok(Self {
            recipe,
            formats: vec![format],
            out,
            compression: Compression::Zstd,
            source_date_epoch,
            json: false,
            locked: false,
            secrets: Vec::new(),
            push: Vec::new(),
            cache_to: None,
            cache_from: Vec::new(),
            registry: RegistryArgs::default(),
        })
    }
}

/// Maps the recipe's `[disk]` and `[initramfs]` sections to the exporters' options.
fn export_options(recipe: &Recipe, out: &Path) -> ExportOptions {
    let mut options = ExportOptions::new(out);
    options.disk = DiskOptions {
        size: recipe.disk.size,
        firmware: match recipe.disk.boot {
            BootMode::Uefi => Firmware::Uefi,
            BootMode::Bios => Firmware::Bios,
            BootMode::Hybrid => Firmware::Hybrid,
        },
        cmdline: recipe.disk.cmdline.clone(),
    };
    options.initramfs = InitramfsOptions {
        compression: match recipe.initramfs.compression {
            InitramfsCompression::Zstd => CpioCompression::Zstd,
            InitramfsCompression::Gzip => CpioCompression::Gzip,
        },
        init: recipe.initramfs.init.clone(),
    };
    options
}

/// Fetches the bootloaders `firmware` needs from Debian into the store.
fn boot_assets(
    store: &Store,
    from: Option<&imgbuild_builder::debian::DebianFrom>,
    firmware: Firmware,
) -> Result<BootAssets, Failure> {
    let fetched =
        imgbuild_builder::boot_assets::fetch(store, from, firmware.uefi(), firmware.bios())
            .map_err(Failure::from)?;
    for p in &fetched.packages {
        eprintln!(
            "bootloader package {} {} ({})",
            p.name, p.version, p.architecture
        );
    }
    let syslinux = match (
        fetched.gptmbr,
        fetched.ldlinux_c32,
        fetched.syslinux_installer,
    ) {
        (Some(gptmbr), Some(ldlinux_c32), Some(installer)) => Some(SyslinuxAssets {
            gptmbr,
            ldlinux_c32,
            installer,
        }),
        _ => None,
    };
    Ok(BootAssets {
        systemd_boot: fetched.systemd_boot,
        syslinux,
    })
}

/// Imports every `--cache-from`; a cache that cannot be read is a warning (the first CI
/// run has none yet).
fn import_caches(client: &Client, store: &Store, refs: &[Reference]) -> Vec<CacheImport> {
    let mut imported = Vec::new();
    for r in refs {
        match import_cache(client, store, r) {
            Ok(done) => {
                eprintln!("imported {} cache entries from {r}", done.entries);
                imported.push(done);
            }
            Err(e) => eprintln!("warning: not using cache {r}: {e}"),
        }
    }
    imported
}

/// The build's step cache entries, each with its layer's compressed descriptor.
fn cache_records(store: &Store, report: &BuildReport) -> Result<Vec<CacheRecord>, Failure> {
    let mut records = Vec::new();
    for step in &report.steps {
        let layer = store.layer_by_digest(&step.layer)?.ok_or_else(|| {
            Failure::internal(format!("layer {} is not in the store", step.layer))
        })?;
        records.push(CacheRecord {
            key: step.key.clone(),
            diff_id: step.diff_id.clone(),
            created_by: step.description.clone(),
            layer: OciDescriptor {
                media_type: layer.media_type,
                digest: layer.digest,
                size: layer.size,
                platform: None,
                annotations: std::collections::BTreeMap::new(),
            },
        });
    }
    Ok(records)
}
