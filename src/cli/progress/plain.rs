//! Plain lines: a line per finished step, note, output line and output written. Scripts
//! and tests read these; keep their wording.

use imgbuild_builder::{CacheOutcome, Progress, StepReport, Unit};

/// The plain line of `event`; none for a step that starts (its summary line follows).
pub(super) fn line(event: &Progress<'_>, explain: bool) -> Option<String> {
    Some(match event {
        Progress::StepStarted { .. } => return None,
        Progress::Output { number, line } => format!("  [{number}] {line}"),
        Progress::Note(note) => (*note).to_owned(),
        Progress::StepFinished(step) => format!(
            "{}[{}] {} ... {}",
            unit_prefix(&step.unit),
            step.index,
            step.description,
            outcome(step, explain)
        ),
        Progress::Exported {
            format,
            path,
            bytes,
            seconds,
            reused,
            copied_from,
        } => super::exported_line(format, path, *bytes, *seconds, *reused, *copied_from),
    })
}

/// `stage NAME: ` for a stage's step, nothing for the image's.
pub(super) fn unit_prefix(unit: &Unit) -> String {
    match unit {
        Unit::Image => String::new(),
        stage => format!("{stage}: "),
    }
}

/// `cached`, or `built in 0.42s` (with why it missed when `explain`).
pub(super) fn outcome(step: &StepReport, explain: bool) -> String {
    let mut how = match step.cache {
        CacheOutcome::Hit => "cached".to_owned(),
        CacheOutcome::Miss => format!("built in {:.2}s", step.seconds),
    };
    if let (true, Some(why)) = (explain, &step.why) {
        how.push_str(&format!(" ({why})"));
    }
    how
}
