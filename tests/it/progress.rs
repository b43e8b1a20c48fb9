//! Progress on stderr (`--progress tty|plain|json`, `-q`) and the build log in the store,
//! on a small recipe without network: busybox copied in, a `run` step that prints.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A recipe of 4 steps whose third runs `script` under busybox's shell.
fn recipe(dir: &Path, script: &str) -> PathBuf {
    require_tool("busybox", "busybox-static");
    let found = run_ok(Command::new("sh").args(["-c", "command -v busybox"]));
    let busybox = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    fs_err::copy(&busybox, dir.join("busybox")).unwrap();
    let path = dir.join("progress.toml");
    fs_err::write(
        &path,
        format!(
            "[image]\nname = \"progress\"\n\n\
             [[step]]\ncopy = \"busybox\"\nto = \"/bin/busybox\"\n\n\
             [[step]]\nsymlink = \"/bin/sh\"\ntarget = \"busybox\"\n\n\
             [[step]]\nrun = \"{script}\"\n\n\
             [[step]]\nwrite = \"/etc/motd\"\ncontent = \"hi\\n\"\n"
        ),
    )
    .unwrap();
    path
}

const PRINTS: &str = "echo one; echo two; sleep 1; echo three; echo four";

fn build(dir: &Path, recipe: &Path, args: &[&str]) -> Output {
    imgbuild()
        .arg("build")
        .arg(recipe)
        .arg("--store")
        .arg(dir.join("store"))
        .arg("-o")
        .arg(dir.join("out"))
        .args(args)
        .output()
        .expect("imgbuild runs")
}

/// Timings and digests replaced, so that the lines compare across runs and hosts.
fn normalise(text: &str, dir: &Path) -> String {
    let text = text.replace(&dir.display().to_string(), "TMP");
    let word = |w: &str| -> String {
        if w.starts_with("sha256:") {
            return "sha256:D".into();
        }
        let number = w.strip_suffix('s').unwrap_or("");
        if !number.is_empty() && number.parse::<f64>().is_ok() {
            return "Ts".into();
        }
        w.to_owned()
    };
    text.lines()
        .map(
            |l| match l.strip_prefix("wrote ").and_then(|w| w.split_once(", ")) {
                // Size, time and rate of an output.
                Some((what, _)) => format!("wrote {what}, ...)\n"),
                None => l.split(' ').map(word).collect::<Vec<_>>().join(" ") + "\n",
            },
        )
        .collect()
}

#[test]
fn plain_mode_matches_its_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), PRINTS);
    let built = build(tmp.path(), &recipe, &["--progress", "plain"]);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    let expected_file = repo().join("tests/it/snapshots/progress-plain.txt");
    let expected = fs_err::read_to_string(&expected_file).unwrap();
    assert_eq!(
        normalise(&stderr, tmp.path()),
        expected,
        "the plain progress differs from {}",
        expected_file.display()
    );
    // A rebuild: every step cached, still one line each.
    let again = build(tmp.path(), &recipe, &["--progress", "plain"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("[3] run echo one;"), "{stderr}");
    assert_eq!(stderr.matches("... cached\n").count(), 4, "{stderr}");
    assert!(!stderr.contains("  [3] one"), "{stderr}");
    // `tty` asked for on a pipe: no bars can be drawn, the summary lines still come.
    let piped = build(tmp.path(), &recipe, &["--progress", "tty"]);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(
        stderr.starts_with("[1/4] copy busybox /bin/busybox ... cached\n"),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "{stderr}");
}

#[test]
fn tty_mode_draws_spinners_and_summaries_in_a_pseudo_terminal() {
    require_tool("script", "bsdutils");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), PRINTS);
    // `auto` picks tty: stderr is the pseudo-terminal `script` made.
    let command = format!(
        "'{}' build '{}' --store '{}' -o '{}'",
        env!("CARGO_BIN_EXE_imgbuild"),
        recipe.display(),
        tmp.path().join("store").display(),
        tmp.path().join("out").display()
    );
    let ran = run_ok(
        Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .env("TERM", "xterm-256color")
            .env_remove("IMGBUILD_STORE")
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    let screen = String::from_utf8_lossy(&ran.stdout);
    let tail = |_: ()| last_lines(&ran.stdout, 20);
    // indicatif redraws in place: cursor moves and line clears, its braille spinner.
    assert!(screen.contains("\x1b[2K"), "{}", tail(()));
    assert!(
        screen
            .chars()
            .any(|c| ('\u{2800}'..='\u{28ff}').contains(&c)),
        "no spinner: {}",
        tail(())
    );
    // The running step with its live timer and its output folded under it.
    assert!(
        screen.contains("s [3/4] run echo one; echo two;"),
        "{}",
        tail(())
    );
    assert!(screen.contains("three"), "{}", tail(()));
    // A summary line per step.
    for summary in [
        "[1/4] copy busybox /bin/busybox ... built in ",
        "[2/4] symlink /bin/sh -> busybox ... built in ",
        "[3/4] run echo one; echo two; sleep 1; echo three; echo four ... built in ",
        "[4/4] write /etc/motd ... built in ",
    ] {
        assert!(screen.contains(summary), "no `{summary}`: {}", tail(()));
    }
    assert!(screen.contains("built progress:latest"), "{}", tail(()));
    // The plain output lines are not printed: the steps' output is folded.
    assert!(!screen.contains("  [3] one"), "{}", tail(()));
}

