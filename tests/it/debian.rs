//! Debian userlands from the real Debian archive: bootstrap, dpkg state, the lock, run
//! steps in the sandbox, secrets. The base is built once per store and shared (it is the
//! same cache key in every recipe here).

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Copies the shipped debian-minimal recipe, the file it includes and its lock into `dir`,
/// with extra steps.
fn recipe_with(dir: &Path, extra_steps: &str) -> PathBuf {
    fs_err::create_dir_all(dir).unwrap();
    copy_tree(&repo().join("recipes/common"), &dir.join("common"));
    let base = fs_err::read_to_string(repo().join("recipes/debian-minimal.toml")).unwrap();
    let recipe = dir.join("debian-minimal.toml");
    fs_err::write(&recipe, format!("{base}\n{extra_steps}")).unwrap();
    fs_err::copy(
        repo().join("recipes/debian-minimal.lock"),
        dir.join("debian-minimal.lock"),
    )
    .unwrap();
    recipe
}

/// Builds and returns the flattened rootfs, unpacked into `dir/rootfs`.
fn build_rootfs(recipe: &Path, dir: &Path, extra: &[&str]) -> (serde_json::Value, PathBuf) {
    let out = dir.join("out");
    let mut args = vec!["-f", "tar"];
    args.extend_from_slice(extra);
    let report = build_json(recipe, shared_store(), &out, &args);
    let rootfs = dir.join("rootfs");
    fs_err::create_dir_all(&rootfs).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xpf")
            .arg(out.join("debian-minimal.rootfs.tar"))
            .arg("-C")
            .arg(&rootfs)
            .arg("--numeric-owner"),
    );
    (report, rootfs)
}

#[test]
fn minbase_holds_what_mmdebstrap_minbase_holds_and_dpkg_is_content() {
    require_tool("mmdebstrap", "mmdebstrap");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe_with(
        tmp.path(),
        "[[step]]\nrun = \"dpkg --audit > /audit.txt; dpkg-query -W -f '${Package} ${db:Status-Abbrev}\\\\n' > /packages.txt\"\n",
    );
    let (_, rootfs) = build_rootfs(&recipe, tmp.path(), &["--locked"]);
    assert_eq!(
        fs_err::read_to_string(rootfs.join("audit.txt")).unwrap(),
        "",
        "dpkg --audit complained"
    );
    let installed: std::collections::BTreeSet<String> =
        fs_err::read_to_string(rootfs.join("packages.txt"))
            .unwrap()
            .lines()
            .map(|l| {
                let (name, status) = l.split_once(' ').unwrap();
                assert_eq!(status.trim(), "ii", "{name} is not fully installed");
                name.to_owned()
            })
            .collect();
    assert!(fs_err::read_to_string(rootfs.join("etc/imgbuild-release"))
        .unwrap()
        .contains("imgbuild"));
    assert!(fs_err::read_to_string(rootfs.join("etc/passwd"))
        .unwrap()
        .contains("app:x:1000"));

    // The peer's view of minbase for the same suite, resolved now from the mirror.
    let sim = run_ok(
        Command::new("mmdebstrap")
            .args(["--variant=minbase", "--simulate", "--verbose", "bookworm"])
            .arg(tmp.path().join("sim.tar"))
            .arg("http://deb.debian.org/debian"),
    );
    // apt's `Inst NAME (VERSION ...)` lines come on either stream.
    let text =
        String::from_utf8_lossy(&sim.stdout).into_owned() + &String::from_utf8_lossy(&sim.stderr);
    let theirs: std::collections::BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert!(
        theirs.len() > 50,
        "mmdebstrap --simulate listed no packages:\n{text}"
    );
    let only_ours: Vec<_> = installed.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(&installed).collect();
    eprintln!(
        "minbase: {} packages; only imgbuild: {only_ours:?}; only mmdebstrap: {only_theirs:?}",
        installed.len()
    );
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "the package sets differ"
    );
}

#[test]
fn a_build_from_the_lock_in_a_fresh_store_gives_the_same_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe_with(&tmp.path().join("a"), "");
    let first = build_json(
        &recipe,
        shared_store(),
        &tmp.path().join("out-a"),
        &["--locked"],
    );
    let fresh = tmp.path().join("fresh-store");
    let second = build_json(&recipe, &fresh, &tmp.path().join("out-b"), &["--locked"]);
    assert_eq!(first["digest"], second["digest"]);
    assert!(cache_outcomes(&second).iter().all(|c| c == "miss"));
    let warm = build_json(&recipe, &fresh, &tmp.path().join("out-c"), &["--locked"]);
    assert!(cache_outcomes(&warm).iter().all(|c| c == "hit"));
    assert_eq!(warm["digest"], first["digest"]);
}

#[test]
fn locked_fails_when_the_recipe_no_longer_matches_its_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe_with(tmp.path(), "[[step]]\npackages = [\"curl\"]\n");
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .args(["--locked", "--store"])
        .arg(shared_store())
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--locked") && stderr.contains("imgbuild lock"),
        "{stderr}"
    );
}

