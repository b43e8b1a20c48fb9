//! `build --check`: after a build, every layer it made is made again
//! ([`imgbuild_builder::rebuild_all`]) and compared with the stored one; a layer that
//! differs is compared entry by entry ([`imgbuild_store::tarball::diff_layers`]).

use imgbuild_builder::plan::Plan;
use imgbuild_builder::recipe::PlatformSpec;
use imgbuild_builder::{BuildOptions, BuildReport, Prepared, Rebuild, Unit};
use imgbuild_store::tarball::{diff_layers, Change, Difference, LayerReadError};
use imgbuild_store::{Digest, Store, StoreError};

use super::PipelineError;

/// What `--check` found.
#[derive(Debug, serde::Serialize)]
pub struct CheckOutcome {
    /// True when every layer made again is the stored one.
    pub reproducible: bool,
    /// How many layers were made again (bases and steps).
    pub checked: usize,
    /// How many of them differ.
    pub differing: usize,
    /// The bases made again: each unit's Debian bootstrap or rootfs import (image bases
    /// are inputs, not checked).
    pub bases: Vec<BaseCheck>,
}

/// A base made again.
#[derive(Debug, serde::Serialize)]
pub struct BaseCheck {
    /// The image or the stage.
    pub unit: Unit,
    /// `debian bootstrap` or `rootfs NAME`.
    pub description: String,
    /// Whether it came out the same.
    pub reproducible: bool,
    /// When not: the paths that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
}

/// Why comparing two layers failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// A layer could not be read back.
    #[error("comparing {unit} step {step}'s stored layer {stored} with the one made again, {rebuilt}: {source}")]
    Compare {
        /// The image or the stage.
        unit: String,
        /// The step number (0: the base).
        step: usize,
        /// The stored layer.
        stored: Digest,
        /// The layer made again.
        rebuilt: Digest,
        /// What failed.
        #[source]
        source: CompareError,
    },
}

/// What failed while two layers were compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The store could not open a layer.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer's tar stream could not be read (a corrupt blob: run `imgbuild store verify`).
    #[error(transparent)]
    Read(#[from] LayerReadError),
}

/// Makes every layer of the built `plan` again and records, in `report`'s steps, whether
/// each is reproducible and what differs.
pub(super) fn check(
    store: &Store,
    platform: &PlatformSpec,
    prepared: &Prepared<'_>,
    plan: &Plan,
    options: &BuildOptions<'_>,
    report: &mut BuildReport,
) -> Result<CheckOutcome, PipelineError> {
    let rebuilt = imgbuild_builder::rebuild_all(store, platform, prepared, plan, options)?;
    let mut outcome = CheckOutcome {
        reproducible: true,
        checked: rebuilt.len(),
        differing: 0,
        bases: Vec::new(),
    };
    for layer in rebuilt {
        let differences = if layer.reproducible() {
            Vec::new()
        } else {
            outcome.reproducible = false;
            outcome.differing += 1;
            differences(store, &layer)?
        };
        if layer.index == 0 {
            outcome.bases.push(BaseCheck {
                unit: layer.unit,
                description: layer.description,
                reproducible: differences.is_empty(),
                differences,
            });
            continue;
        }
        let step = report
            .steps
            .iter_mut()
            .chain(&mut report.stage_steps)
            .find(|s| s.unit == layer.unit && s.index == layer.index);
        if let Some(step) = step {
            step.reproducible = Some(differences.is_empty());
            step.differences = differences;
        }
    }
    Ok(outcome)
}

/// The entries that differ between the stored layer and the one made again; a layer whose
/// entries are all the same differs in their order or encoding, said as one difference
/// of `/` with the field `order`.
fn differences(store: &Store, layer: &Rebuild) -> Result<Vec<Difference>, PipelineError> {
    let found = diff_layers(|again| -> Result<_, CompareError> {
        Ok(store.open_layer(if again { &layer.rebuilt } else { &layer.stored })?)
    })
    .map_err(|source| {
        Box::new(CheckError::Compare {
            unit: layer.unit.to_string(),
            step: layer.index,
            stored: layer.stored.clone(),
            rebuilt: layer.rebuilt.clone(),
            source,
        })
    })?;
    if found.is_empty() {
        return Ok(vec![Difference {
            path: "/".into(),
            change: Change::Changed,
            fields: vec!["order"],
            lines: None,
        }]);
    }
    Ok(found)
}
