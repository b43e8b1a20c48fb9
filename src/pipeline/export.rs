//! Writing the built image in every requested format: the recipe's `[disk]` and
//! `[initramfs]` sections mapped to the exporters' options, and the bootloaders a disk
//! needs fetched first: the ones pinned in the image's lock (`[[boot_package]]`), or, with
//! none pinned and no `--locked`, resolved now and written into the lock.

use imgbuild_builder::boot_assets::{self as boot, LockedBootPackage};
use imgbuild_builder::debian::{DebianFrom, Lockfile};
use imgbuild_builder::prepare::{unit_lock_path, Unit};
use imgbuild_builder::recipe::{Base, BootMode, InitramfsCompression, Recipe};
use imgbuild_builder::Progress;
use imgbuild_builder::{LockMode, SourceError};
use imgbuild_formats::bootdisk::{BootAssets, DiskOptions, Firmware, SyslinuxAssets};
use imgbuild_formats::initramfs::export::{Compression as CpioCompression, InitramfsOptions};
use imgbuild_formats::{Artifact, ExportOptions, Format, StoredImage};
use imgbuild_store::Store;
use std::collections::BTreeMap;
use std::time::Instant;

use super::outputs;
use super::{BuildRequest, Observer, PipelineError};

/// Writes `image` as every format of `request`, each once, telling `progress` about each
/// output. An output already in place and unchanged is left alone, and one the store has
/// recorded elsewhere is cloned ([`super::outputs`]); the rest are exported, and recorded.
pub(super) fn export_all(
    store: &Store,
    recipe: &Recipe,
    image: &StoredImage,
    request: &BuildRequest,
    progress: Observer<'_>,
) -> Result<Vec<Artifact>, PipelineError> {
    let note = |text: &str| progress(&Progress::Note(text));
    let mut formats = request.formats.clone();
    formats.sort();
    formats.dedup();
    let mut options = export_options(recipe, &request.out);
    let any_disk = formats.iter().any(|f| f.is_disk());
    let pinned = if any_disk {
        let firmware = options.disk.firmware;
        let wanted = boot::packages(firmware.uefi(), firmware.bios());
        pinned_boot_packages(store, recipe, &wanted, request.lock_mode, &note)?.0
    } else {
        Vec::new()
    };
    // Staged outputs of builds killed while exporting here (their locks are free); best
    // effort, as each export sweeps again and reports what it cannot write.
    if let Ok(swept) = imgbuild_formats::sweep_staged(&request.out) {
        if !swept.is_empty() {
            note(&format!(
                "removed {} staged output(s) of interrupted builds from {}",
                swept.len(),
                request.out.display()
            ));
        }
    }
    let mut artifacts = Vec::with_capacity(formats.len());
    let mut keys = BTreeMap::new();
    let mut left = Vec::new();
    for format in formats {
        let artifact = imgbuild_formats::artifact_for(image, format, &options);
        let key = outputs::output_key(image, format, &options, &pinned);
        let start = Instant::now();
        let Some(reused) = outputs::reuse(store, &artifact, &key)? else {
            keys.insert(format, key);
            left.push(format);
            continue;
        };
        progress(&Progress::Exported {
            format: artifact.format,
            path: &artifact.path,
            bytes: reused.bytes,
            seconds: start.elapsed().as_secs_f64(),
            reused: reused.copied_from.is_none(),
            copied_from: reused.copied_from.as_deref(),
        });
        artifacts.push(artifact);
    }
    if left.is_empty() {
        return Ok(artifacts);
    }
    if left.iter().any(|f| f.is_disk()) {
        let from = match &recipe.base {
            Base::Debian(from) => Some(from),
            _ => None,
        };
        options.boot_assets = boot_assets(store, from, &pinned, options.disk.firmware, &note)?;
        if recipe.disk.grow == Some(true) {
            warn_if_cannot_grow(store, image, &note)?;
        }
    }
    // The disk formats share one raw disk. Each output is recorded as soon as it is in
    // place; the first failure to record is returned once the exports are done.
    let mut recorded: Option<PipelineError> = None;
    let mut since = Instant::now();
    let written = imgbuild_formats::export_all(store, image, &left, &options, &mut |artifact| {
        let format = left
            .iter()
            .find(|f| f.name() == artifact.format)
            .expect("an export of an asked-for format");
        let bytes = match outputs::remember(store, artifact, &keys[format]) {
            Ok(bytes) => bytes,
            Err(e) => {
                recorded.get_or_insert(e);
                outputs::size_of(artifact)
            }
        };
        progress(&Progress::Exported {
            format: artifact.format,
            path: &artifact.path,
            bytes,
            seconds: since.elapsed().as_secs_f64(),
            reused: false,
            copied_from: None,
        });
        since = Instant::now();
    })?;
    if let Some(e) = recorded {
        return Err(e);
    }
    artifacts.extend(written);
    artifacts.sort_by_key(|a| Format::ALL.iter().position(|f| f.name() == a.format));
    Ok(artifacts)
}

