//! Base images from registries: the reference is resolved to a manifest digest when the
//! build is prepared (that digest, not the tag, enters the base's cache key), then the image
//! is pulled into the store with its layers kept as the registry serves them.

use super::oci::BaseImage;
use super::SourceError;
use crate::recipe::PlatformSpec;
use imgbuild_registry::{Client, Reference};
use imgbuild_store::oci::Platform;
use imgbuild_store::{Digest, Store};

/// A registry base resolved to one manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedBase {
    /// The reference as the recipe wrote it.
    #[serde(rename = "ref", serialize_with = "as_text")]
    pub reference: Reference,
    /// The digest of the manifest for the recipe's platform.
    pub digest: Digest,
}

fn as_text<S: serde::Serializer>(reference: &Reference, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(reference)
}

fn platform(spec: &PlatformSpec) -> Platform {
    Platform {
        architecture: spec.architecture.clone(),
        os: spec.os.clone(),
        variant: spec.variant.clone(),
    }
}

/// Resolves `reference` to the manifest for `spec`, asking the registry (manifests are
/// kept in the store).
pub(crate) fn resolve(
    store: &Store,
    client: &Client,
    reference: &Reference,
    spec: &PlatformSpec,
) -> Result<ResolvedBase, SourceError> {
    let digest = imgbuild_registry::resolve(client, store, reference, &platform(spec))?;
    Ok(ResolvedBase {
        reference: reference.clone(),
        digest,
    })
}

/// Resolves `reference` from the store alone: only a reference pinned to the digest of a
/// single-platform manifest already in the store can be.
pub(crate) fn resolve_offline(
    store: &Store,
    reference: &Reference,
) -> Result<ResolvedBase, SourceError> {
    let not_local = || {
        SourceError::NotLocal {
        what: format!(
            "resolving {reference} needs the registry (pin it as REPO@sha256:... and build once to plan it offline)"
        ),
    }
    };
    let Some(digest) = &reference.digest else {
        return Err(not_local());
    };
    if !store.has_blob(digest)? {
        return Err(not_local());
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&store.read_blob(digest)?).map_err(|_| not_local())?;
    if doc.get("manifests").is_some() {
        return Err(not_local());
    }
    Ok(ResolvedBase {
        reference: reference.clone(),
        digest: digest.clone(),
    })
}

/// Pulls the resolved base into the store (nothing is fetched for blobs already there).
pub(crate) fn import(
    store: &Store,
    client: &Client,
    base: &ResolvedBase,
) -> Result<BaseImage, SourceError> {
    let pulled = imgbuild_registry::pull_image(client, store, &base.reference, &base.digest)?;
    Ok(BaseImage {
        diff_ids: pulled.layers.iter().map(|l| l.diff_id.clone()).collect(),
        config: Some(pulled.config),
        layers: Some(pulled.layers),
    })
}
