//! arm64 disks and initramfs, booted: an arm64 disk (Debian's arm64 kernel, with
//! imgbuild's own arm64 busybox initramfs as its initrd, see [`disk`]) is a UEFI-only GPT
//! disk with systemd-boot for arm64 and the arm64 root partition type, and boots under
//! `imgbuild run` (`qemu-system-aarch64 -M virt`, AAVMF, TCG) through its ESP to
//! userspace; an arm64 busybox initramfs boots with Debian's arm64 kernel;
//! `boot = "bios"`/`"hybrid"` on an arm64 recipe is a located error.

use crate::bootable::{artifact, esp_image, validate_qcow2, validate_raw};
use crate::common::{build_json, imgbuild, repo, require_tool, run_ok, shared_store, tar_paths};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const MARKER: &str = "IMGBUILD-INITRAMFS-OK";
/// The Discoverable Partitions Specification's root partition type for arm64.
const ROOT_ARM64: &str = "B921B045-1DF0-41C3-AF44-4C6F280D3FAE";

/// `recipes/busybox-initramfs.toml` for arm64: busybox-static and Debian's arm64 kernel.
fn busybox_arm64() -> String {
    let text = fs_err::read_to_string(repo().join("recipes/busybox-initramfs.toml")).unwrap();
    let arm = text
        .replace(
            "name = \"busybox-initramfs\"",
            "name = \"busybox-initramfs-arm64\"\nplatform = \"linux/arm64\"",
        )
        .replace("linux-image-amd64", "linux-image-arm64");
    assert!(arm.contains("linux/arm64") && arm.contains("linux-image-arm64"));
    arm
}

/// An arm64 disk that boots to userspace without a Debian userland built under emulation
/// (`recipes/arm64/debian-vm.toml` takes most of an hour cold): the busybox recipe for
/// arm64 with, as `/boot/initrd.img-VERSION`, imgbuild's own arm64 busybox initramfs of
/// it. Firmware (AAVMF), `BOOTAA64.EFI`, the loader entry, the kernel and the initrd all
/// come from the disk. Built into `target/tmp/arm64-disk/NAME` (one directory per test,
/// replaced by the next run); every step comes from the shared store after the first
/// build. The output directory and the `--json` report.
fn disk(name: &str) -> (PathBuf, Value) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("arm64-disk")
        .join(name);
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::create_dir_all(&dir).unwrap();
    let busybox = dir.join("busybox-initramfs-arm64.toml");
    fs_err::write(&busybox, busybox_arm64()).unwrap();
    let initramfs = dir.join("initramfs");
    build_json(
        &busybox,
        shared_store(),
        &initramfs,
        &["-f", "initramfs", "-f", "tar"],
    );
    let version = tar_paths(&initramfs.join("busybox-initramfs-arm64.rootfs.tar"))
        .iter()
        .find_map(|p| {
            p.trim_start_matches("./")
                .strip_prefix("boot/vmlinuz-")
                .map(str::to_owned)
        })
        .expect("a kernel in /boot");
    fs_err::copy(
        initramfs.join("busybox-initramfs-arm64.initramfs.cpio.zst"),
        dir.join("initrd.img"),
    )
    .unwrap();
    let recipe = dir.join("busybox-disk-arm64.toml");
    let text = busybox_arm64().replace("busybox-initramfs-arm64", "busybox-disk-arm64")
        + &format!("\n[[step]]\ncopy = \"initrd.img\"\nto = \"/boot/initrd.img-{version}\"\n");
    fs_err::write(&recipe, text).unwrap();
    let out = dir.join("out");
    let start = Instant::now();
    let report = build_json(&recipe, shared_store(), &out, &["-f", "qcow2", "-f", "raw"]);
    eprintln!(
        "the arm64 disk built in {:.0}s",
        start.elapsed().as_secs_f64()
    );
    (out, report)
}

