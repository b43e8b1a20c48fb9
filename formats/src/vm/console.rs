//! Watching a VM's serial console: QEMU's stdout is copied to an optional echo (the
//! terminal) and matched, without ANSI escape sequences, against a marker, until the
//! marker appears, QEMU exits or the deadline passes. QEMU is killed on the way out.

use super::VmError;
use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How much of the console (escape sequences removed) [`Console::transcript`] keeps.
const TRANSCRIPT_BYTES: usize = 64 * 1024;

/// What to watch for.
#[derive(Default)]
pub struct Watch<'a> {
    /// Stop with [`Outcome::TimedOut`] after this long.
    pub timeout: Option<Duration>,
    /// Stop with [`Outcome::Expected`] as soon as this text appears. Without it and
    /// without [`Watch::stop`], QEMU gets this process's stdin (interactive console,
    /// Ctrl-A X quits).
    pub expect: Option<&'a str>,
    /// Where to copy the console's raw bytes as they come (e.g. stdout).
    pub echo: Option<&'a mut dyn Write>,
    /// Stop with [`Outcome::Stopped`] once another thread sets this.
    pub stop: Option<&'a AtomicBool>,
}

/// How a watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The expected text appeared.
    Expected,
    /// QEMU exited by itself (the guest powered off, or QEMU failed) first.
    Exited(ExitStatus),
    /// The deadline passed first.
    TimedOut,
    /// [`Watch::stop`] was set first.
    Stopped,
}

/// The end of a watch.
#[derive(Debug)]
pub struct Console {
    /// How it ended.
    pub outcome: Outcome,
    /// Time from QEMU's start to the end.
    pub elapsed: Duration,
    /// The last 64 KiB of the console, escape sequences removed.
    pub transcript: String,
}

impl Console {
    /// The last `n` characters of the transcript, for failure messages.
    pub fn tail(&self, n: usize) -> &str {
        let t = &self.transcript;
        let start = t
            .char_indices()
            .rev()
            .nth(n.saturating_sub(1))
            .map_or(0, |(i, _)| i);
        &t[start..]
    }
}

/// Runs `cmd` (a QEMU with its serial console on stdio, see [`super::Qemu`]) and watches
/// its console; QEMU is killed when the watch ends.
pub fn watch(mut cmd: Command, mut w: Watch<'_>) -> Result<Console, VmError> {
    let mut child = cmd
        .stdin(if w.expect.is_some() || w.stop.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| VmError::qemu_missing(cmd.get_program(), e))?;
    let mut stdout = child.stdout.take().ok_or_else(|| VmError::Io {
        what: "reading QEMU's console",
        source: std::io::Error::other("QEMU has no stdout"),
    })?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut strip = AnsiStripper::default();
    let mut seen = Vec::new();
    let want = w.expect.map(str::as_bytes);
    let keep = TRANSCRIPT_BYTES.max(want.map_or(0, |w| w.len() + 4096));
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(chunk) => {
                if let Some(echo) = w.echo.as_mut() {
                    let _ = echo.write_all(&chunk);
                    let _ = echo.flush();
                }
                let before = seen.len();
                strip.push(&chunk, &mut seen);
                if let Some(want) = want {
                    // Only a match that ends in the new bytes is new.
                    let from = before.saturating_sub(want.len());
                    if seen[from..].windows(want.len()).any(|x| x == want) {
                        break Outcome::Expected;
                    }
                }
                if seen.len() > keep {
                    seen.drain(..seen.len() - keep);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|source| VmError::Io {
                    what: "waiting for QEMU",
                    source,
                })?;
                break Outcome::Exited(status);
            }
        }
        if w.timeout.is_some_and(|t| start.elapsed() > t) {
            break Outcome::TimedOut;
        }
        if w.stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            break Outcome::Stopped;
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let from = seen.len().saturating_sub(TRANSCRIPT_BYTES);
    Ok(Console {
        outcome,
        elapsed: start.elapsed(),
        transcript: String::from_utf8_lossy(&seen[from..]).into_owned(),
    })
}

/// Removes ANSI escape sequences (firmware consoles move the cursor before every
/// character) from a byte stream, also when a sequence is split between chunks: `ESC [`
/// up to the first ASCII letter, or `ESC` and the one byte after it.
#[derive(Debug, Default)]
pub struct AnsiStripper {
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Text,
    Escape,
    Csi,
}

impl AnsiStripper {
    /// Appends the text of `bytes` to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        for &b in bytes {
            self.state = match (self.state, b) {
                (State::Text, 0x1b) => State::Escape,
                (State::Text, _) => {
                    out.push(b);
                    State::Text
                }
                (State::Escape, b'[') => State::Csi,
                (State::Escape, _) => State::Text,
                (State::Csi, b) if b.is_ascii_alphabetic() => State::Text,
                (State::Csi, _) => State::Csi,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(chunks: &[&[u8]]) -> String {
        let mut s = AnsiStripper::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_are_removed_across_chunks() {
        assert_eq!(strip(&[b"\x1b[1;1HO\x1b[1;2HK\x1b7!"]), "OK!");
        // Split inside `ESC [ 1 ; 2 H` and right after ESC.
        assert_eq!(strip(&[b"\x1b[1;1HO\x1b[1;", b"2HK\x1b", b"[0m."]), "OK.");
        assert_eq!(strip(&[b"plain ", b"text\n"]), "plain text\n");
    }

    #[test]
    fn a_marker_split_by_escapes_and_chunks_is_found_and_exit_is_reported() {
        let script = r"printf 'IMG\033[1;'; sleep 0.2; printf '5HBUILD-OK\n'; exec sleep 30";
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let mut echo = Vec::new();
        let console = watch(
            cmd,
            Watch {
                timeout: Some(Duration::from_secs(20)),
                expect: Some("IMGBUILD-OK"),
                echo: Some(&mut echo),
                stop: None,
            },
        )
        .unwrap();
        assert_eq!(console.outcome, Outcome::Expected);
        assert!(console.elapsed < Duration::from_secs(20));
        assert_eq!(echo, b"IMG\x1b[1;5HBUILD-OK\n");
        assert_eq!(console.tail(3), "OK\n");

        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo no marker; exit 3"]);
        let console = watch(
            cmd,
            Watch {
                expect: Some("IMGBUILD-OK"),
                ..Watch::default()
            },
        )
        .unwrap();
        assert!(
            matches!(console.outcome, Outcome::Exited(s) if s.code() == Some(3)),
            "{:?}",
            console.outcome
        );
        assert_eq!(console.transcript, "no marker\n");
    }

    #[test]
    fn the_deadline_stops_a_silent_guest() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let console = watch(
            cmd,
            Watch {
                timeout: Some(Duration::from_millis(300)),
                expect: Some("never"),
                ..Watch::default()
            },
        )
        .unwrap();
        assert_eq!(console.outcome, Outcome::TimedOut);
        assert!(console.elapsed < Duration::from_secs(10));
    }

    #[test]
    fn another_thread_stops_the_watch() {
        let stop = AtomicBool::new(false);
        let console = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let mut cmd = Command::new("sleep");
                cmd.arg("30");
                watch(
                    cmd,
                    Watch {
                        stop: Some(&stop),
                        ..Watch::default()
                    },
                )
            });
            std::thread::sleep(Duration::from_millis(300));
            assert!(!watcher.is_finished(), "the watch ended by itself");
            stop.store(true, Ordering::SeqCst);
            watcher.join().unwrap().unwrap()
        });
        assert_eq!(console.outcome, Outcome::Stopped);
        assert!(console.elapsed < Duration::from_secs(10));
    }
}
