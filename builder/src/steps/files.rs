//! The file steps (`copy`, `write`, `mkdir`, `symlink`, `remove`) as layer entries.
//!
//! Every entry carries the step's owner and the build's timestamp, never the host's.
//! Parent directories the image below does not have are created 0755 root:root; parents it
//! has are left out of the layer, so their metadata stays as it was.
//!
//! Paths resolve inside the image below, as BuildKit does: symlinks in an entry's parent
//! path are followed (absolute targets from the image's root, never above it), so on a
//! usrmerged image `write = "/bin/hello"` lands at `usr/bin/hello` and `bin -> usr/bin`
//! stays. A directory whose path is a symlink to a directory goes to the directory.

use super::copy::{CopyItem, CopyKind, FileStamp};
use super::image_glob;
use super::StepLayer;
use crate::recipe::{Owner, StepOp};
use imgbuild_store::tarball::{
    EntryKind, EntryMeta, MergedTree, PathResolver, ResolveError, TarWriter,
};
use imgbuild_store::{Compression, Store, StoreError};
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

/// A step could not be executed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Reading a source or writing the layer failed.
    #[error("step {step}: {source}")]
    Io {
        /// The step number.
        step: usize,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error("step {step}: {source}")]
    Store {
        /// The step number.
        step: usize,
        /// What failed.
        #[source]
        source: StoreError,
    },
    /// The sandbox could not run the step.
    #[error("step {step}: {message}")]
    Sandbox {
        /// The step number.
        step: usize,
        /// What went wrong.
        message: String,
    },
    /// A `copy ... from_stage` names a path the stage's image does not have.
    #[error("step {step}: the stage has nothing at {path}")]
    NothingInStage {
        /// The step number.
        step: usize,
        /// The path in the stage, as the step names it.
        path: String,
    },
    /// A `copy ... from_stage` glob matches several paths, but `to` is not a directory.
    #[error(
        "step {step}: {path} matches {count} paths in the stage, and `to` does not end with `/`"
    )]
    SeveralInStage {
        /// The step number.
        step: usize,
        /// The glob in the stage, as the step names it.
        path: String,
        /// How many paths it matches.
        count: usize,
    },
    /// A `remove` path or glob matches nothing in the image below the step.
    #[error("step {step}: the image has nothing at {path}")]
    NothingToRemove {
        /// The step number.
        step: usize,
        /// The path or glob, as the step names it.
        path: String,
    },
    /// The step's command exited with a failure.
    #[error("step {step}: the command failed with exit code {code}; its last lines:\n{}", last_lines.join("\n"))]
    CommandFailed {
        /// The step number.
        step: usize,
        /// Its exit code.
        code: i32,
        /// The last lines it printed.
        last_lines: Vec<String>,
    },
    /// A destination cannot be resolved inside the image: a file is in the way of its
    /// parent path, or its symlinks loop.
    #[error("step {step}: cannot write {path} inside the image: {source}")]
    Resolve {
        /// The step number.
        step: usize,
        /// The path as the step names it (absolute).
        path: String,
        /// Why.
        #[source]
        source: ResolveError,
    },
    /// A `[system]` setting cannot be applied to the image below (a zone, unit, group or
    /// `/etc/sudoers.d` it lacks, a user that exists with another uid).
    #[error("step {step}: {key}: {message}")]
    System {
        /// The step number.
        step: usize,
        /// The recipe key, e.g. `system.timezone` or `system.user[0].groups`.
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// A copied file changed between planning and copying.
    #[error("step {step}: {path} changed while the build read it; run the build again")]
    SourceChanged {
        /// The step number.
        step: usize,
        /// The file.
        path: PathBuf,
    },
}

impl StepError {
    /// True for what the recipe has to fix (a `copy ... from_stage` of a path the stage
    /// lacks or of several into a file, a `remove` of nothing, a destination below a
    /// file or through a symlink loop); a failing command, the
    /// sandbox or the store are not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NothingInStage { .. }
            | Self::SeveralInStage { .. }
            | Self::NothingToRemove { .. }
            | Self::Resolve { .. }
            | Self::System { .. } => true,
            Self::Store { source, .. } => source.is_user_error(),
            Self::Io { .. }
            | Self::Sandbox { .. }
            | Self::CommandFailed { .. }
            | Self::SourceChanged { .. } => false,
        }
    }
}

/// Where an entry's bytes come from.
pub(super) enum Data {
    None,
    Bytes(Vec<u8>),
    Host(PathBuf, FileStamp),
}

