//! A lock that pins every input: bootloader packages of disks (a `--locked` qcow2 builds in
//! a network namespace without interfaces), a registry base's manifest digest (a moved tag
//! changes nothing), and locked `.deb`s gone from the mirror fetched from a snapshot server
//! (served on loopback), checked by hash.

use crate::common::*;
use crate::registry_support::Registry;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn a_locked_qcow2_builds_again_without_network_to_the_same_bytes() {
    require_tool("unshare", "util-linux");
    let recipe = repo().join("recipes/debian-vm.toml");
    let lock_before = fs_err::read(repo().join("recipes/debian-vm.lock")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    build_json(
        &recipe,
        shared_store(),
        &first,
        &["--locked", "-f", "qcow2"],
    );

    // A network namespace of its own: only a loopback interface, and that one down.
    let devices = run_ok(Command::new("unshare").args(["-n", "cat", "/proc/net/dev"]));
    let devices = String::from_utf8_lossy(&devices.stdout);
    let interfaces: Vec<&str> = devices
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"], "{devices}");

    let second = tmp.path().join("second");
    let out = run_ok(
        Command::new("unshare")
            .arg("-n")
            .arg(env!("CARGO_BIN_EXE_imgbuild"))
            .env_remove("IMGBUILD_STORE")
            .env_remove("SOURCE_DATE_EPOCH")
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(shared_store())
            .arg("-o")
            .arg(&second)
            .args(["--json", "--locked", "-f", "qcow2"]),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["artifacts"].to_string().contains("qcow2"),
        "{report}"
    );
    let a = fs_err::read(first.join("debian-vm.qcow2")).unwrap();
    let b = fs_err::read(second.join("debian-vm.qcow2")).unwrap();
    assert!(a.len() > 1 << 20, "a qcow2 of {} bytes", a.len());
    assert!(a == b, "the offline qcow2 differs from the first one");
    assert_eq!(
        fs_err::read(repo().join("recipes/debian-vm.lock")).unwrap(),
        lock_before,
        "--locked never writes the lock"
    );
}

#[test]
fn a_locked_disk_build_without_pinned_bootloaders_says_to_run_imgbuild_lock() {
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("recipes/hello"), &tmp.path().join("hello"));
    let recipe = tmp.path().join("hello.toml");
    fs_err::copy(repo().join("recipes/hello.toml"), &recipe).unwrap();
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .args(["--locked", "-f", "raw"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pins no amd64 bootloader packages (systemd-boot-efi")
            && stderr.contains(&format!("imgbuild lock {}", recipe.display())),
        "{stderr}"
    );
    assert!(!tmp.path().join("hello.lock").exists());
    assert!(!tmp.path().join("out/hello.raw").exists());
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A one-file `.deb` made with dpkg-deb.
fn tiny_deb(work: &Path) -> Vec<u8> {
    require_tool("dpkg-deb", "dpkg-dev");
    let root = work.join("pkg");
    fs_err::create_dir_all(root.join("DEBIAN")).unwrap();
    fs_err::create_dir_all(root.join("usr/share/imgbuild-snap")).unwrap();
    fs_err::write(
        root.join("usr/share/imgbuild-snap/hello"),
        "from the snapshot\n",
    )
    .unwrap();
    fs_err::write(
        root.join("DEBIAN/control"),
        "Package: imgbuild-snap\nVersion: 1.0\nArchitecture: all\nMaintainer: imgbuild <t@imgbuild.invalid>\nDescription: snapshot fixture\n fixture\n",
    )
    .unwrap();
    let deb = work.join("imgbuild-snap.deb");
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zgzip", "--build"])
            .arg(&root)
            .arg(&deb),
    );
    fs_err::read(deb).unwrap()
}

const FILENAME: &str = "pool/main/i/imgbuild-snap/imgbuild-snap_1.0_all.deb";

/// A recipe on `mirror` with `snapshot`, and its lock pinning `deb`.
fn snapshot_recipe(dir: &Path, mirror: &str, snapshot: &str, deb: &[u8]) -> PathBuf {
    let recipe = dir.join("snap.toml");
    fs_err::write(
        &recipe,
        format!(
            "[image]\nname = \"snap\"\n\n[from]\ndebian = {{ suite = \"bookworm\", variant = \"custom\", \
             mirror = \"{mirror}/debian\", snapshot = \"{snapshot}\" }}\n\n\
             [[step]]\npackages = [\"imgbuild-snap\"]\n"
        ),
    )
    .unwrap();
    fs_err::write(
        dir.join("snap.lock"),
        format!(
            "lock_version = 1\n\n[source]\nmirror = \"{mirror}/debian\"\nsuite = \"bookworm\"\n\
             components = [\"main\"]\narchitecture = \"amd64\"\nvariant = \"custom\"\n\
             requested = [\"imgbuild-snap\"]\nrelease_date = \"Sat, 11 Jul 2026 10:16:37 UTC\"\n\
             inrelease_sha256 = \"{}\"\n\n[[package]]\nname = \"imgbuild-snap\"\nversion = \"1.0\"\n\
             architecture = \"all\"\nsha256 = \"{}\"\nsize = {}\nfilename = \"{FILENAME}\"\n",
            "0".repeat(64),
            sha256(deb),
            deb.len()
        ),
    )
    .unwrap();
    recipe
}

#[test]
fn a_locked_deb_gone_from_the_mirror_comes_from_the_snapshot_server_checked_by_hash() {
    let tmp = tempfile::tempdir().unwrap();
    let deb = tiny_deb(tmp.path());
    // The mirror has the suite's directory but not the package any more.
    let mirror_dir = tmp.path().join("mirror");
    fs_err::create_dir_all(mirror_dir.join("debian/pool/main")).unwrap();
    let snapshot_dir = tmp.path().join("snapshot");
    let at = snapshot_dir
        .join("archive/debian/20260711T101637Z")
        .join(FILENAME);
    fs_err::create_dir_all(at.parent().unwrap()).unwrap();
    fs_err::write(&at, &deb).unwrap();
    let mirror = serve_dir(&mirror_dir);
    let snapshot = serve_dir(&snapshot_dir);
    let recipe = snapshot_recipe(tmp.path(), &mirror.url, &snapshot.url, &deb);
    let lock = fs_err::read(tmp.path().join("snap.lock")).unwrap();

    let out = tmp.path().join("out");
    build_json(
        &recipe,
        &tmp.path().join("store"),
        &out,
        &["--locked", "-f", "tar"],
    );
    let paths = tar_paths(&out.join("snap.rootfs.tar"));
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("usr/share/imgbuild-snap/hello")),
        "{paths:?}"
    );
    assert_eq!(fs_err::read(tmp.path().join("snap.lock")).unwrap(), lock);

    // Other bytes at the snapshot (same size): refused, in a fresh store.
    let mut tampered = deb.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    fs_err::write(&at, &tampered).unwrap();
    let failed = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store2"))
        .arg("-o")
        .arg(tmp.path().join("out2"))
        .args(["--locked", "-f", "tar"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success(), "{stderr}");
    assert!(
        stderr.contains("imgbuild-snap 1.0: hash mismatch")
            && stderr.contains(&format!(
                "{}/archive/debian/20260711T101637Z/{FILENAME}",
                snapshot.url
            )),
        "{stderr}"
    );
    assert!(!tmp.path().join("out2/snap.rootfs.tar").exists());
}

/// A scratch image of one file, pushed as `target`; returns its manifest digest.
fn push_base(registry: &Registry, dir: &Path, content: &str, target: &str) -> String {
    fs_err::create_dir_all(dir).unwrap();
    let recipe = dir.join("base.toml");
    fs_err::write(
        &recipe,
        format!(
            "[image]\nname = \"base\"\n[from]\nscratch = true\n\
             [[step]]\nwrite = \"/version\"\ncontent = \"{content}\\n\"\n"
        ),
    )
    .unwrap();
    let mut extra = vec!["--push".to_owned(), target.to_owned()];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let report = build_json(&recipe, &dir.join("store"), &dir.join("out"), &extra);
    report["digest"].as_str().expect("digest").to_owned()
}

#[test]
fn a_registry_base_is_locked_to_its_digest_and_a_moved_tag_changes_nothing() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().unwrap();
    let reference = format!("{}/base:1", registry.host());
    let old = push_base(&registry, &tmp.path().join("v1"), "1", &reference);

    let recipe = tmp.path().join("derived.toml");
    fs_err::write(
        &recipe,
        format!(
            "[image]\nname = \"derived\"\n[from]\nimage = \"{reference}\"\n\
             [[step]]\nwrite = \"/d\"\ncontent = \"d\\n\"\n"
        ),
    )
    .unwrap();
    let lock_path = tmp.path().join("derived.lock");
    let store = tmp.path().join("store");
    let flags = registry.imgbuild_args();
    let mut args: Vec<&str> = vec!["--json"];
    args.extend(flags.iter().map(String::as_str));
    let locked = run_ok(
        imgbuild()
            .arg("lock")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .args(&args),
    );
    let locked: Value = serde_json::from_slice(&locked.stdout).unwrap();
    assert_eq!(
        locked["units"][0]["registry_digest"],
        old.as_str(),
        "{locked}"
    );
    let text = fs_err::read_to_string(&lock_path).unwrap();
    assert!(
        text.contains(&format!(
            "[[registry_base]]\nreference = \"{reference}\"\ndigest = \"{old}\""
        )),
        "{text}"
    );

    // The tag moves to another image.
    let new = push_base(&registry, &tmp.path().join("v2"), "2", &reference);
    assert_ne!(new, old);
    let mut build_args: Vec<&str> = vec!["--locked", "-f", "tar"];
    build_args.extend(flags.iter().map(String::as_str));
    let again = build_json(&recipe, &store, &tmp.path().join("out"), &build_args);
    assert_eq!(again["base"]["digest"], old.as_str(), "{again}");
    let paths = tar_paths(&tmp.path().join("out/derived.rootfs.tar"));
    assert!(paths.iter().any(|p| p.ends_with("version")), "{paths:?}");
    assert_eq!(fs_err::read_to_string(&lock_path).unwrap(), text);

    // `lock --update` takes the new digest; a recipe naming another reference is stale.
    let mut update = args.clone();
    update.push("--update");
    run_ok(
        imgbuild()
            .arg("lock")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .args(&update),
    );
    assert!(fs_err::read_to_string(&lock_path)
        .unwrap()
        .contains(&format!("digest = \"{new}\"")));
    let moved = fs_err::read_to_string(&recipe)
        .unwrap()
        .replace("base:1", "base:2");
    fs_err::write(&recipe, moved).unwrap();
    let stale = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(&store)
        .arg("-o")
        .arg(tmp.path().join("out3"))
        .args(&build_args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert_eq!(stale.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("out of date") && stderr.contains("base:2"),
        "{stderr}"
    );
}
