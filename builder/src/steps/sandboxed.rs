//! Steps that run commands: the layers below are unpacked once each (kept in the store as
//! overlay lower dirs), the command runs in the [`crate::sandbox`], and the overlay's upper
//! dir becomes the step's layer, with removals as whiteouts and opaque directories marked,
//! normalised on a dpkg system ([`super::normalise`]).

use super::normalise::normalise;
use super::StepError;
use crate::sandbox::{self, OutputLine, Sandbox, SandboxMode, UnpackOptions, UpperKind};
use imgbuild_store::tarball::{EntryKind, EntryMeta, TarWriter};
use imgbuild_store::{Compression, Digest, LayerRecord, Store, StoreError};
use std::io;
use std::path::PathBuf;

/// Runs `step` on top of the layers `below` and stores what it changed as a layer.
pub(crate) fn run_to_layer(
    store: &Store,
    number: usize,
    below: &[Digest],
    step: &sandbox::Step,
    epoch: u64,
    compression: Compression,
    on_line: &mut dyn FnMut(&OutputLine<'_>),
) -> Result<LayerRecord, StepError> {
    let store_err = |source| StepError::Store {
        step: number,
        source,
    };
    let io_err = |source| StepError::Io {
        step: number,
        source,
    };
    let mode = SandboxMode::detect().map_err(|e| StepError::Sandbox {
        step: number,
        message: e.to_string(),
    })?;
    let scratch = store.scratch_dir().map_err(store_err)?;
    let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
    fs_err::create_dir(&upper).map_err(io_err)?;
    fs_err::create_dir(&work).map_err(io_err)?;
    let mut sandbox = Sandbox {
        lowers: Vec::new(),
        upper,
        work,
        mode,
    };
    sandbox.lowers = unpack_all(store, number, below, &sandbox)?;
    let log = scratch.path().join("log");
    sandbox
        .run(step, Some(&log), on_line)
        .map_err(|e| match e {
            sandbox::RunError::CommandFailed {
                code, last_lines, ..
            } => StepError::CommandFailed {
                step: number,
                code,
                last_lines,
            },
            other => StepError::Sandbox {
                step: number,
                message: without_step_name(&other.to_string(), &step.name),
            },
        })?;
    let entries = sandbox.scan_upper().map_err(|e| StepError::Sandbox {
        step: number,
        message: e.to_string(),
    })?;
    let normalised = normalise(entries, &sandbox.lowers, epoch).map_err(io_err)?;
    let mut layer = store.layer_writer(compression).map_err(store_err)?;
    {
        let mut tar = TarWriter::new(&mut layer);
        for entry in normalised.entries {
            let mut meta = EntryMeta::new(entry.path.clone(), EntryKind::Dir, entry.mode, 0);
            meta.uid = entry.uid;
            meta.gid = entry.gid;
            meta.mtime = u64::try_from(entry.mtime).unwrap_or(0).min(epoch);
            meta.xattrs = entry.xattrs;
            match entry.kind {
                UpperKind::Whiteout => tar.whiteout(&entry.path, epoch).map_err(io_err)?,
                UpperKind::OpaqueDir => {
                    tar.append(&meta, &mut io::empty()).map_err(io_err)?;
                    tar.opaque(&entry.path, epoch).map_err(io_err)?;
                }
                UpperKind::Entry(EntryKind::File) => {
                    meta.kind = EntryKind::File;
                    meta.size = entry.size;
                    if let Some(data) = normalised.content.get(&entry.path) {
                        tar.append(&meta, &mut data.as_slice()).map_err(io_err)?;
                        continue;
                    }
                    let mut file = fs_err::File::open(&entry.host_path).map_err(io_err)?;
                    tar.append(&meta, &mut file).map_err(io_err)?;
                }
                UpperKind::Entry(kind) => {
                    meta.kind = kind;
                    tar.append(&meta, &mut io::empty()).map_err(io_err)?;
                }
            }
        }
        tar.finish().map_err(io_err)?;
    }
    layer.commit(store).map_err(store_err)
}

/// How lower dirs are unpacked for `sandbox`, and the store's name for that flavour.
///
/// Owners on disk must be the host ids the step's user namespace maps the layer's ids to:
/// * root in the initial user namespace: shifted into the subordinate range
///   (`trusted-userns-UID-GID-COUNT`; the old `trusted` dirs, owned by real root, are never
///   used again);
/// * root of a user namespace (the rootless CLI): the identity map, ids as in the layer
///   (`user`);
/// * rootless library use: unpacked as the user, owners applied from a mapped helper (`user`).
fn unpack_flavour(
    sandbox: &Sandbox,
) -> Result<(sandbox::OverlayXattrs, sandbox::Owners, String), String> {
    let overlay = sandbox.overlay_xattrs();
    let base = match overlay {
        sandbox::OverlayXattrs::Trusted => "trusted",
        sandbox::OverlayXattrs::User => "user",
    };
    match &sandbox.mode {
        SandboxMode::Rootless(_) => Ok((overlay, sandbox::Owners::Defer, base.to_owned())),
        SandboxMode::Root(map) if map.is_identity() => {
            Ok((overlay, sandbox::Owners::Apply, base.to_owned()))
        }
        SandboxMode::Root(map) => {
            let (uid, gid, count) = map
                .contiguous()
                .ok_or_else(|| format!("the sandbox id map {map:?} is not one contiguous range"))?;
            Ok((
                overlay,
                sandbox::Owners::Shift { uid, gid, count },
                format!("{base}-userns-{uid}-{gid}-{count}"),
            ))
        }
    }
}

/// Unpacks every layer below (once per store) and returns their directories, lowest first.
fn unpack_all(
    store: &Store,
    number: usize,
    below: &[Digest],
    sandbox: &Sandbox,
) -> Result<Vec<PathBuf>, StepError> {
    let (overlay, owners, flavour) =
        unpack_flavour(sandbox).map_err(|message| StepError::Sandbox {
            step: number,
            message,
        })?;
    below
        .iter()
        .map(|diff_id| {
            store
                .unpack_layer_with(
                    diff_id,
                    &flavour,
                    |reader, dir| -> Result<(), UnpackFailure> {
                        let opts = UnpackOptions { overlay, owners };
                        let report = sandbox::unpack_layer(reader, dir, &opts)
                            .map_err(|e| UnpackFailure(e.to_string()))?;
                        if let SandboxMode::Rootless(map) = &sandbox.mode {
                            sandbox::apply_owners_in_userns(dir, &report.deferred_owners, map)
                                .map_err(|e| UnpackFailure(e.to_string()))?;
                        }
                        Ok(())
                    },
                )
                .map_err(|e| StepError::Sandbox {
                    step: number,
                    message: format!("unpacking layer {diff_id}: {}", e.0),
                })
        })
        .collect()
}

struct UnpackFailure(String);

impl From<StoreError> for UnpackFailure {
    fn from(e: StoreError) -> Self {
        Self(e.to_string())
    }
}

impl From<io::Error> for UnpackFailure {
    fn from(e: io::Error) -> Self {
        Self(e.to_string())
    }
}

/// A sandbox error's text without its leading `step NAME: `: the step error in front of it
/// already names the step (so no "step 3: step step 3: ...").
fn without_step_name(text: &str, name: &str) -> String {
    text.strip_prefix(&format!("step {name}: "))
        .unwrap_or(text)
        .to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sandbox_error_names_its_step_once() {
        let e = crate::sandbox::RunError::Invalid {
            step: "step 3".into(),
            what: "workdir must be absolute".into(),
        };
        let step = super::StepError::Sandbox {
            step: 3,
            message: super::without_step_name(&e.to_string(), "step 3"),
        };
        assert_eq!(step.to_string(), "step 3: workdir must be absolute");
    }
}
