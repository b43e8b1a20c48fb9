//! Pulling an image: resolve a tag (or pinned digest) to the manifest for one platform,
//! then fetch its config and layers into the store, every blob verified against its digest.
//! Layers are kept exactly as the registry serves them (no recompression).

use crate::{Client, PullError, Reference, RegistryError};
use imgbuild_store::oci::{
    ImageConfig, Index, Manifest, Platform, DOCKER_MEDIA_TYPE_LIST, MEDIA_TYPE_INDEX,
};
use imgbuild_store::{Compression, Digest, LayerRecord, Store};

/// An image pulled into the store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The platform manifest's digest.
    pub manifest: Digest,
    /// Its config.
    pub config: ImageConfig,
    /// Its layers, lowest first, as stored.
    pub layers: Vec<LayerRecord>,
}

fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_INDEX || media_type == DOCKER_MEDIA_TYPE_LIST
}

fn malformed(r: &Reference, what: &str, e: impl std::fmt::Display) -> PullError {
    PullError::at(r)(RegistryError::Malformed {
        host: r.registry.clone(),
        what: what.to_owned(),
        message: e.to_string(),
    })
}

/// The digest of `reference`'s manifest for `platform`. A digest-pinned reference whose
/// manifest is already in the store needs no network; a tag is always asked for.
pub fn resolve(
    client: &Client,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
) -> Result<Digest, PullError> {
    let mut current = match &reference.digest {
        Some(d)
            if store
                .has_blob(d)
                .map_err(|e| PullError::at(reference)(e.into()))? =>
        {
            d.clone()
        }
        _ => fetch_manifest(client, store, reference, &reference.manifest_ref())?,
    };
    for _ in 0..4 {
        let bytes = store
            .read_blob(&current)
            .map_err(|e| PullError::at(reference)(e.into()))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| malformed(reference, "manifest", e))?;
        let media_type = doc.get("mediaType").and_then(|m| m.as_str()).unwrap_or("");
        let looks_like_index = is_index(media_type) || doc.get("manifests").is_some();
        if !looks_like_index {
            return Ok(current);
        }
        let index: Index =
            serde_json::from_value(doc).map_err(|e| malformed(reference, "index", e))?;
        let chosen = index
            .manifests
            .iter()
            .find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.os == platform.os
                        && p.architecture == platform.architecture
                        && (platform.variant.is_none() || p.variant == platform.variant)
                })
            })
            .ok_or_else(|| PullError::NoPlatform {
                reference: reference.to_string(),
                platform: format!("{}/{}", platform.os, platform.architecture),
                available: index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        current = chosen.digest.clone();
        if !store
            .has_blob(&current)
            .map_err(|e| PullError::at(reference)(e.into()))?
        {
            fetch_manifest(client, store, reference, &current.to_string())?;
        }
    }
    Err(malformed(reference, "index", "indexes nest too deeply"))
}

fn fetch_manifest(
    client: &Client,
    store: &Store,
    reference: &Reference,
    which: &str,
) -> Result<Digest, PullError> {
    let fetched = client
        .get_manifest(reference, which)
        .map_err(PullError::at(reference))?;
    store
        .put_bytes(&fetched.bytes)
        .map_err(|e| PullError::at(reference)(e.into()))?;
    Ok(fetched.digest)
}

/// Fetches the config and every layer of the manifest `digest` (already in the store, see
/// [`resolve`]) and records the layers.
pub fn pull_image(
    client: &Client,
    store: &Store,
    reference: &Reference,
    digest: &Digest,
) -> Result<PulledImage, PullError> {
    let at = PullError::at(reference);
    let manifest: Manifest = store.read_json(digest).map_err(|e| at(e.into()))?;
    let pinned = reference.with_digest(digest);
    // Every size is checked before the first byte is fetched.
    let mut missing: u64 = 0;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        crate::blobs::check_blob_size(reference, &d.digest, d.size).map_err(&at)?;
        if !store.has_blob(&d.digest).map_err(|e| at(e.into()))? {
            missing = missing.saturating_add(d.size);
        }
    }
    crate::blobs::check_free_space(store, reference, &format!("image {digest}"), missing)
        .map_err(&at)?;
    client
        .fetch_blob(
            store,
            &pinned,
            &manifest.config.digest,
            manifest.config.size,
        )
        .map_err(PullError::at(reference))?;
    let config: ImageConfig = store
        .read_json(&manifest.config.digest)
        .map_err(|e| PullError::at(reference)(e.into()))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(malformed(
            reference,
            "image",
            "the config's diff_ids and the manifest's layers differ in number",
        ));
    }
    let mut layers = Vec::new();
    for (layer, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if Compression::from_media_type(&layer.media_type).is_none() {
            return Err(malformed(
                reference,
                &format!("layer {}", layer.digest),
                format!("unsupported media type {}", layer.media_type),
            ));
        }
        let stored = client
            .fetch_blob(store, &pinned, &layer.digest, layer.size)
            .map_err(PullError::at(reference))?;
        let record = LayerRecord {
            diff_id: diff_id.clone(),
            media_type: layer.media_type.clone(),
            digest: stored.digest,
            size: stored.size,
        };
        store
            .add_layer(&record)
            .map_err(|e| PullError::at(reference)(e.into()))?;
        // Remember where the blob lives: a later push to the same registry can mount it.
        store
            .add_remote_layer(&record, &pinned.to_string())
            .map_err(|e| PullError::at(reference)(e.into()))?;
        layers.push(record);
    }
    Ok(PulledImage {
        manifest: digest.clone(),
        config,
        layers,
    })
}
