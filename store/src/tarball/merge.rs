//! The merge of a layer stack into one tree, as a container runtime would see it.
//!
//! Two passes over the layers keep memory to the metadata alone: the first applies each
//! layer's entries, whiteouts and opaque markers to an ordered map of paths; the second
//! streams the surviving entries with their bytes to a [`TreeSink`], directories first
//! (sorted), then every other entry in the order its layer holds it.
//!
//! Layers from registries are untrusted. Besides what the reader refuses (`..`) and
//! normalises (absolute paths become relative to the root), the merged tree drops two kinds
//! of entries so that unpacking the flattened tree can never write outside its root:
//! an entry below a symlink (or any non-directory) of the merged tree — `a -> /` then
//! `a/etc/x` — and a hard link whose target is not a regular file of the merged tree
//! (`x` linked to `/etc/passwd` of an image that has none). Symlinks themselves are kept
//! as they are: an absolute target resolves inside the image at run time.
//! What the stream guarantees (and `mke2fs -d tar` and cpio writers rely on): every
//! parent directory comes before its children (a path sorts after its prefixes), and a
//! hard link comes after its target and carries the target's mode, owner, mtime and
//! xattrs, since a hard link's header describes the shared inode.
//!
//! Hard links are tracked as inodes: a regular file entry is an inode (named by its layer
//! and position), a hard link joins the inode its target has when the link is read. When
//! a higher layer replaces or deletes the file a link pointed to, the link keeps the old
//! inode, as it would on an overlay mount. After each layer every inode's surviving names
//! are regrouped: the original file entry stays the data-carrying one if it survives,
//! otherwise the first surviving name in path order becomes a regular file and the others
//! hard links to it. The data-carrying name is streamed where the inode's bytes are in the
//! layers, which is before every link to it.

use super::entry::{parent_of, EntryKind, EntryMeta};
use super::read::{read_meta, LayerReadError};
use super::write::{TarWriter, WrittenEntries};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};

/// Where a merged tree is streamed to: a tar writer, a cpio writer, a filesystem builder.
pub trait TreeSink {
    /// Takes one entry; files come with exactly `meta.size` bytes in `data`.
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()>;
}

impl<W: Write> TreeSink for TarWriter<W> {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        self.append(meta, data)
    }
}

/// Where an entry is in the layer stack: layer index, then entry index in that layer.
type Position = (usize, usize);

/// Which entry of which layer a path ends up as.
#[derive(Debug, Clone)]
struct Winner {
    layer: usize,
    ordinal: usize,
    meta: EntryMeta,
    /// For regular files and hard links: the file entry holding the bytes, and its size.
    inode: Option<(Position, u64)>,
}

/// The metadata of every path in a merged layer stack.
#[derive(Debug, Default)]
pub struct MergedTree {
    entries: BTreeMap<String, Winner>,
    layers: usize,
}

impl MergedTree {
    /// Reads every layer's headers (in order, lowest first) and applies them.
    pub fn build<R: Read>(layers: impl IntoIterator<Item = R>) -> Result<Self, LayerReadError> {
        let mut tree = Self::default();
        for reader in layers {
            tree.push_layer(reader)?;
        }
        Ok(tree)
    }

    /// Applies one more layer on top.
    pub fn push_layer<R: Read>(&mut self, reader: R) -> Result<(), LayerReadError> {
        self.push_layer_observed(reader, &mut |_| {})
    }

    /// Like [`MergedTree::push_layer`], showing `observe` each entry of the stream as it
    /// is read (an entry with an empty path for one that applies nothing): the sequence
    /// [`MergedTree::push_entries`] takes to build the same tree again.
    pub fn push_layer_observed<R: Read>(
        &mut self,
        reader: R,
        observe: &mut dyn FnMut(&EntryMeta),
    ) -> Result<(), LayerReadError> {
        let layer = self.layers;
        self.apply_layer(layer, reader, observe)?;
        self.settle_layer();
        Ok(())
    }

