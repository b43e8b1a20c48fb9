//! `imgbuild inspect`: a recipe's plan, or a built image's manifest and config.

use super::{print_json, Failure};
use clap::Args;
use imgbuild::pipeline::{self, DryRunRequest};
use imgbuild_formats::StoredImage;
use imgbuild_store::oci::{ImageConfig, Manifest};
use imgbuild_store::{Digest, Store};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A recipe file, an OCI layout directory (DIR or DIR:TAG), or an image in the store as
    /// NAME[:TAG] (NAME alone means NAME:latest).
    target: String,
    /// Timestamp the plan is computed for (as in `build`).
    #[arg(
        long,
        env = "SOURCE_DATE_EPOCH",
        value_name = "SECONDS",
        default_value = "0",
        value_parser = super::units::epoch
    )]
    source_date_epoch: u64,
    /// Print JSON to stdout.
    #[arg(long)]
    json: bool,
    /// For an image in the store: list its Debian packages (name, version, architecture,
    /// declared license) from its dpkg database, as its SBOM does.
    #[arg(long)]
    sbom: bool,
}

pub(crate) fn run(store_dir: &Path, args: InspectArgs) -> Result<(), Failure> {
    let as_path = PathBuf::from(&args.target);
    if args.sbom && (as_path.is_file() || super::push::layout(&args.target).is_some()) {
        return Err(Failure::user(format!(
            "--sbom lists the packages of an image in the store, and `{}` is a file or directory; build it first, then `imgbuild inspect NAME:TAG --sbom`",
            args.target
        )));
    }
    if as_path.is_file() {
        return show_plan(&as_path, store_dir, args.source_date_epoch, args.json);
    }
    if let Some((dir, tag)) = super::push::layout(&args.target) {
        return inspect_layout(&dir, tag.as_deref(), args.json);
    }
    let store = Store::open(store_dir)?;
    let refs = store.refs()?;
    // `NAME` means `NAME:latest`, as in every container tool.
    let tagged = |name: &str| {
        name.rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    };
    let wanted = if tagged(&args.target) {
        args.target.clone()
    } else {
        format!("{}:latest", args.target)
    };
    let Some(found) = refs.into_iter().find(|r| r.name == wanted) else {
        return Err(Failure::user(format!(
            "`{}` is neither a recipe file, an OCI layout directory nor an image in the store; `imgbuild store ls` lists the images",
            args.target
        )));
    };
    let (name, tag) = found
        .name
        .rsplit_once(':')
        .unwrap_or((&found.name, "latest"));
    let image = StoredImage::load(&store, name, &[tag.to_owned()], &found.manifest)?;
    if args.sbom {
        return show_packages(&store, &image, args.json);
    }
    show_image(
        &found.name,
        &found.manifest,
        &image.manifest,
        &image.config,
        args.json,
    )
}

/// Prints a recipe's plan (`inspect RECIPE`, `build --dry-run`): every unit, every step's
/// key, whether it is cached and why not. Nothing is built, fetched or written.
pub(super) fn show_plan(
    recipe: &Path,
    store_dir: &Path,
    epoch: u64,
    json: bool,
) -> Result<(), Failure> {
    let plan = pipeline::dry_run(&DryRunRequest {
        recipe: recipe.to_owned(),
        store: store_dir.to_owned(),
        epoch,
    })?;
    let image = plan.units.last();
    if json {
        // The image's unit also at the top, as `build --json` reports it.
        let mut value =
            serde_json::to_value(&plan).map_err(|e| Failure::internal(e.to_string()))?;
        if let Some(image) = image {
            value["steps"] = serde_json::to_value(&image.steps).unwrap_or_default();
            value["base_key"] = serde_json::to_value(&image.base_key).unwrap_or_default();
            value["base"] = serde_json::to_value(&image.base).unwrap_or_default();
        }
        return print_json(&value);
    }
    println!(
        "{} ({}) tags: {}, SOURCE_DATE_EPOCH={}",
        plan.image,
        plan.platform,
        plan.tags.join(", "),
        plan.epoch
    );
    for unit in &plan.units {
        println!("{}:", unit.unit);
        if let Some(b) = &unit.base {
            println!("  base: {} resolved to {}", b.reference, b.digest);
        }
        if let Some(reason) = &unit.unresolved {
            println!("  not planned offline: {reason}");
        }
        if let Some(why) = &unit.base_why {
            println!("  base: to build ({why})");
        }
        for s in &unit.steps {
            let key = s
                .key
                .as_ref()
                .map_or_else(|| "?".repeat(12), |k| k.hex()[..12].to_owned());
            let mark = match (s.cached, &s.why) {
                (true, _) => "cached".to_owned(),
                (false, Some(why)) => format!("to build ({why})"),
                (false, None) => "to build".to_owned(),
            };
            println!("  [{}] {:<40} {key}  {mark}", s.index, s.description);
        }
    }
    Ok(())
}

