//! Outputs the store has already answered. Each export has a key: the image's manifest,
//! name and tags, the format, the settings that shape its bytes (`[disk]`, `[initramfs]`,
//! the pinned bootloader packages) and the exporters' revision. The store records, for
//! every output written, its key and a stat(2) snapshot of its files
//! ([`imgbuild_formats::reuse`]). A later build then
//! - leaves an output alone when it is recorded with the same key and still matches its
//!   snapshot (a no-op rebuild writes nothing);
//! - clones a recorded, unmodified output of the same key into a new place (reflinked
//!   where the filesystem can, else copied at disk speed) instead of exporting again;
//! - exports as before otherwise, and records what it wrote.
//!
//! An output someone modified no longer matches its snapshot, so it is never trusted.

use imgbuild_builder::boot_assets::LockedBootPackage;
use imgbuild_formats::reuse::{clone_output, Snapshot};
use imgbuild_formats::{Artifact, ExportError, ExportOptions, Format, StoredImage};
use imgbuild_store::{OutputRecord, Store};
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::PipelineError;

/// Bumped whenever an exporter changes the bytes it writes for the same input, so that
/// outputs recorded by an older imgbuild are written again.
const EXPORTERS_REVISION: u32 = 1;

/// An output reused instead of exported.
pub(super) struct Reused {
    /// `None`: the output in place is what this export would write; else the recorded
    /// output elsewhere that was cloned into place.
    pub(super) copied_from: Option<PathBuf>,
    /// Its size in bytes, from the snapshot that vouched for it.
    pub(super) bytes: u64,
}

/// The key of writing `image` as `format` with `options` and the `pinned` bootloaders.
pub(super) fn output_key(
    image: &StoredImage,
    format: Format,
    options: &ExportOptions,
    pinned: &[LockedBootPackage],
) -> String {
    let mut text = format!(
        "imgbuild {} exporters {EXPORTERS_REVISION}\nformat {}\nimage {} {} {}\n",
        env!("CARGO_PKG_VERSION"),
        format.name(),
        image.manifest_digest,
        image.name,
        image.tags.join(","),
    );
    if format.is_disk() {
        let _ = writeln!(text, "disk {:?}", options.disk);
        let mut pinned: Vec<_> = pinned.iter().collect();
        pinned.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
        for p in pinned {
            let _ = writeln!(
                text,
                "boot {} {} {} {}",
                p.name, p.version, p.architecture, p.sha256
            );
        }
    }
    if format == Format::Initramfs {
        let _ = writeln!(text, "initramfs {:?}", options.initramfs);
    }
    format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
}

/// Reuses an output of `key` for `wanted`: the one in place when it is unchanged, else a
/// clone of an unchanged one recorded elsewhere; `None` when it must be exported.
pub(super) fn reuse(
    store: &Store,
    wanted: &Artifact,
    key: &str,
) -> Result<Option<Reused>, PipelineError> {
    let wanted_here = absolute_artifact(wanted)?;
    let at = wanted_here.path.clone();
    if let Some(record) = store.output_at(&at)? {
        if record.key == key {
            if let Some(snapshot) = recorded_snapshot(&record).filter(|s| s.matches(&wanted_here)) {
                return Ok(Some(Reused {
                    copied_from: None,
                    bytes: snapshot.bytes(),
                }));
            }
        }
    }
    for record in store.outputs_made_with(key)? {
        if record.path == at {
            continue;
        }
        let source = Artifact {
            format: wanted.format,
            kernel: wanted
                .kernel
                .as_ref()
                .and_then(|k| Some(record.path.parent()?.join(k.file_name()?))),
            path: record.path.clone(),
        };
        if !recorded_snapshot_matches(&record, &source) {
            store.forget_output(&record.path)?;
            continue;
        }
        if let Some(dir) = wanted.path.parent() {
            fs_err::create_dir_all(dir).map_err(ExportError::from)?;
        }
        // A source removed or modified while it was copied is no source: export instead
        // (a failure to write the copy comes back from the export, too).
        if clone_output(&source, wanted).is_err() || !recorded_snapshot_matches(&record, &source) {
            continue;
        }
        let bytes = remember(store, wanted, key)?;
        return Ok(Some(Reused {
            copied_from: Some(record.path),
            bytes,
        }));
    }
    Ok(None)
}

/// Records the output just written at `artifact` as made with `key`; returns its size in
/// bytes.
pub(super) fn remember(
    store: &Store,
    artifact: &Artifact,
    key: &str,
) -> Result<u64, PipelineError> {
    let artifact = absolute_artifact(artifact)?;
    let path = artifact.path.clone();
    let Some(snapshot) = Snapshot::take(&artifact) else {
        // Gone already (a concurrent build replaced it): nothing to vouch for.
        store.forget_output(&path)?;
        return Ok(0);
    };
    store.record_output(&OutputRecord {
        path,
        key: key.to_owned(),
        files: snapshot.encode(),
    })?;
    Ok(snapshot.bytes())
}

/// The size in bytes of the output at `artifact`, as it is now.
pub(super) fn size_of(artifact: &Artifact) -> u64 {
    Snapshot::take(artifact).map_or(0, |s| s.bytes())
}

fn recorded_snapshot(record: &OutputRecord) -> Option<Snapshot> {
    Snapshot::decode(&record.files)
}

fn recorded_snapshot_matches(record: &OutputRecord, artifact: &Artifact) -> bool {
    recorded_snapshot(record).is_some_and(|s| s.matches(artifact))
}

/// `artifact` with absolute paths: snapshots are taken and compared in that spelling,
/// whatever directory a build ran from.
fn absolute_artifact(artifact: &Artifact) -> Result<Artifact, PipelineError> {
    Ok(Artifact {
        format: artifact.format,
        path: absolute(&artifact.path)?,
        kernel: artifact.kernel.as_deref().map(absolute).transpose()?,
    })
}

fn absolute(path: &Path) -> Result<PathBuf, PipelineError> {
    Ok(std::path::absolute(path).map_err(ExportError::from)?)
}