    /// Applies one more layer on top from the entries its writer recorded: the same tree
    /// as [`MergedTree::push_layer`] of that layer's stream, without reading it again.
    pub fn push_written(&mut self, written: WrittenEntries) {
        let Ok(()) =
            self.push_entries(written.0.into_iter().map(Ok::<_, std::convert::Infallible>));
    }

    /// Applies one more layer on top from its entries as [`MergedTree::push_layer_observed`]
    /// showed them, in order. On an error the tree is left with part of the layer: drop it.
    pub fn push_entries<E>(
        &mut self,
        entries: impl IntoIterator<Item = Result<EntryMeta, E>>,
    ) -> Result<(), E> {
        let layer = self.layers;
        for (ordinal, meta) in entries.into_iter().enumerate() {
            self.apply_entry(layer, ordinal, meta?);
        }
        self.settle_layer();
        Ok(())
    }

    /// Closes the layer just applied: unsafe entries dropped, hard links regrouped,
    /// missing parents added.
    fn settle_layer(&mut self) {
        self.layers += 1;
        self.drop_unsafe_entries();
        self.regroup_links();
        self.add_missing_parents();
    }

    /// Gives every inode one data-carrying name (its original file entry if that survives,
    /// else its first name in path order) and makes its other names hard links to it.
    fn regroup_links(&mut self) {
        // Only inodes with a hard link can need a change: a lone file is its own inode.
        let linked: HashSet<Position> = self
            .entries
            .values()
            .filter(|w| matches!(w.meta.kind, EntryKind::Hardlink(_)))
            .filter_map(|w| w.inode.map(|(pos, _)| pos))
            .collect();
        if linked.is_empty() {
            return;
        }
        let mut groups: BTreeMap<Position, Vec<String>> = BTreeMap::new();
        for (path, w) in &self.entries {
            if let Some((pos, _)) = w.inode.filter(|(pos, _)| linked.contains(pos)) {
                groups.entry(pos).or_default().push(path.clone());
            }
        }
        for (pos, names) in groups {
            let primary = names
                .iter()
                .find(|p| {
                    let w = &self.entries[p.as_str()];
                    (w.layer, w.ordinal) == pos && w.meta.kind == EntryKind::File
                })
                .unwrap_or(&names[0])
                .clone();
            for name in &names {
                let Some(w) = self.entries.get_mut(name.as_str()) else {
                    continue;
                };
                let size = w.inode.map_or(0, |(_, size)| size);
                if *name == primary {
                    w.meta.kind = EntryKind::File;
                    w.meta.size = size;
                } else {
                    w.meta.kind = EntryKind::Hardlink(primary.clone());
                    w.meta.size = 0;
                }
            }
        }
    }

    fn apply_layer<R: Read>(
        &mut self,
        layer: usize,
        mut reader: R,
        observe: &mut dyn FnMut(&EntryMeta),
    ) -> Result<(), LayerReadError> {
        let applied = self.apply_entries(layer, &mut reader, observe);
        read_to_end_after(&mut reader, applied)
    }

