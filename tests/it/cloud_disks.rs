//! The cloud disk formats (`--format vmdk|vhd|vhdx|gce`) and a compressed qcow2 (`[disk]
//! compress = true`) of the boot fixture: each read by `qemu-img` (or extracted by GNU tar)
//! is byte for byte the raw disk, which boots (see [`crate::bootable`]); two builds from
//! two stores, with and without `raw` beside them, give the same bytes.

use crate::boot_fixture::recipe;
use crate::bootable::{artifact, build};
use crate::common::{imgbuild, require_tool, run_ok};
use std::path::Path;
use std::process::Command;

const GIB: u64 = 1 << 30;

fn text(cmd: &mut Command) -> String {
    let out = run_ok(cmd);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn identical(raw: &Path, format: &str, other: &Path) {
    let c = text(
        Command::new("qemu-img")
            .args(["compare", "-f", "raw", "-F", format])
            .arg(raw)
            .arg(other),
    );
    assert!(c.contains("Images are identical"), "{format}: {c}");
}

#[test]
fn cloud_formats_read_back_as_the_raw_disk() {
    require_tool("qemu-img", "qemu-utils");
    let tmp = tempfile::tempdir().expect("tempdir");
    // A whole GiB, as GCE wants, so the raw disk is the same size as the GCE one.
    let recipe = recipe(
        tmp.path(),
        "cloudfix",
        "[disk]\nsize = \"1GiB\"\ncompress = true\n",
    );
    let formats = ["raw", "qcow2", "vmdk", "vhd", "vhdx", "gce"];
    let a = build(&recipe, tmp.path(), "a", &formats);
    // Without `raw`, the disk formats share a staged raw disk instead of raw's output.
    let b = build(&recipe, tmp.path(), "b", &formats[1..]);
    let raw = artifact(&a, "raw");
    assert_eq!(fs_err::metadata(&raw).expect("raw").len(), GIB);

    let qcow2 = artifact(&a, "qcow2");
    let check = text(
        Command::new("qemu-img")
            .args(["check", "--output=json"])
            .arg(&qcow2),
    );
    assert!(
        check.contains("\"compressed-clusters\": ")
            && !check.contains("\"compressed-clusters\": 0,"),
        "{check}"
    );
    identical(&raw, "qcow2", &qcow2);
    let plain = tmp.path().join("plain.qcow2");
    run_ok(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&plain),
    );
    let (ours, theirs) = (
        fs_err::metadata(&qcow2).expect("qcow2").len(),
        fs_err::metadata(&plain).expect("plain").len(),
    );
    eprintln!("compressed qcow2 {ours} bytes, uncompressed (qemu-img) {theirs}");
    assert!(ours < theirs, "compressed {ours} >= uncompressed {theirs}");

    let vmdk = artifact(&a, "vmdk");
    assert!(vmdk.ends_with("cloudfix.vmdk"), "{}", vmdk.display());
    let info = text(Command::new("qemu-img").arg("info").arg(&vmdk));
    assert!(info.contains("create type: streamOptimized"), "{info}");
    let check = text(Command::new("qemu-img").arg("check").arg(&vmdk));
    assert!(check.contains("No errors were found"), "{check}");
    identical(&raw, "vmdk", &vmdk);
    // `imgbuild run` says what it is rather than booting it as raw.
    let out = imgbuild().arg("run").arg(&vmdk).output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is a VMDK, which imgbuild run does not boot"),
        "{stderr}"
    );

    let vhd = artifact(&a, "vhd");
    assert!(vhd.ends_with("cloudfix.vhd"), "{}", vhd.display());
    let info = text(
        Command::new("qemu-img")
            .args(["info", "-f", "vpc"])
            .arg(&vhd),
    );
    assert!(
        info.contains("file format: vpc") && info.contains(&format!("({GIB} bytes)")),
        "{info}"
    );
    identical(&raw, "vpc", &vhd);

    let vhdx = artifact(&a, "vhdx");
    assert!(vhdx.ends_with("cloudfix.vhdx"), "{}", vhdx.display());
    let check = text(Command::new("qemu-img").arg("check").arg(&vhdx));
    assert!(check.contains("No errors were found"), "{check}");
    identical(&raw, "vhdx", &vhdx);

    let gce = artifact(&a, "gce");
    assert!(gce.ends_with("cloudfix.gce.tar.gz"), "{}", gce.display());
    let x = tmp.path().join("x");
    fs_err::create_dir(&x).expect("mkdir");
    run_ok(Command::new("tar").arg("-xzSf").arg(&gce).arg("-C").arg(&x));
    let names: Vec<_> = fs_err::read_dir(&x)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["disk.raw"]);
    identical(&raw, "raw", &x.join("disk.raw"));

    // The staged raw disk is gone.
    let mut left: Vec<String> = fs_err::read_dir(tmp.path().join("b"))
        .expect("ls b")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        [
            "cloudfix.gce.tar.gz",
            "cloudfix.qcow2",
            "cloudfix.vhd",
            "cloudfix.vhdx",
            "cloudfix.vmdk"
        ]
    );
    for f in &formats[1..] {
        // cmp, not two 1 GiB reads into memory.
        run_ok(
            Command::new("cmp")
                .arg(artifact(&a, f))
                .arg(artifact(&b, f)),
        );
    }
}
