//! Before building for another architecture: the first thing that would run the image's
//! code (a Debian bootstrap or a `run`/`packages` step that is not cached) needs a
//! binfmt_misc handler for it, checked here so the build stops before it starts instead
//! of failing with "Exec format error" in the middle.

use imgbuild_builder::emulation;
use imgbuild_builder::recipe::{Recipe, Step};
use imgbuild_builder::{Plan, Prepared, PreparedBase};

use super::PipelineError;

/// Fails with what to install when the plan runs foreign code and no usable handler is
/// registered. With `rebuild_all` (`build --check`, which makes every layer again),
/// cached steps and bases count as run too.
pub(super) fn check(
    recipe: &Recipe,
    prepared: &Prepared<'_>,
    plan: &Plan,
    rebuild_all: bool,
) -> Result<(), PipelineError> {
    let architecture = &recipe.image.platform.architecture;
    if !emulation::needs_emulation(architecture) {
        return Ok(());
    }
    let Some(first) = first_emulated(prepared, plan, rebuild_all) else {
        return Ok(());
    };
    let Err(e) = emulation::find_handler(&emulation::binfmt_dir(), architecture) else {
        return Ok(());
    };
    Err(match first {
        Some(step) => recipe
            .step_error(
                step,
                "",
                format!("step {} runs {architecture} code: {e}", step.number),
            )
            .help(e.help())
            .into(),
        None => PipelineError::Emulation(e),
    })
}

/// The first thing the build would run under emulation: `Some(None)` for a Debian
/// bootstrap, `Some(Some(step))` for a step, `None` when nothing runs foreign code.
fn first_emulated<'r>(
    prepared: &Prepared<'r>,
    plan: &Plan,
    rebuild_all: bool,
) -> Option<Option<&'r Step>> {
    let plans = plan.stages.iter().chain(std::iter::once(&plan.image));
    for (unit, unit_plan) in prepared.units().zip(plans) {
        if matches!(unit.base, PreparedBase::Debian { .. })
            && (rebuild_all || !unit_plan.base_cached)
        {
            return Some(None);
        }
        let missed = unit_plan
            .steps
            .iter()
            .find(|s| (rebuild_all || !s.cached) && emulation::runs_image_code(s.kind));
        if let Some(planned) = missed {
            return Some(unit.steps.iter().find(|s| s.number == planned.number));
        }
    }
    None
}
