//! Build errors that are mistakes in the recipe (a stage path that is not there, a
//! removal that matches nothing, a destination below a file), pointed at in the recipe.

use imgbuild_builder::recipe::{Recipe, StepOp};

use super::PipelineError;

/// A build error that is a mistake in the recipe, pointed at in it; any other as it is.
pub(super) fn build_error(recipe: &Recipe, e: imgbuild_builder::BuildError) -> PipelineError {
    use imgbuild_builder::{BuildError, StepError};
    let from_stage = |step: usize, path: &str| {
        recipe.all_steps().find_map(|(_, s)| match &s.op {
            StepOp::Copy {
                source,
                to,
                from_stage: Some(stage),
                ..
            } if s.number == step && source == path => Some((s, stage, to)),
            _ => None,
        })
    };
    match &e {
        BuildError::Step(StepError::NothingInStage { step, path }) => {
            if let Some((s, stage, _)) = from_stage(*step, path) {
                return recipe
                    .step_error(
                        s,
                        "",
                        format!("step {step} copies {path}, but stage `{stage}` has nothing there"),
                    )
                    .help(format!(
                        "check the path, or make an earlier step of [stage.{stage}] create it"
                    ))
                    .into();
            }
        }
        BuildError::Step(StepError::SeveralInStage { step, path, count }) => {
            if let Some((s, stage, to)) = from_stage(*step, path) {
                return recipe
                    .step_error(
                        s,
                        &format!("\"{to}\""),
                        format!("step {step} copies {path}, which matches {count} paths in stage `{stage}`, into a single path"),
                    )
                    .help("end `to` with `/` to copy every match into that directory, or narrow the glob to one match")
                    .into();
            }
        }
        BuildError::Step(StepError::NothingToRemove { step, path }) => {
            let found = recipe.all_steps().find(|(_, s)| {
                s.number == *step
                    && matches!(&s.op, StepOp::Remove { paths, .. } if paths.contains(path))
            });
            if let Some((stage, s)) = found {
                let image = stage.map_or("the image".to_owned(), |n| format!("stage `{n}`"));
                return recipe
                    .step_error(
                        s,
                        &format!("\"{path}\""),
                        format!("step {step} removes {path}, but nothing in {image} below it matches"),
                    )
                    .help("check the path against the image below the step, or add `missing_ok = true` to the step if it may be absent")
                    .into();
            }
        }
        _ => {}
    }
    if let BuildError::Step(StepError::Resolve { step, path, source }) = &e {
        // Step numbers restart in each stage: the step is the one whose destination holds
        // the path.
        let within = |dest: &str| {
            let dest = dest.trim_end_matches('/');
            path.strip_prefix(dest)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        let found = recipe.all_steps().find(|(_, s)| {
            s.number == *step
                && match &s.op {
                    StepOp::Copy { to, .. } => within(to),
                    StepOp::Write { path, .. }
                    | StepOp::Mkdir { path, .. }
                    | StepOp::Symlink { path, .. } => within(path),
                    StepOp::Remove { paths, .. } => paths.iter().any(|p| within(p)),
                    StepOp::Packages { .. } | StepOp::Run(_) | StepOp::System(_) => false,
                }
        });
        if let Some((stage, s)) = found {
            let unit = stage.map_or_else(String::new, |n| format!(" of [stage.{n}]"));
            return recipe
                .step_error(
                    s,
                    "",
                    format!("step {step}{unit} writes {path}, which cannot be resolved inside the image: {source}"),
                )
                .help("paths resolve inside the image below the step, following its symlinks; a file cannot hold other files: remove it in an earlier step or choose another path")
                .into();
        }
    }
    e.into()
}
