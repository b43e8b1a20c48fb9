//! Writing the built image in every requested format: the recipe's `[disk]` and
//! `[initramfs]` sections mapped to the exporters' options, and the bootloaders a disk
//! needs fetched first.

use imgbuild_builder::debian::DebianFrom;
use imgbuild_builder::recipe::{Base, BootMode, InitramfsCompression, Recipe};
use imgbuild_formats::bootdisk::{BootAssets, DiskOptions, Firmware, SyslinuxAssets};
use imgbuild_formats::initramfs::export::{Compression as CpioCompression, InitramfsOptions};
use imgbuild_formats::{export, Artifact, ExportOptions, StoredImage};
use imgbuild_store::Store;

use super::{BuildRequest, PipelineError};

/// Writes `image` as every format of `request`, each once.
pub(super) fn export_all(
    store: &Store,
    recipe: &Recipe,
    image: &StoredImage,
    request: &BuildRequest,
    note: &dyn Fn(&str),
) -> Result<Vec<Artifact>, PipelineError> {
    let mut formats = request.formats.clone();
    formats.sort();
    formats.dedup();
    let mut options = export_options(recipe, &request.out);
    if formats.iter().any(|f| f.is_disk()) {
        let from = match &recipe.base {
            Base::Debian(from) => Some(from),
            _ => None,
        };
        options.boot_assets = boot_assets(store, from, options.disk.firmware, note)?;
    }
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
    let mut artifacts = Vec::new();
    for format in formats {
        let artifact = export(store, image, format, &options)?;
        note(&format!(
            "wrote {} ({})",
            artifact.path.display(),
            artifact.format
        ));
        artifacts.push(artifact);
    }
    Ok(artifacts)
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

/// Fetches the bootloaders `firmware` needs from Debian into the store.
fn boot_assets(
    store: &Store,
    from: Option<&DebianFrom>,
    firmware: Firmware,
    note: &dyn Fn(&str),
) -> Result<BootAssets, PipelineError> {
    let fetched =
        imgbuild_builder::boot_assets::fetch(store, from, firmware.uefi(), firmware.bios())?;
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
