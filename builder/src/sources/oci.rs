//! Local OCI images as bases: an OCI layout directory or an OCI archive (a tarred layout).
//! Their layer blobs are copied into the store as they are, each checked against its digest.

use super::SourceError;
use crate::recipe::PlatformSpec;
use imgbuild_store::oci::{ImageConfig, Index, Manifest, DOCKER_MEDIA_TYPE_LIST, MEDIA_TYPE_INDEX};
use imgbuild_store::tarball::read_meta;
use imgbuild_store::{Digest, LayerRecord, Store};
use std::path::{Path, PathBuf};

/// A base image ready to build on.
#[derive(Debug, Clone, Default)]
pub(crate) struct BaseImage {
    /// Its layers' diff_ids, lowest first.
    pub diff_ids: Vec<Digest>,
    /// Its config, when it came from an image.
    pub config: Option<ImageConfig>,
    /// The exact layer blobs to reuse (registry bases keep their layers as served).
    pub layers: Option<Vec<LayerRecord>>,
}

fn bad(path: &Path, message: impl Into<String>) -> SourceError {
    SourceError::BadImage {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn blob(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

fn read_json<T: serde::de::DeserializeOwned>(dir: &Path, path: &Path) -> Result<T, SourceError> {
    let bytes = fs_err::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| bad(dir, format!("{}: {e}", path.display())))
}

/// Finds the manifest for `tag` (or the only one) for `platform`, descending into indexes.
pub(crate) fn resolve_layout(
    dir: &Path,
    tag: Option<&str>,
    platform: &PlatformSpec,
) -> Result<Digest, SourceError> {
    let index: Index = read_json(dir, &dir.join("index.json"))?;
    let chosen = match tag {
        Some(tag) => index
            .manifests
            .iter()
            .find(|m| {
                m.annotations
                    .get("org.opencontainers.image.ref.name")
                    .map(String::as_str)
                    == Some(tag)
            })
            .ok_or_else(|| bad(dir, format!("no image tagged `{tag}` in index.json")))?,
        None => match index.manifests.as_slice() {
            [one] => one,
            [] => return Err(bad(dir, "index.json lists no images")),
            _ => {
                return Err(bad(
                    dir,
                    "index.json lists several images; name one as `oci = \"DIR:TAG\"`",
                ))
            }
        },
    };
    let mut descriptor = chosen.clone();
    for _ in 0..4 {
        if descriptor.media_type != MEDIA_TYPE_INDEX
            && descriptor.media_type != DOCKER_MEDIA_TYPE_LIST
        {
            return Ok(descriptor.digest);
        }
        let nested: Index = read_json(dir, &blob(dir, &descriptor.digest))?;
        descriptor = nested
            .manifests
            .into_iter()
            .find(|m| {
                m.platform
                    .as_ref()
                    .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
            })
            .ok_or_else(|| bad(dir, format!("no image for platform {platform}")))?;
    }
    Err(bad(dir, "image indexes nest too deeply"))
}

/// Copies the image `manifest` of the layout at `dir` into the store.
pub(crate) fn import_layout(
    store: &Store,
    dir: &Path,
    manifest: &Digest,
) -> Result<BaseImage, SourceError> {
    let manifest_path = blob(dir, manifest);
    let doc: Manifest = read_json(dir, &manifest_path)?;
    if Digest::of(&fs_err::read(&manifest_path)?) != *manifest {
        return Err(bad(
            dir,
            format!("manifest {manifest} does not match its digest"),
        ));
    }
    let config_bytes = fs_err::read(blob(dir, &doc.config.digest))?;
    if Digest::of(&config_bytes) != doc.config.digest {
        return Err(bad(
            dir,
            format!("config {} does not match its digest", doc.config.digest),
        ));
    }
    let config: ImageConfig =
        serde_json::from_slice(&config_bytes).map_err(|e| bad(dir, format!("config: {e}")))?;
    if config.rootfs.diff_ids.len() != doc.layers.len() {
        return Err(bad(
            dir,
            "the config's diff_ids and the manifest's layers differ in number",
        ));
    }
    for (layer, diff_id) in doc.layers.iter().zip(&config.rootfs.diff_ids) {
        if imgbuild_store::Compression::from_media_type(&layer.media_type).is_none() {
            return Err(bad(
                dir,
                format!(
                    "layer {} has unsupported media type {}",
                    layer.digest, layer.media_type
                ),
            ));
        }
        let mut file = fs_err::File::open(blob(dir, &layer.digest))?;
        let stored = store.put_verified(&mut file, &layer.digest)?;
        store.add_layer(&LayerRecord {
            diff_id: diff_id.clone(),
            media_type: layer.media_type.clone(),
            digest: stored.digest,
            size: stored.size,
        })?;
    }
    Ok(BaseImage {
        diff_ids: config.rootfs.diff_ids.clone(),
        config: Some(config),
        layers: None,
    })
}

/// Unpacks an OCI archive into `into` (regular files and directories only) as a layout.
pub(crate) fn unpack_archive(archive_path: &Path, into: &Path) -> Result<(), SourceError> {
    let mut archive = tar::Archive::new(super::rootfs::open_tarball(archive_path)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let meta = read_meta(&mut entry).map_err(|source| SourceError::Layer {
            path: archive_path.to_owned(),
            source,
        })?;
        let target = into.join(&meta.path);
        match meta.kind {
            imgbuild_store::tarball::EntryKind::Dir => fs_err::create_dir_all(&target)?,
            imgbuild_store::tarball::EntryKind::File => {
                if let Some(parent) = target.parent() {
                    fs_err::create_dir_all(parent)?;
                }
                std::io::copy(&mut entry, &mut fs_err::File::create(&target)?)?;
            }
            _ => {}
        }
    }
    Ok(())
}
