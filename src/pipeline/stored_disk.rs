//! A disk of an image that is already in the store, for `imgbuild run NAME:TAG`: the store
//! keeps the layers but neither the recipe's `[disk]` nor its lock, so the disk gets the
//! default layout of the image's architecture (amd64: hybrid BIOS/UEFI, `console=ttyS0`;
//! arm64: UEFI, `console=ttyAMA0`; the content plus headroom) and the bootloaders of
//! Debian's default suite, resolved now.

use std::path::{Path, PathBuf};

use imgbuild_builder::boot_assets as boot;
use imgbuild_formats::bootdisk::{DiskArch, DiskOptions};
use imgbuild_formats::{ExportOptions, Format, StoredImage};
use imgbuild_store::Store;

use super::export::boot_assets;
use super::PipelineError;

/// Writes the store image `name` (`NAME:TAG`, as `imgbuild store ls` lists it) as a qcow2
/// into `out_dir` and returns its path; `note` gets progress lines.
pub fn stored_disk(
    store_dir: &Path,
    name: &str,
    out_dir: &Path,
    note: &dyn Fn(&str),
) -> Result<PathBuf, PipelineError> {
    let store = Store::open(store_dir)?;
    let Some(found) = store.refs()?.into_iter().find(|r| r.name == name) else {
        return Err(PipelineError::UnknownImage {
            name: name.to_owned(),
        });
    };
    let (image_name, tag) = name.split_once(':').unwrap_or((name, "latest"));
    let image = StoredImage::load(&store, image_name, &[tag.to_owned()], &found.manifest)?;
    let mut options = ExportOptions::new(out_dir);
    let arch = DiskArch::from_oci(&image.config.architecture)?;
    options.disk = DiskOptions::for_arch(arch);
    let firmware = options.disk.firmware;
    let pinned = boot::resolve(&store, None, arch.name())?;
    options.boot_assets = boot_assets(&store, None, &pinned, firmware, note)?;
    let artifacts =
        imgbuild_formats::export_all(&store, &image, &[Format::Qcow2], &options, &mut |a| {
            note(&format!("wrote {} ({})", a.path.display(), a.format))
        })?;
    artifacts
        .into_iter()
        .next()
        .map(|a| a.path)
        .ok_or_else(|| PipelineError::UnknownImage {
            name: name.to_owned(),
        })
}
