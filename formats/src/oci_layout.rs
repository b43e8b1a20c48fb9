//! The OCI image layout directory: `oci-layout`, `index.json` (one entry per tag: the
//! image's manifest, or the image index of a multi-platform image) and the
//! blobs, as the [image-layout spec](https://github.com/opencontainers/image-spec/blob/main/image-layout.md) lays them out.

use crate::{ExportError, StoredImage, StoredIndex};
use imgbuild_store::oci::{Index, OciDescriptor, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use imgbuild_store::{Digest, Store};
use std::collections::BTreeMap;
use std::path::Path;

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// What a layout holds: its blobs and its `index.json`.
#[derive(Debug, Clone)]
pub struct LayoutContent {
    /// Every blob, sorted, each once.
    pub blobs: Vec<Digest>,
    /// The `index.json` bytes.
    pub index_json: Vec<u8>,
    /// The time its entries get in an archive.
    pub epoch: u64,
}

impl LayoutContent {
    /// One image under each of its tags.
    pub fn of_image(image: &StoredImage) -> Self {
        Self {
            blobs: sorted(image_blobs(image)),
            index_json: index_json(
                &image.tags,
                MEDIA_TYPE_MANIFEST,
                &image.manifest_digest,
                image.manifest_size,
            ),
            epoch: image.epoch(),
        }
    }

    /// A multi-platform image: `index.json` names the image index under each tag; the
    /// index, and every platform's manifest, config and layers, are blobs.
    pub fn of_index(index: &StoredIndex) -> Self {
        let mut blobs = vec![index.digest.clone()];
        for image in &index.images {
            blobs.extend(image_blobs(image));
        }
        Self {
            blobs: sorted(blobs),
            index_json: index_json(&index.tags, MEDIA_TYPE_INDEX, &index.digest, index.size),
            epoch: index.images.first().map_or(0, StoredImage::epoch),
        }
    }
}

/// The `index.json` of a layout holding the manifest (or index) `digest` under each tag.
fn index_json(tags: &[String], media_type: &str, digest: &Digest, size: u64) -> Vec<u8> {
    let manifests = tags
        .iter()
        .map(|tag| OciDescriptor {
            media_type: media_type.into(),
            digest: digest.clone(),
            size,
            platform: None,
            annotations: BTreeMap::from([(
                "org.opencontainers.image.ref.name".to_owned(),
                tag.clone(),
            )]),
        })
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_INDEX.into()),
        manifests,
    };
    serde_json::to_vec(&index).unwrap_or_default()
}

/// Every blob an image needs: manifest, config, layers.
fn image_blobs(image: &StoredImage) -> Vec<Digest> {
    let mut all = vec![
        image.manifest_digest.clone(),
        image.manifest.config.digest.clone(),
    ];
    all.extend(image.manifest.layers.iter().map(|l| l.digest.clone()));
    all
}

fn sorted(mut blobs: Vec<Digest>) -> Vec<Digest> {
    blobs.sort();
    blobs.dedup();
    blobs
}

/// Writes the layout into the (empty) directory `dir`.
pub fn write(store: &Store, content: &LayoutContent, dir: &Path) -> Result<(), ExportError> {
    let blob_dir = dir.join("blobs/sha256");
    fs_err::create_dir_all(&blob_dir)?;
    fs_err::write(dir.join("oci-layout"), OCI_LAYOUT)?;
    for digest in &content.blobs {
        let target = blob_dir.join(digest.hex());
        // Hashed while copied (a --cache-from layer still in its registry is fetched first):
        // a blob that rotted in the store fails the export instead of reaching the layout.
        store.copy_blob_verified(digest, &target)?;
    }
    fs_err::write(dir.join("index.json"), &content.index_json)?;
    Ok(())
}
