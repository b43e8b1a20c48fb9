//! End-to-end: disks assembled from the GPT and FAT32 writers boot in QEMU,
//! under SeaBIOS (syslinux `gptmbr.bin` + `syslinux --install` on the ESP)
//! and under OVMF (UEFI loads `\EFI\BOOT\BOOTX64.EFI` from the ESP).
//!
//! Needs Debian packages: gdisk, mtools, syslinux, syslinux-common,
//! syslinux-efi, qemu-system-x86, ovmf. A missing one fails the test.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use imgbuild_formats::disk::fat::{FatImage, FatOptions, FileData};
use imgbuild_formats::disk::gpt::{attr, Gpt, Partition, PartitionSpec};
use imgbuild_formats::disk::guid::{guid_from_seed, Guid};
use imgbuild_formats::disk::probe::DiskFormat;
use imgbuild_formats::vm::{Boot, Firmware, Outcome, Qemu, Watch, OVMF_CODE};

const MIB: u64 = 1024 * 1024;
const MARKER: &str = "IMGBUILD-BOOT-OK";

fn need(path: &str, package: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| {
        panic!("{path}: {e}: install the Debian package `{package}`; this test must not be skipped")
    })
}

fn run(cmd: &mut Command, tool: &str, package: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("`{tool}` could not run ({e}): install the Debian package `{package}`")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} failed: {text}");
    text
}

/// A 64 MiB GPT disk with one 40 MiB ESP at 1 MiB.
fn disk(path: &Path, bios: bool) -> Partition {
    let size = 64 * MIB;
    let mut gpt = Gpt::new(guid_from_seed(b"boot-disk"), size).unwrap();
    let esp = gpt
        .add_partition(PartitionSpec {
            name: "EFI System".into(),
            type_guid: Guid::ESP,
            unique_guid: guid_from_seed(b"boot-esp"),
            size_bytes: Some(40 * MIB),
            attributes: if bios { attr::LEGACY_BIOS_BOOTABLE } else { 0 },
        })
        .unwrap()
        .clone();
    if bios {
        let mbr = need("/usr/lib/syslinux/mbr/gptmbr.bin", "syslinux-common");
        gpt.mbr.boot_code = Some(mbr);
    }
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    gpt.write(&mut &f).unwrap();
    esp
}

fn fat(esp: &Partition, files: Vec<(&str, Vec<u8>)>, disk: &Path) {
    let mut opts = FatOptions::new(esp.byte_len(), b"boot-esp", 1_700_000_000);
    opts.label = Some("ESP".into());
    opts.hidden_sectors = esp.first_lba as u32;
    let mut img = FatImage::new(opts).unwrap();
    for (p, d) in files {
        img.add_file(p, FileData::Bytes(d)).unwrap();
    }
    let f = std::fs::OpenOptions::new().write(true).open(disk).unwrap();
    img.write_to(&mut &f, esp.byte_offset()).unwrap();
}

/// Boots `disk` through the shared QEMU command line (firmware chosen by probing the
/// disk: `uefi` says which to expect) and console watcher, and waits up to 90 s for
/// `MARKER`; fails with the console's tail otherwise.
fn boot(disk: &Path, uefi: bool, what: &str) {
    let mut qemu = Qemu::new(Boot::Disk {
        path: disk.to_owned(),
        format: DiskFormat::Raw,
    });
    qemu.memory_mib = 256;
    qemu.smp = Some(1);
    qemu.firmware = Firmware::Auto;
    let vm = qemu.prepare().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(vm.uefi, uefi, "firmware chosen by the boot code probe");
    let console = vm
        .watch(Watch {
            timeout: Some(Duration::from_secs(90)),
            expect: Some(MARKER),
            ..Watch::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        console.outcome,
        Outcome::Expected,
        "{what}; serial console:\n{}",
        console.tail(3000)
    );
}

#[test]
fn bios_boots_syslinux_from_gpt_esp() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("bios.img");
    let esp = disk(&img, true);
    // Stops at the `boot:` prompt after the marker; the test then ends QEMU.
    let cfg = format!("SERIAL 0 115200\nSAY {MARKER}\nPROMPT 1\nTIMEOUT 0\nDEFAULT none\n");
    fat(&esp, vec![("syslinux.cfg", cfg.into_bytes())], &img);
    run(
        Command::new("syslinux")
            .args(["--install", "--offset", &esp.byte_offset().to_string()])
            .arg(&img),
        "syslinux",
        "syslinux",
    );
    let v = run(
        Command::new("sgdisk").arg("-v").arg(&img),
        "sgdisk",
        "gdisk",
    );
    assert!(v.contains("No problems found"), "{v}");
    // The GPT's MBR carries gptmbr.bin: the probe picks SeaBIOS.
    boot(&img, false, "syslinux did not boot");
}

#[test]
fn uefi_boots_bootx64_from_esp() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("uefi.img");
    let esp = disk(&img, false);
    let cfg = format!(
        "SAY {MARKER}\nPROMPT 0\nTIMEOUT 1\nDEFAULT none\nLABEL none\n  KERNEL /nonexistent\n"
    );
    fat(
        &esp,
        vec![
            (
                "EFI/BOOT/BOOTX64.EFI",
                need("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "syslinux-efi"),
            ),
            (
                "EFI/BOOT/ldlinux.e64",
                need(
                    "/usr/lib/syslinux/modules/efi64/ldlinux.e64",
                    "syslinux-common",
                ),
            ),
            ("EFI/BOOT/syslinux.cfg", cfg.into_bytes()),
        ],
        &img,
    );
    need(OVMF_CODE, "ovmf");
    // No boot code in the protective MBR: the probe picks OVMF.
    boot(&img, true, "UEFI did not run BOOTX64.EFI");
}
