//! How a command shows what a build is doing on stderr, chosen by the global `--progress`
//! and `-q/--quiet` flags, and the log file in the store that keeps all of it.
//!
//! - [`plain`]: one line per finished step, note and output line (for logs and pipes);
//! - [`tty`]: live spinners per running step with their last output lines (indicatif);
//! - [`json`]: one JSON object per event, for CI;
//! - [`log`]: every event as plain text in `STORE/logs/build-<time>-<pid>.log`.

mod json;
mod log;
mod plain;
mod tty;

use super::Failure;
use clap::ValueEnum;
use imgbuild_builder::Progress;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// The `--progress` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressMode {
    /// `tty` when stderr is a terminal, else `plain`.
    Auto,
    /// Live spinners, each running step's last output lines, a summary line per step.
    Tty,
    /// One line per finished step, note and output line.
    Plain,
    /// One JSON object per event and line.
    Json,
}

/// How progress is shown: the global flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Display {
    /// `--progress`.
    pub(crate) mode: ProgressMode,
    /// `-q/--quiet`: nothing but errors and the result.
    pub(crate) quiet: bool,
}

enum Renderer {
    Quiet,
    Plain,
    Tty(tty::Tty),
    Json(json::Json),
}

/// Renders a command's progress events on stderr and writes them to its log.
pub(crate) struct Reporter {
    renderer: Renderer,
    log: Option<log::BuildLog>,
    explain: bool,
}

impl Reporter {
    /// A reporter for `display`; with a store, every event also goes to a new log file in
    /// it (created at the first event). `explain` adds why each step missed the cache.
    pub(crate) fn new(display: Display, store: Option<&Path>, explain: bool) -> Self {
        let renderer = if display.quiet {
            Renderer::Quiet
        } else {
            match display.mode {
                ProgressMode::Auto if std::io::stderr().is_terminal() => {
                    Renderer::Tty(tty::Tty::new(explain))
                }
                ProgressMode::Auto | ProgressMode::Plain => Renderer::Plain,
                ProgressMode::Tty => Renderer::Tty(tty::Tty::new(explain)),
                ProgressMode::Json => Renderer::Json(json::Json::new()),
            }
        };
        Self {
            renderer,
            log: store.map(log::BuildLog::new),
            explain,
        }
    }

    /// Shows one event and logs it.
    pub(crate) fn observe(&self, event: &Progress<'_>) {
        if let Some(log) = &self.log {
            log.record(event, self.explain);
        }
        match &self.renderer {
            Renderer::Quiet => {}
            Renderer::Plain => {
                if let Some(line) = plain::line(event, self.explain) {
                    eprintln!("{line}");
                }
            }
            Renderer::Tty(tty) => tty.observe(event),
            Renderer::Json(json) => json.observe(event),
        }
    }

    /// The log file, once something was written to it.
    pub(crate) fn log_path(&self) -> Option<PathBuf> {
        self.log.as_ref().and_then(log::BuildLog::path)
    }

    /// Ends the display (clearing live bars) after a success.
    pub(crate) fn finish(&self) {
        if let Renderer::Tty(tty) = &self.renderer {
            tty.finish(false);
        }
        if let Some(log) = &self.log {
            log.finish(None);
        }
    }

    /// Ends the display after `failure` (showing what the running steps printed last) and
    /// adds the log file's path to its message.
    pub(crate) fn fail(&self, mut failure: Failure) -> Failure {
        if let Renderer::Tty(tty) = &self.renderer {
            tty.finish(true);
        }
        if let Some(log) = &self.log {
            log.finish(Some(&failure.message));
        }
        if let Renderer::Json(json) = &self.renderer {
            json.failed(&failure.message, self.log_path().as_deref());
        }
        if let Some(path) = self.log_path() {
            failure
                .message
                .push_str(&format!("\nthe full log is in {}", path.display()));
        }
        failure
    }
}

/// `n` bytes for people: `512 B`, `1.5 KiB`, `3.4 GiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The line of an [`Progress::Exported`] event.
pub(super) fn exported_line(
    format: &str,
    path: &Path,
    bytes_written: u64,
    seconds: f64,
    reused: bool,
    copied_from: Option<&Path>,
) -> String {
    if reused {
        return format!("{} ({format}) unchanged, reused", path.display());
    }
    let mut line = format!(
        "wrote {} ({format}, {} in {seconds:.1} s",
        path.display(),
        bytes(bytes_written)
    );
    if seconds >= 0.001 {
        line.push_str(&format!(
            ", {}/s",
            bytes((bytes_written as f64 / seconds) as u64)
        ));
    }
    line.push(')');
    if let Some(from) = copied_from {
        line.push_str(&format!(" as a copy of {}", from.display()));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_read_well() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(1288490189), "1.2 GiB");
        assert_eq!(
            exported_line(
                "qcow2",
                Path::new("out/vm.qcow2"),
                1288490189,
                3.4,
                false,
                None
            ),
            "wrote out/vm.qcow2 (qcow2, 1.2 GiB in 3.4 s, 361.4 MiB/s)"
        );
        assert_eq!(
            exported_line("oci", Path::new("out/hello.oci"), 10, 0.0, true, None),
            "out/hello.oci (oci) unchanged, reused"
        );
    }
}
