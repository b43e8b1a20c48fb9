//! Importing a unit's prepared base: the Debian bootstrap layer, a rootfs tarball, an OCI
//! layout or archive, or a registry image, each cached under the plan's base key where it
//! is built here.

use imgbuild_store::{Digest, LayerRecord, Store};

use super::{BuildError, BuildOptions, Progress};
use crate::prepare::PreparedBase;
use crate::recipe::PlatformSpec;
use crate::sandbox::OutputLine;
use crate::sources::debian::PackageSets;
use crate::sources::oci::{import_layout, resolve_layout, unpack_archive, BaseImage};
use crate::sources::{registry, rootfs, SourceError};
use crate::steps::install::{bootstrap_layer, with_files, Install};

/// The base's layers (and config, for an image base), imported into `store`.
pub(super) fn import_base(
    store: &Store,
    base: &PreparedBase,
    base_key: &Digest,
    platform: &PlatformSpec,
    options: &BuildOptions<'_>,
) -> Result<BaseImage, BuildError> {
    let one_layer = |diff_id| BaseImage {
        diff_ids: vec![diff_id],
        config: None,
        layers: None,
    };
    Ok(match base {
        PreparedBase::Debian { packages: sets, .. } => {
            if sets.base.is_empty() {
                return Ok(BaseImage::default());
            }
            let diff_id = match store.cache_get(base_key)? {
                Some(hit) => hit.diff_id,
                None => {
                    // The packages alone have a key of their own, so that bases that
                    // differ only in their apt configuration share the dpkg run.
                    let packages_key = Digest::of(
                        serde_json::json!({
                            "debian bootstrap": sets.base.iter().map(|p| &p.sha256).collect::<Vec<_>>(),
                            "epoch": options.epoch,
                            "v": crate::plan::KEY_FORMAT_VERSION,
                        })
                        .to_string()
                        .as_bytes(),
                    );
                    let bootstrap = match store.cache_get(&packages_key)? {
                        Some(hit) => hit.diff_id,
                        None => {
                            (options.progress)(&Progress::Note(&format!(
                                "bootstrapping {} Debian packages",
                                sets.base.len()
                            )));
                            let record = run_bootstrap(store, sets, options)?;
                            store.cache_put(
                                &packages_key,
                                &record.diff_id,
                                "debian bootstrap (packages)",
                            )?;
                            record.diff_id
                        }
                    };
                    let diff_id = with_apt_files(store, bootstrap, sets, options)?;
                    store.cache_put(base_key, &diff_id, "debian bootstrap")?;
                    diff_id
                }
            };
            one_layer(diff_id)
        }
        PreparedBase::Scratch => BaseImage::default(),
        PreparedBase::Rootfs { path, .. } => {
            let diff_id = match store.cache_get(base_key)? {
                Some(hit) => hit.diff_id,
                None => {
                    let record = rootfs::import(store, path, options.epoch, options.compression)?;
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    store.cache_put(base_key, &record.diff_id, &format!("rootfs {name}"))?;
                    record.diff_id
                }
            };
            one_layer(diff_id)
        }
        PreparedBase::OciLayout { dir, manifest } => import_layout(store, dir, manifest)?,
        PreparedBase::OciArchive { path, digest } => {
            let tmp = tempfile::tempdir_in(store.root()).map_err(SourceError::Io)?;
            unpack_archive(path, tmp.path())?;
            // The archive is the one that was hashed when the build was prepared.
            if crate::sources::file_digest(path)? != *digest {
                return Err(SourceError::BadImage {
                    path: path.clone(),
                    message: "the archive changed while the build ran; build again".into(),
                }
                .into());
            }
            let manifest = resolve_layout(tmp.path(), None, platform)?;
            import_layout(store, tmp.path(), &manifest)?
        }
        PreparedBase::Registry(resolved) => registry::import(store, options.registry, resolved)?,
    })
}

/// A Debian base's layer: its dpkg bootstrap with the apt files squashed on top (the
/// bootstrap itself when there are none, `apt = false`).
pub(super) fn with_apt_files(
    store: &Store,
    bootstrap: Digest,
    sets: &PackageSets,
    options: &BuildOptions<'_>,
) -> Result<Digest, BuildError> {
    if sets.apt_files.is_empty() {
        return Ok(bootstrap);
    }
    let record = with_files(
        store,
        &bootstrap,
        &sets.apt_files,
        options.epoch,
        options.compression,
    )?;
    Ok(record.diff_id)
}

/// Runs a Debian base's dpkg bootstrap (not cached here), its output shown as step 0's.
pub(super) fn run_bootstrap(
    store: &Store,
    sets: &PackageSets,
    options: &BuildOptions<'_>,
) -> Result<LayerRecord, BuildError> {
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
    Ok(bootstrap_layer(store, &install, &mut on_line)?)
}
