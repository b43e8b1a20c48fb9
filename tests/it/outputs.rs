//! The output directory under stress: builds racing for one `-o`, builds killed while
//! exporting, and an output disk that fills up.

use crate::common::*;
use crate::crash::{big_recipe, verify_clean};
use sha2::Digest as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `.imgbuild-*` entries in `out`.
fn staged_leftovers(out: &Path) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(out) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".imgbuild-"))
        .collect()
}

/// Every file under `root` with its bytes' sha256, sorted by path.
pub(crate) fn tree_hashes(root: &Path) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = walk(root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (
                rel,
                hex::encode(sha2::Sha256::digest(fs_err::read(&p).unwrap())),
            )
        })
        .collect();
    all.sort();
    all
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Every blob of an OCI layout hashes to its name.
fn assert_blobs_whole(layout: &Path) {
    for (name, hash) in tree_hashes(&layout.join("blobs/sha256")) {
        assert_eq!(name, hash, "{} has a damaged blob", layout.display());
    }
}

pub(crate) fn spawn_build(recipe: &Path, store: &Path, out: &Path, formats: &[&str]) -> Child {
    let mut cmd = imgbuild();
    cmd.arg("build")
        .arg(recipe)
        .arg("--store")
        .arg(store)
        .arg("-o")
        .arg(out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for f in formats {
        cmd.args(["-f", f]);
    }
    cmd.spawn().unwrap()
}

/// A recipe named `race` whose image differs by `which`, with `megabytes` of data so that
/// exports overlap.
fn race_recipe(dir: &Path, which: &str, megabytes: usize) -> PathBuf {
    let src = dir.join(which);
    let big = big_recipe(&src, megabytes);
    let recipe = src.join("race.toml");
    let text = fs_err::read_to_string(&big)
        .unwrap()
        .replace("name = \"big\"", "name = \"race\"")
        .replace("content = \"x\"", &format!("content = \"{which}\""));
    fs_err::write(&recipe, text).unwrap();
    recipe
}

const RACE_FORMATS: [&str; 3] = ["oci", "oci-archive", "tar"];

#[test]
fn concurrent_builds_into_one_output_dir_all_succeed_and_leave_one_whole_output() {
    require_tool("skopeo", "skopeo");
    require_tool("tar", "tar");
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let recipes = [
        race_recipe(tmp.path(), "a", 6),
        race_recipe(tmp.path(), "b", 6),
    ];
    // What each recipe exports on its own (builds are reproducible, so byte for byte).
    let mut references = Vec::new();
    for (i, recipe) in recipes.iter().enumerate() {
        let out = tmp.path().join(format!("ref{i}"));
        let report = build_json(
            recipe,
            &store,
            &out,
            &RACE_FORMATS.map(|f| ["-f", f]).concat(),
        );
        references.push((report["digest"].as_str().unwrap().to_owned(), out));
    }
    assert_ne!(references[0].0, references[1].0);
    let out = tmp.path().join("out");
    for round in 0..3 {
        let children: Vec<Child> = (0..6)
            .map(|i| spawn_build(&recipes[i % 2], &store, &out, &RACE_FORMATS))
            .collect();
        for child in children {
            let done = child.wait_with_output().unwrap();
            assert!(
                done.status.success(),
                "round {round}: a build failed with {}:\n{}",
                done.status,
                String::from_utf8_lossy(&done.stderr)
            );
        }
        let mut left: Vec<String> = fs_err::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["race.oci", "race.oci.tar", "race.rootfs.tar"],
            "round {round}: staged or swapped-out entries are left"
        );

        let layout = out.join("race.oci");
        assert_blobs_whole(&layout);
        let inspect = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:latest", layout.display())),
        );
        let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        let digest = inspected["Digest"].as_str().unwrap();
        let (_, reference) = references
            .iter()
            .find(|(d, _)| d == digest)
            .unwrap_or_else(|| {
                panic!("round {round}: the layout holds {digest}, built by neither recipe")
            });
        assert_eq!(
            tree_hashes(&layout),
            tree_hashes(&reference.join("race.oci")),
            "round {round}: race.oci is not one build's layout, whole"
        );
        for file in ["race.oci.tar", "race.rootfs.tar"] {
            let bytes = fs_err::read(out.join(file)).unwrap();
            assert!(
                references
                    .iter()
                    .any(|(_, r)| fs_err::read(r.join(file)).unwrap() == bytes),
                "round {round}: {file} is not one build's output, whole"
            );
            run_ok(Command::new("tar").arg("-tf").arg(out.join(file)));
        }
    }
    verify_clean(&store);
}

