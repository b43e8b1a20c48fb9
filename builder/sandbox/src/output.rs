//! Step output: the two pipes are read line by line on helper threads and
//! handed, in arrival order, to the caller's callback and a log file.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of step output (without the trailing newline; invalid UTF-8 is
/// replaced).
#[derive(Debug, Clone, Copy)]
pub struct OutputLine<'a> {
    /// The step's name.
    pub step: &'a str,
    /// Where it came from.
    pub stream: Stream,
    /// The text.
    pub line: &'a str,
}

impl std::fmt::Display for OutputLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stream {
            Stream::Stdout => write!(f, "[{}] {}", self.step, self.line),
            Stream::Stderr => write!(f, "[{}] (stderr) {}", self.step, self.line),
        }
    }
}

/// Longest line handed out in one piece, in bytes.
const MAX_LINE: u64 = 64 * 1024;

/// How many trailing lines a failure report keeps.
pub(crate) const LAST_LINES: usize = 30;

/// Pumps both pipes until EOF on both, calling `on_line` for each line and
/// appending `Display` of it to `log`. Returns the last [`LAST_LINES`].
pub(crate) fn pump(
    step: &str,
    stdout: OwnedFd,
    stderr: OwnedFd,
    mut log: Option<&mut fs_err::File>,
    on_line: &mut dyn FnMut(&OutputLine<'_>),
) -> (Vec<String>, Option<std::io::Error>) {
    let (tx, rx) = mpsc::channel::<(Stream, String)>();
    let readers = [(Stream::Stdout, stdout), (Stream::Stderr, stderr)].map(|(stream, fd)| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(std::fs::File::from(fd));
            let mut buf = Vec::new();
            loop {
                buf.clear();
                // Over-long lines (binary output) are split, not buffered.
                match (&mut r).take(MAX_LINE).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.send((stream, line)).is_err() {
                            break;
                        }
                    }
                }
            }
        })
    });
    drop(tx);
    let mut last = VecDeque::with_capacity(LAST_LINES);
    let mut log_err = None;
    for (stream, line) in rx {
        let out = OutputLine {
            step,
            stream,
            line: &line,
        };
        on_line(&out);
        if let Some(f) = log.as_deref_mut() {
            if let Err(e) = writeln!(f, "{out}") {
                log_err.get_or_insert(e);
            }
        }
        if last.len() == LAST_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
    for r in readers {
        let _ = r.join();
    }
    (last.into(), log_err)
}

/// Opens (appending) the step log file.
pub(crate) fn open_log(path: &Path) -> std::io::Result<fs_err::File> {
    fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
