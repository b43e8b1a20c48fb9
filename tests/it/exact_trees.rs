//! One image, every export: the `tar` export, the OCI image as umoci unpacks it, the `raw`
//! disk's ext4 (read back with debugfs, no mounting), the `initramfs` (extracted with cpio)
//! and what a `run` step sees in the sandbox hold the same tree: path, type, mode,
//! uid:gid, and size (files) or target (symlinks).
//!
//! Built: the shipped `hello.toml` and `debian-minimal.toml`, and the fixture
//! `tests/fixtures/trees/usrmerged.toml`, which writes, copies, mkdirs, symlinks and
//! removes below `/bin`, `/sbin` and `/lib` of a usrmerged Debian. Each is built from a
//! copy with a few lines appended: a stand-in kernel at `/boot/vmlinuz-0.0.0-trees` (disks
//! and initramfs need one), `[initramfs]` gzip (and an `init` where the image has none),
//! `[disk] boot = "uefi"`, and on Debian a last `run` step that prints the tree with `find`
//! (a nonce keeps it from being cached, so it runs and prints every time; it writes
//! nothing, so the image is the same tree).
//!
//! What each format cannot carry, left out of its comparison (and nothing else):
//! - ext4: `lost+found` (mke2fs's own) and `etc/fstab` (the disk writes its own);
//! - initramfs: `init` (the link to the init the exporter adds), and the kernel and initrd
//!   in `boot/` (written beside the archive, not into it);
//! - the sandbox: `dev`, `proc`, `sys`, `tmp` and `run` with everything below them (the
//!   sandbox mounts its own over them).
//!
//! Directory sizes are never compared (they are the filesystem's), nor times or xattrs.

use crate::bootable::artifact;
use crate::common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

type Tree = BTreeSet<String>;

/// One normalised line: `TYPE MODE UID:GID SIZE PATH[ -> TARGET]`, the size `-` for
/// everything but regular files.
fn line(kind: char, mode: u32, owner: &str, size: &str, path: &str, target: &str) -> String {
    let size = if kind == 'f' { size } else { "-" };
    let mut out = format!("{kind} {mode:o} {owner} {size} {path}");
    if kind == 'l' {
        out.push_str(" -> ");
        out.push_str(target);
    }
    out
}

/// The `find -printf` format every listing is made with, then [`parse_find`].
const FIND_FORMAT: &str = "%y %m %U:%G %s %P -> %l\\n";

fn parse_find(text: &str) -> Tree {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.splitn(5, ' ');
            let (kind, mode, owner, size, rest) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts
                    .next()
                    .unwrap_or_else(|| panic!("bad find line {l:?}")),
            );
            let (path, target) = rest.rsplit_once(" -> ").expect("` -> ` in the line");
            let mode = u32::from_str_radix(mode, 8).expect("octal mode");
            line(
                kind.chars().next().unwrap(),
                mode,
                owner,
                size,
                path,
                target,
            )
        })
        .collect()
}

/// The tree below `root` on the host.
fn list_dir(root: &Path) -> Tree {
    let out = run_ok(
        Command::new("find")
            .arg(".")
            .args([
                "-mindepth",
                "1",
                "-printf",
                &FIND_FORMAT.replace("\\n", "\n"),
            ])
            .current_dir(root),
    );
    parse_find(&String::from_utf8_lossy(&out.stdout))
}

/// The ext4 root filesystem of a raw disk, read with debugfs alone: `rdump` for the
/// directories and symlink targets, `ls -p` of every directory for types, modes and owners
/// (rdump drops setuid bits, devices and fifos).
fn list_ext4(raw: &Path, work: &Path) -> Tree {
    let (offset, _, _) = crate::bootable::partition(raw, 2);
    let spec = format!("{}?offset={offset}", raw.display());
    let dump = work.join("ext4-dump");
    fs_err::create_dir_all(&dump).unwrap();
    run_ok(
        Command::new("debugfs")
            .args(["-R", &format!("rdump / {}", dump.display())])
            .arg(&spec),
    );
    let found = run_ok(Command::new("find").arg(&dump).args([
        "-mindepth",
        "1",
        "-type",
        "d",
        "-printf",
        "%P\n",
    ]));
    let mut dirs = vec![String::new()];
    dirs.extend(
        String::from_utf8_lossy(&found.stdout)
            .lines()
            .map(str::to_owned),
    );
    let commands: String = dirs.iter().map(|d| format!("ls -p \"/{d}\"\n")).collect();
    let cmd_file = work.join("debugfs-commands");
    fs_err::write(&cmd_file, commands).unwrap();
    let out = run_ok(Command::new("debugfs").arg("-f").arg(&cmd_file).arg(&spec));
    let mut tree = Tree::new();
    let mut dir = String::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(d) = l.strip_prefix("debugfs: ls -p ") {
            dir = d.trim_matches('"').trim_matches('/').to_owned();
            continue;
        }
        // `/INODE/MODE/UID/GID/NAME/SIZE/`
        let fields: Vec<&str> = l.split('/').collect();
        // Inode 0: a deleted entry's leftover in the directory block.
        if fields.len() != 8 || fields[1] == "0" || fields[5] == "." || fields[5] == ".." {
            continue;
        }
        let mode = u32::from_str_radix(fields[2], 8).expect("octal mode");
        let kind = match mode & 0o170_000 {
            0o040_000 => 'd',
            0o100_000 => 'f',
            0o120_000 => 'l',
            0o020_000 => 'c',
            0o060_000 => 'b',
            0o010_000 => 'p',
            other => panic!("unknown file type {other:o} in {l}"),
        };
        let path = if dir.is_empty() {
            fields[5].to_owned()
        } else {
            format!("{dir}/{}", fields[5])
        };
        let target = if kind == 'l' {
            fs_err::read_link(dump.join(&path))
                .unwrap()
                .to_string_lossy()
                .into_owned()
        } else {
            String::new()
        };
        tree.insert(line(
            kind,
            mode & 0o7777,
            &format!("{}:{}", fields[3], fields[4]),
            fields[6],
            &path,
            &target,
        ));
    }
    tree
}

