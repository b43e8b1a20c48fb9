//! Opening the store and the operations builds use.

use crate::index::{Index, LayerRecord};
use crate::layer::{Compression, LayerWriter};
use crate::layout::{Bucket, Layout};
use crate::lock::StoreLock;
use crate::{BlobWriter, CacheEntry, Descriptor, Digest, ImageRef, StoreError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory is imgbuild's content-addressed store; it can be rebuilt.\n";

/// An open store. Holds a shared lock (exclusive for maintenance) until dropped.
pub struct Store {
    pub(crate) layout: Layout,
    index: Mutex<Index>,
    pub(crate) fetcher: Option<Box<dyn crate::BlobFetcher>>,
    /// Blobs found intact since this store was opened.
    pub(crate) verified: crate::verified::VerifiedSet,
    /// Proof that this store's scratch dirs are in use; set on the first scratch dir.
    scratch_owner: std::sync::OnceLock<crate::blob::ScratchOwner>,
    _lock: StoreLock,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.layout.root())
            .finish()
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
        let layout = Layout::new(root);
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::create_dir_all(parent)?;
        }
        private_dir(root, true)?;
        private_dir(layout.data(), false)?;
        for bucket in Bucket::ALL {
            private_dir(&layout.bucket(bucket), false)?;
        }
        fs_err::create_dir_all(layout.sha256_blobs())?;
        write_cachedir_tag(&layout.cachedir_tag())?;
        let lock = StoreLock::acquire(&layout.lock_file(), exclusive)?;
        let index = {
            // Creating or migrating the schema happens under a lock of its own, so that
            // many processes opening a brand-new store never race SQLite's locking.
            let _schema = StoreLock::acquire(&layout.schema_lock_file(), true)?;
            Index::open(&layout.index_file())?
        };
        let tmp = layout.bucket(Bucket::Tmp);
        crate::blob::sweep_dead_temp_blobs(&tmp);
        crate::blob::sweep_dead_scratch_dirs(&tmp);
        Ok(Self {
            layout,
            index: Mutex::new(index),
            fetcher: None,
            verified: crate::verified::VerifiedSet::default(),
            scratch_owner: std::sync::OnceLock::new(),
            _lock: lock,
        })
    }

    /// The directory where `diff_id` is (or will be) unpacked as an overlay lower dir, in
    /// the given flavour (`trusted` or `user` overlay xattrs), and whether it is complete.
    ///
    /// Unpacking goes through [`Store::unpack_layer_with`], which fills a temp dir and
    /// renames it into place, so a complete directory is never half-written.
    pub fn unpacked_dir(&self, diff_id: &Digest, flavour: &str) -> PathBuf {
        self.bucket(Bucket::Unpacked)
            .join(flavour)
            .join(diff_id.hex())
    }

    /// Unpacks `diff_id` once (per flavour) with `unpack(reader, dir)` and returns its directory.
    ///
    /// Every call stamps the directory as used (`<dir>.used`), so `gc --max-size` drops
    /// the least recently used unpacked layers first.
    pub fn unpack_layer_with<E: From<StoreError> + From<io::Error>>(
        &self,
        diff_id: &Digest,
        flavour: &str,
        unpack: impl FnOnce(&mut dyn Read, &Path) -> Result<(), E>,
    ) -> Result<PathBuf, E> {
        let dir = self.unpacked_dir(diff_id, flavour);
        if dir.is_dir() {
            stamp_used(&dir);
            return Ok(dir);
        }
        let parent = dir
            .parent()
            .map_or_else(|| self.bucket(Bucket::Unpacked), Path::to_owned);
        private_dir(&parent, false)?;
        let staging = tempfile::Builder::new()
            .prefix(".unpacking-")
            .tempdir_in(&parent)?;
        let root = staging.path().join("root");
        fs_err::create_dir(&root)?;
        let mut reader = self.open_layer(diff_id)?;
        let unpacked = unpack(&mut reader, &root);
        // The unpacker stops at the tar's end-of-archive blocks: the rest of the blob is read
        // (and its digest checked) before the directory goes into place. A corrupt blob is
        // the error to report even when it made the unpacker fail first.
        io::copy(&mut reader, &mut io::sink()).map_err(StoreError::from_io)?;
        unpacked?;
        match fs_err::rename(&root, &dir) {
            Ok(()) => {}
            // Another build unpacked it at the same time: theirs is as good as ours.
            Err(_) if dir.is_dir() => {}
            Err(e) => return Err(e.into()),
        }
        stamp_used(&dir);
        Ok(dir)
    }

    /// A scratch directory inside the store (same filesystem as unpacked layers), removed on drop.
    ///
    /// While this store is open it holds a lock that marks its scratch dirs as live; those
    /// of a killed build are removed by the next open.
    pub fn scratch_dir(&self) -> Result<tempfile::TempDir, StoreError> {
        let owner = match self.scratch_owner.get() {
            Some(owner) => owner,
            None => {
                let created = crate::blob::ScratchOwner::create(&self.tmp_dir())?;
                // Another thread may have won the race; its owner is as good as ours.
                let _ = self.scratch_owner.set(created);
                self.scratch_owner
                    .get()
                    .ok_or_else(|| io::Error::other("scratch owner lock vanished"))?
            }
        };
        let tmp = self.tmp_dir();
        tempfile::Builder::new()
            .prefix(&owner.scratch_prefix())
            .tempdir_in(&tmp)
            .map_err(|e| StoreError::from_io(StoreError::io_writing(&tmp, e)))
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The directory of `bucket` (it exists once the store is open). Other crates keep
    /// what they store on disk here, never below a path of their own making.
    pub fn bucket(&self, bucket: Bucket) -> PathBuf {
        self.layout.bucket(bucket)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.bucket(Bucket::Tmp)
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.layout.sha256_blobs()
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
        w.write_all(bytes).map_err(StoreError::from_io)?;
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
        io::copy(reader, &mut w).map_err(StoreError::from_io)?;
        w.commit_verified(expected)
    }

    /// Moves a finished file from the store's `tmp` bucket ([`Bucket::Tmp`]) into the
    /// store as the blob `expected`, without copying its bytes; fails, storing nothing, when
    /// they hash to something else. The staged file is gone afterwards either way.
    pub fn adopt_verified(
        &self,
        staged: &Path,
        expected: &Digest,
    ) -> Result<Descriptor, StoreError> {
        if self.has_blob(expected)? {
            let _ = fs_err::remove_file(staged);
            let size = fs_err::metadata(self.blob_path(expected))?.len();
            return Ok(Descriptor {
                digest: expected.clone(),
                size,
            });
        }
        crate::blob::adopt_verified(self, staged, expected)
    }

    /// Opens a blob for reading, downloading it first when it is only known remotely.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs_err::File, StoreError> {
        self.ensure_local(digest)?;
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
        self.open_blob_verified(digest)?
            .read_to_end(&mut bytes)
            .map_err(StoreError::from_io)?;
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

    /// The layer whose compressed blob is `digest`, if known (locally or remotely).
    pub fn layer_by_digest(&self, digest: &Digest) -> Result<Option<LayerRecord>, StoreError> {
        match self.with_index(|ix| ix.layer_by_digest(digest))? {
            Some(found) => Ok(Some(found)),
            None => Ok(self
                .with_index(|ix| ix.remote_layer(digest))?
                .map(|(l, _)| l)),
        }
    }

    /// Every form of a layer: the stored ones, then those only known remotely.
    pub fn layer_forms(&self, diff_id: &Digest) -> Result<Vec<LayerRecord>, StoreError> {
        let mut forms = self.with_index(|ix| ix.layer_forms(diff_id))?;
        forms.extend(self.with_index(|ix| ix.remote_forms(diff_id))?);
        Ok(forms)
    }

    /// Opens a layer's uncompressed tar stream, from whichever form the store holds: a
    /// [`crate::LayerReader`], hashed while read. Read it to its end (a tar parser stops
    /// before: drain the rest), where a corrupt blob is an error.
    pub fn open_layer(&self, diff_id: &Digest) -> Result<Box<dyn Read + Send>, StoreError> {
        let forms = self.layer_forms(diff_id)?;
        let form = forms
            .iter()
            .find(|f| {
                self.blob_available(&f.digest).unwrap_or(false)
                    && Compression::from_media_type(&f.media_type).is_some()
            })
            .ok_or_else(|| StoreError::MissingBlob(diff_id.clone()))?;
        let compression =
            Compression::from_media_type(&form.media_type).unwrap_or(Compression::None);
        let blob = self.open_blob_verified(&form.digest)?;
        Ok(Box::new(crate::LayerReader::new(blob, compression)?))
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
                && self.blob_available(&f.digest).unwrap_or(false)
        }) {
            return Ok(found.clone());
        }
        let mut reader = self.open_layer(diff_id)?;
        let mut writer = self.layer_writer(compression)?;
        io::copy(&mut reader, &mut writer).map_err(StoreError::from_io)?;
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
                    .any(|f| self.blob_available(&f.digest).unwrap_or(false)) =>
            {
                Ok(Some(e))
            }
            _ => Ok(None),
        }
    }

    /// Whether `key` would be a cache hit, without marking the entry used: for plans that
    /// must leave the store as they found it.
    pub fn cache_peek(&self, key: &Digest) -> Result<bool, StoreError> {
        let Some(entry) = self.with_index(|ix| ix.peek_cache(key))? else {
            return Ok(false);
        };
        Ok(self
            .layer_forms(&entry.diff_id)?
            .iter()
            .any(|f| self.blob_available(&f.digest).unwrap_or(false)))
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
    /// False when there was no such ref.
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        self.with_index(|ix| ix.remove_ref(name))
    }

    /// Remembers where `names` point now, so that refs a build sets can be taken back if
    /// what follows (the export) fails: dropping the guard restores them, unless
    /// [`RefRollback::keep`] was called.
    pub fn ref_rollback(&self, names: &[String]) -> Result<RefRollback<'_>, StoreError> {
        let refs = self.refs()?;
        let before = names
            .iter()
            .map(|n| {
                let target = refs
                    .iter()
                    .find(|r| &r.name == n)
                    .map(|r| r.manifest.clone());
                (n.clone(), target)
            })
            .collect();
        Ok(RefRollback {
            store: self,
            before,
            armed: true,
        })
    }
}

