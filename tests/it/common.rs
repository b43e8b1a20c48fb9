//! Helpers shared by the end-to-end tests.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A command running the imgbuild binary under test, with a clean environment for the
/// variables that change its behaviour.
pub(crate) fn imgbuild() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imgbuild"));
    cmd.env_remove("IMGBUILD_STORE")
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

/// Panics (never skips) when a tool the test needs is missing.
pub(crate) fn require_tool(tool: &str, package: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is not installed; install the Debian package `{package}` (scripts/install-test-deps.sh does)"
    );
}

/// Runs a command and returns its output, panicking with both streams if it failed.
pub(crate) fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout (last lines):\n{}\nstderr (last lines):\n{}",
        out.status,
        last_lines(&out.stdout, 40),
        last_lines(&out.stderr, 40)
    );
    out
}

/// The last `n` lines of a command's output: where its error is, without the progress above.
pub(crate) fn last_lines(output: &[u8], n: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `imgbuild build RECIPE --json` with the given store, output dir and extra arguments.
pub(crate) fn build_json(recipe: &Path, store: &Path, out: &Path, extra: &[&str]) -> Value {
    let output = run_ok(
        imgbuild()
            .arg("build")
            .arg(recipe)
            .arg("--store")
            .arg(store)
            .arg("-o")
            .arg(out)
            .arg("--json")
            .args(extra),
    );
    serde_json::from_slice(&output.stdout).expect("build --json prints one JSON object")
}

/// The cache outcome of every step in a `--json` report.
pub(crate) fn cache_outcomes(report: &Value) -> Vec<String> {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["cache"].as_str().expect("cache").to_owned())
        .collect()
}

/// Every recipe shipped in `recipes/` that the OCI tests build.
pub(crate) fn shipped_recipes() -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = fs_err::read_dir(repo().join("recipes"))
        .expect("recipes/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    all.sort();
    all
}

/// Copies a directory tree (files, dirs, symlinks, modes).
pub(crate) fn copy_tree(from: &Path, to: &Path) {
    run_ok(Command::new("cp").arg("-a").arg(from).arg(to));
}

/// Lists a tree as `type mode uid:gid path [-> target]` lines, sorted.
pub(crate) fn describe_tree(root: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new("find")
            .arg(".")
            .arg("-mindepth")
            .arg("1")
            .arg("-printf")
            .arg("%y %m %U:%G %P %l\n")
            .current_dir(root),
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect();
    lines.sort();
    lines
}

/// One store shared by every test that builds Debian recipes (each test runs in its own
/// process under nextest), warmed with the minbase bootstrap by whichever test comes first
/// while the others wait on a lock.
pub(crate) fn shared_store() -> &'static Path {
    static STORE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    STORE.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("debian-store");
        fs_err::create_dir_all(&dir).unwrap();
        let lock = fs_err::File::create(dir.join("warm.lock")).unwrap();
        lock.file().lock().unwrap();
        let out = tempfile::tempdir().unwrap();
        build_json(
            &repo().join("recipes/debian-minimal.toml"),
            &dir,
            out.path(),
            &["--locked"],
        );
        drop(lock);
        dir
    })
}

/// The paths in a tar archive, sorted (`tar -tf`).
pub(crate) fn tar_paths(tar: &Path) -> Vec<String> {
    let listing = run_ok(Command::new("tar").arg("-tf").arg(tar));
    let mut paths: Vec<String> = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths
}

/// Builds `recipe` into `store` and `out`, expecting a failure: its exit code and stderr.
pub(crate) fn build_failure(recipe: &Path, store: &Path, out: &Path) -> (Option<i32>, String) {
    build_outcome(recipe, store, out, &[])
}

/// `imgbuild build RECIPE` with extra environment variables: its exit code and stderr.
pub(crate) fn build_outcome(
    recipe: &Path,
    store: &Path,
    out: &Path,
    env: &[(&str, &Path)],
) -> (Option<i32>, String) {
    let failed = imgbuild()
        .arg("build")
        .arg(recipe)
        .arg("--store")
        .arg(store)
        .arg("-o")
        .arg(out)
        .envs(env.iter().copied())
        .output()
        .expect("imgbuild runs");
    (
        failed.status.code(),
        String::from_utf8_lossy(&failed.stderr).into_owned(),
    )
}

/// A directory served over HTTP on 127.0.0.1 (a mirror, a snapshot server, a third-party
/// repository) by `builder/debian/tests/fixtures/serve.py`, until dropped.
pub(crate) struct Served {
    child: std::process::Child,
    /// The port it listens on.
    pub(crate) port: u16,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Serves `dir` on a free loopback port.
pub(crate) fn serve_dir(dir: &Path) -> Served {
    use std::io::BufRead;
    require_tool("python3", "python3");
    let mut child = Command::new("python3")
        .arg(repo().join("builder/debian/tests/fixtures/serve.py"))
        .arg(dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("serve.py prints its port");
    let port: u16 = line.trim().parse().expect("serve.py printed no port");
    Served {
        child,
        port,
        url: format!("http://127.0.0.1:{port}"),
    }
}