fn list_tar(tar: &Path, work: &Path) -> Tree {
    let dir = work.join("tar");
    fs_err::create_dir_all(&dir).unwrap();
    run_ok(
        Command::new("tar")
            .args(["-xpf"])
            .arg(tar)
            .arg("-C")
            .arg(&dir)
            .arg("--numeric-owner"),
    );
    list_dir(&dir)
}

fn list_oci(layout: &Path, tag: &str, work: &Path) -> Tree {
    let bundle = work.join("bundle");
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle),
    );
    list_dir(&bundle.join("rootfs"))
}

fn list_initramfs(archive: &Path, work: &Path) -> Tree {
    let dir = work.join("initramfs");
    fs_err::create_dir_all(&dir).unwrap();
    let cpio = fs_err::File::open(archive).unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("gzip -dc | cpio -idm --quiet --no-absolute-filenames")
        .current_dir(&dir)
        .stdin(cpio.into_parts().0)
        .output()
        .unwrap();
    assert!(
        child.status.success(),
        "cpio: {}",
        String::from_utf8_lossy(&std::mem::take(&mut child.stderr))
    );
    list_dir(&dir)
}

fn without(tree: &Tree, leave_out: impl Fn(&str) -> bool) -> Tree {
    tree.iter()
        .filter(|l| !leave_out(path_of(l)))
        .cloned()
        .collect()
}

/// The path field of a normalised line.
fn path_of(line: &str) -> &str {
    let rest = line.splitn(5, ' ').nth(4).unwrap();
    rest.split(" -> ").next().unwrap()
}

