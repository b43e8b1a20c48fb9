//! The shipped bootable recipes, built from Debian and booted: `busybox-initramfs` with
//! `-kernel -initrd`, `debian-vm` as qcow2 under SeaBIOS and OVMF (to systemd's
//! multi-user target, where a unit prints a marker) and as raw.

use crate::bootable::{artifact, boot, build, validate_qcow2, validate_raw};
use crate::common::repo;

#[test]
fn busybox_initramfs_recipe_boots_with_kernel_and_initrd() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let store = tmp.path().join("store");
    boot(
        &repo().join("recipes/busybox-initramfs.toml"),
        "IMGBUILD-INITRAMFS-OK",
        &[
            "--format",
            "initramfs",
            "-o",
            out.to_str().expect("utf-8 path"),
            "--store",
            store.to_str().expect("utf-8 path"),
        ],
    );
    assert!(out.join("busybox-initramfs.vmlinuz").is_file());
    assert!(out.join("busybox-initramfs.initramfs.cpio.zst").is_file());
}

/// One build (both formats), then three boots: cheaper than three builds.
#[test]
fn debian_vm_reaches_multi_user_under_seabios_and_ovmf_and_as_raw() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = repo().join("recipes/debian-vm.toml");
    let report = build(&recipe, tmp.path(), "out", &["qcow2", "raw"]);
    let qcow2 = artifact(&report, "qcow2");
    let raw = artifact(&report, "raw");
    validate_raw(&raw, tmp.path(), None);
    validate_qcow2(&raw, &qcow2, tmp.path());
    let marker = "IMGBUILD-MULTI-USER-OK";
    let bios = boot(&qcow2, marker, &[]);
    assert!(bios.contains("Reached target"), "systemd did not start");
    let uefi = boot(&qcow2, marker, &["--uefi"]);
    assert!(uefi.contains("Reached target"), "systemd did not start");
    boot(&raw, marker, &[]);
}
