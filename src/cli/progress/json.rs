//! `--progress json`: one JSON object per line on stderr for every event. The field names
//! are stable (documented in the README):
//!
//! - `{"event":"step_started","step":N,"total":N,"description":S}`
//! - `{"event":"output","step":N,"line":S}` (step 0 is the base's bootstrap)
//! - `{"event":"note","message":S}`
//! - `{"event":"step_finished", ...}` with every field of a step in `build --json`
//! - `{"event":"exported","format":S,"path":S,"bytes":N,"seconds":F,"reused":B}`
//!
//! - `{"event":"failed","message":S,"log":S|null}` last when the command fails (the
//!   `error:` line follows as text)
//!
//! Every object also has `elapsed`: seconds since the command started.

use imgbuild_builder::Progress;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::Mutex;
use std::time::Instant;

/// Writes events as JSON lines.
pub(super) struct Json {
    start: Instant,
    /// Holds stderr's lock order: one whole line at a time.
    out: Mutex<()>,
}

impl Json {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            out: Mutex::new(()),
        }
    }

    pub(super) fn observe(&self, event: &Progress<'_>) {
        self.print(object(event));
    }

    /// The last event of a failed command.
    pub(super) fn failed(&self, message: &str, log: Option<&std::path::Path>) {
        self.print(json!({"event": "failed", "message": message, "log": log}));
    }

    fn print(&self, mut value: Value) {
        if let Value::Object(map) = &mut value {
            map.insert(
                "elapsed".into(),
                json!((self.start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            );
        }
        let _guard = self.out.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not fail the build.
        let _ = writeln!(err, "{value}");
    }
}

/// The JSON object of `event`.
pub(super) fn object(event: &Progress<'_>) -> Value {
    match event {
        Progress::StepStarted {
            number,
            total,
            description,
        } => json!({
            "event": "step_started",
            "step": number,
            "total": total,
            "description": description,
        }),
        Progress::Output { number, line } => json!({
            "event": "output",
            "step": number,
            "line": line,
        }),
        Progress::Note(note) => json!({"event": "note", "message": note}),
        Progress::StepFinished(step) => {
            let mut value = serde_json::to_value(step).unwrap_or_else(|_| json!({}));
            if let Value::Object(map) = &mut value {
                map.insert("event".into(), json!("step_finished"));
            }
            value
        }
        Progress::Exported {
            format,
            path,
            bytes,
            seconds,
            reused,
            copied_from,
        } => json!({
            "event": "exported",
            "format": format,
            "path": path,
            "bytes": bytes,
            "seconds": seconds,
            "reused": reused,
            "copied_from": copied_from,
        }),
    }
}
