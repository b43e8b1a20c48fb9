//! `imgbuild run`: boot a disk (qcow2, raw) or an initramfs in QEMU with the serial
//! console on the terminal, like `mkosi qemu`. Given a recipe, it builds it first. With
//! `--exec CMD` it runs commands in the guest over SSH instead and exits with theirs
//! (`imgbuild_formats::vm::exec`). The QEMU command line, the firmware choice and the
//! console watcher are `imgbuild_formats::vm`'s. arm64 artifacts boot in
//! `qemu-system-aarch64 -M virt` with AAVMF; the architecture is `--arch`, else the
//! recipe's platform, else read from the artifact (the disk's root partition type, the
//! kernel's header), else amd64.

use super::failure::chain;
use super::progress::{Display, Reporter};
use super::registry_args::RegistryArgs;
use super::Failure;
use clap::Args;
use imgbuild::pipeline::{self, BuildRequest};
use imgbuild_builder::recipe::PlatformSpec;
use imgbuild_formats::disk::probe::{self, DiskFormat};
use imgbuild_formats::vm::{
    self,
    exec::{ExecError, ExecSession, Limits},
    Firmware, Outcome, PortForward, Qemu, UserNetwork, VmError, Watch,
};
use imgbuild_formats::Format;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// A recipe (.toml, built first) or an artifact: NAME.qcow2, NAME.raw or
    /// NAME.initramfs.cpio.zst|gz (booted with NAME.vmlinuz beside it), or an image of
    /// the store (NAME:TAG, or NAME with one tag), written as a qcow2 with the default
    /// [disk] settings first.
    target: PathBuf,
    /// For a recipe: which artifact to build and boot: qcow2, raw or initramfs.
    #[arg(long, value_name = "FORMAT", default_value = "qcow2", value_parser = parse_format)]
    format: Format,
    /// For a recipe: the output directory.
    #[arg(short, long = "output", value_name = "DIR", default_value = "out")]
    out: PathBuf,
    /// Boot with UEFI firmware (OVMF) even if the disk also boots under BIOS (arm64
    /// guests always boot with AAVMF).
    #[arg(long)]
    uefi: bool,
    /// The guest's architecture: amd64 (qemu-system-x86_64) or arm64 (qemu-system-aarch64
    /// -M virt with AAVMF, TCG) [default: the recipe's platform, else read from the disk's
    /// root partition type or the kernel's header, else amd64].
    #[arg(long, value_name = "ARCH", value_parser = parse_arch)]
    arch: Option<vm::Arch>,
    /// Stop the VM and fail after this many seconds [with --exec: also the wait for the
    /// SSH login, 300 s when not given].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Stop the VM and succeed as soon as this text appears on the console.
    #[arg(long, value_name = "STRING")]
    expect: Option<String>,
    /// Run CMD in the guest as root over SSH once it is up (a throwaway key passed as the
    /// systemd credential ssh.authorized_keys.root; needs openssh-server and systemd >= 252
    /// in the image, ssh on the host), stream its output, then stop the VM and exit with
    /// CMD's status; repeatable: run in order, stopping at the first that fails.
    #[arg(long = "exec", value_name = "CMD", conflicts_with = "expect")]
    exec: Vec<String>,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    memory: u32,
    /// Virtual CPUs [default: 2 with KVM, 1 under TCG, where more are slower].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: Option<u32>,
    /// Forward a TCP port of the host (on 127.0.0.1 unless ADDR is given) to the guest,
    /// e.g. `-p 2222:22` for `ssh -p 2222 USER@127.0.0.1`; repeatable.
    #[arg(short = 'p', long = "publish", value_name = "[ADDR:]HOST:GUEST")]
    publish: Vec<PortForward>,
    /// Leave out the guest's NIC (by default a virtio NIC on QEMU's user-mode network:
    /// DHCP gives the guest 10.0.2.15 and NAT reaches the host's network).
    #[arg(long, conflicts_with = "publish")]
    no_network: bool,
    /// Pass one more argument to QEMU (qemu-system-x86_64 or -aarch64), after imgbuild's own; repeat for
    /// several (`--qemu-arg=-device --qemu-arg=virtio-rng-pci`).
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// For an initramfs: the kernel [default: NAME.vmlinuz beside it].
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// For an initramfs: the kernel command line [default: console=ttyS0 panic=-1;
    /// console=ttyAMA0 for arm64].
    #[arg(long, value_name = "ARGS")]
    append: Option<String>,
}

fn parse_arch(s: &str) -> Result<vm::Arch, String> {
    match s {
        "amd64" | "x86_64" => Ok(vm::Arch::Amd64),
        "arm64" | "aarch64" => Ok(vm::Arch::Arm64),
        other => Err(format!(
            "`{other}` is not an architecture; use amd64 or arm64"
        )),
    }
}

