//! `include = [...]`: included steps first, paths relative to the file that names them,
//! shared cache entries, and located errors for cycles, conflicts and missing files.

use crate::common::*;
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures/includes").join(name)
}

/// Runs `imgbuild build` on a recipe that must be refused; returns its stderr.
fn refused(recipe: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = imgbuild()
        .arg("build")
        .arg(fixture(recipe))
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn included_steps_come_first_with_paths_relative_to_their_own_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let report = build_json(
        &fixture("app.toml"),
        &tmp.path().join("store"),
        &out,
        &["-f", "oci", "-f", "tar"],
    );
    let steps: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "copy data/a.txt /a.txt",
            "write /etc/base",
            "copy files/b.txt /b.txt",
            "write /etc/app"
        ],
        "{report}"
    );
    let rootfs = tmp.path().join("rootfs");
    fs_err::create_dir_all(&rootfs).unwrap();
    run_ok(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(out.join("inc-app.rootfs.tar"))
            .arg("-C")
            .arg(&rootfs),
    );
    assert_eq!(fs_err::read_to_string(rootfs.join("a.txt")).unwrap(), "a\n");
    assert_eq!(fs_err::read_to_string(rootfs.join("b.txt")).unwrap(), "b\n");
    assert_eq!(
        fs_err::read_to_string(rootfs.join("etc/app")).unwrap(),
        "app\n"
    );
    // [config] merged key by key: env from both included files, cmd from the recipe.
    let inspected = run_ok(
        imgbuild()
            .arg("inspect")
            .arg(out.join("inc-app.oci"))
            .arg("--json"),
    );
    let image: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(image["digest"], report["digest"]);
    let env: Vec<&str> = image["config"]["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"LANG=C.UTF-8") && env.contains(&"EXTRA=1"),
        "{env:?}"
    );
    assert_eq!(image["config"]["config"]["Cmd"][0], "/bin/true");
}

#[test]
fn a_recipe_that_includes_another_shares_its_cache_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let base = build_json(&fixture("base.toml"), &store, &tmp.path().join("a"), &[]);
    assert!(cache_outcomes(&base).iter().all(|c| c == "miss"), "{base}");
    let app = build_json(&fixture("app.toml"), &store, &tmp.path().join("b"), &[]);
    assert_eq!(
        cache_outcomes(&app),
        ["hit", "hit", "miss", "miss"],
        "{app}"
    );
    for i in 0..2 {
        assert_eq!(app["steps"][i]["key"], base["steps"][i]["key"], "{app}");
    }
}

#[test]
fn an_include_cycle_is_named_where_it_closes() {
    let stderr = refused("cycle-a.toml");
    assert!(stderr.contains("in a cycle"), "{stderr}");
    // The chain, from the recipe back to itself, and the include that closes it.
    let chain = stderr.lines().find(|l| l.contains("cycle")).unwrap();
    let (a, b) = (chain.find("cycle-a.toml"), chain.find("cycle-b.toml"));
    assert!(a.is_some() && b.is_some() && a < b, "{stderr}");
    assert!(chain.matches("cycle-a.toml").count() == 2, "{stderr}");
    assert!(stderr.contains("cycle-b.toml:1:12"), "{stderr}");
}

#[test]
fn a_key_set_in_two_files_names_both() {
    let stderr = refused("conflict.toml");
    assert!(
        stderr.contains("[config] env.LANG is set twice"),
        "{stderr}"
    );
    // Here (the recipe) and there (the included file), each as file:line:col.
    assert!(stderr.contains("conflict.toml:7:9"), "{stderr}");
    assert!(stderr.contains("base.toml:14:9"), "{stderr}");
}

#[test]
fn a_missing_or_escaping_include_is_located() {
    let stderr = refused("missing.toml");
    assert!(
        stderr.contains("cannot read the included recipe") && stderr.contains("nope.toml"),
        "{stderr}"
    );
    assert!(stderr.contains("missing.toml:1:12"), "{stderr}");
    let stderr = refused("escapes.toml");
    assert!(
        stderr.contains("escapes.toml:1:12") && stderr.contains("not a file inside"),
        "{stderr}"
    );
}
