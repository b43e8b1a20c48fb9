//! `imgbuild build --check`: every layer made again and compared.

use crate::common::{build_json, imgbuild, repo, require_tool, shared_store};
use imgbuild_store::tarball::{EntryKind, EntryMeta, TarWriter};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A busybox rootfs and a recipe with a stage, a file step, a random binary file, a
/// stable step above it, a text file with one random line, and a copy from the stage.
fn random_recipe(dir: &Path) -> PathBuf {
    require_tool("busybox", "busybox-static");
    let busybox = fs_err::read("/bin/busybox").expect("read /bin/busybox");
    let mut w = TarWriter::new(fs_err::File::create(dir.join("rootfs.tar")).unwrap());
    let mut add = |path: &str, kind: EntryKind, mode: u32, bytes: &[u8]| {
        let mut m = EntryMeta::new(path, kind, mode, 0);
        m.size = bytes.len() as u64;
        w.append(&m, &mut &bytes[..]).expect("tar entry");
    };
    for d in ["bin", "dev", "tmp", "etc"] {
        add(d, EntryKind::Dir, 0o755, b"");
    }
    add("bin/busybox", EntryKind::File, 0o755, &busybox);
    for applet in ["sh", "head", "cat"] {
        let link = EntryKind::Symlink("busybox".into());
        add(&format!("bin/{applet}"), link, 0o777, b"");
    }
    w.finish().expect("finish tar");
    let recipe = dir.join("random.toml");
    fs_err::write(
        &recipe,
        r#"[image]
name = "random"

[from]
rootfs = "rootfs.tar"

[stage.tools]
from = { rootfs = "rootfs.tar" }
step = [{ run = "echo tool > /tool" }]

[[step]]
write = "/etc/motd"
content = "hello\n"

[[step]]
run = "head -c 16 /dev/urandom > /x"

[[step]]
run = "echo stable > /stable"

[[step]]
run = "printf 'same\n' > /id && cat /proc/sys/kernel/random/uuid >> /id"

[[step]]
copy = "/tool"
from_stage = "tools"
to = "/tool"
"#,
    )
    .unwrap();
    recipe
}

fn check(recipe: &Path, store: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    imgbuild()
        .arg("build")
        .arg(recipe)
        .arg("--store")
        .arg(store)
        .arg("-o")
        .arg(out)
        .arg("--check")
        .args(extra)
        .output()
        .expect("imgbuild runs")
}

fn step(report: &Value, index: u64) -> &Value {
    report["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .find(|s| s["index"] == index)
        .unwrap_or_else(|| panic!("no step {index} in {report:#}"))
}

#[test]
fn a_random_step_fails_the_check_naming_its_path_and_only_that_step_differs() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = random_recipe(tmp.path());
    let store = tmp.path().join("store");
    let out = check(&recipe, &store, &tmp.path().join("out"), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("random.toml:15) is not reproducible: run head -c 16 /dev/urandom > /x")
            && stdout.contains("step 2 (run, ")
            && stdout.contains("  /x: content differs"),
        "{stdout}"
    );
    // A small text file shows its first differing line, stored then made again.
    assert!(stdout.contains("  /id: content differs"), "{stdout}");
    assert!(stdout.contains("    stored  2: "), "{stdout}");
    assert!(stdout.contains("    again   2: "), "{stdout}");
    assert!(!stdout.contains("step 3 "), "{stdout}");
    assert!(
        stdout.contains("not reproducible: 2 of 8 layers differ"),
        "{stdout}"
    );
    assert!(
        stderr.contains("2 of 8 layers were not reproducible"),
        "{stderr}"
    );

    // Again with --json, all from the cache but every layer still made again: one JSON
    // object, `reproducible` per step, the differences of the ones that differ.
    let out = check(&recipe, &store, &tmp.path().join("out"), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(report.get("error").is_none(), "{report:#}");
    assert_eq!(report["check"]["reproducible"], false);
    assert_eq!(report["check"]["checked"], 8);
    assert_eq!(report["check"]["differing"], 2);
    for s in report["steps"].as_array().unwrap() {
        assert_eq!(s["cache"], "hit");
        assert_eq!(s["network"], false);
        assert!(s.get("hermetic").is_none());
    }
    let x = step(&report, 2);
    assert_eq!(x["reproducible"], false);
    assert_eq!(
        x["differences"],
        serde_json::json!([{"path": "/x", "change": "changed", "fields": ["content"]}])
    );
    let id = &step(&report, 4)["differences"][0];
    assert_eq!(id["path"], "/id");
    assert_eq!(id["lines"]["line"], 2);
    assert_ne!(id["lines"]["stored"], id["lines"]["rebuilt"]);
    for index in [1, 3, 5] {
        let s = step(&report, index);
        assert_eq!(s["reproducible"], true, "{s:#}");
        assert!(s.get("differences").is_none(), "{s:#}");
    }
    assert_eq!(report["stage_steps"][0]["reproducible"], true);
    let bases = report["check"]["bases"].as_array().unwrap();
    assert_eq!(bases.len(), 2, "{bases:#?}");
    assert!(bases
        .iter()
        .all(|b| b["reproducible"] == true && b["description"] == "rootfs rootfs.tar"));

    // Without --check nothing is checked: `reproducible` is null.
    let plain = build_json(&recipe, &store, &tmp.path().join("out"), &[]);
    assert!(plain.get("check").is_none());
    assert!(step(&plain, 2)["reproducible"].is_null());
}

#[test]
fn check_with_dry_run_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = check(
        &repo().join("recipes/hello.toml"),
        &tmp.path().join("store"),
        &tmp.path().join("out"),
        &["--dry-run"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dry-run"));
}

#[test]
fn debian_server_is_reproducible_layer_by_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--locked", "--source-date-epoch", "1700000000", "--json"];
    let out = check(
        &repo().join("recipes/debian-server.toml"),
        shared_store(),
        &tmp.path().join("out"),
        &args,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["check"]["reproducible"], true, "{report:#}");
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(report["check"]["checked"], steps.len() + 1);
    assert!(steps.iter().all(|s| s["reproducible"] == true));
    assert_eq!(
        report["check"]["bases"],
        serde_json::json!([{"unit": "image", "description": "debian bootstrap", "reproducible": true}])
    );
}
