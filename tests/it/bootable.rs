//! Bootable outputs: `--format raw|qcow2|initramfs` checked by the peers' validators,
//! built twice for identical bytes, refused when `[disk] size` is too small, and booted
//! with `imgbuild run` under SeaBIOS, OVMF and `-kernel -initrd`.
//!
//! The image is the fixture of [`crate::boot_fixture`]: busybox and the Debian kernel.

use crate::boot_fixture::{recipe, MARKER};
use crate::common::{imgbuild, require_tool, run_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1024 * 1024;

/// Builds `recipe` with a fresh store into `dir/NAME` and returns the `--json` report.
pub(crate) fn build(recipe: &Path, dir: &Path, name: &str, formats: &[&str]) -> Value {
    let mut cmd = imgbuild();
    cmd.arg("build")
        .arg(recipe)
        .arg("--store")
        .arg(dir.join(format!("{name}-store")))
        .arg("-o")
        .arg(dir.join(name))
        .arg("--json");
    for f in formats {
        cmd.args(["--format", f]);
    }
    let out = run_ok(&mut cmd);
    serde_json::from_slice(&out.stdout).expect("build --json prints one JSON object")
}

pub(crate) fn artifact(report: &Value, format: &str) -> PathBuf {
    report["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .find(|a| a["format"] == format)
        .and_then(|a| a["path"].as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no {format} artifact in {report}"))
}

fn text(cmd: &mut Command) -> String {
    let out = run_ok(cmd);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (first byte, length) of partition `n` as sgdisk reports it.
pub(crate) fn partition(disk: &Path, n: u32) -> (u64, u64, String) {
    let info = text(
        Command::new("sgdisk")
            .arg("-i")
            .arg(n.to_string())
            .arg(disk),
    );
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {info}"))
    };
    let sector = |name: &str| -> u64 {
        field(name)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .expect("sector number")
    };
    let first = sector("First sector:");
    let last = sector("Last sector:");
    let guid = field("Partition unique GUID:").to_lowercase();
    (first * 512, (last + 1 - first) * 512, guid)
}

/// The disk's EFI system partition (partition 1) copied out to `to`, for mtools and fsck.fat.
pub(crate) fn esp_image(raw: &Path, to: &Path) -> PathBuf {
    let (esp_off, esp_len, _) = partition(raw, 1);
    run_ok(
        Command::new("dd")
            .arg(format!("if={}", raw.display()))
            .arg(format!("of={}", to.display()))
            .args(["bs=1M", "status=none"])
            .arg(format!("skip={}", esp_off / MIB))
            .arg(format!("count={}", esp_len / MIB)),
    );
    to.to_owned()
}

/// Runs every validator on a raw disk; `hard_link` is a path the root must hold as a
/// second link to a file.
pub(crate) fn validate_raw(raw: &Path, work: &Path, hard_link: Option<&str>) {
    require_tool("sgdisk", "gdisk");
    require_tool("fsck.fat", "dosfstools");
    require_tool("e2fsck", "e2fsprogs");
    require_tool("debugfs", "e2fsprogs");
    let v = text(Command::new("sgdisk").arg("-v").arg(raw));
    assert!(v.contains("No problems found"), "{v}");
    let esp = esp_image(raw, &work.join("esp.img"));
    run_ok(Command::new("fsck.fat").arg("-n").arg(&esp));
    let (root_off, _, root_guid) = partition(raw, 2);
    let spec = format!("{}?offset={root_off}", raw.display());
    run_ok(Command::new("e2fsck").arg("-fn").arg(&spec));
    // /etc/fstab replaced, hard link kept, the loader entry names the root's PARTUUID.
    let fstab = text(
        Command::new("debugfs")
            .args(["-R", "cat /etc/fstab"])
            .arg(&spec),
    );
    assert!(
        fstab.contains("UUID=") && fstab.contains(" / ext4 "),
        "{fstab}"
    );
    assert!(!fstab.contains("the image's own"), "{fstab}");
    if let Some(link) = hard_link {
        let stat = text(
            Command::new("debugfs")
                .args(["-R", &format!("stat {link}")])
                .arg(&spec),
        );
        assert!(stat.contains("Links: 2"), "{stat}");
    }
    // Every bootloader configuration on the ESP (systemd-boot's entry for UEFI,
    // syslinux.cfg for BIOS) names the root partition's PARTUUID.
    require_tool("mtype", "mtools");
    let mut configs = 0;
    for config in ["::loader/entries/imgbuild.conf", "::syslinux.cfg"] {
        let out = Command::new("mtype")
            .arg("-i")
            .arg(&esp)
            .arg(config)
            .output()
            .expect("run mtype");
        if !out.status.success() {
            continue;
        }
        configs += 1;
        let entry = String::from_utf8_lossy(&out.stdout);
        assert!(
            entry.contains(&format!("root=PARTUUID={root_guid}")),
            "{config}: {entry} vs {root_guid}"
        );
    }
    assert!(configs > 0, "no bootloader configuration on the ESP");
}

pub(crate) fn validate_qcow2(raw: &Path, qcow2: &Path, work: &Path) {
    require_tool("qemu-img", "qemu-utils");
    let c = text(Command::new("qemu-img").arg("check").arg(qcow2));
    assert!(c.contains("No errors were found"), "{c}");
    let c = text(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", "qcow2"])
            .arg(raw)
            .arg(qcow2),
    );
    assert!(c.contains("Images are identical"), "{c}");
    let peer = work.join("peer.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-O", "qcow2"])
            .arg(raw)
            .arg(&peer),
    );
    let ours = fs_err::metadata(qcow2).expect("qcow2").len();
    let theirs = fs_err::metadata(&peer).expect("peer").len();
    assert!(ours <= theirs, "qcow2 {ours} bytes > qemu-img's {theirs}");
}

fn same_bytes(a: &Path, b: &Path) {
    let (x, y) = (fs_err::read(a).expect("a"), fs_err::read(b).expect("b"));
    assert!(x == y, "{} and {} differ", a.display(), b.display());
}

#[test]
fn disks_and_initramfs_are_valid_and_reproducible() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = recipe(tmp.path(), "bootfix", "");
    let formats = ["raw", "qcow2", "initramfs"];
    let a = build(&recipe, tmp.path(), "a", &formats);
    let b = build(&recipe, tmp.path(), "b", &formats);
    let raw = artifact(&a, "raw");
    let qcow2 = artifact(&a, "qcow2");
    validate_raw(&raw, tmp.path(), Some("/bin/ash"));
    validate_qcow2(&raw, &qcow2, tmp.path());
    for f in formats {
        same_bytes(&artifact(&a, f), &artifact(&b, f));
    }
    let initramfs = artifact(&a, "initramfs");
    assert!(initramfs
        .to_string_lossy()
        .ends_with("bootfix.initramfs.cpio.zst"));
    let kernel = tmp.path().join("a/bootfix.vmlinuz");
    assert!(fs_err::metadata(&kernel).expect("vmlinuz").len() > MIB);
    same_bytes(&kernel, &tmp.path().join("b/bootfix.vmlinuz"));
}

