//! `imgbuild lock`.

use super::{print_json, Failure};
use clap::Args;
use imgbuild_builder::LockMode;
use imgbuild_store::Store;
use std::path::{Path, PathBuf};

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
}

pub(crate) fn run(store_dir: &Path, args: LockArgs) -> Result<(), Failure> {
    let recipe = imgbuild_builder::recipe::load(&args.recipe)?;
    let store = Store::open(store_dir)?;
    let mode = if args.update {
        LockMode::Refresh
    } else {
        LockMode::Update
    };
    let Some(sets) = imgbuild_builder::resolve_packages(&store, &recipe, mode)? else {
        return Err(Failure::user(format!(
            "{} has no Debian base, so there is nothing to lock",
            args.recipe.display()
        )));
    };
    let count = sets.base.len() + sets.steps.values().map(Vec::len).sum::<usize>();
    if args.json {
        return print_json(&serde_json::json!({
            "lock": sets.lock_path, "written": sets.lock_written, "packages": count,
        }));
    }
    let verb = if sets.lock_written {
        "wrote"
    } else {
        "up to date:"
    };
    eprintln!("{verb} {} ({count} packages)", sets.lock_path.display());
    Ok(())
}
