//! Layer tables of contents: a layer's entries as [`crate::tarball::read_meta`] reads
//! them, in stream order, kept as a small blob so that a merged tree (an export's first
//! pass, the image below a step) is built without decompressing the layer again.
//!
//! A table of contents follows from the layer's bytes alone, so it never goes stale while
//! the reader stays the same: [`VERSION`] changes whenever what the reader makes of a tar
//! entry does, and a table of another version is ignored and written again. It is a blob
//! like any other (hashed when written, checked on first read, its link to the layer in
//! the index) and `store gc` keeps it while a form of its layer stays.
//!
//! Format: zstd of JSON lines, a header `{"imgbuild-toc":1}`, then one [`EntryMeta`] per
//! tar entry (an entry with an empty path for one that applies nothing).

use std::io::{BufRead, BufReader, Read, Write};

use crate::tarball::{EntryMeta, LayerReadError, MergedTree, WrittenEntries};
use crate::{BlobWriter, Digest, Sha256Writer, Store, StoreError};

/// The format and reader version a table of contents is written for.
const VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    #[serde(rename = "imgbuild-toc")]
    version: u32,
}

/// Why a layer could not be merged into a tree.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The store could not give the layer (or its table of contents).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The layer's tar stream has an entry imgbuild refuses, or cannot be read.
    #[error("reading layer {diff_id}: {source}")]
    Layer {
        /// The layer.
        diff_id: Digest,
        /// What was wrong with it.
        #[source]
        source: LayerReadError,
    },
}

impl Store {
    /// The merged tree of `diff_ids` (lowest first).
    pub fn merged_tree(&self, diff_ids: &[Digest]) -> Result<MergedTree, MergeError> {
        let mut tree = MergedTree::default();
        for diff_id in diff_ids {
            self.merge_layer(&mut tree, diff_id)?;
        }
        Ok(tree)
    }

    /// Applies layer `diff_id` on top of `tree`: from its table of contents when the store
    /// has a usable one, else read from the layer, its table of contents kept for the next
    /// time if the layer's bytes are what `diff_id` says. On an error, `tree` holds part
    /// of the layer: drop it.
    pub fn merge_layer(&self, tree: &mut MergedTree, diff_id: &Digest) -> Result<(), MergeError> {
        if let Some((toc, bytes)) = self.usable_toc(diff_id) {
            let corrupt = |detail: String| StoreError::CorruptBlob {
                digest: toc.clone(),
                detail: format!("layer table of contents: {detail}"),
            };
            let entries = toc_entries(&bytes).map_err(corrupt)?;
            return Ok(tree.push_entries(entries).map_err(corrupt)?);
        }
        // A table that cannot be written costs only the next reader's time.
        let mut toc = TocWriter::new(self).ok();
        let mut layer = DiffIdReader {
            inner: self.open_layer(diff_id)?,
            hash: Sha256Writer::new(std::io::sink()),
        };
        tree.push_layer_observed(&mut layer, &mut |meta| {
            if let Some(writer) = &mut toc {
                writer.add(meta);
            }
        })
        .map_err(|source| MergeError::Layer {
            diff_id: diff_id.clone(),
            source,
        })?;
        // A pulled layer's diff_id comes from its image's config: a table is only kept for
        // the bytes that diff_id names, as every image with that layer will read it.
        let (found, _, _) = layer.hash.finish();
        if let (Some(writer), true) = (toc, found == *diff_id) {
            let _ = writer.commit(self, diff_id);
        }
        Ok(())
    }

    /// The table of contents of `diff_id` and its (compressed) bytes, if the store has one
    /// that is intact, of this version, and an entry on every line; otherwise the layer
    /// is read again and the table replaced.
    fn usable_toc(&self, diff_id: &Digest) -> Option<(Digest, Vec<u8>)> {
        let toc = self.with_index(|ix| ix.layer_toc(diff_id)).ok()??;
        let bytes = self.read_blob(&toc).ok()?;
        // Checked whole before any entry is applied, so a bad line never leaves half a layer.
        let parses = toc_entries(&bytes).ok()?.all(|entry| entry.is_ok());
        parses.then_some((toc, bytes))
    }

    /// Keeps what a writer recorded of layer `diff_id` as its table of contents.
    pub fn add_layer_toc(
        &self,
        diff_id: &Digest,
        written: &WrittenEntries,
    ) -> Result<(), StoreError> {
        let mut writer = TocWriter::new(self)?;
        for meta in written.iter() {
            writer.add(meta);
        }
        writer.commit(self, diff_id)
    }
}

