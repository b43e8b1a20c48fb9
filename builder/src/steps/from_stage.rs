//! `copy ... from_stage = NAME`: files from another stage's image, streamed from its merged
//! layers into this step's layer under their new path. The source may be a glob
//! ([`image_glob`]), matched against the stage's merged tree.
//!
//! Destinations resolve inside the image below as the other file steps' do
//! ([`PathResolver`]): `to = "/bin/"` on a usrmerged image writes into `usr/bin`.

use super::{image_glob, StepError};
use crate::recipe::Owner;
use imgbuild_store::tarball::{
    EntryKind, EntryMeta, MergedTree, PathResolver, ResolveError, TarWriter, TreeSink,
};
use imgbuild_store::{Compression, Digest, LayerRecord, MergeError, Store};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};

/// What to copy out of a stage.
pub(crate) struct StageCopy<'a> {
    /// The stage's layers, lowest first.
    pub layers: &'a [Digest],
    /// Absolute path or glob in the stage.
    pub source: &'a str,
    /// Absolute destination in the image.
    pub to: &'a str,
    /// Mode for copied files.
    pub mode: Option<u32>,
    /// Owner of everything copied.
    pub owner: Owner,
}

/// Writes the layer of a copy from a stage.
pub(crate) fn stage_copy_layer(
    store: &Store,
    number: usize,
    copy: &StageCopy<'_>,
    below: &MergedTree,
    epoch: u64,
    compression: Compression,
) -> Result<LayerRecord, StepError> {
    let store_err = |source| StepError::Store {
        step: number,
        source,
    };
    let io_err = |source| StepError::Io {
        step: number,
        source,
    };
    let read_err = |e: imgbuild_store::tarball::LayerReadError| StepError::Sandbox {
        step: number,
        message: e.to_string(),
    };
    let open = || -> Result<Vec<Box<dyn Read + Send>>, StepError> {
        copy.layers
            .iter()
            .map(|d| store.open_layer(d).map_err(store_err))
            .collect()
    };
    let tree = store.merged_tree(copy.layers).map_err(|e| match e {
        MergeError::Store(source) => store_err(source),
        MergeError::Layer { source, .. } => read_err(source),
    })?;
    let found = image_glob::matches(&tree, copy.source);
    let to = copy.to.trim_matches('/');
    // Each matched path in the stage and where it lands, as a host `copy` places its
    // sources: one directory's contents into `to`, one file at `to` (or inside it when
    // `to` ends with `/`), several matches each inside `to` under its own name.
    let moves: Vec<(String, String)> = match found.as_slice() {
        [] => {
            return Err(StepError::NothingInStage {
                step: number,
                path: copy.source.to_owned(),
            })
        }
        [one] => {
            let at_to = !copy.to.ends_with('/') || tree.get(one).is_some_and(|m| m.is_dir());
            let dest = if at_to {
                to.to_owned()
            } else {
                format!("{to}/{}", name_of(one))
            };
            vec![(one.clone(), dest)]
        }
        several if !copy.to.ends_with('/') => {
            return Err(StepError::SeveralInStage {
                step: number,
                path: copy.source.to_owned(),
                count: several.len(),
            })
        }
        several => several
            .iter()
            .map(|p| (p.clone(), format!("{to}/{}", name_of(p))))
            .collect(),
    };
    let resolve_err = |path: &str, source| StepError::Resolve {
        step: number,
        path: format!("/{path}"),
        source,
    };
    let resolver = PathResolver::new(below);
    // Where each destination lands in the image below, and the parents to create there.
    let mut parents = BTreeSet::new();
    for (source, dest) in &moves {
        let landed = if tree.get(source).is_some_and(|m| m.is_dir()) {
            resolver.resolve_dir(dest)
        } else {
            resolver.resolve_parent(dest)
        }
        .map_err(|e| resolve_err(dest, e))?;
        let mut parent = parent_of(&landed);
        while !parent.is_empty() && below.get(parent).is_none() {
            parents.insert(parent.to_owned());
            parent = parent_of(parent);
        }
    }
    let mut layer = store.layer_writer(compression).map_err(store_err)?;
    {
        let mut tar = TarWriter::new(&mut layer);
        // Sorted, so every parent comes before its children.
        for dir in parents {
            tar.append(&EntryMeta::dir(dir, epoch), &mut io::empty())
                .map_err(io_err)?;
        }
        let mut sink = Renaming {
            tar: &mut tar,
            moves: &moves,
            copy,
            epoch,
            resolver,
            landed: HashMap::new(),
            failed: None,
        };
        let streamed = tree.stream(open()?, &mut sink);
        if let Some((path, e)) = sink.failed {
            return Err(resolve_err(&path, e));
        }
        streamed.map_err(read_err)?;
        tar.finish().map_err(io_err)?;
    }
    layer.commit(store).map_err(store_err)
}

/// Passes on the entries at or below each matched source, moved to its destination.
struct Renaming<'a, W: Write> {
    tar: &'a mut TarWriter<W>,
    /// (source, destination) pairs, relative; no source is below another.
    moves: &'a [(String, String)],
    copy: &'a StageCopy<'a>,
    epoch: u64,
    /// Resolves each renamed path inside the image below (and what this step wrote).
    resolver: PathResolver<'a>,
    /// Renamed path -> where it landed, for hard link targets.
    landed: HashMap<String, String>,
    /// The first path that could not be resolved.
    failed: Option<(String, ResolveError)>,
}

impl<W: Write> Renaming<'_, W> {
    fn rename(&self, path: &str) -> Option<String> {
        self.moves.iter().find_map(|(source, dest)| {
            let rest = path.strip_prefix(source.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{dest}{rest}"))
        })
    }
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

impl<W: Write> TreeSink for Renaming<'_, W> {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        let Some(path) = self.rename(&meta.path) else {
            return Ok(());
        };
        let resolved = if meta.is_dir() {
            self.resolver.resolve_dir(&path)
        } else {
            self.resolver.resolve_parent(&path)
        };
        let landed = match resolved {
            Ok(landed) => landed,
            Err(e) => {
                let message = e.to_string();
                self.failed = Some((path, e));
                return Err(io::Error::other(message));
            }
        };
        self.resolver.add(&landed, meta.kind.clone());
        self.landed.insert(path, landed.clone());
        let mut m = meta.clone();
        m.path = landed;
        m.uid = self.copy.owner.uid;
        m.gid = self.copy.owner.gid;
        m.mtime = self.epoch;
        if let EntryKind::Hardlink(target) = &m.kind {
            // A link to a file outside what is copied becomes nothing rather than dangling.
            let Some(target) = self
                .rename(target)
                .and_then(|t| self.landed.get(&t).cloned())
            else {
                return Ok(());
            };
            m.kind = EntryKind::Hardlink(target);
        }
        if let (EntryKind::File, Some(mode)) = (&m.kind, self.copy.mode) {
            m.mode = mode;
        }
        self.tar.append(&m, data)
    }
}