/// An image in an OCI layout directory (the one tagged `tag`, or its only one).
fn inspect_layout(dir: &Path, tag: Option<&str>, json: bool) -> Result<(), Failure> {
    use imgbuild_registry::{BlobSource, LayoutSource};
    let source = LayoutSource::new(dir);
    let (digest, _) = source.manifest(tag)?;
    let read = |digest: &Digest, what: &str| -> Result<Vec<u8>, Failure> {
        let bytes = source.read(digest)?;
        if Digest::of(&bytes) != *digest {
            return Err(Failure::user(format!(
                "{}: the {what} blob {digest} does not match its digest; the layout is damaged",
                dir.display()
            )));
        }
        Ok(bytes)
    };
    let bad = |what: &str, e: serde_json::Error| {
        Failure::user(format!("{}: the {what} is not valid: {e}", dir.display()))
    };
    let manifest: Manifest =
        serde_json::from_slice(&read(&digest, "manifest")?).map_err(|e| bad("manifest", e))?;
    let config: ImageConfig = serde_json::from_slice(&read(&manifest.config.digest, "config")?)
        .map_err(|e| bad("config", e))?;
    let label = match tag {
        Some(t) => format!("{}:{t}", dir.display()),
        None => dir.display().to_string(),
    };
    show_image(&label, &digest, &manifest, &config, json)
}

/// Prints an image's manifest and config: as JSON, or its layers with their history.
fn show_image(
    label: &str,
    digest: &Digest,
    manifest: &Manifest,
    config: &ImageConfig,
    json: bool,
) -> Result<(), Failure> {
    if json {
        return print_json(&serde_json::json!({
            "name": label, "digest": digest,
            "base": manifest.annotations.get("org.opencontainers.image.base.digest").map(|d| serde_json::json!({
                "ref": manifest.annotations.get("org.opencontainers.image.base.name"),
                "digest": d,
            })),
            "manifest": manifest, "config": config,
        }));
    }
    println!("{label} {digest}");
    let base_of = |k: &str| manifest.annotations.get(k);
    if let (Some(name), Some(digest)) = (
        base_of("org.opencontainers.image.base.name"),
        base_of("org.opencontainers.image.base.digest"),
    ) {
        println!("  base: {name} @ {digest}");
    }
    println!("  platform: {}/{}", config.os, config.architecture);
    for (layer, history) in manifest.layers.iter().zip(
        config
            .history
            .iter()
            .filter(|h| h.empty_layer != Some(true)),
    ) {
        println!(
            "  {} {:>10}  {}",
            &layer.digest.to_string()[..19],
            layer.size,
            history.created_by.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// Prints the Debian packages of a stored image: a table, or a JSON array.
fn show_packages(store: &Store, image: &StoredImage, json: bool) -> Result<(), Failure> {
    let contents = pipeline::image_contents(store, image)?;
    let license = |name: &str| contents.licenses.get(name).map(|l| l.expression.clone());
    if json {
        let packages: Vec<serde_json::Value> = contents
            .installed
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "version": p.version,
                    "architecture": p.architecture,
                    "source": p.source.clone().unwrap_or_else(|| p.name.clone()),
                    "license": license(&p.name),
                })
            })
            .collect();
        return print_json(&packages);
    }
    if contents.installed.is_empty() {
        println!("no Debian packages (the image has no /var/lib/dpkg/status)");
        return Ok(());
    }
    let width = |f: &dyn Fn(&imgbuild_builder::sbom::InstalledPackage) -> usize| {
        contents.installed.iter().map(f).max().unwrap_or(0)
    };
    let (wn, wv, wa) = (
        width(&|p| p.name.len()).max(4),
        width(&|p| p.version.len()).max(7),
        width(&|p| p.architecture.len()).max(4),
    );
    println!("{:wn$}  {:wv$}  {:wa$}  LICENSE", "NAME", "VERSION", "ARCH");
    for p in &contents.installed {
        println!(
            "{:wn$}  {:wv$}  {:wa$}  {}",
            p.name,
            p.version,
            p.architecture,
            license(&p.name).unwrap_or_else(|| "-".to_owned())
        );
    }
    println!("{} packages", contents.installed.len());
    Ok(())
}
