//! Outputs the store has already answered: a rebuild into the same directory leaves
//! unchanged outputs alone and writes modified ones again; a build into a new directory
//! copies a recorded, unmodified output instead of exporting again.

use crate::common::*;
use crate::outputs::{bootable_recipe, spawn_build, tree_hashes};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

const FORMATS: [&str; 5] = ["oci", "tar", "raw", "qcow2", "initramfs"];

fn build(recipe: &Path, store: &Path, out: &Path) -> Output {
    let done = spawn_build(recipe, store, out, &FORMATS)
        .wait_with_output()
        .unwrap();
    assert!(done.status.success(), "{}", stderr(&done));
    done
}

/// Inode and ctime of every file under `out`, by path.
fn identities(out: &Path) -> Vec<(String, u64, i64, i64)> {
    let mut all = Vec::new();
    let mut stack = vec![out.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in fs_err::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs_err::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            let rel = p.strip_prefix(out).unwrap().display().to_string();
            all.push((rel, m.ino(), m.ctime(), m.ctime_nsec()));
        }
    }
    all.sort();
    all
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Overwrites the byte at `at` of `path` with another value (same size).
fn flip_byte(path: &Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}

#[test]
fn a_rebuild_leaves_unchanged_outputs_alone_and_writes_modified_ones_again() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = bootable_recipe(&tmp.path().join("src"), 4);
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    build(&recipe, &store, &out);
    let hashes = tree_hashes(&out);
    let written = identities(&out);

    let again = build(&recipe, &store, &out);
    let text = stderr(&again);
    for file in ["boot.oci", "boot.rootfs.tar", "boot.raw", "boot.qcow2"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&out.join(file).display().to_string())
                    && l.ends_with(") unchanged, reused")),
            "{file}: {text}"
        );
    }
    assert!(!text.contains("wrote "), "{text}");
    assert_eq!(
        identities(&out),
        written,
        "a no-op rebuild touched an output"
    );

    // Modified in place (same sizes, same mtimes), or removed: each is written again,
    // and only those.
    let blob = fs_err::read_dir(out.join("boot.oci/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs_err::metadata(p).unwrap().len())
        .unwrap();
    let mtime = fs_err::metadata(&blob).unwrap().modified().unwrap();
    flip_byte(&blob, 100);
    fs_err::File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    flip_byte(&out.join("boot.raw"), 1 << 20);
    fs_err::remove_file(out.join("boot.vmlinuz")).unwrap();
    let repaired = stderr(&build(&recipe, &store, &out));
    for (file, format) in [
        ("boot.oci", "oci"),
        ("boot.raw", "raw"),
        ("boot.initramfs.cpio.zst", "initramfs"),
    ] {
        assert!(
            repaired.contains(&format!("wrote {} ({format}, ", out.join(file).display())),
            "{file}: {repaired}"
        );
    }
    for file in ["boot.rootfs.tar", "boot.qcow2"] {
        assert!(
            repaired.contains(&format!("{} (", out.join(file).display())),
            "{file}: {repaired}"
        );
    }
    assert!(
        !repaired.contains(&format!("wrote {}", out.join("boot.qcow2").display())),
        "{repaired}"
    );
    assert_eq!(
        tree_hashes(&out),
        hashes,
        "the outputs written again differ"
    );
}

#[test]
fn a_new_output_directory_gets_copies_of_unmodified_outputs_never_of_modified_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = bootable_recipe(&tmp.path().join("src"), 4);
    let store = tmp.path().join("store");
    let (first, second, third) = (
        tmp.path().join("first"),
        tmp.path().join("second"),
        tmp.path().join("third"),
    );
    build(&recipe, &store, &first);
    let copied = stderr(&build(&recipe, &store, &second));
    for (file, format) in [
        ("boot.oci", "oci"),
        ("boot.rootfs.tar", "tar"),
        ("boot.raw", "raw"),
        ("boot.qcow2", "qcow2"),
        ("boot.initramfs.cpio.zst", "initramfs"),
    ] {
        let (wrote, from) = (
            format!("wrote {} ({format}, ", second.join(file).display()),
            format!(") as a copy of {}", first.join(file).display()),
        );
        assert!(
            copied
                .lines()
                .any(|l| l.starts_with(&wrote) && l.ends_with(&from)),
            "{wrote}...{from}: {copied}"
        );
    }
    assert_eq!(tree_hashes(&second), tree_hashes(&first));
    let raw = fs_err::metadata(second.join("boot.raw")).unwrap();
    assert!(
        raw.blocks() * 512 < raw.len() / 2,
        "the copied raw disk lost its holes: {} of {} bytes allocated",
        raw.blocks() * 512,
        raw.len()
    );
    for (dir, file) in [(&second, "boot.raw"), (&second, "boot.qcow2")] {
        require_tool("qemu-img", "qemu-utils");
        let check = run_ok(
            std::process::Command::new("qemu-img")
                .args(["compare", "-q"])
                .arg(first.join(file))
                .arg(dir.join(file)),
        );
        assert!(check.status.success());
    }

    // The first qcow2 modified: the third directory's copy comes from the second.
    flip_byte(&first.join("boot.qcow2"), 0x30000);
    let third_run = stderr(&build(&recipe, &store, &third));
    assert!(
        third_run.contains(&format!(
            "as a copy of {}",
            second.join("boot.qcow2").display()
        )),
        "{third_run}"
    );
    assert!(
        !third_run.contains(&first.join("boot.qcow2").display().to_string()),
        "{third_run}"
    );
    assert_eq!(tree_hashes(&third), tree_hashes(&second));
}

#[test]
fn outputs_named_relative_to_the_working_directory_are_found_again() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = bootable_recipe(&tmp.path().join("src"), 1);
    let build_in = |out: &str| {
        let done = run_ok(
            imgbuild()
                .current_dir(tmp.path())
                .arg("build")
                .arg(&recipe)
                .args(["--store", "store", "-o", out, "-f", "oci"]),
        );
        stderr(&done)
    };
    build_in("first");
    let again = build_in("first");
    assert!(
        again.contains("first/boot.oci (oci) unchanged, reused"),
        "{again}"
    );
    let copied = build_in("second");
    let from = tmp.path().join("first/boot.oci");
    assert!(
        copied.contains(&format!("as a copy of {}", from.display())),
        "{copied}"
    );
}
