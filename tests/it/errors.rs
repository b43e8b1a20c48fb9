//! Errors that classify themselves: exit 2 when the user has to fix something, 1 when
//! something else failed (a mirror that cannot be reached), and with `--json` one JSON
//! object `{"error": {"message", "kind", "file", "line", "column"}}` on stdout.

use crate::common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Runs `imgbuild ARGS --store STORE --json` and returns the output and the one JSON
/// object on stdout.
fn run_json(args: &[&str], recipe: &Path, store: &Path) -> (Output, Value) {
    let out = imgbuild()
        .args(args)
        .arg(recipe)
        .arg("--store")
        .arg(store)
        .arg("--json")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} {}: stdout is not one JSON object ({e}):\n{stdout}\nstderr:\n{}",
            recipe.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, value)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn malformed_recipes_with_json_print_one_located_error_and_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let out_dir = tmp.path().join("out");
    let out_dir = out_dir.to_str().unwrap();
    let dir = repo().join("tests/fixtures/bad");
    let mut cases: Vec<PathBuf> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 40, "only {} malformed recipes", cases.len());
    for case in &cases {
        let text = fs_err::read_to_string(case).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("# expect: line");
        let (message, at) = expect.rsplit_once(" @ ").expect("MESSAGE @ LINE");
        let (out, json) = run_json(&["build", "-o", out_dir], case, &store);
        let name = case.display();
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        // The human message still goes to stderr.
        assert!(stderr(&out).contains(message), "{name}: {}", stderr(&out));
        let error = &json["error"];
        assert_eq!(error["kind"], "recipe", "{name}: {json}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{name}: {json}"
        );
        assert_eq!(
            error["file"].as_str(),
            Some(case.to_str().unwrap()),
            "{name}: {json}"
        );
        let (line, column) = match at.split_once(':') {
            Some((l, c)) => (l.parse::<u64>().unwrap(), Some(c.parse::<u64>().unwrap())),
            None => (at.parse::<u64>().unwrap(), None),
        };
        if line == 0 {
            assert!(error["line"].is_null(), "{name}: {json}");
            assert!(error["column"].is_null(), "{name}: {json}");
        } else {
            assert_eq!(error["line"].as_u64(), Some(line), "{name}: {json}");
            let found = error["column"].as_u64().expect("a column");
            assert!(found >= 1, "{name}: {json}");
            if let Some(column) = column {
                assert_eq!(found, column, "{name}: {json}");
            }
        }
    }
}

#[test]
fn a_bad_value_is_located_by_inspect_too() {
    // `tests/fixtures/bad/bad-name.toml`: the value `"My Image"` starts at line 3, column 8.
    let tmp = tempfile::tempdir().unwrap();
    let case = repo().join("tests/fixtures/bad/bad-name.toml");
    let (out, json) = run_json(&["inspect"], &case, &tmp.path().join("store"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json["error"]["kind"], "recipe", "{json}");
    assert_eq!(json["error"]["line"], 3, "{json}");
    assert_eq!(json["error"]["column"], 8, "{json}");
    // Only the error: no partial report before it.
    assert_eq!(json.as_object().unwrap().len(), 1, "{json}");
}

#[test]
fn without_json_stdout_stays_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let out = imgbuild()
        .arg("build")
        .arg(repo().join("tests/fixtures/bad/bad-name.toml"))
        .arg("--store")
        .arg(tmp.path().join("store"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// A recipe with a Debian base at `mirror` and one `packages` step, without a lock.
fn debian_recipe(dir: &Path, mirror: &str, package: &str) -> PathBuf {
    let recipe = dir.join("deb.toml");
    fs_err::write(
        &recipe,
        format!(
            "[from]\ndebian = {{ suite = \"bookworm\", mirror = \"{mirror}\" }}\n\n\
             [image]\nname = \"deb\"\n\n[[step]]\npackages = [\"{package}\"]\n"
        ),
    )
    .unwrap();
    recipe
}

#[test]
fn an_unreachable_mirror_is_a_network_error_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    // Nothing listens on the discard port: the connection is refused.
    let recipe = debian_recipe(tmp.path(), "http://127.0.0.1:9/debian", "hello");
    for command in [&["build"][..], &["lock"]] {
        let (out, json) = run_json(command, &recipe, &store);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {}", stderr(&out));
        assert_eq!(json["error"]["kind"], "network", "{command:?}: {json}");
        assert!(json["error"]["file"].is_null(), "{json}");
        let message = json["error"]["message"].as_str().unwrap();
        // The cause is kept, not flattened away.
        assert!(
            message.contains("127.0.0.1:9") && message.contains("network access"),
            "{message}"
        );
    }
    assert!(
        !recipe.with_extension("lock").exists(),
        "a failed resolution wrote a lock"
    );
}

#[test]
fn a_malformed_lock_is_a_lock_error_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = debian_recipe(tmp.path(), "http://127.0.0.1:9/debian", "hello");
    fs_err::write(recipe.with_extension("lock"), "lock_version = \"x\n").unwrap();
    let (out, json) = run_json(&["build"], &recipe, &tmp.path().join("store"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json["error"]["kind"], "lock", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("delete it to re-resolve"),
        "{json}"
    );
    // `--locked` without a lock: also the user's to fix.
    fs_err::remove_file(recipe.with_extension("lock")).unwrap();
    let (out, json) = run_json(&["build", "--locked"], &recipe, &tmp.path().join("store"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json["error"]["kind"], "lock", "{json}");
}

#[test]
fn an_unknown_debian_package_is_the_users_mistake_and_exits_2() {
    // The real archive (as the other Debian tests use); the index is kept in a store under
    // the target directory, so only the signed Release is fetched again on later runs.
    let store = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("errors-debian-store");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = debian_recipe(
        tmp.path(),
        "http://deb.debian.org/debian",
        "no-such-package-imgbuild",
    );
    let (out, json) = run_json(&["lock"], &recipe, &store);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json["error"]["kind"], "debian", "{json}");
    assert!(
        json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-package-imgbuild"),
        "{json}"
    );
}

#[test]
fn a_bad_flag_with_json_is_a_usage_error() {
    let out = imgbuild()
        .args(["build", "x.toml", "--format", "floppy", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["error"]["kind"], "usage", "{json}");
    let message = json["error"]["message"].as_str().unwrap();
    assert!(message.contains("choose one of"), "{message}");
    assert!(
        !message.contains('\u{1b}'),
        "terminal colours in {message:?}"
    );
    // A missing recipe file is the user's too, and names the file.
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.toml");
    let (out, json) = run_json(&["build"], &missing, &tmp.path().join("store"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(json["error"]["file"].as_str(), missing.to_str(), "{json}");
    assert!(json["error"]["line"].is_null(), "{json}");
}
