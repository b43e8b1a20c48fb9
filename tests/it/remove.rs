//! `remove` steps: globs matched against the image below the step, `missing_ok`, and a
//! cache key that changes only when `missing_ok` is set.

use crate::common::*;
use std::path::Path;
use std::process::Command;

const RECIPE: &str = r#"
[image]
name = "removed"

[[step]]
write = "/etc/ssh/ssh_host_ed25519_key"
content = "secret"

[[step]]
write = "/etc/ssh/ssh_host_ed25519_key.pub"
content = "public"

[[step]]
write = "/etc/ssh/sshd_config"

[[step]]
mkdir = "/var/cache/app/sub"

[[step]]
remove = ["/etc/ssh/ssh_host_*", "/var/cache/**", "/etc/ssh/ssh_host_ed25519_key"]
"#;

fn listing(tar: &Path) -> Vec<String> {
    let out = run_ok(Command::new("tar").arg("-tf").arg(tar));
    let mut paths: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    paths.sort();
    paths
}

/// The paths in the top layer of the recipe's OCI layout, sorted.
fn last_layer(recipe: &Path, store: &Path, dir: &Path) -> Vec<String> {
    let out = dir.join("oci-out");
    build_json(recipe, store, &out, &["-f", "oci"]);
    let layout = out.join("removed.oci");
    let blob = |digest: &str| layout.join("blobs/sha256").join(&digest[7..]);
    let json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let layers = manifest["layers"].as_array().unwrap();
    let top = layers.last().unwrap()["digest"].as_str().unwrap();
    listing(&blob(top))
}

fn step_keys(recipe: &Path, store: &Path) -> Vec<String> {
    let out = run_ok(
        imgbuild()
            .arg("inspect")
            .arg(recipe)
            .arg("--json")
            .arg("--store")
            .arg(store),
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn remove_globs_match_the_image_below_and_missing_ok_enters_the_key_only_when_set() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("removed.toml");
    fs_err::write(&recipe, RECIPE).unwrap();
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    build_json(&recipe, &store, &out, &["-f", "tar"]);
    assert_eq!(
        listing(&out.join("removed.rootfs.tar")),
        [
            "etc/",
            "etc/ssh/",
            "etc/ssh/sshd_config",
            "var/",
            "var/cache/"
        ],
        "the host keys and everything below /var/cache are gone, the rest stays"
    );
    // The remove step's layer: one whiteout per match, none below another match.
    assert_eq!(
        last_layer(&recipe, &store, tmp.path()),
        [
            "etc/ssh/.wh.ssh_host_ed25519_key",
            "etc/ssh/.wh.ssh_host_ed25519_key.pub",
            "var/cache/.wh.app"
        ]
    );

    // A path that is missing is fine with missing_ok, and the key says so; without it
    // (or with `missing_ok = false`) the key is the one the step always had.
    let with = |extra: &str| {
        RECIPE.replace(
            "\"/etc/ssh/ssh_host_ed25519_key\"]",
            &format!("\"/etc/ssh/ssh_host_ed25519_key\", \"/no/such/*\"]\n{extra}"),
        )
    };
    let keys = |text: &str| {
        fs_err::write(&recipe, text).unwrap();
        step_keys(&recipe, &store)
    };
    let plain = keys(&with(""));
    let explicit_false = keys(&with("missing_ok = false"));
    let ok = keys(&with("missing_ok = true"));
    assert_eq!(plain, explicit_false);
    assert_eq!(plain[..4], ok[..4]);
    assert_ne!(plain[4], ok[4], "missing_ok enters the remove step's key");

    fs_err::write(&recipe, with("missing_ok = true")).unwrap();
    build_json(&recipe, &store, &out, &["-f", "tar"]);
    assert_eq!(
        listing(&out.join("removed.rootfs.tar")),
        [
            "etc/",
            "etc/ssh/",
            "etc/ssh/sshd_config",
            "var/",
            "var/cache/"
        ]
    );

    // Without it, the same step fails at the glob that matches nothing, located (exit 2).
    fs_err::write(&recipe, with("")).unwrap();
    let (code, stderr) = build_failure(&recipe, &store, &tmp.path().join("out2"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("step 5 removes /no/such/*, but nothing in the image below it matches"),
        "{stderr}"
    );
    let line = with("")
        .lines()
        .position(|l| l.contains("/no/such/*"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!("{}:{line}:", recipe.display())),
        "{stderr}"
    );
    assert!(stderr.contains("missing_ok = true"), "{stderr}");
}