#[test]
fn a_failing_command_stops_the_build_and_leaves_no_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe_with(
        tmp.path(),
        "[[step]]\nrun = \"echo about to fail; exit 3\"\n",
    );
    let before = run_ok(
        imgbuild()
            .args(["store", "du", "--json", "--store"])
            .arg(shared_store()),
    );
    let before: serde_json::Value = serde_json::from_slice(&before.stdout).unwrap();
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(shared_store())
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exit code 3") && stderr.contains("about to fail"),
        "{stderr}"
    );
    let after = run_ok(
        imgbuild()
            .args(["store", "du", "--json", "--store"])
            .arg(shared_store()),
    );
    let after: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(before["cache_entries"], after["cache_entries"]);
    assert!(!tmp.path().join("out").exists());
}

#[test]
fn a_secret_is_readable_in_its_step_and_in_no_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("token.txt");
    let value = "s3cr3t-token-that-must-not-leak";
    fs_err::write(&secret, value).unwrap();
    let recipe = recipe_with(
        tmp.path(),
        "[[step]]\nrun = \"wc -c < /run/secrets/token > /secret-length\"\nsecrets = [\"token\"]\n",
    );
    let src = format!("id=token,src={}", secret.display());
    let (report, rootfs) = build_rootfs(&recipe, tmp.path(), &["--secret", &src, "-f", "oci"]);
    assert_eq!(
        fs_err::read_to_string(rootfs.join("secret-length"))
            .unwrap()
            .trim(),
        value.len().to_string()
    );
    // No layer of the image holds the secret's bytes.
    let layout = tmp.path().join("out/debian-minimal.oci/blobs/sha256");
    for blob in fs_err::read_dir(&layout).unwrap() {
        let path = blob.unwrap().path();
        let bytes = fs_err::read(&path).unwrap();
        let plain = zstd_or_raw(&bytes);
        assert!(
            !contains(&plain, value.as_bytes()),
            "{} holds the secret",
            path.display()
        );
    }
    assert!(report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["network"] == false && s["reproducible"].is_null()));
    // Without the secret, a step that needs it (and is not cached) says what to pass.
    let other = recipe_with(
        &tmp.path().join("other"),
        "[[step]]\nrun = \"cat /run/secrets/token > /dev/null\"\nsecrets = [\"token\"]\n",
    );
    let out = imgbuild()
        .arg("build")
        .arg(&other)
        .arg("--store")
        .arg(shared_store())
        .arg("-o")
        .arg(tmp.path().join("out2"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--secret id=token"));
}

fn zstd_or_raw(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(bytes).unwrap()
    } else {
        bytes.to_vec()
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn network_steps_are_reported_as_such_and_have_no_network_by_default() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe_with(
        tmp.path(),
        "[[step]]\nrun = \"ls /sys/class/net > /ifaces-default 2>/dev/null || cat /proc/net/dev > /ifaces-default\"\n\
         [[step]]\nrun = \"cat /proc/net/dev > /ifaces-network\"\nnetwork = true\n",
    );
    let (report, rootfs) = build_rootfs(&recipe, tmp.path(), &[]);
    let default = fs_err::read_to_string(rootfs.join("ifaces-default")).unwrap();
    assert!(
        default.contains("lo") && default.lines().filter(|l| l.contains(':')).count() <= 1,
        "{default}"
    );
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps[1]["network"], false);
    assert_eq!(steps[2]["network"], true);
    assert!(steps.iter().all(|s| s.get("hermetic").is_none()));
}

#[test]
fn a_stage_builds_a_binary_and_the_image_takes_only_that() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let report = build_json(
        &repo().join("recipes/multistage.toml"),
        shared_store(),
        &out,
        &["-f", "tar", "--locked"],
    );
    let paths = tar_paths(&out.join("hello-static.rootfs.tar"));
    assert_eq!(
        paths,
        [
            "usr/",
            "usr/local/",
            "usr/local/bin/",
            "usr/local/bin/hello"
        ]
    );
    let rootfs = tmp.path().join("rootfs");
    fs_err::create_dir_all(&rootfs).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(out.join("hello-static.rootfs.tar"))
            .arg("-C")
            .arg(&rootfs),
    );
    let ran = run_ok(&mut Command::new(rootfs.join("usr/local/bin/hello")));
    assert!(String::from_utf8_lossy(&ran.stdout).contains("built in an imgbuild stage"));
    // Rebuilt: the stage and the copy are both cache hits.
    let again = build_json(
        &repo().join("recipes/multistage.toml"),
        shared_store(),
        &out,
        &["--locked"],
    );
    assert_eq!(again["digest"], report["digest"]);
    assert!(cache_outcomes(&again).iter().all(|c| c == "hit"));
    // `imgbuild lock` knows the stage's lock (up to date, so nothing is written).
    let locked = run_ok(
        imgbuild()
            .arg("lock")
            .arg(repo().join("recipes/multistage.toml"))
            .arg("--json")
            .arg("--store")
            .arg(shared_store()),
    );
    let locked: serde_json::Value = serde_json::from_slice(&locked.stdout).unwrap();
    assert_eq!(locked["units"][0]["unit"], "stage build", "{locked}");
    assert_eq!(locked["units"][0]["written"], false);
    assert!(locked["units"][0]["lock"]
        .as_str()
        .unwrap()
        .ends_with("recipes/multistage.build.lock"));
    assert!(locked["units"][0]["packages"].as_u64().unwrap() > 50);
}
