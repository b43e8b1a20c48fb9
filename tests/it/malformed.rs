//! Malformed recipes: each names the file, line and problem, exits 2, and leaves the store
//! and the output directory as they were. The cases live in `tests/fixtures/bad/`, each
//! starting with `# expect: <message> @ <line>` (line 0: no line).

use crate::common::*;
use std::path::Path;

fn snapshot(store: &Path) -> Vec<String> {
    let mut files: Vec<String> = walk(store)
        .into_iter()
        .filter(|(p, _)| !p.ends_with("-wal") && !p.ends_with("-shm"))
        .map(|(p, len)| format!("{p} {len}"))
        .collect();
    files.sort();
    let ls = run_ok(
        imgbuild()
            .args(["store", "ls", "--json", "--store"])
            .arg(store),
    );
    let du = run_ok(
        imgbuild()
            .args(["store", "du", "--json", "--store"])
            .arg(store),
    );
    files.push(String::from_utf8_lossy(&ls.stdout).into_owned());
    files.push(String::from_utf8_lossy(&du.stdout).into_owned());
    files
}

fn walk(root: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            out.extend(walk(&entry.path()));
        } else if !entry.path().ends_with("index.sqlite") {
            out.push((entry.path().display().to_string(), meta.len()));
        }
    }
    out
}

#[test]
fn malformed_recipes_fail_with_located_messages_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    build_json(
        &repo().join("recipes/hello.toml"),
        &store,
        &tmp.path().join("good"),
        &[],
    );
    let before = snapshot(&store);
    let out = tmp.path().join("out");

    let dir = repo().join("tests/fixtures/bad");
    let mut cases: Vec<_> = fs_err::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 15, "only {} malformed recipes", cases.len());
    for case in &cases {
        let text = fs_err::read_to_string(case).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .expect("# expect: line");
        let (message, line) = expect.rsplit_once(" @ ").expect("MESSAGE @ LINE");
        let output = imgbuild()
            .arg("build")
            .arg(case)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{}: {stderr}",
            case.display()
        );
        assert!(
            stderr.contains(message),
            "{}: expected `{message}` in:\n{stderr}",
            case.display()
        );
        if line != "0" {
            let located = format!("{}:{line}:", case.display());
            assert!(
                stderr.contains(&located),
                "{}: expected `{located}` in:\n{stderr}",
                case.display()
            );
            assert!(
                stderr.contains("help:"),
                "{}: no advice in:\n{stderr}",
                case.display()
            );
        }
        assert!(
            !out.exists(),
            "{}: created the output directory",
            case.display()
        );
    }
    assert_eq!(snapshot(&store), before, "a failed build changed the store");
}

#[test]
fn usage_errors_exit_2() {
    let status = imgbuild()
        .args(["build", "x.toml", "--format", "floppy"])
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&status.stderr).contains("choose one of"));
    let missing = imgbuild()
        .args([
            "build",
            "/nonexistent/recipe.toml",
            "--store",
            "/tmp/unused",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
