//! The store's layout as a user sees it:
//! - `store du` agrees with `du -sb` after a build that unpacked layers;
//! - `store gc --max-size` brings the whole store under the size (`du -sb`), dropping
//!   unpacked layers, and `--keep-recent 0s` keeps what the tag needs (the rebuild is cached);
//! - `store rm` removes a ref (exit 2 for one that does not exist), and `gc` then frees it;
//! - a failed export leaves the refs as they were.

use crate::common::{build_json, cache_outcomes, copy_tree, imgbuild, repo, require_tool, run_ok};
use imgbuild_store::tarball::{EntryKind, EntryMeta, TarWriter};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `du -sb PATH`.
fn du_sb(path: &Path) -> u64 {
    let out = run_ok(Command::new("du").arg("-sb").arg(path));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du -sb prints a number")
}

fn store_json(store: &Path, args: &[&str]) -> Value {
    let out = run_ok(
        imgbuild()
            .arg("store")
            .args(args)
            .arg("--json")
            .arg("--store")
            .arg(store),
    );
    serde_json::from_slice(&out.stdout).expect("store --json prints JSON")
}

/// A busybox rootfs and a recipe whose first run step writes 2 MB of zeros (a small zstd
/// blob, a big unpacked dir) and a mode-0 directory, and whose second step unpacks it.
fn busybox_recipe(dir: &Path) -> std::path::PathBuf {
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
    for applet in ["sh", "head", "mkdir", "chmod"] {
        add(
            &format!("bin/{applet}"),
            EntryKind::Symlink("busybox".into()),
            0o777,
            b"",
        );
    }
    w.finish().expect("finish tar");
    let recipe = dir.join("layout.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"layout\"\ntags = [\"1\"]\n\n[from]\nrootfs = \"rootfs.tar\"\n\n\
         [[step]]\nrun = \"mkdir -p /data/locked && head -c 2000000 /dev/zero > /data/zeros && echo x > /data/locked/f && chmod 000 /data/locked\"\n\n\
         [[step]]\nrun = \"echo two > /two\"\n",
    )
    .unwrap();
    recipe
}

#[test]
fn du_matches_du_sb_and_gc_max_size_brings_the_store_under_the_size() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = busybox_recipe(tmp.path());
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    let first = build_json(&recipe, &store, &out, &[]);

    let usage = store_json(&store, &["du"]);
    let reported = usage["bytes"].as_u64().expect("bytes");
    let measured = du_sb(&store);
    let off = reported.abs_diff(measured) as f64 / measured as f64;
    assert!(
        off <= 0.02,
        "store du says {reported}, du -sb {measured}: {usage}"
    );
    let unpacked = usage["buckets"]["unpacked"].as_u64().expect("unpacked");
    assert!(
        unpacked > 2_000_000 && usage["blob_bytes"].as_u64().unwrap() < 1_500_000,
        "the zeros are small as a blob and big unpacked: {usage}"
    );
    assert!(usage["unpacked"].as_u64().unwrap() >= 2, "{usage}");

    // Room for the image's blobs and the index, not for the unpacked layers.
    let max = measured - unpacked + 64 * 1024;
    let gc = store_json(
        &store,
        &["gc", "--keep-recent", "0s", "--max-size", &max.to_string()],
    );
    let after = du_sb(&store);
    assert!(after <= max, "du -sb {after} > --max-size {max}: {gc}");
    assert!(gc["unpacked_removed"].as_u64().unwrap() >= 1, "{gc}");
    assert_eq!(gc["over_max_size"], 0, "{gc}");

    // The tag still has everything it needs: a rebuild is all cached, the same image.
    let again = build_json(&recipe, &store, &tmp.path().join("out2"), &[]);
    assert_eq!(again["digest"], first["digest"]);
    assert!(
        cache_outcomes(&again).iter().all(|c| c == "hit"),
        "{:?}",
        cache_outcomes(&again)
    );
    assert!(store_json(&store, &["verify"])["corrupt"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn store_rm_removes_a_ref_and_gc_frees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    build_json(
        &repo().join("recipes/hello.toml"),
        &store,
        &tmp.path().join("out"),
        &[],
    );
    let missing = imgbuild()
        .args(["store", "rm", "hello:nope", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("no image `hello:nope`") && stderr.contains("store ls"),
        "{stderr}"
    );
    let blobs_before = store_json(&store, &["du"])["blobs"].as_u64().unwrap();
    run_ok(
        imgbuild()
            .args(["store", "rm", "hello:1.0", "--store"])
            .arg(&store),
    );
    // NAME alone is NAME:latest.
    run_ok(
        imgbuild()
            .args(["store", "rm", "hello", "--store"])
            .arg(&store),
    );
    assert_eq!(store_json(&store, &["ls"]), serde_json::json!([]));
    // Still there until gc.
    assert_eq!(
        store_json(&store, &["du"])["blobs"].as_u64().unwrap(),
        blobs_before
    );
    let gc = store_json(&store, &["gc", "--keep-recent", "0s"]);
    assert_eq!(gc["blobs_removed"].as_u64().unwrap(), blobs_before, "{gc}");
    assert_eq!(store_json(&store, &["du"])["blobs"], 0);
}

#[test]
fn a_failed_export_leaves_the_refs_as_they_were() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("recipes/hello"), &tmp.path().join("hello"));
    let recipe = tmp.path().join("hello.toml");
    fs_err::copy(repo().join("recipes/hello.toml"), &recipe).unwrap();
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    // The rootfs tar's path is a directory: the export fails after the build.
    fs_err::create_dir_all(out.join("hello.rootfs.tar")).unwrap();
    let build = |what: &str| {
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(&out)
            .args(["-f", "oci", "-f", what])
            .output()
            .unwrap()
    };
    let failed = build("tar");
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    assert_eq!(
        store_json(&store, &["ls"]),
        serde_json::json!([]),
        "{}",
        String::from_utf8_lossy(&failed.stderr)
    );

    let ok = build("oci-archive");
    assert!(ok.status.success(), "{ok:?}");
    let before = store_json(&store, &["ls"]);
    assert_eq!(before.as_array().unwrap().len(), 2, "{before}");
    let text = fs_err::read_to_string(&recipe).unwrap();
    fs_err::write(
        &recipe,
        text.replace("greeting = \\\"hello\\\"", "greeting = \\\"changed\\\""),
    )
    .unwrap();
    assert_ne!(
        fs_err::read_to_string(&recipe).unwrap(),
        text,
        "the recipe changed"
    );
    let failed = build("tar");
    assert_eq!(failed.status.code(), Some(2), "{failed:?}");
    let names_and_digests = |v: &Value| -> Vec<(Value, Value)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| (r["name"].clone(), r["digest"].clone()))
            .collect()
    };
    assert_eq!(
        names_and_digests(&store_json(&store, &["ls"])),
        names_and_digests(&before)
    );
}