/// A small xorshift generator, seeded from the clock (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn kill_9_while_exporting_leaves_nothing_staged_after_the_next_build() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = big_recipe(&tmp.path().join("src"), 50);
    // The build after each kill: a small image into the same -o, so it is quick.
    let small = race_recipe(tmp.path(), "small", 1);
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    let formats = ["oci", "oci-archive", "tar"];
    let build_ok = |recipe: &Path| {
        let done = spawn_build(recipe, &store, &out, &formats)
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr).into_owned();
        assert!(done.status.success(), "{stderr}");
        stderr
    };
    // The big image's outputs removed, so that its next build exports them again rather
    // than leave them as they are.
    let remove_big_outputs = || {
        let _ = fs_err::remove_dir_all(out.join("big.oci"));
        for file in ["big.oci.tar", "big.rootfs.tar"] {
            let _ = fs_err::remove_file(out.join(file));
        }
    };
    // Warm the cache, then time a build that only exports.
    build_ok(&recipe);
    build_ok(&small);
    remove_big_outputs();
    let start = Instant::now();
    build_ok(&recipe);
    let full = start.elapsed().as_millis() as u64;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let mut interrupted = 0;
    for kill in 0..22 {
        // Anywhere in the build, mostly in the export that follows the cached steps.
        let delay = full / 10 + rng.below(full);
        remove_big_outputs();
        let mut child = spawn_build(&recipe, &store, &out, &formats);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let left = staged_leftovers(&out);
        if !left.is_empty() {
            interrupted += 1;
        }
        let stderr = build_ok(&small);
        assert_eq!(
            staged_leftovers(&out),
            Vec::<String>::new(),
            "kill {kill} after {delay} ms (seed {seed}): the next build left staged entries"
        );
        if !left.is_empty() {
            assert!(
                stderr.contains(&format!(
                    "removed {} staged output(s) of interrupted builds",
                    left.len()
                )),
                "kill {kill} (seed {seed}) left {left:?}; the next build said:\n{stderr}"
            );
        }
    }
    eprintln!("{interrupted} of 22 kills left staged entries (seed {seed}, build {full} ms)");
    // The kills did land in exports, or this test proved nothing.
    assert!(
        interrupted >= 4,
        "only {interrupted} of 22 kills (seed {seed}, a build takes {full} ms) hit an export"
    );
    build_ok(&recipe);
    assert_eq!(staged_leftovers(&out), Vec::<String>::new());
    assert_blobs_whole(&out.join("big.oci"));
    verify_clean(&store);
}

/// A tmpfs mounted for the life of the value.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let id = run_ok(Command::new("id").arg("-u"));
        assert_eq!(
            String::from_utf8_lossy(&id.stdout).trim(),
            "0",
            "mounting a tmpfs needs root: run this test as root (CI does)"
        );
        fs_err::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o"])
                .arg(format!("size={size}"))
                .arg("tmpfs")
                .arg(dir),
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_output_disk_says_no_space_and_leaves_nothing_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = big_recipe(&tmp.path().join("src"), 8);
    let store = tmp.path().join("store");
    // Build first, so only the export meets the full disk.
    let started = Instant::now();
    build_json(&recipe, &store, &tmp.path().join("warm"), &["-f", "oci"]);
    eprintln!("warm build: {:?}", started.elapsed());
    let out = tmp.path().join("full");
    let _tmpfs = Tmpfs::mount(&out, "4m");
    for (format, file) in [
        ("tar", "big.rootfs.tar"),
        ("oci-archive", "big.oci.tar"),
        ("docker-archive", "big.docker.tar"),
        ("oci", "big.oci"),
    ] {
        let done = spawn_build(&recipe, &store, &out, &[format])
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{format}: {stderr}");
        let path = out.join(file);
        assert!(
            stderr.contains(&format!(
                "no space left on device while writing {}",
                path.display()
            )),
            "{format}: {stderr}"
        );
        assert!(!stderr.contains("expected"), "{format}: {stderr}");
        assert_eq!(
            fs_err::read_dir(&out).unwrap().count(),
            0,
            "{format}: something is left in the output directory"
        );
        eprintln!("{format}: {:?}", started.elapsed());
    }
    verify_clean(&store);
}

/// A recipe for an image that bootable formats accept: a stand-in kernel of `megabytes`
/// of noise in `/boot` and an `/sbin/init`. Never booted, only written.
pub(crate) fn bootable_recipe(dir: &Path, megabytes: usize) -> PathBuf {
    fs_err::create_dir_all(dir.join("boot")).unwrap();
    fs_err::create_dir_all(dir.join("sbin")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let noise: Vec<u8> = (0..megabytes << 17)
        .flat_map(|_| {
            rng.below(u64::MAX);
            rng.0.to_le_bytes()
        })
        .collect();
    fs_err::write(dir.join("boot/vmlinuz-6.1.0-0-amd64"), noise).unwrap();
    fs_err::write(dir.join("sbin/init"), "#!/bin/sh\n").unwrap();
    let recipe = dir.join("boot.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"boot\"\n[[step]]\ncopy = \"boot\"\nto = \"/boot\"\n\
         [[step]]\ncopy = \"sbin\"\nto = \"/sbin\"\n",
    )
    .unwrap();
    recipe
}

#[test]
fn a_full_output_disk_for_bootable_formats_says_no_space_and_leaves_nothing_staged() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = bootable_recipe(&tmp.path().join("src"), 6);
    let store = tmp.path().join("store");
    // Build first, so only the export meets the full disk.
    build_json(&recipe, &store, &tmp.path().join("warm"), &["-f", "oci"]);
    let out = tmp.path().join("full");
    let _tmpfs = Tmpfs::mount(&out, "4m");
    for (format, file) in [
        // The root filesystem's tar, staged beside the disk, is what fills it.
        ("raw", "boot.raw"),
        ("qcow2", "boot.qcow2"),
        ("vmdk", "boot.vmdk"),
        ("vhd", "boot.vhd"),
        ("vhdx", "boot.vhdx"),
        ("gce", "boot.gce.tar.gz"),
        // The archive fits; the kernel beside it does not.
        ("initramfs", "boot.vmlinuz"),
    ] {
        let done = spawn_build(&recipe, &store, &out, &[format])
            .wait_with_output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&done.stderr);
        assert_eq!(done.status.code(), Some(1), "{format}: {stderr}");
        let path = out.join(file);
        assert!(
            stderr.contains(&format!(
                "no space left on device while writing {}",
                path.display()
            )),
            "{format}: {stderr}"
        );
        assert_eq!(
            fs_err::read_dir(&out).unwrap().count(),
            0,
            "{format}: something is left in the output directory"
        );
    }
    verify_clean(&store);
}