/// The entries of a table of contents from its compressed bytes; an error if it is not of
/// this version.
fn toc_entries(
    bytes: &[u8],
) -> Result<impl Iterator<Item = Result<EntryMeta, String>> + '_, String> {
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| e.to_string())?;
    let mut lines = BufReader::new(decoder).lines();
    let header = lines
        .next()
        .ok_or_else(|| "empty".to_owned())?
        .map_err(|e| e.to_string())?;
    match serde_json::from_str::<Header>(&header) {
        Ok(Header { version: VERSION }) => {}
        _ => return Err(format!("not of version {VERSION}: {header}")),
    }
    Ok(lines.map(|line| {
        let line = line.map_err(|e| e.to_string())?;
        serde_json::from_str(&line).map_err(|e| e.to_string())
    }))
}

/// A layer's uncompressed stream, hashed as it is read.
struct DiffIdReader<R> {
    inner: R,
    hash: Sha256Writer<std::io::Sink>,
}

impl<R: Read> Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Writes a table of contents entry by entry into a blob; a failed write leaves nothing.
struct TocWriter<'s> {
    out: zstd::Encoder<'static, BlobWriter<'s>>,
    failed: Option<std::io::Error>,
}

impl<'s> TocWriter<'s> {
    fn new(store: &'s Store) -> Result<Self, StoreError> {
        let mut out = zstd::Encoder::new(store.blob_writer()?, 3).map_err(StoreError::from_io)?;
        serde_json::to_writer(&mut out, &Header { version: VERSION })
            .map_err(|e| StoreError::from_io(e.into()))?;
        out.write_all(b"\n").map_err(StoreError::from_io)?;
        Ok(Self { out, failed: None })
    }

    fn add(&mut self, meta: &EntryMeta) {
        if self.failed.is_some() {
            return;
        }
        let written = serde_json::to_writer(&mut self.out, meta)
            .map_err(std::io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        self.failed = written.err();
    }

    fn commit(self, store: &Store, diff_id: &Digest) -> Result<(), StoreError> {
        if let Some(e) = self.failed {
            return Err(StoreError::from_io(e));
        }
        let blob = self.out.finish().map_err(StoreError::from_io)?.commit()?;
        store.with_index(|ix| ix.set_layer_toc(diff_id, &blob.digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tarball::{EntryKind, TarWriter};
    use crate::{Compression, GcOptions, LayerRecord};
    use std::time::Duration;

    /// A layer with a file, a hard link to it, a symlink, a long path, and a global PAX
    /// header in the middle (an entry that applies nothing).
    fn layer(store: &Store, body: &str) -> LayerRecord {
        let without_end = |tar: TarWriter<Vec<u8>>| {
            let mut bytes = tar.finish().unwrap();
            bytes.truncate(bytes.len() - 1024);
            bytes
        };
        let mut first = TarWriter::new(Vec::new());
        let mut file = EntryMeta::new("etc/motd", EntryKind::File, 0o4755, 3);
        file.size = body.len() as u64;
        file.xattrs.insert("user.k".into(), vec![0, 255]);
        first.append(&file, &mut body.as_bytes()).unwrap();
        let mut global = tar::Header::new_ustar();
        global.set_entry_type(tar::EntryType::XGlobalHeader);
        global.set_path("pax_global_header").unwrap();
        global.set_size(0);
        global.set_cksum();
        let mut rest = TarWriter::new(Vec::new());
        let link = EntryMeta::new("motd2", EntryKind::Hardlink("etc/motd".into()), 0o644, 0);
        rest.append(&link, &mut std::io::empty()).unwrap();
        let long = format!("{}/f", "d".repeat(300));
        rest.append(&EntryMeta::file(long, 0, 1), &mut std::io::empty())
            .unwrap();
        let sym = EntryMeta::new("l", EntryKind::Symlink("/etc".into()), 0o777, 0);
        rest.append(&sym, &mut std::io::empty()).unwrap();

        let mut lw = store.layer_writer(Compression::Zstd).unwrap();
        lw.write_all(&without_end(first)).unwrap();
        lw.write_all(global.as_bytes()).unwrap();
        lw.write_all(&rest.finish().unwrap()).unwrap();
        lw.commit(store).unwrap()
    }

    fn dump(tree: &MergedTree) -> Vec<EntryMeta> {
        tree.iter().cloned().collect()
    }

    #[test]
    fn a_tree_from_the_table_of_contents_is_the_tree_from_the_layer_which_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = layer(&store, "hello");
        let read = MergedTree::build([store.open_layer(&layer.diff_id).unwrap()]).unwrap();
        assert_eq!(
            store.with_index(|ix| ix.layer_toc(&layer.diff_id)).unwrap(),
            None
        );
        let first = store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .unwrap();
        assert_eq!(dump(&first), dump(&read));
        assert!(read.get("motd2").is_some() && read.get("l").is_some());
        assert!(store
            .with_index(|ix| ix.layer_toc(&layer.diff_id))
            .unwrap()
            .is_some());

        // The layer's bytes are gone: only the table of contents can give the tree.
        std::fs::remove_file(store.blob_path(&layer.digest)).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let again = store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .unwrap();
        assert_eq!(format!("{:?}", again), format!("{:?}", read));
    }

    #[test]
    fn a_table_of_another_version_is_read_again_from_the_layer_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = layer(&store, "hello");
        let mut old = zstd::Encoder::new(Vec::new(), 3).unwrap();
        old.write_all(b"{\"imgbuild-toc\":0}\n{\"bogus\":1}\n")
            .unwrap();
        let old = store.put_bytes(&old.finish().unwrap()).unwrap();
        store
            .with_index(|ix| ix.set_layer_toc(&layer.diff_id, &old.digest))
            .unwrap();
        let tree = store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .unwrap();
        assert_eq!(tree.get("etc/motd").map(|m| m.size), Some(5));
        let now = store.with_index(|ix| ix.layer_toc(&layer.diff_id)).unwrap();
        assert!(now.is_some_and(|d| d != old.digest));
    }

    fn toc_of(store: &Store, diff_id: &Digest) -> Option<Digest> {
        store.with_index(|ix| ix.layer_toc(diff_id)).unwrap()
    }

    #[test]
    fn a_corrupt_table_of_contents_is_read_again_from_the_layer_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let layer = layer(&Store::open(dir.path()).unwrap(), "hello");
        let diff_ids = std::slice::from_ref(&layer.diff_id);
        let good = Store::open(dir.path())
            .unwrap()
            .merged_tree(diff_ids)
            .unwrap();
        let store = Store::open(dir.path()).unwrap();
        let toc = toc_of(&store, &layer.diff_id).unwrap();
        let path = store.blob_path(&toc);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, bytes).unwrap();
        let again = store.merged_tree(diff_ids).unwrap();
        assert_eq!(format!("{again:?}"), format!("{good:?}"));
        // Replaced by a table written again, under the same digest: the same bytes.
        std::fs::remove_file(&path).unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.merged_tree(diff_ids).unwrap();
        assert!(store.blob_path(&toc).exists());
    }

