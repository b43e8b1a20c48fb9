//! `--progress tty`: a spinner per running step with its live elapsed time and its last
//! [`FOLDED`] output lines under it, `n/N` packages while dpkg installs, and a summary line
//! per finished step; notes and outputs written are printed above the bars (indicatif).

use super::plain::{outcome, unit_prefix};
use imgbuild_builder::{Progress, StepReport};
use indicatif::{MultiProgress, ProgressBar, ProgressState, ProgressStyle};
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Output lines shown under a running step.
const FOLDED: usize = 3;

/// The live display.
pub(super) struct Tty {
    multi: MultiProgress,
    explain: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    running: Vec<Running>,
    /// The package count of a Debian bootstrap announced by its note.
    bootstrap_packages: Option<usize>,
}

/// A step on screen.
struct Running {
    number: usize,
    total: Option<usize>,
    description: String,
    started: Instant,
    bar: ProgressBar,
    lines: Vec<ProgressBar>,
    tail: VecDeque<String>,
    packages: Packages,
}

/// dpkg's progress, counted from its output.
#[derive(Default)]
struct Packages {
    /// The number to install, when known before dpkg starts (a bootstrap).
    total: Option<usize>,
    unpacked: usize,
    set_up: usize,
}

impl Packages {
    fn count(&mut self, line: &str) -> bool {
        if line.starts_with("Unpacking ") {
            self.unpacked += 1;
        } else if line.starts_with("Setting up ") {
            self.set_up += 1;
        } else {
            return false;
        }
        true
    }

    /// `12/130 packages set up`, once dpkg has started.
    fn summary(&self) -> Option<String> {
        let total = self.total.unwrap_or(self.unpacked).max(self.set_up);
        (self.unpacked + self.set_up > 0).then(|| {
            if self.set_up == 0 {
                format!("{}/{total} packages unpacked", self.unpacked)
            } else {
                format!("{}/{total} packages set up", self.set_up)
            }
        })
    }
}

/// The `N` of the builder's note `bootstrapping N Debian packages`.
fn bootstrap_count(note: &str) -> Option<usize> {
    note.strip_prefix("bootstrapping ")?
        .strip_suffix(" Debian packages")?
        .parse()
        .ok()
}