/// Writes the layer of one file step into the store.
pub(crate) fn write_layer(
    store: &Store,
    step: usize,
    op: &StepOp,
    items: &[CopyItem],
    below: &MergedTree,
    epoch: u64,
    compression: Compression,
) -> Result<StepLayer, StepError> {
    let mut entries = Entries::new();
    let mut whiteouts = Vec::new();
    let owned = |mut meta: EntryMeta, owner: &Owner| {
        meta.uid = owner.uid;
        meta.gid = owner.gid;
        meta
    };
    match op {
        StepOp::Copy { owner, .. } => {
            for item in items {
                let (meta, data) = match &item.kind {
                    CopyKind::Dir => (EntryMeta::dir(item.dest.clone(), epoch), Data::None),
                    CopyKind::Symlink(t) => (
                        EntryMeta::new(
                            item.dest.clone(),
                            EntryKind::Symlink(t.clone()),
                            0o777,
                            epoch,
                        ),
                        Data::None,
                    ),
                    CopyKind::File {
                        host,
                        size,
                        mode,
                        stamp,
                        ..
                    } => {
                        let mut m =
                            EntryMeta::new(item.dest.clone(), EntryKind::File, *mode, epoch);
                        m.size = *size;
                        (m, Data::Host(host.clone(), stamp.clone()))
                    }
                };
                entries.insert(item.dest.clone(), (owned(meta, owner), data));
            }
        }
        StepOp::Write {
            path,
            content,
            mode,
            owner,
        } => {
            let mut m = EntryMeta::new(rel(path), EntryKind::File, *mode, epoch);
            m.size = content.len() as u64;
            entries.insert(
                rel(path),
                (owned(m, owner), Data::Bytes(content.clone().into_bytes())),
            );
        }
        StepOp::Mkdir { path, mode, owner } => {
            let m = EntryMeta::new(rel(path), EntryKind::Dir, *mode, epoch);
            entries.insert(rel(path), (owned(m, owner), Data::None));
        }
        StepOp::Symlink {
            path,
            target,
            owner,
        } => {
            let m = EntryMeta::new(rel(path), EntryKind::Symlink(target.clone()), 0o777, epoch);
            entries.insert(rel(path), (owned(m, owner), Data::None));
        }
        StepOp::Remove { paths, missing_ok } => {
            for pattern in paths {
                let found = image_glob::matches(below, pattern);
                if found.is_empty() && !missing_ok {
                    return Err(StepError::NothingToRemove {
                        step,
                        path: pattern.clone(),
                    });
                }
                whiteouts.extend(found);
            }
            // Two patterns may match the same path, or one a path below another's match.
            whiteouts.sort();
            whiteouts.dedup();
            let all = whiteouts.clone();
            whiteouts.retain(|p| {
                !p.match_indices('/')
                    .any(|(at, _)| all.binary_search_by(|a| a.as_str().cmp(&p[..at])).is_ok())
            });
        }
        StepOp::Packages { .. } | StepOp::Run(_) | StepOp::System(_) => {
            unreachable!("packages, run and system steps have layers of their own")
        }
    }
    write_entries(store, step, below, entries, whiteouts, epoch, compression)
}

/// Resolves `entries` and `whiteouts` inside the image below, adds the parents it lacks
/// (0755 root:root) and writes them as one layer. An entry wins over a whiteout of its path.
pub(super) fn write_entries(
    store: &Store,
    step: usize,
    below: &MergedTree,
    entries: Entries,
    whiteouts: Vec<String>,
    epoch: u64,
    compression: Compression,
) -> Result<StepLayer, StepError> {
    let io_err = |source| StepError::Io { step, source };
    let store_err = |source| StepError::Store { step, source };
    let (entries, whiteouts) = resolve_all(step, below, entries, whiteouts)?;
    let mut entries = entries;
    let paths: Vec<String> = entries
        .keys()
        .cloned()
        .chain(whiteouts.iter().cloned())
        .collect();
    for path in paths {
        let mut parent = parent_of(&path);
        while !parent.is_empty() && !entries.contains_key(parent) && below.get(parent).is_none() {
            entries.insert(
                parent.to_owned(),
                (EntryMeta::dir(parent, epoch), Data::None),
            );
            parent = parent_of(parent);
        }
    }
    let mut whiteouts = whiteouts;
    whiteouts.retain(|w| !entries.contains_key(w));
    whiteouts.sort();
    whiteouts.dedup();
    let mut layer = store.layer_writer(compression).map_err(store_err)?;
    let written = {
        let mut tar = TarWriter::recording(&mut layer);
        // Consumed as written, so the writer's record is the only copy of a big tree's
        // metadata by the end.
        for (meta, data) in entries.into_values() {
            match data {
                Data::None => tar.append(&meta, &mut io::empty()).map_err(io_err)?,
                Data::Bytes(b) => tar.append(&meta, &mut b.as_slice()).map_err(io_err)?,
                Data::Host(host, stamp) => {
                    let mut file = fs_err::File::open(&host).map_err(io_err)?;
                    if FileStamp::of(&file.metadata().map_err(io_err)?) != stamp {
                        return Err(StepError::SourceChanged {
                            step,
                            path: host.clone(),
                        });
                    }
                    tar.append(&meta, &mut file).map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            StepError::SourceChanged {
                                step,
                                path: host.clone(),
                            }
                        } else {
                            io_err(e)
                        }
                    })?;
                }
            }
        }
        for path in whiteouts {
            tar.whiteout(&path, epoch).map_err(io_err)?;
        }
        tar.finish_recorded().map_err(io_err)?.1
    };
    Ok(StepLayer {
        record: layer.commit(store).map_err(store_err)?,
        written: Some(written),
    })
}

/// A layer's entries by path, with their bytes.
pub(super) type Entries = BTreeMap<String, (EntryMeta, Data)>;

/// Moves every entry and whiteout to where it lands in the image below (parents before
/// children, so that a directory the step moves takes its contents along).
fn resolve_all(
    step: usize,
    below: &MergedTree,
    entries: Entries,
    whiteouts: Vec<String>,
) -> Result<(Entries, Vec<String>), StepError> {
    let err = |path: &str, source| StepError::Resolve {
        step,
        path: format!("/{path}"),
        source,
    };
    let mut resolver = PathResolver::new(below);
    let mut out = BTreeMap::new();
    for (path, (mut meta, data)) in entries {
        let to = if meta.is_dir() {
            resolver.resolve_dir(&path)
        } else {
            resolver.resolve_parent(&path)
        }
        .map_err(|e| err(&path, e))?;
        resolver.add(&to, meta.kind.clone());
        meta.path.clone_from(&to);
        out.insert(to, (meta, data));
    }
    let whiteouts = whiteouts
        .iter()
        .map(|path| resolver.resolve_parent(path).map_err(|e| err(path, e)))
        .collect::<Result<_, _>>()?;
    Ok((out, whiteouts))
}

fn rel(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}
