//! `imgbuild store ...`: list, measure, remove, verify and collect garbage.

use super::units::{duration, human, size};
use super::{print_json, Failure};
use clap::Subcommand;
use imgbuild_store::{Bucket, GcOptions, Store};
use std::path::Path;

#[derive(Debug, Subcommand)]
pub(crate) enum StoreCommand {
    /// List the images in the store.
    Ls {
        /// Print JSON to stdout.
        #[arg(long)]
        json: bool,
    },
    /// Show how much the store holds on disk (everything below it, as `du -sb` counts),
    /// bucket by bucket.
    Du {
        /// Print JSON to stdout.
        #[arg(long)]
        json: bool,
    },
    /// Remove an image (NAME:TAG, or NAME for NAME:latest) from the store.
    ///
    /// Its blobs stay until `imgbuild store gc` finds nothing else needs them.
    ///
    /// Example: imgbuild store rm hello:1.0 && imgbuild store gc
    Rm {
        /// The image, as `imgbuild store ls` lists it.
        #[arg(value_name = "NAME[:TAG]")]
        name: String,
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
    /// Images (every NAME:TAG in `store ls`) are always kept, with the cache entries of
    /// their layers. Other cache entries used within --keep-recent are kept too. With
    /// --max-size, least recently used cache entries go first, then least recently used
    /// unpacked layers (recreated when a build needs them), until the whole store fits.
    ///
    /// Example: imgbuild store gc --keep-recent 7d --max-size 20GiB
    Gc {
        /// Keep cache entries used (and bootloader resolutions written) within this long
        /// (e.g. 7d, 12h, 0s).
        #[arg(long, default_value = "7d", value_parser = duration)]
        keep_recent: std::time::Duration,
        /// Then drop least recently used cache entries and unpacked layers until the whole
        /// store fits (e.g. 20GiB).
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
            println!("{}: {}", store_dir.display(), human(usage.bytes));
            for bucket in Bucket::ALL {
                let bytes = usage.buckets.get(&bucket).copied().unwrap_or(0);
                let what = match bucket {
                    Bucket::Blobs => format!("{} blobs", usage.blobs),
                    Bucket::Unpacked => format!("{} unpacked layers", usage.unpacked),
                    Bucket::Tmp | Bucket::BootAssets | Bucket::Plans => String::new(),
                };
                let line = format!("  {:<12} {:>10}  {what}", bucket.dir_name(), human(bytes));
                println!("{}", line.trim_end());
            }
            println!(
                "  {:<12} {:>10}  index and locks",
                "other",
                human(usage.other_bytes)
            );
            println!(
                "  {} layers, {} cache entries, {} images",
                usage.layers, usage.cache_entries, usage.refs
            );
            if usage.unreadable_dirs > 0 {
                eprintln!(
                    "warning: {} directories could not be read; the total is a lower bound",
                    usage.unreadable_dirs
                );
            }
            Ok(())
        }
        StoreCommand::Rm { name } => {
            let store = Store::open(store_dir)?;
            let full = if name
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
            {
                name
            } else {
                format!("{name}:latest")
            };
            if !store.remove_ref(&full)? {
                return Err(Failure::user(format!(
                    "no image `{full}` in the store {}; `imgbuild store ls` lists the images",
                    store_dir.display()
                )));
            }
            eprintln!("removed {full}; `imgbuild store gc` frees what only it needed");
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
            let broken = "the store has broken blobs; run `imgbuild store verify --repair`";
            match (report.is_clean() || report.repaired, json) {
                (true, _) => Ok(()),
                // The report printed above says what is broken: one JSON object, not two.
                (false, true) => Err(Failure::reported(broken)),
                (false, false) => Err(Failure::internal(broken)),
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
                "removed {} blobs, {} cache entries, {} unpacked layers and {} other entries ({}); {} kept",
                report.blobs_removed,
                report.cache_entries_removed,
                report.unpacked_removed,
                report.other_removed,
                human(report.bytes_freed),
                human(report.bytes_kept)
            );
            if report.over_max_size > 0 {
                eprintln!(
                    "warning: the store is still {} over --max-size: the images and the index alone need more; `imgbuild store rm` some images or raise --max-size",
                    human(report.over_max_size)
                );
            }
            Ok(())
        }
    }
}
