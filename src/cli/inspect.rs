//! `imgbuild inspect`: a recipe's plan, or a built image's manifest and config.

use super::{print_json, Failure};
use clap::Args;
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
    #[command(flatten)]
    registry: super::registry_args::RegistryArgs,
}

pub(crate) fn run(store_dir: &Path, args: InspectArgs) -> Result<(), Failure> {
    let as_path = PathBuf::from(&args.target);
    let store = Store::open(store_dir)?;
    if as_path.is_file() {
        let recipe = imgbuild_builder::recipe::load(&as_path)?;
        let client = args.registry.client()?;
        let base =
            imgbuild_builder::resolve_base(&store, &client, &recipe).map_err(Failure::from)?;
        let packages =
            imgbuild_builder::resolve_packages(&store, &recipe, imgbuild_builder::LockMode::Update)
                .map_err(Failure::from)?;
        if !recipe.stages.is_empty() {
            return Err(Failure::user(
                "inspect does not plan recipes with [stage.*] tables yet; `build --json` reports every key",
            ));
        }
        let inputs = imgbuild_builder::PlanInputs {
            resolved: base.as_ref(),
            packages: packages.as_ref(),
            stages: &std::collections::BTreeMap::new(),
        };
        let plan = imgbuild_builder::plan::plan(&recipe, args.source_date_epoch, &inputs)
            .map_err(Failure::from)?;
        let mut steps = Vec::new();
        for s in &plan.steps {
            let cached = store.cache_get(&s.key)?.is_some();
            steps.push(serde_json::json!({
                "index": s.number, "kind": s.kind, "description": s.description,
                "key": s.key, "cached": cached,
            }));
        }
        if args.json {
            return print_json(&serde_json::json!({
                "image": recipe.image.name, "tags": recipe.image.tags,
                "platform": recipe.image.platform.to_string(),
                "base_key": plan.base_key, "base": base, "steps": steps,
            }));
        }
        println!(
            "{} ({}) tags: {}",
            recipe.image.name,
            recipe.image.platform,
            recipe.image.tags.join(", ")
        );
        if let Some(b) = &base {
            println!("  base: {} resolved to {}", b.reference, b.digest);
        }
        for s in &steps {
            let mark = if s["cached"] == true {
                "cached"
            } else {
                "to build"
            };
            println!(
                "  [{}] {:<40} {}  {}",
                s["index"],
                s["description"].as_str().unwrap_or(""),
                &s["key"].as_str().unwrap_or("")[7..19],
                mark
            );
        }
        return Ok(());
    }
    if let Some((dir, tag)) = super::push::layout(&args.target) {
        return inspect_layout(&dir, tag.as_deref(), args.json);
    }
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
    show_image(
        &found.name,
        &found.manifest,
        &image.manifest,
        &image.config,
        args.json,
    )
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
