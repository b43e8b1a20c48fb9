//! `[disk] grow`: `recipes/debian-vm.toml` (a copy, renamed, with a unit that prints the
//! root filesystem's size to the console) as a qcow2 whose copy is made 2 GiB larger and
//! booted: the root filesystem grew by about 2 GiB. The disk itself stays valid
//! (`sgdisk -v`, `e2fsck -fn`, `qemu-img check`) and reproducible, and `grow = false` gives
//! the layout without the grow machinery.

use crate::bootable::{artifact, boot, esp_image, partition, validate_qcow2, validate_raw};
use crate::common::{build_json, copy_tree, repo, require_tool, run_ok, shared_store};
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
const DONE: &str = "IMGBUILD-ROOT-SIZE-DONE";
const SIZE: &str = "IMGBUILD-ROOT-BYTES=";

/// A unit that prints `df -B1 /`'s size once `systemd-growfs@-` is done, then [`DONE`].
const SIZE_UNIT: &str = r#"
[[step]]
write = "/etc/systemd/system/imgbuild-root-size.service"
content = """[Unit]
Description=Print the root filesystem's size once it has grown
After=systemd-growfs@-.service multi-user.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "IMGBUILD-ROOT-BYTES=$$(df -B1 --output=size / | tail -n 1)" > /dev/kmsg; echo IMGBUILD-ROOT-SIZE-DONE > /dev/kmsg'

[Install]
WantedBy=multi-user.target
"""

[[step]]
symlink = "/etc/systemd/system/multi-user.target.wants/imgbuild-root-size.service"
target = "/etc/systemd/system/imgbuild-root-size.service"
"#;

/// Copies `recipes/` into `dir` and returns its `debian-vm.toml`, renamed to
/// `debian-vm-grow` (the shared store's `debian-vm` tag stays the shipped recipe's), with
/// `disk` appended to its `[disk]` section (the file's last table) and [`SIZE_UNIT`].
fn recipe(dir: &Path, disk: &str) -> PathBuf {
    let recipes = dir.join("recipes");
    copy_tree(&repo().join("recipes"), &recipes);
    let path = recipes.join("debian-vm.toml");
    let text = fs_err::read_to_string(&path).unwrap();
    let renamed = text.replace("name = \"debian-vm\"", "name = \"debian-vm-grow\"");
    assert_ne!(
        renamed, text,
        "debian-vm.toml no longer names its image debian-vm"
    );
    assert!(
        renamed.trim_end().ends_with("cmdline = \"console=ttyS0\""),
        "debian-vm.toml no longer ends with its [disk] section"
    );
    fs_err::write(&path, format!("{renamed}{disk}{SIZE_UNIT}")).unwrap();
    path
}

fn build(recipe: &Path, out: &Path, formats: &[&str]) -> serde_json::Value {
    let mut extra = Vec::new();
    for f in formats {
        extra.extend(["--format", f]);
    }
    build_json(recipe, shared_store(), out, &extra)
}

fn output(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run_ok(cmd).stdout).into_owned()
}

/// The root partition's (partition 2) attribute bits as `sgdisk -A 2:show` lists them.
fn root_attributes(raw: &Path) -> String {
    output(Command::new("sgdisk").args(["-A", "2:show"]).arg(raw))
}

/// The disk's `/etc/fstab`, its ESP's file names and the ESP's repart definition (if any).
fn fstab_and_esp(raw: &Path, work: &Path) -> (String, String, Option<String>) {
    require_tool("debugfs", "e2fsprogs");
    require_tool("mdir", "mtools");
    let (root_off, ..) = partition(raw, 2);
    let fstab = output(
        Command::new("debugfs")
            .args(["-R", "cat /etc/fstab"])
            .arg(format!("{}?offset={root_off}", raw.display())),
    );
    let esp = esp_image(raw, &work.join("grow-esp.img"));
    let listing = output(Command::new("mdir").args(["-b", "-i"]).arg(&esp).arg("::"));
    let conf = Command::new("mtype")
        .arg("-i")
        .arg(&esp)
        .arg("::imgbuild-grow-root.conf")
        .output()
        .expect("run mtype");
    let conf = conf
        .status
        .success()
        .then(|| String::from_utf8_lossy(&conf.stdout).into_owned());
    (fstab, listing, conf)
}