/// Restores a set of refs when dropped (see [`Store::ref_rollback`]).
#[derive(Debug)]
pub struct RefRollback<'s> {
    store: &'s Store,
    before: Vec<(String, Option<Digest>)>,
    armed: bool,
}

impl RefRollback<'_> {
    /// Keeps the refs as they are now.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for RefRollback<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let now = self.store.refs().unwrap_or_default();
        for (name, target) in &self.before {
            let current = now.iter().find(|r| &r.name == name).map(|r| &r.manifest);
            if current == target.as_ref() {
                continue;
            }
            // Best effort: a ref that cannot be restored is left as the build set it.
            let _ = match target {
                Some(manifest) => self.store.set_ref(name, manifest),
                None => self.store.remove_ref(name).map(drop),
            };
        }
    }
}

/// Marks an unpacked dir as used now (its `.used` stamp); best effort, as a missing
/// stamp only makes the dir the first to go under `gc --max-size`.
fn stamp_used(dir: &Path) {
    let mut stamp = dir.as_os_str().to_owned();
    stamp.push(crate::gc::USED_SUFFIX);
    if let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(PathBuf::from(stamp))
    {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

/// Creates `dir` (its parent must exist) readable by its owner only, and takes group and
/// other permissions away from an existing one we own. With `store_root`, an existing
/// directory is only changed when it is empty or already looks like a store.
fn private_dir(dir: &Path, store_root: bool) -> Result<(), StoreError> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(StoreError::from_io(StoreError::io_writing(dir, e))),
    }
    let meta = fs_err::metadata(dir)?;
    let euid = rustix::process::geteuid().as_raw();
    if meta.mode() & 0o077 == 0 || meta.uid() != euid {
        return Ok(());
    }
    if store_root
        && !Layout::is_store_root(dir)
        && !Layout::new(dir).cachedir_tag().is_file()
        && fs_err::read_dir(dir)?.next().is_some()
    {
        return Ok(());
    }
    fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Writes `CACHEDIR.TAG` whole (temp file, then rename), so a concurrent open never sees
/// it half-written.
fn write_cachedir_tag(tag: &Path) -> Result<(), StoreError> {
    if tag.exists() {
        return Ok(());
    }
    let root = tag.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".CACHEDIR.TAG-")
        .tempfile_in(root)
        .map_err(|e| StoreError::io_writing(root, e))?;
    tmp.write_all(CACHEDIR_TAG.as_bytes())
        .map_err(|e| StoreError::io_writing(tmp.path(), e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    tmp.persist(tag).map_err(|e| e.error)?;
    Ok(())
}
