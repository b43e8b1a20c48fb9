//! An image as the store holds it.

use crate::ExportError;
use imgbuild_store::oci::{
    ImageConfig, Index, Manifest, OciDescriptor, Platform, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST,
};
use imgbuild_store::{Digest, Store};

/// A built image: its manifest, config and where their bytes are.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The image name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The manifest's digest.
    pub manifest_digest: Digest,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The parsed config.
    pub config: ImageConfig,
}

impl StoredImage {
    /// Loads the image whose manifest is `digest`.
    pub fn load(
        store: &Store,
        name: &str,
        tags: &[String],
        digest: &Digest,
    ) -> Result<Self, ExportError> {
        let bytes = store.read_blob(digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|source| imgbuild_store::StoreError::Json {
                digest: digest.clone(),
                source,
            })?;
        let config: ImageConfig = store.read_json(&manifest.config.digest)?;
        Ok(Self {
            name: name.to_owned(),
            tags: tags.to_vec(),
            manifest_digest: digest.clone(),
            manifest_size: bytes.len() as u64,
            manifest,
            config,
        })
    }

    /// The diff_ids of the layers, lowest first.
    pub fn diff_ids(&self) -> &[Digest] {
        &self.config.rootfs.diff_ids
    }

    /// The epoch the image was created at (from the config), 0 if unknown.
    pub fn epoch(&self) -> u64 {
        self.config
            .created
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(0)
    }

    /// A file-name-safe stem for artifacts: the last path component of the name.
    pub fn file_stem(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// A multi-platform image: an OCI image index with one manifest per platform.
#[derive(Debug, Clone)]
pub struct StoredIndex {
    /// The image name.
    pub name: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// The index's digest.
    pub digest: Digest,
    /// The index's size.
    pub size: u64,
    /// Each platform's image, in the index's order.
    pub images: Vec<StoredImage>,
}

impl StoredIndex {
    /// Writes the index of `images` (each described by its config's platform, in the
    /// given order) into the store.
    pub fn assemble(
        store: &Store,
        name: &str,
        tags: &[String],
        images: Vec<StoredImage>,
    ) -> Result<Self, ExportError> {
        let manifests = images
            .iter()
            .map(|image| OciDescriptor {
                media_type: MEDIA_TYPE_MANIFEST.into(),
                digest: image.manifest_digest.clone(),
                size: image.manifest_size,
                platform: Some(Platform {
                    architecture: image.config.architecture.clone(),
                    os: image.config.os.clone(),
                    variant: image.config.variant.clone(),
                }),
                annotations: Default::default(),
            })
            .collect();
        let index = Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_INDEX.into()),
            manifests,
        };
        let bytes = serde_json::to_vec(&index).unwrap_or_default();
        let stored = store.put_bytes(&bytes)?;
        Ok(Self {
            name: name.to_owned(),
            tags: tags.to_vec(),
            digest: stored.digest,
            size: bytes.len() as u64,
            images,
        })
    }

    /// A file-name-safe stem for artifacts: the last path component of the name.
    pub fn file_stem(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or(&self.name)
    }
}

/// Parses `YYYY-MM-DDTHH:MM:SSZ` back into seconds since the epoch.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_what_the_builder_writes() {
        for t in [0, 951_782_400, 1_764_064_800] {
            assert_eq!(
                super::parse_rfc3339(&imgbuild_store::oci::rfc3339(t)),
                Some(t)
            );
        }
    }
}
