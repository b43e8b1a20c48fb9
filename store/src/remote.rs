//! Layers the store knows by digest but whose blobs still live in a registry.
//!
//! A `--cache-from` import records step cache entries without downloading their layers:
//! each such layer is a row in `remote_layers` (digest, diff_id, media type, size and the
//! reference it can be fetched from). [`Store::layer_forms`] lists remote forms after the
//! local ones, so cache lookups and `layer_as` treat them as available; the first time
//! something needs the bytes, [`Store::open_blob`] asks the installed [`BlobFetcher`] to
//! download the blob (verified against its digest) and it becomes an ordinary layer.
//! Pulled base layers are recorded here too, so a push to another repository of the same
//! registry can mount them instead of uploading.

use crate::{Digest, LayerRecord, Store, StoreError};

/// Downloads remote blobs into the store on demand. The registry client implements it; the
/// store itself never touches the network.
pub trait BlobFetcher: Send + Sync {
    /// Fetches `digest` from `source` (an image or cache reference) into `store`, verified.
    fn fetch(&self, store: &Store, digest: &Digest, source: &str) -> Result<(), StoreError>;
}

impl Store {
    /// Records that the layer blob `layer.digest` can be fetched from `source`.
    pub fn add_remote_layer(&self, layer: &LayerRecord, source: &str) -> Result<(), StoreError> {
        self.with_index(|ix| ix.add_remote_layer(layer, source))
    }

    /// A reference a blob is known to be fetchable from, if the store knows one.
    pub fn remote_source(&self, digest: &Digest) -> Result<Option<String>, StoreError> {
        Ok(self
            .with_index(|ix| ix.remote_layer(digest))?
            .map(|(_, s)| s))
    }

    /// True when the blob's bytes are here or can be fetched on demand.
    pub fn blob_available(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.blob_path(digest).exists() || self.remote_source(digest)?.is_some())
    }

    /// Installs what downloads remote blobs when their bytes are needed.
    pub fn set_fetcher(&mut self, fetcher: Box<dyn BlobFetcher>) {
        self.fetcher = Some(fetcher);
    }

    /// Downloads `digest` if it is only known remotely (and records it as a local layer);
    /// does nothing when it is here or unknown.
    pub fn ensure_local(&self, digest: &Digest) -> Result<(), StoreError> {
        if self.blob_path(digest).exists() {
            return Ok(());
        }
        let Some(fetcher) = self.fetcher.as_ref() else {
            return Ok(());
        };
        let Some((layer, source)) = self.with_index(|ix| ix.remote_layer(digest))? else {
            return Ok(());
        };
        fetcher.fetch(self, digest, &source)?;
        self.add_layer(&layer)
    }
}
