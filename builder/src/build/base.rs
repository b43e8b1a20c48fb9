//! Importing a recipe's base: the Debian bootstrap layer, a rootfs tarball, an OCI layout
//! or archive, or a registry image, each cached under the plan's base key where it is
//! built here.

use imgbuild_store::Store;

use super::{BuildError, BuildOptions, Progress};
use crate::plan::Plan;
use crate::recipe::{Base, Recipe};
use crate::sandbox::OutputLine;
use crate::sources::debian::PackageSets;
use crate::sources::oci::{import_layout, resolve_layout, unpack_archive, BaseImage};
use crate::sources::registry::{self, ResolvedBase};
use crate::sources::{rootfs, SourceError};
use crate::steps::install::{bootstrap_layer, Install};

/// The base's layers (and config, for an image base), imported into `store`.
pub(super) fn import_base(
    store: &Store,
    recipe: &Recipe,
    plan: &Plan,
    resolved: Option<&ResolvedBase>,
    packages: Option<&PackageSets>,
    options: &BuildOptions<'_>,
) -> Result<BaseImage, BuildError> {
    Ok(match &recipe.base {
        Base::Debian(_) => {
            let sets =
                packages.ok_or_else(|| SourceError::Internal("Debian base without packages"))?;
            if sets.base.is_empty() {
                return Ok(BaseImage::default());
            }
            let diff_id = match store.cache_get(&plan.base_key)? {
                Some(hit) => hit.diff_id,
                None => {
                    (options.progress)(&Progress::Note(&format!(
                        "bootstrapping {} Debian packages",
                        sets.base.len()
                    )));
                    let install = Install {
                        packages: &sets.base,
                        debs: &sets.debs,
                        essential: &sets.essential,
                        epoch: options.epoch,
                        compression: options.compression,
                    };
                    let mut on_line = |line: &OutputLine<'_>| {
                        (options.progress)(&Progress::Output {
                            number: 0,
                            line: line.line,
                        })
                    };
                    let record = bootstrap_layer(store, &install, &mut on_line)?;
                    store.cache_put(&plan.base_key, &record.diff_id, "debian bootstrap")?;
                    record.diff_id
                }
            };
            BaseImage {
                diff_ids: vec![diff_id],
                config: None,
                layers: None,
            }
        }
        Base::Scratch => BaseImage::default(),
        Base::Rootfs(path) => {
            let diff_id = match store.cache_get(&plan.base_key)? {
                Some(hit) => hit.diff_id,
                None => {
                    let record = rootfs::import(store, path, options.epoch, options.compression)?;
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    store.cache_put(&plan.base_key, &record.diff_id, &format!("rootfs {name}"))?;
                    record.diff_id
                }
            };
            BaseImage {
                diff_ids: vec![diff_id],
                config: None,
                layers: None,
            }
        }
        Base::OciLayout { dir, tag } => {
            let manifest = resolve_layout(dir, tag.as_deref(), &recipe.image.platform)?;
            import_layout(store, dir, &manifest)?
        }
        Base::OciArchive(path) => {
            let tmp = tempfile::tempdir_in(store.root()).map_err(SourceError::Io)?;
            unpack_archive(path, tmp.path())?;
            let manifest = resolve_layout(tmp.path(), None, &recipe.image.platform)?;
            import_layout(store, tmp.path(), &manifest)?
        }
        Base::Registry { reference } => {
            let resolved = resolved.ok_or_else(|| SourceError::Unresolved {
                reference: reference.clone(),
                message: "not resolved to a digest".into(),
            })?;
            registry::import(store, options.registry, resolved)?
        }
    })
}
