//! Step dispatch: one step that missed the cache, run against its [`StepContext`] by the
//! kind of step (sandboxed `run`, Debian `packages`, `copy` from a stage, file steps).

use std::collections::BTreeMap;

use imgbuild_store::tarball::MergedTree;
use imgbuild_store::{Digest, Store};

use super::orchestrate::StageOutput;
use super::{BuildError, BuildOptions, Progress};
use crate::plan::PlannedStep;
use crate::recipe::{RunSpec, Step, StepOp};
use crate::sandbox::OutputLine;
use crate::sources::debian::PackageSets;
use crate::sources::SourceError;
use crate::steps::from_stage::{stage_copy_layer, StageCopy};
use crate::steps::install::{dpkg_layer, unpack_layer, Install};
use crate::steps::{run_to_layer, write_layer, StepLayer};

/// Everything a step that missed the cache runs against: the build, the packages and
/// stages it may need, and the image below it.
pub(super) struct StepContext<'a> {
    pub(super) store: &'a Store,
    pub(super) options: &'a BuildOptions<'a>,
    /// The Debian package sets, for a recipe with a Debian base.
    pub(super) packages: Option<&'a PackageSets>,
    /// The built stages, for `copy` steps with `from`.
    pub(super) stages: &'a BTreeMap<String, StageOutput>,
    /// The layers below the step, base first.
    pub(super) below: &'a [Digest],
    /// Their merged tree.
    pub(super) tree: &'a MergedTree,
}

impl StepContext<'_> {
    /// Runs one step that missed the cache and returns its layer.
    pub(super) fn execute(
        &self,
        step: &Step,
        planned: &PlannedStep,
    ) -> Result<StepLayer, BuildError> {
        let StepContext {
            store,
            options,
            packages,
            stages,
            below,
            tree: below_tree,
        } = *self;
        let number = step.number;
        let mut on_line = |line: &OutputLine<'_>| {
            (options.progress)(&Progress::Output {
                number,
                line: line.line,
            });
        };
        Ok(match &step.op {
            StepOp::Run(run) => run_to_layer(
                store,
                number,
                below,
                &sandbox_step(run, number, options)?,
                options.epoch,
                options.compression,
                &mut on_line,
            )?
            .into(),
            StepOp::Packages { .. } => {
                let sets = packages
                    .ok_or_else(|| SourceError::Internal("packages step without a Debian base"))?;
                let list = sets.steps.get(&number).cloned().unwrap_or_default();
                let install = Install {
                    packages: &list,
                    debs: &sets.debs,
                    essential: &sets.essential,
                    epoch: options.epoch,
                    compression: options.compression,
                };
                if below_tree.get("usr/bin/dpkg").is_some() {
                    dpkg_layer(store, number, below, &install, &mut on_line)?.into()
                } else {
                    unpack_layer(store, number, &install, below_tree.get("usr").is_none())?.into()
                }
            }
            StepOp::Copy {
                source,
                to,
                mode,
                owner,
                from_stage: Some(stage),
                ..
            } => {
                let copy = StageCopy {
                    layers: &stages[stage].diff_ids,
                    source,
                    to,
                    mode: *mode,
                    owner: *owner,
                };
                stage_copy_layer(
                    store,
                    number,
                    &copy,
                    below_tree,
                    options.epoch,
                    options.compression,
                )?
                .into()
            }
            StepOp::System(spec) => crate::steps::system::system_layer(
                store,
                number,
                spec,
                &crate::steps::system::Below {
                    layers: below,
                    tree: below_tree,
                },
                options.epoch,
                options.compression,
            )?,
            op => write_layer(
                store,
                number,
                op,
                &planned.items,
                below_tree,
                options.epoch,
                options.compression,
            )?,
        })
    }
}

/// The sandbox step for a recipe `run` step: its script, env (with `SOURCE_DATE_EPOCH`),
/// workdir, user, network and secrets.
fn sandbox_step(
    run: &RunSpec,
    number: usize,
    options: &BuildOptions<'_>,
) -> Result<crate::sandbox::Step, BuildError> {
    let mut sandbox_step =
        crate::sandbox::Step::shell(format!("step {number}"), run.script.clone());
    sandbox_step.env = run.env.clone();
    // Tools that stamp times (useradd's lastchg, man-db, python's pyc) honour it.
    sandbox_step
        .env
        .entry("SOURCE_DATE_EPOCH".into())
        .or_insert_with(|| options.epoch.to_string());
    sandbox_step.workdir = run.workdir.clone();
    sandbox_step.user = crate::sandbox::User {
        uid: run.user.uid,
        gid: run.user.gid,
    };
    sandbox_step.network = run.network;
    for id in &run.secrets {
        let file = options
            .secrets
            .get(id)
            .ok_or_else(|| BuildError::MissingSecret {
                step: number,
                id: id.clone(),
            })?;
        sandbox_step.secrets.insert(id.clone(), file.clone());
    }
    Ok(sandbox_step)
}
