//! `imgbuild store ...`: list, measure, verify and collect garbage.

use super::units::{duration, human, size};
use super::{print_json, Failure};
use clap::Subcommand;
use imgbuild_store::{GcOptions, Store};
use std::path::Path;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// List the images in the store.
    Ls {
        /// Print JSON to stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show how much the store holds.
    Du {
        /// Print JSON to stdout.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every blob and report what is missing or corrupt.
    ///
    /// Exits 1 when something is wrong. With --repair, drops the broken blobs and every
    /// cache entry and image that needs them; the next build recreates them.
    Verify {
        /// Drop what is broken.
        #[arg(long)]
        repair: bool,
        /// Print JSON to stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove what no image and no recent cache entry needs.
    ///
    /// Images (every NAME:TAG in `store ls`) are always kept. Cache entries used within
    /// --keep-recent are kept too, least recently used first to go when --max-size is set.
    ///
    /// Example: imgbuild store gc --keep-recent 7d --max-size 20GiB
    Gc {
        /// Keep cache entries used within this long (e.g. 7d, 12h, 0s).
        #[arg(long, default_value = "7d", value_parser = duration)]
        keep_recent: std::time::Duration,
        /// Then drop least recently used cache entries until the store fits (e.g. 20GiB).
        #[arg(long, value_parser = size)]
        max_size: Option<u64>,
        /// Print JSON to stdout.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(store_dir: &Path, cmd: StoreCommand) -> Result<(), Failure> {
    match cmd {
        StoreCommand::Ls { json } => {
            let store = Store::open(store_dir)?;
            let refs = store.refs()?;
            if json {
                let list: Vec<_> = refs
                    .iter()
                    .map(|r| serde_json::json!({"name": r.name, "digest": r.manifest, "updated": r.updated}))
                    .collect();
                return print_json(&list);
            }
            for r in refs {
                println!("{:<40} {}", r.name, r.manifest);
            }
            Ok(())
        }
        StoreCommand::Du { json } => {
            let store = Store::open(store_dir)?;
            let usage = store.usage()?;
            if json {
                return print_json(&usage);
            }
            println!(
                "{}: {} in {} blobs",
                store_dir.display(),
                human(usage.bytes),
                usage.blobs
            );
            println!(
                "  {} layers, {} cache entries, {} images",
                usage.layers, usage.cache_entries, usage.refs
            );
            Ok(())
        }
        StoreCommand::Verify { repair, json } => {
            let store = if repair {
                Store::open_exclusive(store_dir)?
            } else {
                Store::open(store_dir)?
            };
            let report = store.verify(repair)?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "checked {} blobs: {} missing, {} corrupt, {} unindexed (removed by gc)",
                    report.checked,
                    report.missing.len(),
                    report.corrupt.len(),
                    report.unindexed
                );
                for d in report.missing.iter().chain(&report.corrupt) {
                    println!("  broken: {d}");
                }
            }
            if report.is_clean() || report.repaired {
                Ok(())
            } else {
                Err(Failure::internal(
                    "the store has broken blobs; run `imgbuild store verify --repair`",
                ))
            }
        }
        StoreCommand::Gc {
            keep_recent,
            max_size,
            json,
        } => {
            let store = Store::open_exclusive(store_dir)?;
            let report = store.gc(&GcOptions {
                keep_recent,
                max_size,
            })?;
            if json {
                return print_json(&report);
            }
            println!(
                "removed {} blobs ({}) and {} cache entries; {} kept",
                report.blobs_removed,
                human(report.bytes_freed),
                report.cache_entries_removed,
                human(report.bytes_kept)
            );
            Ok(())
        }
    }
}