/// The architecture of a kernel file from its header: an x86 bzImage (`HdrS` at 0x202),
/// an arm64 `Image` (`ARM\x64` at 0x38) or a gzip-compressed one (Debian's arm64
/// `vmlinuz`); `None` when unreadable or unknown.
fn kernel_arch(kernel: &Path) -> Option<vm::Arch> {
    use std::io::Read;
    let mut head = [0u8; 0x206];
    fs_err::File::open(kernel)
        .ok()?
        .read_exact(&mut head)
        .ok()?;
    if head[0x202..0x206] == *b"HdrS" {
        Some(vm::Arch::Amd64)
    } else if head[0x38..0x3c] == *b"ARM\x64" || head[..2] == [0x1f, 0x8b] {
        Some(vm::Arch::Arm64)
    } else {
        None
    }
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

/// How long `--exec` waits for the SSH login without `--timeout`: a Debian guest under TCG
/// on a busy host takes 1-3 minutes to boot.
const EXEC_LOGIN_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) fn run(store_dir: &Path, display: Display, args: RunArgs) -> Result<(), Failure> {
    if !args.exec.is_empty() && args.no_network {
        return Err(exec_failure(ExecError::NoNetwork));
    }
    // Holds the disk written from a store image until QEMU is done with it.
    let mut _scratch: Option<tempfile::TempDir> = None;
    // A recipe's platform names the guest's architecture.
    let mut recipe_arch = None;
    let target = if args.target.extension().is_some_and(|e| e == "toml") {
        let mut request = BuildRequest::new(
            args.target.clone(),
            store_dir.to_owned(),
            args.format,
            args.out.clone(),
            Arc::new(RegistryArgs::default().client()?),
        );
        request.epoch = match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => super::units::epoch(&v).map_err(Failure::user)?,
            _ => 0,
        };
        // One platform is booted: `--arch`'s, else the recipe's first.
        let recipe = imgbuild_builder::recipe::load(&args.target)?;
        let platform = match args.arch {
            Some(vm::Arch::Arm64) => PlatformSpec::arm64(),
            Some(vm::Arch::Amd64) => PlatformSpec::amd64(),
            None => recipe.image.platform.clone(),
        };
        recipe_arch = parse_arch(&platform.architecture).ok();
        request.platforms = vec![platform];
        let reporter = Reporter::new(display, Some(store_dir), false);
        let outcome = pipeline::build(&request, &|event| reporter.observe(event))
            .map_err(|e| reporter.fail(e.into()))?;
        reporter.finish();
        let a = outcome
            .artifacts
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
    } else if let Some(name) = stored_image(store_dir, &args.target)? {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-run-")
            .tempdir()
            .map_err(|e| Failure::internal(format!("creating a scratch directory: {e}")))?;
        eprintln!(
            "imgbuild run: {name} is an image in the store; writing it as a qcow2 with the \
             default [disk] settings (the store keeps no recipe) to {}",
            dir.path().display()
        );
        let path = pipeline::stored_disk(store_dir, &name, dir.path(), &|m| eprintln!("{m}"))
            .map_err(|e| {
                let mut failure = Failure::from(e);
                failure.message = format!(
                    "{}\n(no disk could be written from the store image {name}: build one with \
                     `imgbuild build RECIPE -f qcow2` and run that file)",
                    failure.message
                );
                failure
            })?;
        _scratch = Some(dir);
        Bootable::Disk { path, qcow2: true }
    } else {
        artifact(&args.target, args.kernel.clone())?
    };
    let arch = match args.arch.or(recipe_arch) {
        Some(arch) => arch,
        None => match &target {
            Bootable::Disk { path, qcow2 } => {
                let format = if *qcow2 {
                    DiskFormat::Qcow2
                } else {
                    DiskFormat::Raw
                };
                probe::root_arch(path, format)
                    .map_err(|e| Failure::internal(e.to_string()))?
                    .unwrap_or(vm::Arch::Amd64)
            }
            Bootable::Initramfs { kernel, .. } => kernel_arch(kernel).unwrap_or(vm::Arch::Amd64),
        },
    };
    let boot = match target {
        Bootable::Disk { path, qcow2 } => vm::Boot::Disk {
            path,
            format: if qcow2 {
                DiskFormat::Qcow2
            } else {
                DiskFormat::Raw
            },
        },
        Bootable::Initramfs { initrd, kernel } => {
            for p in [&initrd, &kernel] {
                if !p.is_file() {
                    return Err(Failure::user(format!(
                        "{} does not exist; build it with --format initramfs",
                        p.display()
                    )));
                }
            }
            let console = arch.default_cmdline();
            vm::Boot::Kernel {
                kernel,
                initrd,
                append: args
                    .append
                    .clone()
                    .unwrap_or_else(|| format!("{console} panic=-1")),
            }
        }
    };
    let mut qemu = Qemu::new(boot);
    qemu.arch = arch;
    qemu.memory_mib = args.memory;
    qemu.smp = args.cpus;
    qemu.network = (!args.no_network).then(|| UserNetwork {
        forwards: args.publish.clone(),
    });
    qemu.extra_args = args.qemu_args.clone();
    if args.uefi {
        qemu.firmware = Firmware::Uefi;
    }
    let session = if args.exec.is_empty() {
        None
    } else {
        Some(ExecSession::new(&mut qemu).map_err(exec_failure)?)
    };
    let vm = qemu.prepare().map_err(vm_failure)?;
    eprintln!(
        "booting {} with -accel {} (IMGBUILD_ACCEL=kvm|tcg overrides)",
        arch.name(),
        vm.accel
    );
    if let Some(session) = session {
        let timeout = args.timeout.map(Duration::from_secs);
        let limits = Limits {
            login: timeout.unwrap_or(EXEC_LOGIN_TIMEOUT),
            total: timeout,
        };
        let report = session.run(vm, &args.exec, limits).map_err(exec_failure)?;
        return match report.failed {
            None => {
                eprintln!("imgbuild run: every command succeeded; the VM is stopped");
                Ok(())
            }
            Some((command, code)) => Err(Failure::guest_command(
                code.map_or(1, |c| u8::try_from(c).unwrap_or(1)),
                match code {
                    Some(255) => format!(
                        "`{command}` exited with status 255 in the guest, or ssh failed (it \
                         exits 255 then too; its message is above)"
                    ),
                    Some(c) => format!("`{command}` exited with status {c} in the guest"),
                    None => format!("ssh running `{command}` was killed by a signal"),
                },
            )),
        };
    }
    let expect = args.expect.as_deref();
    let timeout = args.timeout.map(Duration::from_secs);
    let mut term = std::io::stdout();
    let console = vm
        .watch(Watch {
            timeout,
            expect,
            echo: Some(&mut term),
            stop: None,
        })
        .map_err(vm_failure)?;
    let outcome = match (console.outcome, expect) {
        (Outcome::Expected, _) => Ok(()),
        (Outcome::Exited(status), Some(want)) => Err(Failure::internal(format!(
            "the VM stopped ({status}) before `{want}` appeared on the console"
        ))),
        (Outcome::Exited(status), None) if status.success() => Ok(()),
        (Outcome::Exited(status), None) => {
            Err(Failure::internal(format!("qemu exited with {status}")))
        }
        (Outcome::Stopped, _) => Err(Failure::internal("the console watch was stopped")),
        (Outcome::TimedOut, _) => {
            let limit = timeout.unwrap_or_default().as_secs();
            Err(Failure::internal(match expect {
                Some(want) => {
                    format!("`{want}` did not appear on the console within {limit}s")
                }
                None => format!("the VM was still running after {limit}s"),
            }))
        }
    };
    if outcome.is_ok() {
        eprintln!(
            "\nimgbuild run: done after {:.1}s",
            console.elapsed.as_secs_f64()
        );
    }
    outcome
}

