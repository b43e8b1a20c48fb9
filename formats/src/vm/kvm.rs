//! Whether KVM really works here: `/dev/kvm` can exist and open but fail for real guests
//! (nested virtualisation without the CPU features QEMU's default guest model asks for:
//! a Debian kernel then hangs in its decompressor). The probe boots a 64 KiB firmware
//! (source: `kvm_probe.S`) that switches to long mode and prints `OK` on COM1, and
//! refuses KVM when QEMU warns that the host lacks a requested CPU feature.
//! `IMGBUILD_ACCEL=kvm|tcg` overrides the probe.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The probe firmware's code at offset 0 (see `kvm_probe.S`).
const PROBE_CODE: [u8; 178] = [
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xc0, 0xbf, 0x00, 0x10, 0xb9, 0x00, 0x30, 0x66, 0x31, 0xc0,
    0xf3, 0xaa, 0x66, 0xc7, 0x06, 0x00, 0x10, 0x03, 0x20, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x20,
    0x03, 0x30, 0x00, 0x00, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x83, 0x00, 0x00, 0x00, 0xb8, 0x00, 0xf0,
    0x8e, 0xd8, 0xbe, 0x8d, 0x00, 0xbf, 0x00, 0x05, 0xb9, 0x18, 0x00, 0xf3, 0xa4, 0x31, 0xc0, 0x8e,
    0xd8, 0xc7, 0x06, 0x00, 0x06, 0x17, 0x00, 0x66, 0xc7, 0x06, 0x02, 0x06, 0x00, 0x05, 0x00, 0x00,
    0x66, 0x0f, 0x01, 0x16, 0x00, 0x06, 0x0f, 0x20, 0xe0, 0x66, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0,
    0x66, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0x66, 0xb9, 0x80, 0x00, 0x00, 0xc0, 0x0f,
    0x32, 0x66, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0, 0x66, 0x0d, 0x01, 0x00,
    0x00, 0x80, 0x0f, 0x22, 0xc0, 0x66, 0xea, 0xa5, 0x00, 0x0f, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00, 0xff, 0xff, 0x00,
    0x00, 0x00, 0x92, 0xcf, 0x00, 0x66, 0xba, 0xf8, 0x03, 0xb0, 0x4f, 0xee, 0xb0, 0x4b, 0xee, 0xf4,
    0xeb, 0xfd,
];
/// The reset vector at 0xFFF0: `ljmp $0xF000, $0`.
const RESET: [u8; 5] = [0xea, 0x00, 0x00, 0x00, 0xf0];

/// The accelerator to give QEMU: `kvm` when it works, else `tcg`.
pub fn accel() -> &'static str {
    match std::env::var("IMGBUILD_ACCEL").as_deref() {
        Ok("kvm") => return "kvm",
        Ok("tcg") => return "tcg",
        _ => {}
    }
    if kvm_works() {
        "kvm"
    } else {
        "tcg"
    }
}

fn kvm_works() -> bool {
    let opens = fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    opens && probe().unwrap_or(false)
}

fn probe() -> std::io::Result<bool> {
    let dir = tempfile::tempdir()?;
    let fw = dir.path().join("probe.bin");
    let mut image = vec![0u8; 0x10000];
    image[..PROBE_CODE.len()].copy_from_slice(&PROBE_CODE);
    image[0xFFF0..0xFFF0 + RESET.len()].copy_from_slice(&RESET);
    fs_err::write(&fw, &image)?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "kvm", "-machine", "pc", "-m", "16", "-nodefaults"])
        .args(["-display", "none", "-no-reboot", "-monitor", "none"])
        .args(["-serial", "stdio", "-bios"])
        .arg(&fw)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let mut ok = false;
    while start.elapsed() < Duration::from_secs(5) {
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if start.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    ok |= out.contains("OK");
    Ok(ok && !err.contains("doesn't support requested feature"))
}