    fn apply_entries<R: Read>(
        &mut self,
        layer: usize,
        reader: R,
        observe: &mut dyn FnMut(&EntryMeta),
    ) -> Result<(), LayerReadError> {
        let mut archive = tar::Archive::new(reader);
        for (ordinal, entry) in archive.entries()?.enumerate() {
            let mut entry = entry?;
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                // `git archive`'s comment record: nothing to apply.
                observe(&EntryMeta::dir("", 0));
                continue;
            }
            let meta = read_meta(&mut entry)?;
            observe(&meta);
            self.apply_entry(layer, ordinal, meta);
        }
        Ok(())
    }

    /// Applies one entry of `layer`, the `ordinal`th of its stream.
    fn apply_entry(&mut self, layer: usize, ordinal: usize, mut meta: EntryMeta) {
        if meta.path.is_empty() {
            return;
        }
        if let Some(target) = meta.whiteout_target() {
            self.remove_below(&target, layer, true);
            return;
        }
        if let Some(dir) = meta.opaque_dir() {
            let dir = dir.to_owned();
            self.remove_below(&dir, layer, false);
            return;
        }
        if !meta.is_dir() {
            self.remove_below(&meta.path, layer, false);
        }
        let inode = match &meta.kind {
            EntryKind::File => Some(((layer, ordinal), meta.size)),
            EntryKind::Hardlink(target) => self.entries.get(target.as_str()).and_then(|t| {
                let inode = t.inode?;
                // The link's header describes the shared inode.
                meta.mode = t.meta.mode;
                meta.uid = t.meta.uid;
                meta.gid = t.meta.gid;
                meta.mtime = t.meta.mtime;
                meta.xattrs = t.meta.xattrs.clone();
                Some(inode)
            }),
            _ => None,
        };
        self.entries.insert(
            meta.path.clone(),
            Winner {
                layer,
                ordinal,
                meta,
                inode,
            },
        );
    }

    /// Removes what layers below `layer` hold under `path` (and `path` itself if asked).
    fn remove_below(&mut self, path: &str, layer: usize, including_self: bool) {
        let prefix = format!("{path}/");
        let doomed: Vec<String> = self
            .entries
            .range(path.to_owned()..)
            .take_while(|(p, _)| p.as_str() == path || p.starts_with(&prefix))
            .filter(|(p, w)| w.layer < layer && (including_self || p.as_str() != path))
            .map(|(p, _)| p.clone())
            .collect();
        for p in doomed {
            self.entries.remove(&p);
        }
    }

    /// Drops entries below a non-directory and hard links to anything but a regular file
    /// (at the time the link was read).
    fn drop_unsafe_entries(&mut self) {
        let below_non_dir: Vec<String> = self
            .entries
            .keys()
            .filter(|path| {
                let mut parent = parent_of(path);
                while !parent.is_empty() {
                    if self.entries.get(parent).is_some_and(|w| !w.meta.is_dir()) {
                        return true;
                    }
                    parent = parent_of(parent);
                }
                false
            })
            .cloned()
            .collect();
        for p in below_non_dir {
            self.entries.remove(&p);
        }
        // A link whose target was no regular file when the link was read has no inode.
        let dangling: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, w)| matches!(w.meta.kind, EntryKind::Hardlink(_)) && w.inode.is_none())
            .map(|(p, _)| p.clone())
            .collect();
        for p in dangling {
            self.entries.remove(&p);
        }
    }

    fn add_missing_parents(&mut self) {
        let mut missing = BTreeMap::new();
        for (path, w) in &self.entries {
            let mut parent = parent_of(path);
            while !parent.is_empty() && !self.entries.contains_key(parent) {
                missing
                    .entry(parent.to_owned())
                    .or_insert_with(|| EntryMeta::dir(parent, w.meta.mtime));
                parent = parent_of(parent);
            }
        }
        for (path, meta) in missing {
            // Synthesised parents belong to the layer that needed them and are only ever
            // streamed in the directory pass.
            let winner = Winner {
                layer: self.layers.saturating_sub(1),
                ordinal: usize::MAX,
                meta,
                inode: None,
            };
            self.entries.insert(path, winner);
        }
    }

    /// The entry at `path` (relative, no leading `/`), if the merged tree has one.
    pub fn get(&self, path: &str) -> Option<&EntryMeta> {
        self.entries.get(path).map(|w| &w.meta)
    }

    /// Every entry, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = &EntryMeta> {
        self.entries.values().map(|w| &w.meta)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total bytes of regular files.
    pub fn file_bytes(&self) -> u64 {
        self.iter()
            .filter(|m| m.kind == EntryKind::File)
            .map(|m| m.size)
            .sum()
    }

    /// Streams the merged tree to `sink`, reading the same layers (same order) again.
    pub fn stream<R: Read>(
        &self,
        layers: impl IntoIterator<Item = R>,
        sink: &mut dyn TreeSink,
    ) -> Result<(), LayerReadError> {
        for w in self.entries.values().filter(|w| w.meta.is_dir()) {
            sink.entry(&w.meta, &mut io::empty())?;
        }
        // Each non-directory is streamed at one position of the layers: a regular file
        // where its inode's bytes are, anything else where its own entry is.
        let mut at: HashMap<Position, &EntryMeta> = HashMap::new();
        for w in self.entries.values().filter(|w| !w.meta.is_dir()) {
            let pos = match (&w.meta.kind, w.inode) {
                (EntryKind::File, Some((pos, _))) => pos,
                _ => (w.layer, w.ordinal),
            };
            at.insert(pos, &w.meta);
        }
        for (layer, mut reader) in layers.into_iter().enumerate() {
            let streamed = stream_layer(&mut reader, layer, &at, sink);
            read_to_end_after(&mut reader, streamed)?;
        }
        Ok(())
    }
}