#[test]
fn json_mode_prints_every_event_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let good = recipe(tmp.path(), PRINTS);
    let built = build(tmp.path(), &good, &["--progress", "json", "--json"]);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    // `--json` still prints the result on stdout.
    let result: Value = serde_json::from_slice(&built.stdout).expect("stdout is the result");
    assert_eq!(result["steps"].as_array().map(Vec::len), Some(4));

    let events: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().expect("every object has an event"))
        .collect();
    assert!(events.iter().all(|e| e["elapsed"].is_f64()), "{stderr}");
    let steps: Vec<String> = events
        .iter()
        .filter(|e| e["event"] != "note")
        .map(|e| match e["event"].as_str() {
            Some("step_started") => format!("start {}/{}", e["step"], e["total"]),
            Some("output") => format!("{} {}", e["step"], e["line"].as_str().unwrap()),
            Some("step_finished") => format!("end {} {}", e["index"], e["cache"]),
            Some("exported") => format!("exported {} reused {}", e["format"], e["reused"]),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        steps,
        [
            "start 1/4",
            "end 1 \"miss\"",
            "start 2/4",
            "end 2 \"miss\"",
            "start 3/4",
            "3 one",
            "3 two",
            "3 three",
            "3 four",
            "end 3 \"miss\"",
            "start 4/4",
            "end 4 \"miss\"",
            "exported \"oci\" reused false",
        ],
        "{stderr}"
    );
    // A finished step has the fields of a step in `--json`.
    let finished = events
        .iter()
        .find(|e| e["event"] == "step_finished")
        .unwrap();
    assert_eq!(finished["description"], "copy busybox /bin/busybox");
    assert_eq!(finished["key"], result["steps"][0]["key"]);
    assert_eq!(kinds.last(), Some(&"note"));
    assert!(events.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .starts_with("built progress:latest"));

    // A failure ends with a `failed` event naming the log, then the error as text.
    let bad = recipe(tmp.path(), "echo doomed; exit 4");
    let failed = build(tmp.path(), &bad, &["--progress", "json"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {stderr}"));
    let events: Vec<Value> = lines[..at]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect();
    let last = events.last().unwrap();
    assert_eq!(last["event"], "failed", "{stderr}");
    assert!(
        last["message"].as_str().unwrap().contains("step 3"),
        "{last}"
    );
    let log = last["log"].as_str().expect("the log is named");
    assert!(fs_err::read_to_string(log)
        .unwrap()
        .contains("  [3] doomed"));
    assert!(events.iter().any(|e| e["line"] == "doomed"), "{stderr}");
}

#[test]
fn quiet_prints_nothing_on_success_and_the_error_with_the_log_on_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("store/logs");
    let good = recipe(tmp.path(), PRINTS);
    let built = build(tmp.path(), &good, &["-q"]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&built.stderr), "");
    assert_eq!(String::from_utf8_lossy(&built.stdout), "");
    // Quiet or not, the log has the whole output.
    let first: Vec<PathBuf> = fs_err::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    let log = fs_err::read_to_string(&first[0]).unwrap();
    assert!(log.contains("  [3] one\n  [3] two\n"), "{log}");
    // A rebuild that runs nothing leaves no log.
    let again = build(tmp.path(), &good, &["-q"]);
    assert!(again.status.success());
    assert_eq!(fs_err::read_dir(&logs).unwrap().count(), 1);

    // Old logs beyond the newest 20 are removed.
    for i in 0..25 {
        fs_err::write(logs.join(format!("build-19700101T0000{i:02}Z-1.log")), "").unwrap();
    }
    let bad = recipe(tmp.path(), "echo before the failure; exit 3");
    let failed = build(tmp.path(), &bad, &["--quiet"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: step 3"), "{stderr}");
    let named = stderr
        .lines()
        .find_map(|l| l.strip_prefix("the full log is in "))
        .unwrap_or_else(|| panic!("no log named: {stderr}"));
    let log = fs_err::read_to_string(named).unwrap();
    assert!(log.contains("  [3] before the failure"), "{log}");
    assert!(log.contains("error: step 3"), "{log}");
    assert_eq!(fs_err::read_dir(&logs).unwrap().count(), 20);
    assert!(first[0].exists(), "the newest logs are kept");
    assert!(!logs.join("build-19700101T000000Z-1.log").exists());
}