/// `imgbuild run TARGET --expect MARKER` with a generous timeout (an arm64 guest under
/// TCG on a busy 2-core host); the console, after checking that it succeeded.
fn run_to(target: &Path, marker: &str, extra: &[&str]) -> String {
    require_tool("qemu-system-aarch64", "qemu-system-arm");
    let start = Instant::now();
    let out = imgbuild()
        .arg("run")
        .arg(target)
        .args(["--timeout", "900", "--expect", marker])
        .args(extra)
        .output()
        .unwrap();
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
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
        "did not boot: {stderr}\nconsole tail:\n{tail}"
    );
    assert!(stderr.contains("booting arm64 with -accel tcg"), "{stderr}");
    eprintln!(
        "{} booted to {marker} in {:.0}s",
        target.display(),
        start.elapsed().as_secs_f64()
    );
    console
}

#[test]
fn the_arm64_disk_is_uefi_only_with_systemd_boot_for_arm64_and_the_arm64_root_type() {
    require_tool("qemu-img", "qemu-utils");
    let (out, report) = disk("layout");
    let (qcow2, raw) = (artifact(&report, "qcow2"), artifact(&report, "raw"));
    let work = tempfile::tempdir().unwrap();
    validate_raw(&raw, work.path(), None);
    validate_qcow2(&raw, &qcow2, work.path());
    assert!(out.join("busybox-disk-arm64.qcow2").is_file());

    let root = run_ok(Command::new("sgdisk").args(["-i", "2"]).arg(&raw));
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(
        root.contains(&format!("Partition GUID code: {ROOT_ARM64}")),
        "{root}"
    );
    // UEFI only: no MBR boot code, no syslinux.
    let mbr = fs_err::read(&raw).unwrap();
    assert!(mbr[..440].iter().all(|b| *b == 0), "the MBR has boot code");
    let esp = esp_image(&raw, &work.path().join("esp-files.img"));
    let listing = run_ok(Command::new("mdir").args(["-/", "-b", "-i"]).arg(&esp));
    let listing = String::from_utf8_lossy(&listing.stdout).to_uppercase();
    assert!(listing.contains("::/EFI/BOOT/BOOTAA64.EFI"), "{listing}");
    assert!(!listing.contains("BOOTX64.EFI"), "{listing}");
    assert!(!listing.contains("LDLINUX"), "{listing}");
    // systemd-boot for arm64 (PE machine 0xaa64) and the kernel as an uncompressed arm64
    // Image (its EFI stub systemd-boot starts; "ARM\x64" at 0x38).
    let efi = work.path().join("BOOTAA64.EFI");
    run_ok(
        Command::new("mcopy")
            .arg("-i")
            .arg(&esp)
            .arg("::EFI/BOOT/BOOTAA64.EFI")
            .arg(&efi),
    );
    let efi = fs_err::read(&efi).unwrap();
    let pe = u32::from_le_bytes(efi[0x3c..0x40].try_into().unwrap()) as usize;
    assert_eq!(&efi[pe..pe + 4], b"PE\0\0");
    assert_eq!(efi[pe + 4..pe + 6], [0x64, 0xaa], "not an arm64 PE binary");
    let kernel_name = listing
        .lines()
        .find(|l| l.contains("/IMGBUILD/VMLINUZ-"))
        .expect("a kernel on the ESP")
        .trim()
        .to_owned();
    let kernel = work.path().join("vmlinuz");
    run_ok(
        Command::new("mcopy")
            .arg("-i")
            .arg(&esp)
            .arg(&kernel_name)
            .arg(&kernel),
    );
    let kernel = fs_err::read(&kernel).unwrap();
    assert_eq!(&kernel[..2], b"MZ", "the ESP's kernel is not a PE image");
    assert_eq!(&kernel[0x38..0x3c], b"ARM\x64", "not an arm64 Image");
    let entry = run_ok(
        Command::new("mtype")
            .arg("-i")
            .arg(&esp)
            .arg("::loader/entries/imgbuild.conf"),
    );
    let entry = String::from_utf8_lossy(&entry.stdout);
    assert!(entry.contains("console=ttyAMA0"), "{entry}");

    // The lock pins the arm64 UEFI bootloader alone.
    let lock = fs_err::read_to_string(repo().join("recipes/arm64/debian-vm.lock")).unwrap();
    let boot: Vec<&str> = lock.split("[[boot_package]]").skip(1).collect();
    assert_eq!(boot.len(), 1, "{lock}");
    assert!(boot[0].contains("name = \"systemd-boot-efi\""), "{lock}");
    assert!(boot[0].contains("architecture = \"arm64\""), "{lock}");
    assert!(!lock.contains("syslinux"), "{lock}");
}