fn vm_failure(e: VmError) -> Failure {
    if e.is_user_error() {
        Failure::user(e.to_string())
    } else {
        Failure::internal(chain(&e))
    }
}

fn exec_failure(e: ExecError) -> Failure {
    if e.is_user_error() {
        Failure::user(e.to_string())
    } else {
        Failure::internal(chain(&e))
    }
}

/// For a `target` that is no file and no recipe: the image of the store it names
/// (NAME:TAG, or NAME with one tag); several matches are listed (exit 2). `None` when it
/// names none (the caller says that the file does not exist).
fn stored_image(store_dir: &Path, target: &Path) -> Result<Option<String>, Failure> {
    let Some(name) = target
        .to_str()
        .filter(|n| !n.contains('/') && !target.exists())
    else {
        return Ok(None);
    };
    if !store_dir.is_dir() {
        return Ok(None);
    }
    let store = imgbuild_store::Store::open(store_dir)?;
    let mut found: Vec<String> = store
        .refs()?
        .into_iter()
        .map(|r| r.name)
        .filter(|r| {
            r == name || (!name.contains(':') && r.split_once(':').is_some_and(|(n, _)| n == name))
        })
        .collect();
    found.sort();
    match found.len() {
        0 | 1 => Ok(found.pop()),
        n => Err(Failure::user(format!(
            "`{name}` names {n} images in the store: {}; run one of them as NAME:TAG",
            found.join(", ")
        ))),
    }
}

/// Works out what an artifact path is.
fn artifact(path: &Path, kernel: Option<PathBuf>) -> Result<Bootable, Failure> {
    if path.join("oci-layout").is_file() || path.join("index.json").is_file() {
        return Err(Failure::user(format!(
            "{} is an OCI image layout, which imgbuild run does not boot; build the recipe \
             with --format qcow2 (or raw, or initramfs) and run that",
            path.display()
        )));
    }
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
    if let Some(kind) =
        probe::unbootable_container(path).map_err(|e| Failure::internal(e.to_string()))?
    {
        return Err(Failure::user(format!(
            "{} is {kind}, which imgbuild run does not boot; run the recipe's --format qcow2 \
             or raw, or convert it: qemu-img convert -O qcow2 {} out.qcow2",
            path.display(),
            path.display()
        )));
    }
    let qcow2 = name.ends_with(".qcow2")
        || probe::is_qcow2(path).map_err(|e| Failure::internal(e.to_string()))?;
    Ok(Bootable::Disk {
        path: path.to_owned(),
        qcow2,
    })
}