/// A line of a step's output made fit for one terminal line: what a `\r` did not
/// overwrite, without control characters.
fn clean(line: &str) -> String {
    let shown = line.trim_end_matches('\r');
    let shown = shown.rsplit('\r').next().unwrap_or(shown);
    shown
        .chars()
        .map(|c| if c == '\t' { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect()
}

fn elapsed(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:>5.1}s", state.elapsed().as_secs_f64());
}

impl Tty {
    pub(super) fn new(explain: bool) -> Self {
        Self {
            multi: MultiProgress::new(),
            explain,
            state: Mutex::new(State::default()),
        }
    }

    pub(super) fn observe(&self, event: &Progress<'_>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Progress::StepStarted {
                number,
                total,
                description,
            } => {
                self.end_bootstrap(&mut state);
                let step = self.start(*number, Some(*total), description, Packages::default());
                state.running.push(step);
            }
            Progress::Output { number, line } => {
                if *number == 0 && !state.running.iter().any(|r| r.number == 0) {
                    let packages = Packages {
                        total: state.bootstrap_packages,
                        ..Packages::default()
                    };
                    let step = self.start(0, None, "debian bootstrap", packages);
                    state.running.push(step);
                }
                if let Some(step) = state.running.iter_mut().rev().find(|r| r.number == *number) {
                    self.output(step, line);
                } else {
                    self.print(&format!("  [{number}] {line}"));
                }
            }
            Progress::Note(note) => {
                if let Some(n) = bootstrap_count(note) {
                    state.bootstrap_packages = Some(n);
                    self.print(note);
                    let packages = Packages {
                        total: Some(n),
                        ..Packages::default()
                    };
                    let step = self.start(0, None, "debian bootstrap", packages);
                    state.running.push(step);
                } else {
                    self.end_bootstrap(&mut state);
                    self.print(note);
                }
            }
            Progress::StepFinished(report) => self.finished(&mut state, report),
            Progress::Exported {
                format,
                path,
                bytes,
                seconds,
                reused,
                copied_from,
            } => {
                self.end_bootstrap(&mut state);
                self.print(&super::exported_line(
                    format,
                    path,
                    *bytes,
                    *seconds,
                    *reused,
                    *copied_from,
                ));
            }
        }
    }

    /// Clears every bar; after a failure, says which steps were running (the error that
    /// follows quotes the failed command's last lines).
    pub(super) fn finish(&self, failed: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for step in std::mem::take(&mut state.running) {
            self.clear(&step);
            if failed {
                self.print(&format!(
                    "{} ... failed after {:.2}s",
                    heading(&step),
                    step.started.elapsed().as_secs_f64()
                ));
            }
        }
        let _ = self.multi.clear();
    }

    /// Prints a line above the bars (directly when the bars cannot be drawn: stderr is not
    /// a terminal).
    fn print(&self, line: &str) {
        if self.multi.is_hidden() || self.multi.println(line).is_err() {
            eprintln!("{line}");
        }
    }

    fn start(
        &self,
        number: usize,
        total: Option<usize>,
        description: &str,
        packages: Packages,
    ) -> Running {
        let style = ProgressStyle::with_template("{spinner:.cyan} {secs} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("secs", elapsed);
        let bar = self.multi.add(ProgressBar::new_spinner().with_style(style));
        let step = Running {
            number,
            total,
            description: description.to_owned(),
            started: Instant::now(),
            bar,
            lines: Vec::new(),
            tail: VecDeque::new(),
            packages,
        };
        step.bar.set_message(message(&step));
        step.bar.enable_steady_tick(Duration::from_millis(100));
        step
    }

    fn output(&self, step: &mut Running, line: &str) {
        let counted = step.packages.count(line);
        if step.tail.len() == FOLDED {
            step.tail.pop_front();
        }
        step.tail.push_back(clean(line));
        if step.lines.len() < FOLDED {
            let style = ProgressStyle::with_template("    {wide_msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let after = step.lines.last().unwrap_or(&step.bar).clone();
            let bar = self
                .multi
                .insert_after(&after, ProgressBar::new_spinner().with_style(style));
            step.lines.push(bar);
        }
        let shown = step.tail.len().min(step.lines.len());
        for (bar, text) in step
            .lines
            .iter()
            .zip(step.tail.range(step.tail.len() - shown..))
        {
            bar.set_message(text.clone());
        }
        if counted {
            step.bar.set_message(message(step));
        }
    }

    fn finished(&self, state: &mut State, report: &StepReport) {
        self.end_bootstrap(state);
        let found = state
            .running
            .iter()
            .rposition(|r| r.number == report.index && r.description == report.description)
            .or_else(|| state.running.iter().rposition(|r| r.number == report.index));
        let total = match found {
            Some(i) => {
                let step = state.running.remove(i);
                self.clear(&step);
                step.total
            }
            None => None,
        };
        let position = match total {
            Some(total) => format!("{}/{total}", report.index),
            None => report.index.to_string(),
        };
        self.print(&format!(
            "{}[{position}] {} ... {}",
            unit_prefix(&report.unit),
            report.description,
            outcome(report, self.explain)
        ));
    }

    /// Ends a bootstrap's bar (it has no finished event of its own) with its summary line.
    fn end_bootstrap(&self, state: &mut State) {
        let Some(i) = state.running.iter().position(|r| r.number == 0) else {
            return;
        };
        let step = state.running.remove(i);
        state.bootstrap_packages = None;
        self.clear(&step);
        let mut line = format!(
            "{} ... built in {:.2}s",
            heading(&step),
            step.started.elapsed().as_secs_f64()
        );
        if let Some(packages) = step.packages.summary() {
            let _ = write!(line, " ({packages})");
        }
        self.print(&line);
    }

    fn clear(&self, step: &Running) {
        for bar in step.lines.iter().chain([&step.bar]) {
            bar.finish_and_clear();
            self.multi.remove(bar);
        }
    }
}

/// `[3/5] write /etc/motd`.
fn heading(step: &Running) -> String {
    match step.total {
        Some(total) => format!("[{}/{total}] {}", step.number, step.description),
        None => format!("[{}] {}", step.number, step.description),
    }
}

/// The spinner's text: the heading and the packages set up so far.
fn message(step: &Running) -> String {
    let mut text = heading(step);
    if let Some(packages) = step.packages.summary() {
        let _ = write!(text, " · {packages}");
    } else if let Some(total) = step.packages.total {
        let _ = write!(text, " · {total} packages");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_lines_count_packages() {
        let mut p = Packages {
            total: Some(3),
            ..Packages::default()
        };
        assert_eq!(p.summary(), None);
        for line in [
            "Selecting previously unselected package a.",
            "Unpacking a (1.0) ...",
            "Unpacking b (1.0) ...",
            "Setting up a (1.0) ...",
        ] {
            p.count(line);
        }
        assert_eq!(p.summary().as_deref(), Some("1/3 packages set up"));
        let mut q = Packages::default();
        q.count("Unpacking c (2) ...");
        assert_eq!(q.summary().as_deref(), Some("1/1 packages unpacked"));
    }

    #[test]
    fn the_bootstrap_note_gives_the_count() {
        assert_eq!(
            bootstrap_count("bootstrapping 130 Debian packages"),
            Some(130)
        );
        assert_eq!(bootstrap_count("resolving packages"), None);
    }

    #[test]
    fn output_lines_fit_one_line() {
        assert_eq!(clean("a\tb\x07"), "a b");
        assert_eq!(clean(" 10%\r 50%\r100%\r"), "100%");
    }
}
