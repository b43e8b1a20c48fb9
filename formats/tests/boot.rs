//! End-to-end: disks assembled from the GPT and FAT32 writers boot in QEMU,
//! under SeaBIOS (syslinux `gptmbr.bin` + `syslinux --install` on the ESP)
//! and under OVMF (UEFI loads `\EFI\BOOT\BOOTX64.EFI` from the ESP).
//!
//! Needs Debian packages: gdisk, mtools, syslinux, syslinux-common,
//! syslinux-efi, qemu-system-x86, ovmf. A missing one fails the test.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use imgbuild_formats::disk::fat::{FatImage, FatOptions, FileData};
use imgbuild_formats::disk::gpt::{attr, Gpt, Partition, PartitionSpec};
use imgbuild_formats::disk::guid::{guid_from_seed, Guid};

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

/// `text` without ANSI escape sequences (firmware consoles position the
/// cursor before every character).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last `n` characters of `s`, for readable failure messages.
fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

/// Boots `disk` in QEMU and waits for `MARKER` on the serial console;
/// returns the console text without escape sequences.
fn boot(disk: &Path, extra: &[&str]) -> String {
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "q35",
            "-m",
            "256",
            "-nographic",
            "-no-reboot",
            "-nodefaults",
        ])
        .args(["-serial", "stdio", "-monitor", "none"])
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", disk.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("qemu-system-x86_64: {e}: install the Debian package `qemu-system-x86`")
        });
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut out = Vec::new();
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
            out.extend(chunk);
        }
        if strip_ansi(&String::from_utf8_lossy(&out)).contains(MARKER) {
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            while let Ok(chunk) = rx.recv_timeout(Duration::from_millis(200)) {
                out.extend(chunk);
            }
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    strip_ansi(&String::from_utf8_lossy(&out))
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
    let out = boot(&img, &[]);
    assert!(
        out.contains(MARKER),
        "syslinux did not boot; serial console:\n{}",
        tail(&out, 3000)
    );
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
    let code = "/usr/share/OVMF/OVMF_CODE_4M.fd";
    need(code, "ovmf");
    let vars = dir.path().join("vars.fd");
    std::fs::write(&vars, need("/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf")).unwrap();
    let out = boot(
        &img,
        &[
            "-drive",
            &format!("if=pflash,format=raw,unit=0,readonly=on,file={code}"),
            "-drive",
            &format!("if=pflash,format=raw,unit=1,file={}", vars.display()),
        ],
    );
    assert!(
        out.contains(MARKER),
        "UEFI did not run BOOTX64.EFI; serial console:\n{}",
        tail(&out, 3000)
    );
}