#[test]
fn a_disk_smaller_than_its_content_fails_before_writing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = recipe(tmp.path(), "tiny", "[disk]\nsize = \"40MiB\"\n");
    let out_dir = tmp.path().join("out");
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(&out_dir)
        .args(["--format", "raw"])
        .output()
        .expect("run imgbuild");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&(40 * MIB).to_string()), "{stderr}");
    assert!(stderr.contains("needs at least"), "{stderr}");
    let left: Vec<_> = fs_err::read_dir(&out_dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_image_without_a_kernel_says_what_to_install() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = imgbuild()
        .arg("build")
        .arg(crate::common::repo().join("recipes/hello.toml"))
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .args(["--format", "initramfs"])
        .output()
        .expect("run imgbuild");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("linux-image-amd64"), "{stderr}");
}

/// `imgbuild run TARGET --expect MARKER` with extra arguments; returns the console.
///
/// Under TCG on a 2-core host a guest now and then stops taking timer interrupts during
/// boot (the console fills with RCU stall reports) and never reaches the marker; a boot that
/// times out is tried once more, and the retry is printed. Any other failure fails at once.
pub(crate) fn boot(target: &Path, marker: &str, extra: &[&str]) -> String {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let attempt = || {
        imgbuild()
            .arg("run")
            .arg(target)
            .args(["--timeout", "180", "--expect", marker])
            .args(extra)
            .output()
            .expect("run imgbuild run")
    };
    let mut out = attempt();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("did not appear") {
        eprintln!(
            "boot of {} {extra:?} timed out (console tail: {:?}); trying once more",
            target.display(),
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .rev()
                .take(3)
                .collect::<Vec<_>>()
        );
        out = attempt();
    }
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    let tail: String = console
        .chars()
        .rev()
        .take(3000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        out.status.success(),
        "did not boot: {}\nconsole tail:\n{tail}",
        String::from_utf8_lossy(&out.stderr)
    );
    console
}

/// Builds the fixture as qcow2 and raw with `[disk]` settings, validates both and
/// returns (raw, qcow2).
fn validated_disks(dir: &Path, name: &str, disk: &str) -> (PathBuf, PathBuf) {
    let r = build(&recipe(dir, name, disk), dir, "o", &["qcow2", "raw"]);
    let (raw, qcow2) = (artifact(&r, "raw"), artifact(&r, "qcow2"));
    validate_raw(&raw, dir, Some("/bin/ash"));
    validate_qcow2(&raw, &qcow2, dir);
    (raw, qcow2)
}

#[test]
fn qcow2_boots_under_seabios() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, qcow2) = validated_disks(tmp.path(), "bootfix", "");
    boot(&qcow2, MARKER, &[]);
}

#[test]
fn qcow2_boots_under_ovmf() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, qcow2) = validated_disks(tmp.path(), "bootfix", "");
    boot(&qcow2, MARKER, &["--uefi"]);
}

#[test]
fn uefi_only_raw_boots_with_ovmf_chosen_automatically() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (raw, _) = validated_disks(tmp.path(), "uefionly", "[disk]\nboot = \"uefi\"\n");
    boot(&raw, MARKER, &[]);
}

#[test]
fn bios_only_raw_boots_under_seabios() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (raw, _) = validated_disks(tmp.path(), "biosonly", "[disk]\nboot = \"bios\"\n");
    boot(&raw, MARKER, &[]);
}

#[test]
fn initramfs_boots_with_kernel_and_initrd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = recipe(tmp.path(), "bootfix", "");
    let out = tmp.path().join("out");
    let store = tmp.path().join("store");
    let console = boot(
        &recipe,
        MARKER,
        &[
            "--format",
            "initramfs",
            "-o",
            out.to_str().expect("utf-8 path"),
            "--store",
            store.to_str().expect("utf-8 path"),
        ],
    );
    assert!(console.contains(MARKER));
}
