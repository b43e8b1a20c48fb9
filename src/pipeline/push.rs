//! Pushing an image that is already built: from the store or from an OCI layout.

use std::path::PathBuf;
use std::sync::Arc;

use imgbuild_registry::{
    push_image, push_index, Client, LayoutSource, PushReport, Reference, RegistryFetcher,
};
use imgbuild_store::oci::{MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use imgbuild_store::Store;

use super::PipelineError;

/// Where the image to push is.
pub enum PushSource {
    /// An image in the store, as NAME:TAG.
    Stored(String),
    /// An OCI layout directory and the tag of one of its images (or its only image); an
    /// image index (a multi-platform image) is pushed with every platform.
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The tag.
        tag: Option<String>,
    },
}

/// What to push where.
pub struct PushRequest {
    /// The store directory (for [`PushSource::Stored`]).
    pub store: PathBuf,
    /// The image.
    pub source: PushSource,
    /// The destination.
    pub target: Reference,
    /// Talks to the registry.
    pub registry: Arc<Client>,
}

/// Pushes the image; blobs the registry has are skipped.
pub fn push(request: &PushRequest) -> Result<PushReport, PipelineError> {
    let client = &request.registry;
    Ok(match &request.source {
        PushSource::Layout { dir, tag } => {
            let source = LayoutSource::new(dir);
            let (manifest, media_type) = source.manifest(tag.as_deref())?;
            // A multi-platform layout names an image index: every platform goes.
            if media_type == MEDIA_TYPE_INDEX {
                push_index(client, &source, &manifest, &request.target)?
            } else {
                push_image(client, &source, &manifest, &media_type, &request.target)?
            }
        }
        PushSource::Stored(name) => {
            let mut store = Store::open(&request.store)?;
            store.set_fetcher(Box::new(RegistryFetcher::new(Arc::clone(client))));
            let Some(found) = store.refs()?.into_iter().find(|r| &r.name == name) else {
                return Err(PipelineError::UnknownImage { name: name.clone() });
            };
            push_image(
                client,
                &store,
                &found.manifest,
                MEDIA_TYPE_MANIFEST,
                &request.target,
            )?
        }
    })
}
