//! The registry build cache: a build's step cache entries exported as an OCI artifact
//! (`--cache-to`) and imported into another store (`--cache-from`).
//!
//! The artifact is an OCI image manifest with `artifactType` [`CACHE_ARTIFACT_TYPE`]; its
//! config blob is a JSON list of [`CacheRecord`]s and its layers are the layer blobs the
//! entries name. Importing records the entries and the layers, but not their bytes: each
//! layer blob becomes a *remote blob* of the store, fetched by [`RegistryFetcher`] only when
//! an exporter (or a later step) reads it.

use crate::source::BlobSource;
use crate::{Client, PullError, PushError, PushReport, Reference, RegistryError};
use imgbuild_store::oci::{Manifest, OciDescriptor, MEDIA_TYPE_MANIFEST};
use imgbuild_store::{BlobFetcher, Digest, LayerRecord, Store, StoreError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The cache artifact's `artifactType`.
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.imgbuild.cache.v1";
/// The media type of its config blob (the entry list).
pub const CACHE_CONFIG_TYPE: &str = "application/vnd.imgbuild.cache.config.v1+json";

/// One exported step cache entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheRecord {
    /// The step's cache key.
    pub key: Digest,
    /// The layer it produced (uncompressed digest).
    pub diff_id: Digest,
    /// The history text of the step.
    pub created_by: String,
    /// The layer's compressed blob.
    pub layer: OciDescriptor,
}

#[derive(serde::Serialize)]
struct CacheManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    #[serde(rename = "artifactType")]
    artifact_type: &'a str,
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

/// Pushes `records` and their layers from the store to `target` as a cache artifact.
pub fn export_cache(
    client: &Client,
    store: &Store,
    records: &[CacheRecord],
    target: &Reference,
) -> Result<PushReport, PushError> {
    let at = PushError::at(target);
    let config = serde_json::to_vec(records).map_err(|e| at(RegistryError::Io(e.into())))?;
    let config_blob = store
        .put_bytes(&config)
        .map_err(|e| at(RegistryError::Store(e)))?;
    let mut layers: Vec<OciDescriptor> = Vec::new();
    for r in records {
        if !layers.iter().any(|l| l.digest == r.layer.digest) {
            layers.push(r.layer.clone());
        }
    }
    let manifest = CacheManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        artifact_type: CACHE_ARTIFACT_TYPE,
        config: OciDescriptor {
            media_type: CACHE_CONFIG_TYPE.into(),
            digest: config_blob.digest.clone(),
            size: config_blob.size,
            platform: None,
            annotations: BTreeMap::new(),
        },
        layers,
    };
    let bytes = serde_json::to_vec(&manifest).map_err(|e| at(RegistryError::Io(e.into())))?;
    let digest = store
        .put_bytes(&bytes)
        .map_err(|e| at(RegistryError::Store(e)))?
        .digest;
    crate::push::push_image(
        client,
        store as &dyn BlobSource,
        &digest,
        MEDIA_TYPE_MANIFEST,
        target,
    )
}

/// What an import brought in.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheImport {
    /// Where from.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The artifact's manifest digest.
    pub digest: Digest,
    /// Entries recorded.
    pub entries: usize,
}

/// Records the cache entries of the artifact at `source`; layer bytes stay remote.
pub fn import_cache(
    client: &Client,
    store: &Store,
    source: &Reference,
) -> Result<CacheImport, PullError> {
    let at = PullError::at(source);
    let fetched = client
        .get_manifest(source, &source.manifest_ref())
        .map_err(&at)?;
    let malformed = |message: String| {
        PullError::at(source)(RegistryError::Malformed {
            host: source.registry.clone(),
            what: "cache artifact".into(),
            message,
        })
    };
    let manifest: Manifest =
        serde_json::from_slice(&fetched.bytes).map_err(|e| malformed(e.to_string()))?;
    if manifest.config.media_type != CACHE_CONFIG_TYPE {
        return Err(malformed(format!(
            "its config is {}, not an imgbuild cache ({CACHE_CONFIG_TYPE}); was it written with --cache-to?",
            manifest.config.media_type
        )));
    }
    let pinned = source.with_digest(&fetched.digest);
    client
        .fetch_blob(
            store,
            &pinned,
            &manifest.config.digest,
            manifest.config.size,
        )
        .map_err(PullError::at(source))?;
    let records: Vec<CacheRecord> = store
        .read_json(&manifest.config.digest)
        .map_err(|e| PullError::at(source)(e.into()))?;
    let store_err = |e: StoreError| PullError::at(source)(e.into());
    for r in &records {
        if !manifest.layers.iter().any(|l| l.digest == r.layer.digest) {
            return Err(malformed(format!(
                "entry {} names layer {} that the artifact does not carry",
                r.key, r.layer.digest
            )));
        }
        let layer = LayerRecord {
            diff_id: r.diff_id.clone(),
            media_type: r.layer.media_type.clone(),
            digest: r.layer.digest.clone(),
            size: r.layer.size,
        };
        if store.has_blob(&layer.digest).map_err(store_err)? {
            store.add_layer(&layer).map_err(store_err)?;
        } else {
            store
                .add_remote_layer(&layer, &pinned.to_string())
                .map_err(store_err)?;
        }
        if store.cache_get(&r.key).map_err(store_err)?.is_none() {
            store
                .cache_put(&r.key, &r.diff_id, &r.created_by)
                .map_err(store_err)?;
        }
    }
    Ok(CacheImport {
        reference: source.to_string(),
        digest: fetched.digest,
        entries: records.len(),
    })
}

/// Downloads remote blobs for the store with a registry client.
#[derive(Debug, Clone)]
pub struct RegistryFetcher {
    client: Arc<Client>,
}

impl RegistryFetcher {
    /// A fetcher using `client`.
    pub fn new(client: Arc<Client>) -> Self {
        Self { client }
    }
}

impl BlobFetcher for RegistryFetcher {
    fn fetch(&self, store: &Store, digest: &Digest, source: &str) -> Result<(), StoreError> {
        let reference = Reference::parse(source)
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?;
        let size = store
            .layer_by_digest(digest)?
            .map(|l| l.size)
            .ok_or_else(|| StoreError::MissingBlob(digest.clone()))?;
        self.client
            .fetch_blob(store, &reference, digest, size)
            .map(drop)
            .map_err(|e| match e {
                RegistryError::Store(s) => s,
                other => StoreError::Io(std::io::Error::other(format!(
                    "fetching {digest} from {source}: {other}"
                ))),
            })
    }
}
