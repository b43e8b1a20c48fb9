//! `imgbuild run`: boot a disk (qcow2, raw) or an initramfs in QEMU with the serial
//! console on the terminal, like `mkosi qemu`. Given a recipe, it builds it first.

use super::build::{build_and_export, BuildArgs};
use super::{kvm, Failure};
use clap::Args;
use imgbuild_formats::Format;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// OVMF's code and variable store (Debian package `ovmf`).
const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A recipe (.toml, built first) or an artifact: NAME.qcow2, NAME.raw or
    /// NAME.initramfs.cpio.zst|gz (booted with NAME.vmlinuz beside it).
    target: PathBuf,
    /// For a recipe: which artifact to build and boot: qcow2, raw or initramfs.
    #[arg(long, value_name = "FORMAT", default_value = "qcow2", value_parser = parse_format)]
    format: Format,
    /// For a recipe: the output directory.
    #[arg(short, long = "output", value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Boot with UEFI firmware (OVMF) even if the disk also boots under BIOS.
    #[arg(long)]
    uefi: bool,
    /// Stop the VM and fail after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Stop the VM and succeed as soon as this text appears on the console.
    #[arg(long, value_name = "STRING")]
    expect: Option<String>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    memory: u32,
    /// For an initramfs: the kernel [default: NAME.vmlinuz beside it].
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// For an initramfs: the kernel command line.
    #[arg(long, value_name = "ARGS", default_value = "console=ttyS0 panic=-1")]
    append: String,
}

fn parse_format(s: &str) -> Result<Format, String> {
    let f: Format = s.parse()?;
    if f.is_bootable() {
        Ok(f)
    } else {
        Err(format!(
            "`{s}` does not boot; choose qcow2, raw or initramfs"
        ))
    }
}

/// What to boot.
enum Bootable {
    Disk { path: PathBuf, qcow2: bool },
    Initramfs { initrd: PathBuf, kernel: PathBuf },
}

pub(crate) fn run(store_dir: &Path, args: RunArgs) -> Result<(), Failure> {
    let target = if args.target.extension().is_some_and(|e| e == "toml") {
        let build = BuildArgs::for_run(args.target.clone(), args.format, args.out.clone())?;
        let artifacts = build_and_export(store_dir, &build)?;
        let a = artifacts
            .into_iter()
            .next()
            .ok_or_else(|| Failure::internal("the build wrote no artifact"))?;
        match args.format {
            Format::Initramfs => Bootable::Initramfs {
                kernel: a.kernel.unwrap_or_default(),
                initrd: a.path,
            },
            f => Bootable::Disk {
                path: a.path,
                qcow2: f == Format::Qcow2,
            },
        }
    } else {
        artifact(&args.target, args.kernel.clone())?
    };
    let dir = tempfile::tempdir().map_err(|e| Failure::internal(e.to_string()))?;
    let mut cmd = Command::new("qemu-system-x86_64");
    let accel = kvm::accel();
    // Under TCG one vCPU: two vCPU threads on a loaded host wait on each other (IPIs, RCU
    // grace periods) whenever one is descheduled, which slows the boot down.
    let smp = if accel == "kvm" { "2" } else { "1" };
    cmd.args(["-machine", "q35", "-accel", accel, "-smp", smp])
        .args(["-m", &args.memory.to_string()])
        .args(["-nographic", "-nodefaults", "-no-reboot"])
        .args(["-serial", "mon:stdio"]);
    match &target {
        Bootable::Disk { path, qcow2 } => {
            let format = if *qcow2 { "qcow2" } else { "raw" };
            cmd.arg("-drive").arg(format!(
                "file={},format={format},if=virtio,snapshot=on",
                path.display()
            ));
            if args.uefi || !has_mbr_boot_code(path, *qcow2)? {
                uefi_firmware(&mut cmd, dir.path())?;
            }
        }
        Bootable::Initramfs { initrd, kernel } => {
            for p in [initrd, kernel] {
                if !p.is_file() {
                    return Err(Failure::user(format!(
                        "{} does not exist; build it with --format initramfs",
                        p.display()
                    )));
                }
            }
            if args.uefi {
                uefi_firmware(&mut cmd, dir.path())?;
            }
            cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
            cmd.args(["-append", &args.append]);
        }
    }
    eprintln!("booting with -accel {accel} (IMGBUILD_ACCEL=kvm|tcg overrides)");
    watch(
        cmd,
        args.timeout.map(Duration::from_secs),
        args.expect.as_deref(),
    )
}

/// Works out what an artifact path is.
fn artifact(path: &Path, kernel: Option<PathBuf>) -> Result<Bootable, Failure> {
    if !path.is_file() {
        return Err(Failure::user(format!(
            "{} does not exist; pass a recipe (.toml) or a built .qcow2, .raw or .initramfs.cpio.*",
            path.display()
        )));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some((stem, _)) = name.split_once(".initramfs.cpio") {
        let kernel = kernel.unwrap_or_else(|| path.with_file_name(format!("{stem}.vmlinuz")));
        return Ok(Bootable::Initramfs {
            initrd: path.to_owned(),
            kernel,
        });
    }
    let qcow2 = name.ends_with(".qcow2") || is_qcow2(path)?;
    Ok(Bootable::Disk {
        path: path.to_owned(),
        qcow2,
    })
}

fn io_failure(path: &Path) -> impl Fn(std::io::Error) -> Failure + '_ {
    move |e| Failure::internal(format!("reading {}: {e}", path.display()))
}