/// `grow = true` set on an image without `systemd-repart`: the disk is written without the
/// grow machinery, and the user is told so.
fn warn_if_cannot_grow(
    store: &Store,
    image: &StoredImage,
    note: &dyn Fn(&str),
) -> Result<(), PipelineError> {
    let tree = imgbuild_formats::rootfs_tar::merged_tree(store, image)?;
    if !imgbuild_formats::bootdisk::grow::image_can_grow(&tree) {
        note(
            "warning: [disk] grow = true, but the image has no systemd-repart (package \
             systemd): its disk will not grow on boot",
        );
    }
    Ok(())
}

/// With `--locked` and a disk format, fails unless the image's lock pins the bootloaders
/// the disk needs: before the build, not after it.
pub(super) fn check_locked_boot_packages(
    store: &Store,
    recipe: &Recipe,
    request: &BuildRequest,
) -> Result<(), PipelineError> {
    if request.lock_mode != LockMode::Locked || !request.formats.iter().any(|f| f.is_disk()) {
        return Ok(());
    }
    let firmware = export_options(recipe, &request.out).disk.firmware;
    let wanted = boot::packages(firmware.uefi(), firmware.bios());
    pinned_boot_packages(store, recipe, &wanted, LockMode::Locked, &|_| {}).map(|_| ())
}

/// Maps the recipe's `[disk]` and `[initramfs]` sections to the exporters' options.
fn export_options(recipe: &Recipe, out: &std::path::Path) -> ExportOptions {
    let mut options = ExportOptions::new(out);
    options.disk = DiskOptions {
        size: recipe.disk.size,
        firmware: match recipe.disk.boot {
            BootMode::Uefi => Firmware::Uefi,
            BootMode::Bios => Firmware::Bios,
            BootMode::Hybrid => Firmware::Hybrid,
        },
        cmdline: recipe.disk.cmdline.clone(),
        compress: recipe.disk.compress,
        grow: recipe.disk.grow.unwrap_or(true),
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

/// The bootloader packages `wanted` (those of them that exist for the image's
/// architecture: no syslinux for arm64) pinned in the image's lock for the recipe's Debian
/// source and the architecture, and whether the lock was written: with none pinned (or
/// `LockMode::Refresh`), every bootloader package of the architecture is resolved and
/// written into the lock (an error with `--locked`).
pub(super) fn pinned_boot_packages(
    store: &Store,
    recipe: &Recipe,
    wanted: &[String],
    lock_mode: LockMode,
    note: &dyn Fn(&str),
) -> Result<(Vec<LockedBootPackage>, bool), PipelineError> {
    let from = match &recipe.base {
        Base::Debian(from) => Some(from),
        _ => None,
    };
    let arch = recipe.image.platform.architecture.as_str();
    let wanted = &boot::for_architecture(wanted, arch);
    let lock_path = unit_lock_path(recipe, &Unit::Image);
    let src = boot::source(from, arch);
    let existing = if lock_path.exists() {
        Some(Lockfile::read(&lock_path).map_err(SourceError::from)?)
    } else {
        None
    };
    let pinned = existing
        .as_ref()
        .and_then(|l| l.boot_packages_for(&src.mirror, &src.suite, wanted))
        .filter(|pinned| {
            pinned
                .iter()
                .all(|p| p.architecture == arch || p.architecture == "all")
        });
    match (pinned, lock_mode) {
        (Some(pinned), LockMode::Update | LockMode::Locked | LockMode::Offline) => {
            Ok((pinned, false))
        }
        (_, LockMode::Locked) => Err(SourceError::Locked {
            message: format!(
                "it pins no {arch} bootloader packages ({}) from {} {} for a disk",
                wanted.join(", "),
                src.mirror,
                src.suite
            ),
            help: format!(
                "run `imgbuild lock {}` (or build without --locked) and commit {}",
                recipe.path.display(),
                lock_path.display()
            ),
            path: lock_path,
        }
        .into()),
        _ => {
            let pinned = boot::resolve(store, from, arch)?;
            let mut lock = existing.unwrap_or_else(Lockfile::empty);
            lock.boot_packages = pinned.clone();
            lock.write(&lock_path).map_err(SourceError::from)?;
            note(&format!(
                "pinned the bootloader packages in {}",
                lock_path.display()
            ));
            Ok((pinned, true))
        }
    }
}

/// Fetches the pinned bootloaders `firmware` needs into the store.
pub(super) fn boot_assets(
    store: &Store,
    from: Option<&DebianFrom>,
    pinned: &[LockedBootPackage],
    firmware: Firmware,
    note: &dyn Fn(&str),
) -> Result<BootAssets, PipelineError> {
    let fetched = boot::fetch_pinned(store, from, pinned, firmware.uefi(), firmware.bios())?;
    for p in &fetched.packages {
        note(&format!(
            "bootloader package {} {} ({})",
            p.name, p.version, p.architecture
        ));
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
