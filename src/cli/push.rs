//! `imgbuild push`: an image from the store (NAME:TAG) or an OCI layout directory to a
//! registry.

use super::registry_args::{reference, RegistryArgs};
use super::{print_json, Failure};
use clap::Args;
use imgbuild::pipeline::{self, PushRequest, PushSource};
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
    let source = match layout(&args.source) {
        Some((dir, tag)) => PushSource::Layout { dir, tag },
        None => PushSource::Stored(args.source.clone()),
    };
    let report = pipeline::push(&PushRequest {
        store: store_dir.to_owned(),
        source,
        target: reference(&args.target)?,
        registry: Arc::new(args.registry.client()?),
    })?;
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
