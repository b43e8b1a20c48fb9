//! `imgbuild push`: an image from the store (NAME:TAG) or an OCI layout directory to a
//! registry.

use super::registry_args::{reference, RegistryArgs};
use super::{print_json, Failure};
use clap::Args;
use imgbuild_registry::{push_image, LayoutSource, RegistryFetcher};
use imgbuild_store::oci::MEDIA_TYPE_MANIFEST;
use imgbuild_store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// What to push: an image in the store as NAME:TAG, or an OCI layout directory
    /// (DIR or DIR:TAG).
    source: String,
    /// Where to: HOST[:PORT]/REPO:TAG.
    target: String,
    /// Print a JSON object (ref, digest, uploaded, skipped) to stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// An OCI layout named as DIR or DIR:TAG, if `source` is one.
pub(super) fn layout(source: &str) -> Option<(PathBuf, Option<String>)> {
    let is_layout = |p: &Path| p.join("index.json").is_file();
    if is_layout(Path::new(source)) {
        return Some((PathBuf::from(source), None));
    }
    let (dir, tag) = source.rsplit_once(':')?;
    is_layout(Path::new(dir)).then(|| (PathBuf::from(dir), Some(tag.to_owned())))
}

pub(crate) fn run(store_dir: &Path, args: PushArgs) -> Result<(), Failure> {
    let target = reference(&args.target)?;
    let client = Arc::new(args.registry.client()?);
    let report = if let Some((dir, tag)) = layout(&args.source) {
        let source = LayoutSource::new(&dir);
        let (manifest, media_type) = source.manifest(tag.as_deref())?;
        push_image(&client, &source, &manifest, &media_type, &target)?
    } else {
        let mut store = Store::open(store_dir)?;
        store.set_fetcher(Box::new(RegistryFetcher::new(Arc::clone(&client))));
        let Some(found) = store.refs()?.into_iter().find(|r| r.name == args.source) else {
            return Err(Failure::user(format!(
                "`{}` is neither an OCI layout directory nor an image in the store; `imgbuild store ls` lists the images",
                args.source
            )));
        };
        push_image(
            &client,
            &store,
            &found.manifest,
            MEDIA_TYPE_MANIFEST,
            &target,
        )?
    };
    eprintln!(
        "pushed {} {} ({} blobs uploaded, {} already there)",
        report.reference,
        report.digest,
        report.uploaded.len(),
        report.skipped.len()
    );
    if args.json {
        print_json(&report)?;
    }
    Ok(())
}