/// Built twice (the same qcow2 bytes), validated, then a copy 2 GiB larger is booted once:
/// the root filesystem the guest reports is about 2 GiB larger than the whole root
/// partition was.
#[test]
fn debian_vm_root_grows_into_a_larger_disk_on_first_boot() {
    require_tool("qemu-img", "qemu-utils");
    require_tool("sgdisk", "gdisk");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipe(tmp.path(), "");
    let a = build(&recipe, &tmp.path().join("a"), &["qcow2", "raw"]);
    let b = build(&recipe, &tmp.path().join("b"), &["qcow2"]);
    let (raw, qcow2) = (artifact(&a, "raw"), artifact(&a, "qcow2"));
    validate_raw(&raw, tmp.path(), None);
    validate_qcow2(&raw, &qcow2, tmp.path());
    assert!(
        fs_err::read(&qcow2).unwrap() == fs_err::read(artifact(&b, "qcow2")).unwrap(),
        "two builds gave different qcow2 bytes"
    );

    // The grow machinery is on the disk, outside the root filesystem's tree.
    let attrs = root_attributes(&raw);
    assert!(attrs.contains("2:59:"), "no grow-file-system flag: {attrs}");
    let (fstab, _, conf) = fstab_and_esp(&raw, tmp.path());
    assert!(fstab.contains(",x-systemd.growfs "), "{fstab}");
    assert!(fstab.contains(" /run/repart.d vfat "), "{fstab}");
    let conf = conf.expect("no imgbuild-grow-root.conf on the ESP");
    assert!(
        conf.contains("Type=4f68bce3-e8cd-4db1-96e7-fbcaf984b709"),
        "{conf}"
    );

    let (_, root_len, _) = partition(&raw, 2);
    let copy = tmp.path().join("larger.qcow2");
    fs_err::copy(&qcow2, &copy).unwrap();
    run_ok(Command::new("qemu-img").arg("resize").arg(&copy).arg("+2G"));
    let console = boot(&copy, DONE, &[]);
    // The ESP mount, systemd-repart and systemd-growfs@- ran, and nothing failed.
    for unit in [
        "/run/repart.d",
        "Repartition Root Disk",
        "Grow File System on /",
    ] {
        assert!(console.contains(unit), "{unit} did not run:\n{console}");
    }
    assert!(!console.contains("FAILED"), "a unit failed:\n{console}");
    let reported: u64 = console
        .lines()
        .find_map(|l| l.split(SIZE).nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {SIZE}N on the console:\n{console}"));
    eprintln!("root partition: {root_len} bytes before; root filesystem: {reported} after");
    // ext4's own metadata for 2 GiB more (inode tables, group descriptors) is a few
    // dozen MiB; before growing, `df` reports less than the partition's size.
    assert!(
        reported > root_len + 2 * GIB - 96 * MIB && reported <= root_len + 2 * GIB,
        "root filesystem is {reported} bytes; the root partition was {root_len} bytes before \
         the disk grew by 2 GiB"
    );
}

/// `grow = false`: the same partitions, no grow flag, the fstab of before, nothing added to
/// the ESP; everything else about the disk is as with grow on.
#[test]
fn grow_false_leaves_the_disk_without_the_grow_machinery() {
    require_tool("sgdisk", "gdisk");
    let tmp = tempfile::tempdir().unwrap();
    let on = tmp.path().join("on");
    let off = tmp.path().join("off");
    fs_err::create_dir_all(&on).unwrap();
    fs_err::create_dir_all(&off).unwrap();
    let grown = artifact(&build(&recipe(&on, ""), &on.join("out"), &["raw"]), "raw");
    let plain = artifact(
        &build(&recipe(&off, "grow = false\n"), &off.join("out"), &["raw"]),
        "raw",
    );
    validate_raw(&plain, tmp.path(), None);
    for n in [1, 2] {
        let (a, b) = (partition(&grown, n), partition(&plain, n));
        assert_eq!((a.0, a.1), (b.0, b.1), "partition {n} moved");
    }
    assert_eq!(
        fs_err::metadata(&grown).unwrap().len(),
        fs_err::metadata(&plain).unwrap().len()
    );
    let attrs = root_attributes(&plain);
    assert!(!attrs.contains("2:59:"), "{attrs}");
    let (fstab, listing, conf) = fstab_and_esp(&plain, tmp.path());
    assert!(!fstab.contains("x-systemd"), "{fstab}");
    assert!(!fstab.contains("repart"), "{fstab}");
    let entries: Vec<_> = fstab
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(entries.len(), 1, "{fstab}");
    assert!(
        entries[0].ends_with(" / ext4 errors=remount-ro 0 1"),
        "{fstab}"
    );
    assert!(
        conf.is_none(),
        "grow = false put a repart definition on the ESP"
    );
    assert!(
        !listing.to_lowercase().contains("imgbuild-grow"),
        "{listing}"
    );
}

/// `grow = true` on an image without systemd (the busybox fixture): a warning, and the disk
/// has none of the grow machinery.
#[test]
fn grow_on_an_image_without_systemd_warns_and_changes_nothing() {
    require_tool("sgdisk", "gdisk");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = crate::boot_fixture::recipe(tmp.path(), "nogrow", "[disk]\ngrow = true\n");
    let out = run_ok(
        crate::common::imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(tmp.path().join("store"))
            .arg("-o")
            .arg(tmp.path().join("out"))
            .args(["--json", "--format", "raw"]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("grow = true") && stderr.contains("systemd-repart"),
        "no warning: {stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let raw = artifact(&report, "raw");
    let attrs = root_attributes(&raw);
    assert!(!attrs.contains("2:59:"), "{attrs}");
    let (fstab, _, conf) = fstab_and_esp(&raw, tmp.path());
    assert!(!fstab.contains("x-systemd"), "{fstab}");
    assert!(
        conf.is_none(),
        "a repart definition on an image without systemd"
    );
}
