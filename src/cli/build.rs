//! `imgbuild build`.

use super::{print_json, Failure};
use clap::Args;
use imgbuild_builder::recipe::{Base, BootMode, InitramfsCompression, Recipe};
use imgbuild_builder::{BuildOptions, CacheOutcome, LockMode, Progress};
use imgbuild_formats::bootdisk::{BootAssets, DiskOptions, Firmware, SyslinuxAssets};
use imgbuild_formats::initramfs::export::{Compression as CpioCompression, InitramfsOptions};
use imgbuild_formats::{export, Artifact, ExportOptions, Format, StoredImage};
use imgbuild_store::{Compression, Store};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
        default_value_t = 0
    )]
    source_date_epoch: u64,
    /// Print one JSON object (image, digest, artifacts, steps) to stdout.
    #[arg(long)]
    json: bool,
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
    let store = Store::open(store_dir)?;
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
    };
    let report = imgbuild_builder::build(&store, &recipe, &options)?;
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
    let mut artifacts = Vec::new();
    for format in formats {
        let artifact = export(&store, &image, format, &options)?;
        eprintln!("wrote {} ({})", artifact.path.display(), artifact.format);
        artifacts.push(artifact);
    }
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
    if args.json {
        print_json(&serde_json::json!({
            "image": report.image,
            "tags": report.tags,
            "digest": report.digest,
            "artifacts": artifacts,
            "steps": report.steps,
            "lock": report.lock,
            "seconds": start.elapsed().as_secs_f64(),
        }))?;
    }
    Ok(artifacts)
}

impl BuildArgs {
    /// Arguments for building `recipe` into `out` as `format`, for `imgbuild run`.
    pub(crate) fn for_run(recipe: PathBuf, format: Format, out: PathBuf) -> Self {
        Self {
            recipe,
            formats: vec![format],
            out,
            compression: Compression::Zstd,
            source_date_epoch: std::env::var("SOURCE_DATE_EPOCH")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            json: false,
            locked: false,
            secrets: Vec::new(),
        }
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
            .map_err(|e| Failure::internal(super::failure::chain(&e)))?;
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