fn at_or_below(path: &str, dirs: &[&str]) -> bool {
    dirs.iter().any(|d| {
        path == *d
            || path
                .strip_prefix(d)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Fails with the lines only one side has.
fn assert_same(what: &str, reference: &Tree, other: &Tree) {
    let missing: Vec<&String> = reference.difference(other).take(20).collect();
    let extra: Vec<&String> = other.difference(reference).take(20).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what} differs from the tar export ({} vs {} entries)\nonly in tar:\n{}\nonly in {what}:\n{}",
        reference.len(),
        other.len(),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        extra.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

/// Builds `recipe` (a copy, with the lines above appended) in every format and compares
/// the trees; returns the tar export's tree.
fn compare(recipe: &Path, init: Option<&str>, sandbox: bool, work: &Path) -> Tree {
    let mut text = fs_err::read_to_string(recipe).unwrap();
    text.push_str(
        "\n[[step]]\nwrite = \"/boot/vmlinuz-0.0.0-trees\"\ncontent = \"a stand-in kernel\"\n",
    );
    if sandbox {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        text.push_str(&format!(
            "\n[[step]]\nrun = '''find / -xdev -mindepth 1 -printf 'TREE {FIND_FORMAT}' # {nonce}'''\n"
        ));
    }
    text.push_str("\n[initramfs]\ncompression = \"gzip\"\n");
    if let Some(init) = init {
        text.push_str(&format!("init = \"{init}\"\n"));
    }
    text.push_str("\n[disk]\nboot = \"uefi\"\n");
    fs_err::write(recipe, text).unwrap();
    let out = work.join("out");
    // The copied lock matches, so no index is read; without `--locked` a lock that does not
    // pin everything a disk needs is completed in the copy rather than refused.
    let output = run_ok(
        imgbuild()
            .arg("build")
            .arg(recipe)
            .arg("--store")
            .arg(shared_store())
            .arg("-o")
            .arg(&out)
            .args(["--json", "--compression", "gzip"])
            .args(["-f", "oci", "-f", "tar", "-f", "raw", "-f", "initramfs"]),
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let tag = report["tags"][0].as_str().unwrap();

    assert_history_per_layer(&artifact(&report, "oci"));
    let tar = list_tar(&artifact(&report, "tar"), work);
    let oci = list_oci(&artifact(&report, "oci"), tag, work);
    assert_same("the OCI image unpacked by umoci", &tar, &oci);
    let ext4 = list_ext4(&artifact(&report, "raw"), work);
    assert_same(
        "the raw disk's ext4",
        &without(&tar, |p| p == "etc/fstab"),
        &without(&ext4, |p| {
            p == "lost+found" || at_or_below(p, &["lost+found", "etc/fstab"])
        }),
    );
    let initramfs = list_initramfs(&artifact(&report, "initramfs"), work);
    let kernel_files =
        |p: &str| p.starts_with("boot/vmlinuz-") || p.starts_with("boot/initrd.img-");
    assert_same(
        "the initramfs",
        &without(&tar, kernel_files),
        &without(&initramfs, |p| p == "init"),
    );
    if sandbox {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let printed: String = stderr
            .lines()
            .filter_map(|l| l.split_once("] TREE ").map(|(_, rest)| format!("{rest}\n")))
            .collect();
        assert!(
            !printed.is_empty(),
            "the run step printed no tree:\n{stderr}"
        );
        let mounted = ["dev", "proc", "sys", "tmp", "run"];
        assert_same(
            "the sandbox's view",
            &without(&tar, |p| at_or_below(p, &mounted)),
            &without(&parse_find(&printed), |p| at_or_below(p, &mounted)),
        );
    }
    tar
}

/// One history entry per layer, the base's included, so `inspect` names each layer's step.
fn assert_history_per_layer(layout: &Path) {
    let json = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&fs_err::read(layout.join("blobs/sha256").join(hex)).unwrap())
            .unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = json(index["manifests"][0]["digest"].as_str().unwrap());
    let config = json(manifest["config"]["digest"].as_str().unwrap());
    let history: Vec<&serde_json::Value> = config["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["empty_layer"] != true)
        .collect();
    assert_eq!(
        history.len(),
        manifest["layers"].as_array().unwrap().len(),
        "history {history:?}"
    );
}

fn has(tree: &Tree, wanted: &str) -> bool {
    tree.contains(wanted)
}

#[test]
fn every_export_and_the_sandbox_see_one_tree() {
    require_tool("umoci", "umoci");
    require_tool("debugfs", "e2fsprogs");
    require_tool("sgdisk", "gdisk");
    require_tool("cpio", "cpio");
    let tmp = tempfile::tempdir().unwrap();
    let recipes = tmp.path().join("recipes");
    copy_tree(&repo().join("recipes"), &recipes);
    let fixtures = tmp.path().join("trees");
    copy_tree(&repo().join("tests/fixtures/trees"), &fixtures);
    // The fixture's base is debian-minimal's, and it has no packages steps: same lock.
    fs_err::copy(
        repo().join("recipes/debian-minimal.lock"),
        fixtures.join("usrmerged.lock"),
    )
    .unwrap();

    let cases: [(PathBuf, Option<&str>, bool); 3] = [
        (recipes.join("hello.toml"), Some("/usr/bin/hello"), false),
        (recipes.join("debian-minimal.toml"), Some("/bin/bash"), true),
        (fixtures.join("usrmerged.toml"), Some("/bin/sh"), true),
    ];
    let mut trees = BTreeMap::new();
    for (i, (recipe, init, sandbox)) in cases.iter().enumerate() {
        let work = tmp.path().join(format!("work-{i}"));
        fs_err::create_dir_all(&work).unwrap();
        let tree = compare(recipe, *init, *sandbox, &work);
        trees.insert(i, tree);
    }

    // The usrmerged writes landed below /usr and the links stayed.
    let usrmerged = &trees[&2];
    for wanted in [
        "l 777 0:0 - bin -> usr/bin",
        "l 777 0:0 - sbin -> usr/sbin",
        "l 777 0:0 - lib -> usr/lib",
        "f 755 0:0 34 usr/bin/hello-tree",
        "f 755 0:0 20 usr/sbin/tree-tool",
        "f 755 0:0 20 usr/bin/tool.sh",
        "f 644 0:0 9 usr/lib/tree-plugins/sub/b.conf",
        "d 700 1000:1000 - usr/lib/tree-dir/sub",
        "l 777 0:0 - usr/bin/tree-link -> hello-tree",
    ] {
        assert!(
            has(usrmerged, wanted),
            "no `{wanted}` in the usrmerged image"
        );
    }
    assert!(
        !usrmerged.iter().any(|l| path_of(l) == "usr/bin/rbash"),
        "/bin/rbash was not removed"
    );
}

#[test]
fn writing_below_a_file_is_a_located_error() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("below-file.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"x\"\n\n[from]\nscratch = true\n\n[[step]]\nwrite = \"/etc/motd\"\ncontent = \"hi\"\n\n[[step]]\nwrite = \"/etc/motd/x\"\ncontent = \"no\"\n",
    )
    .unwrap();
    let (code, stderr) = build_failure(&recipe, &tmp.path().join("store"), &tmp.path().join("out"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("step 2 writes /etc/motd/x, which cannot be resolved inside the image: /etc/motd is not a directory"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}:12:", recipe.display())),
        "{stderr}"
    );
    assert!(stderr.contains("help:"), "{stderr}");
}