fn is_qcow2(path: &Path) -> Result<bool, Failure> {
    let mut magic = [0u8; 4];
    let mut f = fs_err::File::open(path).map_err(io_failure(path))?;
    Ok(f.read_exact(&mut magic).is_ok() && &magic == b"QFI\xfb")
}

/// Whether sector 0 of the disk carries boot code (it boots under BIOS); a disk without
/// it is UEFI-only.
fn has_mbr_boot_code(path: &Path, qcow2: bool) -> Result<bool, Failure> {
    use std::io::{Seek, SeekFrom};
    let mut f = fs_err::File::open(path).map_err(io_failure(path))?;
    let mut offset = 0u64;
    if qcow2 {
        // qcow2: header field l1_table_offset (byte 40); L1[0] -> L2 table; L2[0] -> cluster.
        const MASK: u64 = 0x00ff_ffff_ffff_fe00;
        let mut word = [0u8; 8];
        let mut read_u64 = |f: &mut fs_err::File, at: u64| -> std::io::Result<u64> {
            f.seek(SeekFrom::Start(at))?;
            f.read_exact(&mut word)?;
            Ok(u64::from_be_bytes(word))
        };
        let l1 = read_u64(&mut f, 40).map_err(io_failure(path))?;
        let l2 = read_u64(&mut f, l1).map_err(io_failure(path))? & MASK;
        if l2 == 0 {
            return Ok(false);
        }
        let entry = read_u64(&mut f, l2).map_err(io_failure(path))?;
        if entry & (1 << 62) != 0 {
            return Ok(true); // compressed: assume BIOS boot code is there
        }
        offset = entry & MASK;
        if offset == 0 {
            return Ok(false);
        }
    }
    let mut code = [0u8; 440];
    f.seek(SeekFrom::Start(offset)).map_err(io_failure(path))?;
    f.read_exact(&mut code).map_err(io_failure(path))?;
    Ok(code.iter().any(|b| *b != 0))
}

fn uefi_firmware(cmd: &mut Command, dir: &Path) -> Result<(), Failure> {
    if !Path::new(OVMF_CODE).is_file() {
        return Err(Failure::user(format!(
            "{OVMF_CODE} is missing: install the Debian package `ovmf` to boot with UEFI"
        )));
    }
    let vars = dir.join("OVMF_VARS.fd");
    fs_err::copy(OVMF_VARS, &vars).map_err(|e| Failure::internal(e.to_string()))?;
    cmd.arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ));
    Ok(())
}

/// Runs QEMU, copying its console to stdout, until it exits, `expect` appears (success)
/// or `timeout` passes (failure).
fn watch(mut cmd: Command, timeout: Option<Duration>, expect: Option<&str>) -> Result<(), Failure> {
    let mut child = cmd
        .stdin(if expect.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Failure::user(format!(
                "qemu-system-x86_64 could not start ({e}): install the Debian package `qemu-system-x86`"
            ))
        })?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| Failure::internal("qemu has no stdout"))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = String::new();
    let mut term = std::io::stdout();
    let outcome = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(chunk) => {
                let _ = term.write_all(&chunk);
                let _ = term.flush();
                if let Some(want) = expect {
                    seen.push_str(&strip_ansi(&String::from_utf8_lossy(&chunk)));
                    if seen.contains(want) {
                        break Ok(());
                    }
                    // Keep the tail only: enough to match across chunk boundaries.
                    let keep = seen.len().saturating_sub(want.len() + 4096);
                    let cut = (keep..seen.len()).find(|i| seen.is_char_boundary(*i));
                    seen.drain(..cut.unwrap_or(0));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|e| Failure::internal(e.to_string()))?;
                break match expect {
                    Some(want) => Err(Failure::internal(format!(
                        "the VM stopped ({status}) before `{want}` appeared on the console"
                    ))),
                    None if status.success() => Ok(()),
                    None => Err(Failure::internal(format!("qemu exited with {status}"))),
                };
            }
        }
        if let Some(limit) = timeout.filter(|t| start.elapsed() > *t) {
            break Err(Failure::internal(match expect {
                Some(want) => format!(
                    "`{want}` did not appear on the console within {}s",
                    limit.as_secs()
                ),
                None => format!("the VM was still running after {}s", limit.as_secs()),
            }));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if outcome.is_ok() {
        eprintln!(
            "\nimgbuild run: done after {:.1}s",
            start.elapsed().as_secs_f64()
        );
    }
    outcome
}

/// `text` without ANSI escape sequences (firmware consoles move the cursor a lot).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
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
    }
    out
}
