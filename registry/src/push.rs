//! Pushing an image: every blob the registry lacks is uploaded (streamed from its source,
//! several at once), blobs it has are skipped (HEAD), blobs known to live in another
//! repository of the same registry are mounted, then the manifest is put under the tag.
//! A multi-platform image ([`push_index`]) sends each platform's manifest by digest first,
//! then the index under the tag.

use crate::source::BlobSource;
use crate::{Client, PushError, Reference, RegistryError};
use imgbuild_store::oci::{Index, Manifest, MEDIA_TYPE_INDEX};
use imgbuild_store::Digest;
use std::sync::Mutex;

/// How many blobs are uploaded at once.
const PARALLEL_UPLOADS: usize = 4;

/// What a push did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PushReport {
    /// Where it went.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The manifest digest.
    pub digest: Digest,
    /// Blobs sent (layers, config, then the manifest).
    pub uploaded: Vec<Digest>,
    /// Blobs the registry already had or mounted from another repository.
    pub skipped: Vec<Digest>,
}

/// Pushes the manifest `manifest` (bytes from `source`) to `target`.
pub fn push_image(
    client: &Client,
    source: &dyn BlobSource,
    manifest: &Digest,
    media_type: &str,
    target: &Reference,
) -> Result<PushReport, PushError> {
    let at = PushError::at(target);
    let (bytes, doc): (_, Manifest) = read_local(source, manifest, "manifest").map_err(&at)?;
    let mut blobs: Vec<Digest> = doc.layers.iter().map(|l| l.digest.clone()).collect();
    blobs.push(doc.config.digest.clone());
    let mut seen = std::collections::BTreeSet::new();
    blobs.retain(|d| seen.insert(d.clone()));
    let (uploaded, skipped) = push_blobs(client, source, &blobs, target).map_err(&at)?;
    let tag = target.tag.clone().unwrap_or_else(|| manifest.to_string());
    let media_type = if media_type.is_empty() {
        doc.media_type.as_str()
    } else {
        media_type
    };
    client
        .put_manifest(target, &tag, &bytes, media_type)
        .map_err(&at)?;
    let mut uploaded = uploaded;
    uploaded.push(manifest.clone());
    Ok(PushReport {
        reference: target.to_string(),
        digest: manifest.clone(),
        uploaded,
        skipped,
    })
}

/// Pushes the image index `index` (bytes from `source`): each manifest it lists, with
/// its blobs, by digest; then the index under `target`'s tag (or its digest).
pub fn push_index(
    client: &Client,
    source: &dyn BlobSource,
    index: &Digest,
    target: &Reference,
) -> Result<PushReport, PushError> {
    let at = PushError::at(target);
    let (bytes, doc): (_, Index) = read_local(source, index, "image index").map_err(&at)?;
    let by_digest = Reference {
        tag: None,
        digest: None,
        ..target.clone()
    };
    let (mut uploaded, mut skipped) = (Vec::new(), Vec::new());
    for manifest in &doc.manifests {
        let done = push_image(
            client,
            source,
            &manifest.digest,
            &manifest.media_type,
            &by_digest,
        )?;
        uploaded.extend(done.uploaded);
        skipped.extend(done.skipped);
    }
    let tag = target.tag.clone().unwrap_or_else(|| index.to_string());
    client
        .put_manifest(target, &tag, &bytes, MEDIA_TYPE_INDEX)
        .map_err(&at)?;
    uploaded.push(index.clone());
    Ok(PushReport {
        reference: target.to_string(),
        digest: index.clone(),
        uploaded,
        skipped,
    })
}

/// The bytes of the local JSON document `digest` (a manifest or an index, `what`),
/// checked against the digest, and parsed.
fn read_local<T: serde::de::DeserializeOwned>(
    source: &dyn BlobSource,
    digest: &Digest,
    what: &str,
) -> Result<(Vec<u8>, T), RegistryError> {
    let bytes = source.read(digest)?;
    if Digest::of(&bytes) != *digest {
        return Err(RegistryError::DigestMismatch {
            host: "local".into(),
            expected: digest.clone(),
            found: Digest::of(&bytes),
        });
    }
    let doc = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Malformed {
        host: "local".into(),
        what: format!("{what} {digest}"),
        message: e.to_string(),
    })?;
    Ok((bytes, doc))
}

/// Makes sure the repository has every blob; returns (uploaded, skipped) in `blobs` order.
pub fn push_blobs(
    client: &Client,
    source: &dyn BlobSource,
    blobs: &[Digest],
    target: &Reference,
) -> Result<(Vec<Digest>, Vec<Digest>), RegistryError> {
    let next = Mutex::new(blobs.iter().enumerate());
    let outcomes: Mutex<Vec<(usize, bool)>> = Mutex::new(Vec::new());
    let first_error: Mutex<Option<RegistryError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_UPLOADS.min(blobs.len()) {
            scope.spawn(|| loop {
                if first_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .is_some()
                {
                    return;
                }
                let item = next
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .next();
                let Some((i, digest)) = item else { return };
                match push_one(client, source, digest, target) {
                    Ok(sent) => outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((i, sent)),
                    Err(e) => {
                        first_error
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = first_error
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        return Err(e);
    }
    let mut outcomes = outcomes
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    outcomes.sort_unstable();
    let (mut uploaded, mut skipped) = (Vec::new(), Vec::new());
    for (i, sent) in outcomes {
        if sent {
            uploaded.push(blobs[i].clone());
        } else {
            skipped.push(blobs[i].clone());
        }
    }
    Ok((uploaded, skipped))
}

/// Makes sure the repository has one blob; true when it had to be uploaded.
fn push_one(
    client: &Client,
    source: &dyn BlobSource,
    digest: &Digest,
    target: &Reference,
) -> Result<bool, RegistryError> {
    if client.blob_exists(target, digest)? {
        return Ok(false);
    }
    if let Some(known) = source.known_at(digest) {
        if let Ok(from) = Reference::parse(&known) {
            if from.registry == target.registry
                && from.repository != target.repository
                && client.mount_blob(target, digest, &from.repository)?
            {
                return Ok(false);
            }
        }
    }
    client.upload_blob(target, digest, &|| source.open(digest))?;
    Ok(true)
}
