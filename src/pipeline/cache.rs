//! The step cache through a registry: imported before a build, exported after it.

use imgbuild_builder::BuildReport;
use imgbuild_registry::{
    export_cache, import_cache, CacheImport, CacheRecord, Client, PushReport, Reference,
};
use imgbuild_store::oci::OciDescriptor;
use imgbuild_store::{Store, StoreError};

use super::PipelineError;

/// Imports every cache in `refs`; one that cannot be read is a warning (the first CI run
/// has none yet).
pub(super) fn import_all(
    client: &Client,
    store: &Store,
    refs: &[Reference],
    note: &dyn Fn(&str),
) -> Vec<CacheImport> {
    let mut imported = Vec::new();
    for r in refs {
        match import_cache(client, store, r) {
            Ok(done) => {
                note(&format!("imported {} cache entries from {r}", done.entries));
                imported.push(done);
            }
            Err(e) => note(&format!("warning: not using cache {r}: {e}")),
        }
    }
    imported
}

/// Exports the build's step cache entries and their layers to `target`.
pub(super) fn export(
    client: &Client,
    store: &Store,
    report: &BuildReport,
    target: &Reference,
    note: &dyn Fn(&str),
) -> Result<PushReport, PipelineError> {
    let records = records(store, report)?;
    let done = export_cache(client, store, &records, target)?;
    note(&format!(
        "exported {} cache entries to {}",
        records.len(),
        done.reference
    ));
    Ok(done)
}

/// The build's step cache entries, each with its layer's compressed descriptor.
fn records(store: &Store, report: &BuildReport) -> Result<Vec<CacheRecord>, StoreError> {
    report
        .steps
        .iter()
        .map(|step| {
            let layer = store
                .layer_by_digest(&step.layer)?
                .ok_or_else(|| StoreError::MissingBlob(step.layer.clone()))?;
            Ok(CacheRecord {
                key: step.key.clone(),
                diff_id: step.diff_id.clone(),
                created_by: step.description.clone(),
                layer: OciDescriptor {
                    media_type: layer.media_type,
                    digest: layer.digest,
                    size: layer.size,
                    platform: None,
                    annotations: std::collections::BTreeMap::new(),
                },
            })
        })
        .collect()
}