    #[test]
    fn a_layer_whose_bytes_are_not_its_diff_id_gets_no_table_of_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = layer(&store, "hello");
        // A pulled image can claim any diff_id for a blob; here, one of another layer.
        let claimed = Digest::of(b"another layer");
        store
            .add_layer(&LayerRecord {
                diff_id: claimed.clone(),
                ..layer.clone()
            })
            .unwrap();
        let tree = store.merged_tree(std::slice::from_ref(&claimed)).unwrap();
        assert!(tree.get("etc/motd").is_some());
        assert_eq!(toc_of(&store, &claimed), None);
        store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .unwrap();
        assert!(toc_of(&store, &layer.diff_id).is_some());
    }

    #[test]
    fn gc_keeps_a_table_of_contents_with_its_layer_and_removes_it_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = layer(&store, "hello");
        let key = Digest::of(b"step key");
        store.cache_put(&key, &layer.diff_id, "a step").unwrap();
        store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .unwrap();
        let toc = store
            .with_index(|ix| ix.layer_toc(&layer.diff_id))
            .unwrap()
            .unwrap();
        let keep = GcOptions {
            keep_recent: Duration::from_secs(3600),
            max_size: None,
        };
        store.gc(&keep).unwrap();
        assert!(store.blob_path(&toc).exists());
        assert!(store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .is_ok());

        let drop_all = GcOptions {
            keep_recent: Duration::ZERO,
            max_size: None,
        };
        store.gc(&drop_all).unwrap();
        assert!(!store.blob_path(&layer.digest).exists());
        assert!(!store.blob_path(&toc).exists());
        assert_eq!(toc_of(&store, &layer.diff_id), None);
    }

    #[test]
    fn forgetting_a_layers_last_form_forgets_its_table_of_contents() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let layer = layer(&store, "hello");
        store
            .merged_tree(std::slice::from_ref(&layer.diff_id))
            .unwrap();
        let toc = toc_of(&store, &layer.diff_id).unwrap();
        // As `store verify --repair` does with a corrupt layer blob.
        store
            .with_index(|ix| ix.forget_blob(&layer.digest))
            .unwrap();
        assert_eq!(toc_of(&store, &layer.diff_id), None);
        assert!(store.with_index(|ix| ix.blob_size(&toc)).unwrap().is_some());
    }
}
