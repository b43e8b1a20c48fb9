//! The OCI image layout directory: `oci-layout`, `index.json` (one entry per tag) and the
//! blobs, as the [image-layout spec](https://github.com/opencontainers/image-spec/blob/main/image-layout.md) lays them out.

use crate::{ExportError, StoredImage};
use imgbuild_store::oci::{Index, OciDescriptor, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use imgbuild_store::{Digest, Store};
use std::collections::BTreeMap;
use std::path::Path;

/// The content of the `oci-layout` file.
pub const OCI_LAYOUT: &str = "{\"imageLayoutVersion\":\"1.0.0\"}";

/// The `index.json` of a layout holding `image` under each of its tags.
pub fn index_json(image: &StoredImage) -> Vec<u8> {
    let manifests = image
        .tags
        .iter()
        .map(|tag| OciDescriptor {
            media_type: MEDIA_TYPE_MANIFEST.into(),
            digest: image.manifest_digest.clone(),
            size: image.manifest_size,
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

/// Every blob the image needs: manifest, config, layers.
pub fn blobs(image: &StoredImage) -> Vec<Digest> {
    let mut all = vec![
        image.manifest_digest.clone(),
        image.manifest.config.digest.clone(),
    ];
    all.extend(image.manifest.layers.iter().map(|l| l.digest.clone()));
    all.sort();
    all.dedup();
    all
}

/// Writes the layout into the (empty) directory `dir`.
pub fn write(store: &Store, image: &StoredImage, dir: &Path) -> Result<(), ExportError> {
    let blob_dir = dir.join("blobs/sha256");
    fs_err::create_dir_all(&blob_dir)?;
    fs_err::write(dir.join("oci-layout"), OCI_LAYOUT)?;
    for digest in blobs(image) {
        let target = blob_dir.join(digest.hex());
        // Hashed while copied (a --cache-from layer still in its registry is fetched first):
        // a blob that rotted in the store fails the export instead of reaching the layout.
        store.copy_blob_verified(&digest, &target)?;
    }
    fs_err::write(dir.join("index.json"), index_json(image))?;
    Ok(())
}
