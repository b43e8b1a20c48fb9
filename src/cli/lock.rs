//! `imgbuild lock`.

use super::progress::{Display, Reporter};
use super::{print_json, Failure};
use clap::Args;
use imgbuild::pipeline::{self, LockRequest};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// The recipe file.
    recipe: PathBuf,
    /// Resolve again from the mirror even when the lock still matches the recipe.
    #[arg(long)]
    update: bool,
    /// Print JSON to stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    registry: super::registry_args::RegistryArgs,
}

pub(crate) fn run(store_dir: &Path, display: Display, args: LockArgs) -> Result<(), Failure> {
    let request = LockRequest {
        recipe: args.recipe.clone(),
        store: store_dir.to_owned(),
        refresh: args.update,
        registry: Arc::new(args.registry.client()?),
    };
    // Locking runs no step: nothing worth a log file.
    let reporter = Reporter::new(display, None, false);
    let outcome = pipeline::lock(&request, &|event| reporter.observe(event))
        .map_err(|e| reporter.fail(e.into()))?;
    reporter.finish();
    if args.json {
        // The image's lock (or the first) also at the top, as before stages were locked.
        let main = outcome.units.last();
        return print_json(&serde_json::json!({
            "lock": main.map(|u| &u.lock),
            "written": main.is_some_and(|u| u.written),
            "packages": main.map_or(0, |u| u.packages),
            "units": outcome.units,
        }));
    }
    for unit in &outcome.units {
        let verb = if unit.written { "wrote" } else { "up to date:" };
        let mut pins = vec![format!("{} packages", unit.packages)];
        if unit.boot_packages > 0 {
            pins.push(format!("{} bootloader packages", unit.boot_packages));
        }
        if let Some(digest) = &unit.registry_digest {
            pins.push(format!("base {digest}"));
        }
        eprintln!(
            "{verb} {} ({}, {}, {})",
            unit.lock.display(),
            pins.join(", "),
            unit.unit,
            unit.platform
        );
    }
    Ok(())
}
