//! The build log: every event of one command as plain lines, every output line of every
//! step included, in `STORE/logs/build-<UTC time>-<pid>.log`. Only the newest
//! [`KEPT`] logs are kept.
//!
//! The file is created once work happens (a step's output, a step built, an output
//! written); until then lines wait in memory. A rebuild that finds everything in place
//! (or a bad input refused before anything ran) leaves no log, so it costs nothing and
//! never pushes the log of a failed build out of the newest [`KEPT`].

use imgbuild_builder::{CacheOutcome, Progress};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How many logs the store keeps.
pub(super) const KEPT: usize = 20;

/// A log file, created at the first event.
pub(super) struct BuildLog {
    dir: PathBuf,
    state: Mutex<State>,
}

enum State {
    /// The lines so far, before any work.
    NotOpened(Vec<String>),
    Open(PathBuf, std::io::BufWriter<fs_err::File>),
    /// Could not be created (a read-only store): the build goes on without it.
    Failed,
}

impl BuildLog {
    /// A log in `STORE/logs/`.
    pub(super) fn new(store: &Path) -> Self {
        Self {
            dir: store.join("logs"),
            state: Mutex::new(State::NotOpened(Vec::new())),
        }
    }

    /// The log's path, once created.
    pub(super) fn path(&self) -> Option<PathBuf> {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Open(path, _) => Some(path.clone()),
            _ => None,
        }
    }

    /// Appends `event`'s line (a started step's too, so output lines have a heading).
    pub(super) fn record(&self, event: &Progress<'_>, explain: bool) {
        let text = match event {
            Progress::StepStarted {
                number,
                total,
                description,
            } => format!("[{number}/{total}] {description}"),
            other => match super::plain::line(other, explain) {
                Some(line) => line,
                None => return,
            },
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::NotOpened(waiting) = &mut *state {
            if !is_work(event) {
                waiting.push(text);
                return;
            }
            let waiting = std::mem::take(waiting);
            *state = match self.create() {
                Ok((path, file)) => {
                    let mut file = std::io::BufWriter::new(file);
                    let written = waiting.iter().all(|l| writeln!(file, "{l}").is_ok());
                    if written {
                        State::Open(path, file)
                    } else {
                        State::Failed
                    }
                }
                Err(_) => State::Failed,
            };
        }
        if let State::Open(_, file) = &mut *state {
            let ok = writeln!(file, "{text}").is_ok();
            // A finished step is a good place for what a crash would lose.
            let ok = ok
                && (!matches!(event, Progress::StepFinished(_) | Progress::Note(_))
                    || file.flush().is_ok());
            if !ok {
                *state = State::Failed;
            }
        }
    }

    /// Writes the error, if any, and flushes.
    pub(super) fn finish(&self, error: Option<&str>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let State::Open(_, file) = &mut *state {
            if let Some(error) = error {
                let _ = writeln!(file, "error: {error}");
            }
            let _ = file.flush();
        }
    }

    /// Creates the directory (0700, as the store) and a new log, after pruning the oldest
    /// logs so that [`KEPT`] remain with it.
    fn create(&self) -> std::io::Result<(PathBuf, fs_err::File)> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        prune(&self.dir, KEPT - 1);
        // RFC 3339 in UTC: the names sort by time, as pruning wants.
        let path = self.dir.join(format!(
            "build-{}-{}.log",
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
            std::process::id()
        ));
        let mut file = fs_err::File::create(&path)?;
        let args: Vec<String> = std::env::args().collect();
        writeln!(file, "# {}", args.join(" "))?;
        Ok((path, file))
    }
}

/// Whether `event` means the build did something worth a log file.
fn is_work(event: &Progress<'_>) -> bool {
    match event {
        Progress::Output { .. } => true,
        Progress::StepFinished(step) => step.cache == CacheOutcome::Miss,
        Progress::Exported { reused, .. } => !reused,
        Progress::StepStarted { .. } | Progress::Note(_) => false,
    }
}

/// Removes the oldest `build-*.log` files in `dir` until `keep` are left. Names start
/// with their UTC time, so the oldest sort first.
pub(super) fn prune(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("build-") && n.ends_with(".log"))
        })
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for old in &logs[..excess] {
        // Another build may have removed it already.
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..25 {
            fs_err::write(dir.path().join(format!("build-2026{i:02}-1.log")), "").unwrap();
        }
        fs_err::write(dir.path().join("other"), "").unwrap();
        prune(dir.path(), 19);
        let mut left: Vec<String> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 20);
        assert_eq!(left[0], "build-202606-1.log");
        assert_eq!(left[19], "other");
    }
}
