//! Opening the store and the operations builds use.

use crate::index::{Index, LayerRecord};
use crate::layer::{Compression, LayerWriter};
use crate::lock::StoreLock;
use crate::{BlobWriter, CacheEntry, Descriptor, Digest, ImageRef, StoreError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory is imgbuild's content-addressed store; it can be rebuilt.\n";

/// An open store. Holds a shared lock (exclusive for maintenance) until dropped.
pub struct Store {
    root: PathBuf,
    pub(crate) data: PathBuf,
    index: Mutex<Index>,
    _lock: StoreLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store at `root` for building: shared with other builds.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, false)
    }

    /// Opens the store with the exclusive lock that `gc` and `verify --repair` need.
    pub fn open_exclusive(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, true)
    }

    fn open_with(root: &Path, exclusive: bool) -> Result<Self, StoreError> {
        let data = root.join("v1");
        fs_err::create_dir_all(data.join("blobs/sha256"))?;
        fs_err::create_dir_all(data.join("tmp"))?;
        let tag = root.join("CACHEDIR.TAG");
        if !tag.exists() {
            fs_err::write(&tag, CACHEDIR_TAG)?;
        }
        let lock = StoreLock::acquire(&data.join("lock"), exclusive)?;
        let index = Index::open(&data.join("index.sqlite"))?;
        Ok(Self {
            root: root.to_owned(),
            data,
            index: Mutex::new(index),
            _lock: lock,
        })
    }

    /// The directory where `diff_id` is (or will be) unpacked as an overlay lower dir, in
    /// the given flavour (`trusted` or `user` overlay xattrs), and whether it is complete.
    ///
    /// Unpacking goes through [`Store::unpack_layer_with`], which fills a temp dir and
    /// renames it into place, so a complete directory is never half-written.
    pub fn unpacked_dir(&self, diff_id: &Digest, flavour: &str) -> PathBuf {
        self.data.join("unpacked").join(flavour).join(diff_id.hex())
    }

    /// Unpacks `diff_id` once (per flavour) with `unpack(reader, dir)` and returns its directory.
    pub fn unpack_layer_with<E: From<StoreError> + From<io::Error>>(
        &self,
        diff_id: &Digest,
        flavour: &str,
        unpack: impl FnOnce(&mut dyn Read, &Path) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let dir = self.unpacked_dir(diff_id, flavour);
        if dir.is_dir() {
            return Ok(dir);
        }
        let parent = dir.parent().unwrap_or(&self.data).to_owned();
        fs_err::create_dir_all(&parent)?;
        let staging = tempfile::Builder::new()
            .prefix(".unpacking-")
            .tempdir_in(&parent)?;
        let root = staging.path().join("root");
        fs_err::create_dir(&root)?;
        let mut reader = self.open_layer(diff_id)?;
        unpack(&mut reader, &root)?;
        match fs_err::rename(&root, &dir) {
            Ok(()) => {}
            // Another build unpacked it at the same time: theirs is as good as ours.
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(e.into()),
        }
        Ok(dir)
    }

    /// A scratch directory inside the store (same filesystem as unpacked layers), removed on drop.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        Ok(tempfile::Builder::new()
            .prefix("scratch-")
            .tempdir_in(self.tmp_dir())?)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.data.join("tmp")
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.data.join("blobs/sha256")
    }

    pub(crate) fn with_index<T>(
        &self,
        f: impl FnOnce(&Index) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let guard = self
            .index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&guard)
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    /// True when the blob is indexed and present.
    pub fn has_blob(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.with_index(|ix| ix.has_blob(digest))? && self.blob_path(digest).exists())
    }

    /// Starts writing a blob.
    pub fn blob_writer(&self) -> Result<BlobWriter<'_>, StoreError> {
        BlobWriter::new(self)
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Descriptor, StoreError> {
        let mut w = self.blob_writer()?;
        w.write_all(bytes)?;
        w.commit()
    }

    /// Copies a stream into the store, refusing it unless it hashes to `expected`.
    pub fn put_verified(
        &self,
        reader: &mut dyn Read,
        expected: &Digest,
    ) -> Result<Descriptor, StoreError> {
        if self.has_blob(expected)? {
            let size = fs_err::metadata(self.blob_path(expected))?.len();
            return Ok(Descriptor {
                digest: expected.clone(),
                size,
            });
        }
        let mut w = self.blob_writer()?;
        io::copy(reader, &mut w)?;
        w.commit_verified(expected)
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs_err::File, StoreError> {
        fs_err::File::open(self.blob_path(digest)).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                StoreError::MissingBlob(digest.clone())
            } else {
                e.into()
            }
        })
    }

    /// Reads a whole (small) blob.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    /// Reads a JSON blob into `T`.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
    ) -> Result<T, StoreError> {
        serde_json::from_slice(&self.read_blob(digest)?).map_err(|source| StoreError::Json {
            digest: digest.clone(),
            source,
        })
    }

    /// Starts writing a layer that will be compressed as asked.
    pub fn layer_writer(&self, compression: Compression) -> Result<LayerWriter<'_>, StoreError> {
        LayerWriter::new(self, compression)
    }

    /// Records a layer blob that is already in the store (an imported base image layer).
    pub fn add_layer(&self, record: &LayerRecord) -> Result<(), StoreError> {
        self.with_index(|ix| ix.add_layer(record))
    }

    /// The layer whose compressed blob is `digest`, if known.
    pub fn layer_by_digest(&self, digest: &Digest) -> Result<Option<LayerRecord>, StoreError> {
        self.with_index(|ix| ix.layer_by_digest(digest))
    }

    /// Every stored form of a layer.
    pub fn layer_forms(&self, diff_id: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        self.with_index(|ix| ix.layer_forms(diff_id))
    }

    /// Opens a layer's uncompressed tar stream, from whichever form the store holds.
    pub fn open_layer(&self, diff_id: &Digest) -> Result<Box<dyn Read + Send>, StoreError> {
        let forms = self.layer_forms(diff_id)?;
        let form = forms
            .iter()
            .find(|f| {
                self.blob_path(&f.digest).exists()
                    && Compression::from_media_type(&f.media_type).is_some()
            })
            .ok_or_else(|| StoreError::MissingBlob(diff_id.clone()))?;
        let compression =
            Compression::from_media_type(&form.media_type).unwrap_or(Compression::None);
        let file = io::BufReader::with_capacity(1 << 20, self.open_blob(&form.digest)?);
        Ok(match compression {
            Compression::Zstd => Box::new(zstd::Decoder::with_buffer(file)?),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
            Compression::None => Box::new(file),
        })
    }

    /// The layer compressed as asked: the stored form if there is one, otherwise it is
    /// recompressed from another form (and checked against its diff_id) and kept.
    pub fn layer_as(
        &self,
        diff_id: &Digest,
        compression: Compression,
    ) -> Result<LayerRecord, StoreError> {
        let forms = self.layer_forms(diff_id)?;
        if let Some(found) = forms.iter().find(|f| {
            Compression::from_media_type(&f.media_type) == Some(compression)
                && self.blob_path(&f.digest).exists()
        }) {
            return Ok(found.clone());
        }
        let mut reader = self.open_layer(diff_id)?;
        let mut writer = self.layer_writer(compression)?;
        io::copy(&mut reader, &mut writer)?;
        writer.commit_verified(self, diff_id)
    }

    /// The cached result of a step, if any (and marks it used).
    pub fn cache_get(&self, key: &Digest) -> Result<Option<CacheEntry>, StoreError> {
        let entry = self.with_index(|ix| ix.get_cache(key))?;
        match entry {
            Some(e)
                if self
                    .layer_forms(&e.diff_id)?
                    .iter()
                    .any(|f| self.blob_path(&f.digest).exists()) =>
            {
                Ok(Some(e))
            }
            _ => Ok(None),
        }
    }

    /// Records that the step with `key` produced the layer `diff_id`.
    pub fn cache_put(
        &self,
        key: &Digest,
        diff_id: &Digest,
        created_by: &str,
    ) -> Result<(), StoreError> {
        self.with_index(|ix| ix.put_cache(key, diff_id, created_by))
    }

    /// Every cache entry, most recently used first.
    pub fn cache_entries(&self) -> Result<Vec<CacheEntry>, StoreError> {
        self.with_index(Index::cache_entries)
    }

    /// Points `name` (`image:tag`) at a manifest.
    pub fn set_ref(&self, name: &str, manifest: &Digest) -> Result<(), StoreError> {
        self.with_index(|ix| ix.set_ref(name, manifest))
    }

    /// Every image ref.
    pub fn refs(&self) -> Result<Vec<ImageRef>, StoreError> {
        self.with_index(Index::refs)
    }

    /// Removes an image ref; its blobs become garbage unless something else needs them.
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        self.with_index(|ix| ix.remove_ref(name))
    }
}
