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

use super::entry::{parent_of, EntryKind, EntryMeta};
use super::read::{read_meta, LayerReadError};
use super::write::TarWriter;
use std::collections::BTreeMap;
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

/// Which entry of which layer a path ends up as.
#[derive(Debug, Clone)]
struct Winner {
    layer: usize,
    ordinal: usize,
    meta: EntryMeta,
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
        let layer = self.layers;
        self.apply_layer(layer, reader)?;
        self.layers += 1;
        self.drop_unsafe_entries();
        self.add_missing_parents();
        Ok(())
    }

    fn apply_layer<R: Read>(&mut self, layer: usize, reader: R) -> Result<(), LayerReadError> {
        let mut archive = tar::Archive::new(reader);
        for (ordinal, entry) in archive.entries()?.enumerate() {
            let meta = read_meta(&mut entry?)?;
            if meta.path.is_empty() {
                continue;
            }
            if let Some(target) = meta.whiteout_target() {
                self.remove_below(&target, layer, true);
            } else if let Some(dir) = meta.opaque_dir() {
                let dir = dir.to_owned();
                self.remove_below(&dir, layer, false);
            } else {
                if !meta.is_dir() {
                    self.remove_below(&meta.path, layer, false);
                }
                self.entries.insert(
                    meta.path.clone(),
                    Winner {
                        layer,
                        ordinal,
                        meta,
                    },
                );
            }
        }
        Ok(())
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

    /// Drops entries below a non-directory and hard links to anything but a regular file.
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
        let dangling: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, w)| match &w.meta.kind {
                EntryKind::Hardlink(target) => self
                    .entries
                    .get(target.as_str())
                    .is_none_or(|t| t.meta.kind != EntryKind::File),
                _ => false,
            })
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

    /// A hard link's metadata as the merged tree says: the link's path and target with the
    /// target's mode, owner, mtime and xattrs (they describe one inode).
    fn link_meta(&self, link: &EntryMeta, target: &str) -> EntryMeta {
        let mut meta = link.clone();
        if let Some(t) = self.entries.get(target) {
            meta.mode = t.meta.mode;
            meta.uid = t.meta.uid;
            meta.gid = t.meta.gid;
            meta.mtime = t.meta.mtime;
            meta.xattrs = t.meta.xattrs.clone();
        }
        meta.size = 0;
        meta
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
        for (layer, reader) in layers.into_iter().enumerate() {
            let mut archive = tar::Archive::new(reader);
            for (ordinal, entry) in archive.entries()?.enumerate() {
                let mut entry = entry?;
                let path = super::read::normalize(&entry.path()?)?;
                let Some(w) = self.entries.get(&path) else {
                    continue;
                };
                if w.layer != layer || w.ordinal != ordinal || w.meta.is_dir() {
                    continue;
                }
                if let EntryKind::Hardlink(target) = &w.meta.kind {
                    let meta = self.link_meta(&w.meta, target);
                    sink.entry(&meta, &mut io::empty())?;
                    continue;
                }
                sink.entry(&w.meta, &mut entry)?;
            }
        }
        Ok(())
    }
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

    #[test]
    fn a_file_replacing_a_directory_hides_its_children() {
        let l0 = layer(|w| file(w, "d/child", "c"));
        let l1 = layer(|w| file(w, "d", "now a file"));
        let tree = MergedTree::build([l0.as_slice(), l1.as_slice()]).unwrap();
        assert!(tree.get("d/child").is_none());
        assert_eq!(tree.get("d").unwrap().kind, EntryKind::File);
    }
}
