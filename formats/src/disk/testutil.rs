//! Test helpers: run the real external validators, failing loudly (never
//! skipping) when one is missing.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `tool args...`; panics naming the Debian package if `tool` is missing.
pub(crate) fn run(tool: &str, package: &str, args: &[&str]) -> Output {
    run_cmd(Command::new(tool).args(args), tool, package)
}

/// Runs a prepared command; panics naming the Debian package if missing.
pub(crate) fn run_cmd(cmd: &mut Command, tool: &str, package: &str) -> Output {
    match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "validator `{tool}` not found: install the Debian package `{package}` \
             (apt-get install {package}); this test must not be skipped"
        ),
        Err(e) => panic!("could not run `{tool}`: {e}"),
    }
}

/// Like [`run`] but also asserts exit status 0, printing the output if not.
pub(crate) fn run_ok(tool: &str, package: &str, args: &[&str]) -> String {
    let out = run(tool, package, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{tool} {}` failed ({}):\n{text}",
        args.join(" "),
        out.status
    );
    text
}

/// A path as `&str` (test temp paths are always UTF-8).
pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