#[test]
fn the_arm64_disk_boots_under_aavmf_through_its_esp() {
    let (_, report) = disk("boot");
    // The qcow2 file: its root partition type says arm64, so `run` picks
    // qemu-system-aarch64 and AAVMF without --arch.
    let console = run_to(&artifact(&report, "qcow2"), MARKER, &[]);
    assert!(
        console.contains("Linux version") && console.contains("-arm64"),
        "not the arm64 kernel"
    );
    // systemd-boot's entry put the disk's root and the console on the command line.
    assert!(
        console.contains("root=PARTUUID=") && console.contains("console=ttyAMA0"),
        "not booted through the ESP's loader entry"
    );
}

#[test]
fn a_plain_arm64_disk_is_recognised_and_a_missing_qemu_names_its_package() {
    let (_, report) = disk("plain");
    let qcow2 = artifact(&report, "qcow2");
    let empty = tempfile::tempdir().unwrap();
    // No QEMU on PATH: the disk's root partition type says arm64, so the missing binary
    // is qemu-system-aarch64, from qemu-system-arm.
    let out = imgbuild()
        .arg("run")
        .arg(&qcow2)
        .args(["--timeout", "5"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("qemu-system-aarch64") && stderr.contains("`qemu-system-arm`"),
        "{stderr}"
    );
    // --arch overrides the detection.
    let out = imgbuild()
        .arg("run")
        .arg(&qcow2)
        .args(["--arch", "amd64", "--timeout", "5"])
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("qemu-system-x86_64") && stderr.contains("`qemu-system-x86`"),
        "{stderr}"
    );
}

#[test]
fn an_arm64_busybox_initramfs_boots_with_its_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let arm = busybox_arm64();
    let recipe = tmp.path().join("busybox-initramfs-arm64.toml");
    fs_err::write(&recipe, arm).unwrap();
    let out = tmp.path().join("out");
    let console = run_to(
        &recipe,
        "IMGBUILD-INITRAMFS-OK",
        &[
            "--format",
            "initramfs",
            "--store",
            shared_store().to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(console.contains("-arm64"), "not the arm64 kernel");
    assert!(out.join("busybox-initramfs-arm64.vmlinuz").is_file());
}

#[test]
fn bios_or_hybrid_boot_on_arm64_is_a_located_error() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in ["bios", "hybrid"] {
        let recipe = tmp.path().join(format!("arm-{mode}.toml"));
        fs_err::write(
            &recipe,
            format!(
                "[image]\nname = \"arm\"\nplatform = \"linux/arm64\"\n\n[from]\nscratch = true\n\n\
                 [disk]\nsize = \"1GiB\"\nboot = \"{mode}\"\n"
            ),
        )
        .unwrap();
        let out = imgbuild()
            .arg("build")
            .arg(&recipe)
            .args(["-f", "qcow2", "--store"])
            .arg(tmp.path().join("store"))
            .arg("-o")
            .arg(tmp.path().join("out"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        for needle in [
            format!("arm-{mode}.toml:10:8"),
            "arm64 disks boot under UEFI only".to_owned(),
            "help: set boot = \"uefi\"".to_owned(),
        ] {
            assert!(stderr.contains(&needle), "{needle:?} not in:\n{stderr}");
        }
        assert!(!tmp.path().join("out").exists());
    }
}
