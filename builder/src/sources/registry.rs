//! Base images from registries: the reference is resolved to a manifest digest when the
//! build is planned (that digest, not the tag, enters the base's cache key), then the image
//! is pulled into the store with its layers kept as the registry serves them.

use super::oci::BaseImage;
use super::SourceError;
use crate::recipe::{Base, PlatformSpec, Recipe};
use imgbuild_registry::{Client, Reference};
use imgbuild_store::oci::Platform;
use imgbuild_store::{Digest, Store};

/// A registry base resolved to one manifest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResolvedBase {
    /// The reference as the recipe wrote it.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The digest of the manifest for the recipe's platform.
    pub digest: Digest,
}

fn platform(spec: &PlatformSpec) -> Platform {
    Platform {
        architecture: spec.architecture.clone(),
        os: spec.os.clone(),
        variant: spec.variant.clone(),
    }
}

fn parse(reference: &str) -> Result<Reference, SourceError> {
    Reference::parse(reference).map_err(|e| SourceError::Unresolved {
        reference: reference.to_owned(),
        message: e.to_string(),
    })
}

/// Resolves the recipe's base when it comes from a registry (`None` for other bases).
pub fn resolve_base(
    store: &Store,
    client: &Client,
    recipe: &Recipe,
) -> Result<Option<ResolvedBase>, SourceError> {
    let Base::Registry { reference } = &recipe.base else {
        return Ok(None);
    };
    let parsed = parse(reference)?;
    let digest =
        imgbuild_registry::resolve(client, store, &parsed, &platform(&recipe.image.platform))?;
    Ok(Some(ResolvedBase {
        reference: reference.clone(),
        digest,
    }))
}

/// Pulls the resolved base into the store (nothing is fetched for blobs already there).
pub(crate) fn import(
    store: &Store,
    client: &Client,
    base: &ResolvedBase,
) -> Result<BaseImage, SourceError> {
    let parsed = parse(&base.reference)?;
    let pulled = imgbuild_registry::pull_image(client, store, &parsed, &base.digest)?;
    Ok(BaseImage {
        diff_ids: pulled.layers.iter().map(|l| l.diff_id.clone()).collect(),
        config: Some(pulled.config),
        layers: Some(pulled.layers),
    })
}
