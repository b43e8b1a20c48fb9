//! `imgbuild inspect`: a recipe's plan, or a built image's manifest and config.

use super::{print_json, Failure};
use clap::Args;
use imgbuild_formats::StoredImage;
use imgbuild_store::Store;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A recipe file, or an image in the store as NAME:TAG.
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
        let base = imgbuild_builder::resolve_base(&store, &client, &recipe)
            .map_err(|e| Failure::user(e.to_string()))?;
        let packages =
            imgbuild_builder::resolve_packages(&store, &recipe, imgbuild_builder::LockMode::Update)
                .map_err(|e| Failure::user(e.to_string()))?;
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
            .map_err(|e| Failure::user(e.to_string()))?;
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
    let Some(found) = store.refs()?.into_iter().find(|r| r.name == args.target) else {
        return Err(Failure::user(format!(
            "`{}` is neither a recipe file nor an image in the store; `imgbuild store ls` lists the images",
            args.target
        )));
    };
    let (name, tag) = found
        .name
        .rsplit_once(':')
        .unwrap_or((&found.name, "latest"));
    let image = StoredImage::load(&store, name, &[tag.to_owned()], &found.manifest)?;
    if args.json {
        return print_json(&serde_json::json!({
            "name": found.name, "digest": found.manifest,
            "base": image.manifest.annotations.get("org.opencontainers.image.base.digest").map(|d| serde_json::json!({
                "ref": image.manifest.annotations.get("org.opencontainers.image.base.name"),
                "digest": d,
            })),
            "manifest": image.manifest, "config": image.config,
        }));
    }
    println!("{} {}", found.name, found.manifest);
    let base_of = |k: &str| image.manifest.annotations.get(k);
    if let (Some(name), Some(digest)) = (
        base_of("org.opencontainers.image.base.name"),
        base_of("org.opencontainers.image.base.digest"),
    ) {
        println!("  base: {name} @ {digest}");
    }
    println!(
        "  platform: {}/{}",
        image.config.os, image.config.architecture
    );
    for (layer, history) in image.manifest.layers.iter().zip(
        image
            .config
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