/// Streams the entries of one layer that are at a position in `at`.
fn stream_layer<R: Read>(
    reader: R,
    layer: usize,
    at: &HashMap<Position, &EntryMeta>,
    sink: &mut dyn TreeSink,
) -> Result<(), LayerReadError> {
    let mut archive = tar::Archive::new(reader);
    for (ordinal, entry) in archive.entries()?.enumerate() {
        let mut entry = entry?;
        let Some(meta) = at.get(&(layer, ordinal)) else {
            continue;
        };
        if meta.kind == EntryKind::File {
            // The tree may come from a table of contents: the bytes must be the ones it
            // describes, or the stream stops rather than cut another file's bytes to size.
            let kind = entry.header().entry_type();
            if !(kind.is_file() || kind.is_gnu_sparse()) || entry.size() != meta.size {
                return Err(LayerReadError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "entry {ordinal} of layer {layer} is not the {}-byte file `{}` the \
                         merged tree expects; run `imgbuild store verify --repair`",
                        meta.size, meta.path
                    ),
                )));
            }
            sink.entry(meta, &mut entry)?;
        } else {
            sink.entry(meta, &mut io::empty())?;
        }
    }
    Ok(())
}

/// Reads a layer's stream to its end once its tar was parsed (the parser stops at the
/// end-of-archive blocks), so that a reader which checks its bytes at the end (a store
/// layer, [`crate::LayerReader`]) does. An error there (a corrupt blob) wins over the
/// parse's own, which it likely caused.
fn read_to_end_after<R: Read>(
    reader: &mut R,
    parsed: Result<(), LayerReadError>,
) -> Result<(), LayerReadError> {
    io::copy(reader, &mut io::sink())?;
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(build: impl FnOnce(&mut TarWriter<Vec<u8>>)) -> Vec<u8> {
        let mut w = TarWriter::new(Vec::new());
        build(&mut w);
        w.finish().unwrap()
    }

    fn file(w: &mut TarWriter<Vec<u8>>, path: &str, body: &str) {
        let mut m = EntryMeta::new(path, EntryKind::File, 0o644, 0);
        m.size = body.len() as u64;
        w.append(&m, &mut body.as_bytes()).unwrap();
    }

    #[test]
    fn whiteouts_opaque_dirs_and_overrides_apply_to_lower_layers_only() {
        let l0 = layer(|w| {
            w.append(&EntryMeta::dir("etc", 0), &mut io::empty())
                .unwrap();
            file(w, "etc/a", "a0");
            file(w, "etc/b", "b0");
            w.append(&EntryMeta::dir("var/cache", 0), &mut io::empty())
                .unwrap();
            file(w, "var/cache/x", "x");
            file(w, "keep", "k");
        });
        let l1 = layer(|w| {
            w.whiteout("etc/b", 0).unwrap();
            file(w, "etc/a", "a1");
            w.opaque("var/cache", 0).unwrap();
            file(w, "var/cache/y", "y");
        });
        let layers = [l0.as_slice(), l1.as_slice()];
        let tree = MergedTree::build(layers).unwrap();
        let paths: Vec<&str> = tree.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            paths,
            ["etc", "etc/a", "keep", "var", "var/cache", "var/cache/y"]
        );

        let mut out = TarWriter::new(Vec::new());
        tree.stream(layers, &mut out).unwrap();
        let bytes = out.finish().unwrap();
        let mut files = BTreeMap::new();
        for e in tar::Archive::new(bytes.as_slice()).entries().unwrap() {
            let mut e = e.unwrap();
            let meta = read_meta(&mut e).unwrap();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            files.insert(meta.path, body);
        }
        assert_eq!(files["etc/a"], "a1");
        assert_eq!(files["keep"], "k");
        assert!(!files.contains_key("etc/b") && !files.contains_key("var/cache/x"));
    }

    #[test]
    fn entries_below_symlinks_and_dangling_hard_links_are_dropped() {
        let l0 = layer(|w| {
            let link = EntryMeta::new("a", EntryKind::Symlink("/".into()), 0o777, 0);
            w.append(&link, &mut io::empty()).unwrap();
            file(w, "a/etc/x", "escape");
            file(w, "f", "file");
            let hard = EntryMeta::new("h", EntryKind::Hardlink("etc/passwd".into()), 0o644, 0);
            w.append(&hard, &mut io::empty()).unwrap();
            let good = EntryMeta::new("g", EntryKind::Hardlink("f".into()), 0o644, 0);
            w.append(&good, &mut io::empty()).unwrap();
        });
        let tree = MergedTree::build([l0.as_slice()]).unwrap();
        let paths: Vec<&str> = tree.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["a", "f", "g"]);
    }

    #[test]
    fn hard_links_repeat_their_target_and_parents_come_first() {
        let l0 = layer(|w| {
            let mut f = EntryMeta::new("usr/bin/a", EntryKind::File, 0o4755, 9);
            f.uid = 7;
            f.size = 1;
            f.xattrs.insert("user.x".into(), b"1".to_vec());
            w.append(&f, &mut &b"a"[..]).unwrap();
            let link = EntryMeta::new(
                "usr/bin/b",
                EntryKind::Hardlink("usr/bin/a".into()),
                0o644,
                0,
            );
            w.append(&link, &mut io::empty()).unwrap();
        });
        let tree = MergedTree::build([l0.as_slice()]).unwrap();
        let mut out = TarWriter::new(Vec::new());
        tree.stream([l0.as_slice()], &mut out).unwrap();
        let bytes = out.finish().unwrap();
        let metas: Vec<EntryMeta> = tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| read_meta(&mut e.unwrap()).unwrap())
            .collect();
        let paths: Vec<&str> = metas.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(paths, ["usr", "usr/bin", "usr/bin/a", "usr/bin/b"]);
        let (a, b) = (&metas[2], &metas[3]);
        assert_eq!(b.kind, EntryKind::Hardlink("usr/bin/a".into()));
        assert_eq!((b.mode, b.uid, b.mtime), (a.mode, a.uid, a.mtime));
        assert_eq!(b.xattrs, a.xattrs);
    }

    /// Streams the merged `layers` through a [`TarWriter`] and reads back (meta, body).
    fn merged(layers: &[&[u8]]) -> Vec<(EntryMeta, String)> {
        let tree = MergedTree::build(layers.iter().copied()).unwrap();
        let mut out = TarWriter::new(Vec::new());
        tree.stream(layers.iter().copied(), &mut out).unwrap();
        let bytes = out.finish().unwrap();
        tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let meta = read_meta(&mut e).unwrap();
                let mut body = String::new();
                e.read_to_string(&mut body).unwrap();
                (meta, body)
            })
            .collect()
    }

    fn hard(w: &mut TarWriter<Vec<u8>>, path: &str, target: &str) {
        let m = EntryMeta::new(path, EntryKind::Hardlink(target.into()), 0o644, 0);
        w.append(&m, &mut io::empty()).unwrap();
    }

    /// Every hard link comes after an entry of its target's path that is a regular file.
    fn assert_links_follow_targets(entries: &[(EntryMeta, String)]) {
        for (i, (m, _)) in entries.iter().enumerate() {
            if let EntryKind::Hardlink(t) = &m.kind {
                assert!(
                    entries[..i]
                        .iter()
                        .any(|(e, _)| e.path == *t && e.kind == EntryKind::File),
                    "{} links to {t}, which is not a file before it: {entries:?}",
                    m.path
                );
            }
        }
    }

    #[test]
    fn a_link_whose_target_a_later_layer_replaces_keeps_the_old_bytes() {
        let l0 = layer(|w| {
            file(w, "z/target", "old");
            hard(w, "a/link", "z/target");
            hard(w, "b/link", "z/target");
        });
        let l1 = layer(|w| file(w, "z/target", "new"));
        let out = merged(&[&l0, &l1]);
        assert_links_follow_targets(&out);
        let get = |p: &str| out.iter().find(|(m, _)| m.path == p).unwrap();
        assert_eq!(get("z/target").1, "new");
        assert_eq!(get("a/link").0.kind, EntryKind::File);
        assert_eq!(get("a/link").1, "old");
        assert_eq!(get("b/link").0.kind, EntryKind::Hardlink("a/link".into()));
    }

    #[test]
    fn a_link_whose_target_a_later_layer_deletes_becomes_the_file() {
        let l0 = layer(|w| {
            file(w, "z/target", "bytes");
            hard(w, "m/link", "z/target");
        });
        let l1 = layer(|w| w.whiteout("z/target", 0).unwrap());
        let out = merged(&[&l0, &l1]);
        let paths: Vec<&str> = out.iter().map(|(m, _)| m.path.as_str()).collect();
        assert_eq!(paths, ["m", "z", "m/link"]);
        assert_eq!(out[2].0.kind, EntryKind::File);
        assert_eq!(out[2].1, "bytes");
    }

    #[test]
    fn a_later_link_to_a_promoted_name_joins_its_inode_and_output_is_stable() {
        let l0 = layer(|w| {
            file(w, "t", "x");
            hard(w, "l", "t");
        });
        let l1 = layer(|w| {
            file(w, "t", "y");
            hard(w, "l2", "l");
        });
        let first = merged(&[&l0, &l1]);
        assert_links_follow_targets(&first);
        let kinds: Vec<(&str, &EntryKind)> = first
            .iter()
            .map(|(m, _)| (m.path.as_str(), &m.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("l", &EntryKind::File),
                ("t", &EntryKind::File),
                ("l2", &EntryKind::Hardlink("l".into()))
            ]
        );
        assert_eq!(first, merged(&[&l0, &l1]));
    }

    #[test]
    fn a_global_pax_header_is_skipped() {
        let mut b = tar::Builder::new(Vec::new());
        let body = b"19 comment=abcdefg\n";
        let mut h = tar::Header::new_ustar();
        h.set_path("pax_global_header").unwrap();
        h.set_entry_type(tar::EntryType::XGlobalHeader);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &body[..]).unwrap();
        let mut rest = b.into_inner().unwrap();
        rest.truncate(512 + 512);
        rest.extend(layer(|w| file(w, "f", "x")));
        let out = merged(&[&rest]);
        let paths: Vec<&str> = out.iter().map(|(m, _)| m.path.as_str()).collect();
        assert_eq!(paths, ["f"]);
        assert_eq!(out[0].1, "x");
    }

    #[test]
    fn a_file_replacing_a_directory_hides_its_children() {
        let l0 = layer(|w| file(w, "d/child", "c"));
        let l1 = layer(|w| file(w, "d", "now a file"));
        let tree = MergedTree::build([l0.as_slice(), l1.as_slice()]).unwrap();
        assert!(tree.get("d/child").is_none());
        assert_eq!(tree.get("d").unwrap().kind, EntryKind::File);
    }

    /// Each layer written by a recording writer, then merged twice: read back from its
    /// bytes, and from what the writer recorded. The two trees must agree on every entry,
    /// its layer and position, and its inode.
    type LayerBuilder = Box<dyn Fn(&mut TarWriter<Vec<u8>>)>;

    fn assert_written_merges_as_read(layers: Vec<LayerBuilder>) {
        let (mut read, mut written) = (MergedTree::default(), MergedTree::default());
        for build in layers {
            let mut w = TarWriter::recording(Vec::new());
            build(&mut w);
            let (bytes, entries) = w.finish_recorded().unwrap();
            read.push_layer(bytes.as_slice()).unwrap();
            written.push_written(entries);
        }
        assert_eq!(
            format!("{:#?}", read.entries),
            format!("{:#?}", written.entries)
        );
        assert_eq!(read.layers, written.layers);
    }

    #[test]
    fn a_recorded_layer_merges_as_the_same_layer_read_back() {
        let long = format!("deep/{}/{}", "d".repeat(120), "f".repeat(150));
        let l0 = move |w: &mut TarWriter<Vec<u8>>| {
            w.append(&EntryMeta::dir("etc/", 0), &mut io::empty())
                .unwrap();
            file(w, "/etc/passwd", "root");
            file(w, "./etc/shadow", "x");
            let mut suid = EntryMeta::new("usr/bin/su", EntryKind::File, 0o104_755, 7);
            suid.size = 2;
            suid.uid = 9_999_999;
            suid.xattrs
                .insert("security.capability".into(), vec![1, 0, 2]);
            w.append(&suid, &mut &b"su"[..]).unwrap();
            file(w, &long, "long");
            hard(w, "usr/bin/su2", "/usr/bin/su");
            hard(w, "dangling", "nowhere");
            let mut link = EntryMeta::new("l", EntryKind::Symlink("/etc".into()), 0o120_777, 0);
            link.size = 99;
            w.append(&link, &mut io::empty()).unwrap();
            let dev = EntryMeta::new("dev/null", EntryKind::CharDevice(1, 3), 0o666, 0);
            w.append(&dev, &mut io::empty()).unwrap();
            w.append(
                &EntryMeta::new("fifo", EntryKind::Fifo, 0o600, 0),
                &mut io::empty(),
            )
            .unwrap();
            w.append(&EntryMeta::dir("var/cache", 0), &mut io::empty())
                .unwrap();
            file(w, "var/cache/a", "a");
        };
        let l1 = |w: &mut TarWriter<Vec<u8>>| {
            file(w, "usr/bin/su", "new");
            w.whiteout("etc/shadow", 0).unwrap();
            w.opaque("var/cache", 0).unwrap();
            file(w, "var/cache/b", "b");
            hard(w, "etc/su3", "usr/bin/su2");
            file(w, "l/under-a-symlink", "dropped");
        };
        assert_written_merges_as_read(vec![Box::new(l0), Box::new(l1)]);
    }

    #[test]
    fn streaming_stops_where_a_layer_is_not_what_the_tree_was_built_from() {
        let built_from = layer(|w| file(w, "etc/motd", "hello"));
        let streamed = layer(|w| file(w, "etc/motd", "a longer text"));
        let tree = MergedTree::build([built_from.as_slice()]).unwrap();
        let mut out = TarWriter::new(Vec::new());
        let err = tree
            .stream([streamed.as_slice()], &mut out)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the 5-byte file `etc/motd`"), "{err}");
    }
}
