//! Where pushed blobs are read from: the store, or an OCI layout directory on disk.

use crate::RegistryError;
use imgbuild_store::oci::{Index, MEDIA_TYPE_MANIFEST};
use imgbuild_store::{Digest, Store};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A place blobs are streamed from.
pub trait BlobSource: Sync {
    /// Opens a blob: a reader and its size.
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + Send>, u64), RegistryError>;
    /// Reads a small blob whole.
    fn read(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let (mut r, _) = self.open(digest)?;
        let mut bytes = Vec::new();
        r.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
    /// A reference on some registry that is known to hold the blob (to mount it from).
    fn known_at(&self, _digest: &Digest) -> Option<String> {
        None
    }
}

impl BlobSource for Store {
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + Send>, u64), RegistryError> {
        // The whole blob is checked before the upload starts: a corrupt byte found while
        // sending would surface as a transport error (and be retried). Once checked, the
        // store does not hash it again while it is sent.
        self.check_blob(digest)?;
        let blob = self.open_blob_verified(digest)?;
        let size = blob.size();
        Ok((
            Box::new(std::io::BufReader::with_capacity(1 << 20, blob)),
            size,
        ))
    }

    fn known_at(&self, digest: &Digest) -> Option<String> {
        self.remote_source(digest).ok().flatten()
    }
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct LayoutSource {
    dir: PathBuf,
}

impl LayoutSource {
    /// The layout at `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The manifest to push: the one tagged `tag`, or the only one in `index.json`.
    pub fn manifest(&self, tag: Option<&str>) -> Result<(Digest, String), RegistryError> {
        let path = self.dir.join("index.json");
        let bad = |message: String| RegistryError::Malformed {
            host: "local".into(),
            what: format!("OCI layout {}", self.dir.display()),
            message,
        };
        let index: Index = serde_json::from_slice(&fs_err::read(&path)?)
            .map_err(|e| bad(format!("index.json: {e}")))?;
        let pick = |m: &&imgbuild_store::oci::OciDescriptor| match tag {
            Some(t) => {
                m.annotations
                    .get("org.opencontainers.image.ref.name")
                    .map(String::as_str)
                    == Some(t)
            }
            None => true,
        };
        let found: Vec<_> = index.manifests.iter().filter(pick).collect();
        let mut digests: Vec<&Digest> = found.iter().map(|m| &m.digest).collect();
        digests.dedup();
        match (found.first(), digests.len()) {
            (Some(m), 1) => Ok((
                m.digest.clone(),
                if m.media_type.is_empty() {
                    MEDIA_TYPE_MANIFEST.to_owned()
                } else {
                    m.media_type.clone()
                },
            )),
            (None, _) => Err(bad(match tag {
                Some(t) => format!("no image tagged `{t}`"),
                None => "index.json lists no image".into(),
            })),
            _ => Err(bad(
                "index.json lists several images; name one as DIR:TAG".into()
            )),
        }
    }
}

impl BlobSource for LayoutSource {
    fn open(&self, digest: &Digest) -> Result<(Box<dyn Read + Send>, u64), RegistryError> {
        let file = fs_err::File::open(self.dir.join("blobs/sha256").join(digest.hex()))?;
        let size = file.metadata()?.len();
        Ok((
            Box::new(std::io::BufReader::with_capacity(1 << 20, file)),
            size,
        ))
    }
}
