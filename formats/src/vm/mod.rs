//! Booting what imgbuild builds in QEMU: the command line for a disk or a kernel and
//! initramfs with SeaBIOS or OVMF ([`Qemu`]), or for arm64 guests `qemu-system-aarch64 -M
//! virt -cpu max` with AAVMF (always TCG here), and a watcher of the serial console that
//! stops at a marker, at QEMU's exit or at a deadline ([`watch`]). `imgbuild run` and the
//! boot tests share both.
//!
//! - [`kvm`]: whether KVM really works here (a probe boot), else TCG.
//! - [`console`]: the console watcher and the ANSI escape filter it matches through.
//! - [`network`]: the guest's NIC on QEMU's user-mode network and forwarded ports.
//! - [`exec`]: `imgbuild run --exec`: commands run in the guest over SSH, with a throwaway
//!   key passed as a systemd credential.

pub mod console;
pub mod exec;
pub mod kvm;
pub mod network;

pub use console::{watch, Console, Outcome, Watch};
pub use network::{PortForward, UserNetwork};

use crate::disk::probe::{has_mbr_boot_code, DiskFormat, ProbeError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// OVMF's code and variable store (Debian package `ovmf`).
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE.fd";
/// The variable store template copied for each boot.
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS.fd";
/// AAVMF's code, UEFI for arm64 guests (Debian package `qemu-efi-aarch64`; padded to the
/// 64 MiB pflash size of QEMU's `virt`).
pub const AAVMF_CODE: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
/// AAVMF's variable store template.
pub const AAVMF_VARS: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// The guest's CPU architecture.
pub use crate::bootdisk::DiskArch as Arch;

/// The QEMU binary for `arch` and the Debian package that has it.
pub fn qemu_binary(arch: Arch) -> (&'static str, &'static str) {
    match arch {
        Arch::Amd64 => ("qemu-system-x86_64", "qemu-system-x86"),
        Arch::Arm64 => ("qemu-system-aarch64", "qemu-system-arm"),
    }
}

/// The UEFI firmware's code and variable store for `arch`, and the Debian package.
fn uefi_files(arch: Arch) -> (&'static str, &'static str, &'static str) {
    match arch {
        Arch::Amd64 => (OVMF_CODE, OVMF_VARS, "ovmf"),
        Arch::Arm64 => (AAVMF_CODE, AAVMF_VARS, "qemu-efi-aarch64"),
    }
}

/// Why a VM could not be set up or watched.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// QEMU (`qemu-system-x86_64`, `qemu-system-aarch64`) is not installed (or could not
    /// start).
    #[error("{program} could not start ({source}): install the Debian package `{package}`")]
    QemuMissing {
        /// The binary.
        program: String,
        /// The Debian package that has it.
        package: &'static str,
        /// Why it did not start.
        #[source]
        source: std::io::Error,
    },
    /// The UEFI firmware (OVMF, AAVMF) is not installed.
    #[error("{path} is missing: install the Debian package `{package}` to boot with UEFI")]
    FirmwareMissing {
        /// The firmware's code file.
        path: &'static str,
        /// The Debian package that has it.
        package: &'static str,
    },
    /// The disk could not be probed for boot code.
    #[error(transparent)]
    Probe(#[from] ProbeError),
    /// A scratch file (the UEFI variable store) or QEMU's console failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl VmError {
    /// Whether the user can fix it (install a package), as opposed to a failure here.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            VmError::QemuMissing { .. } | VmError::FirmwareMissing { .. }
        )
    }

    /// `program` (a QEMU binary) could not be started.
    pub fn qemu_missing(program: &std::ffi::OsStr, source: std::io::Error) -> Self {
        let program = program.to_string_lossy().into_owned();
        let package = if program.contains("aarch64") {
            "qemu-system-arm"
        } else {
            "qemu-system-x86"
        };
        VmError::QemuMissing {
            program,
            package,
            source,
        }
    }
}

/// Which firmware boots the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    /// OVMF for a disk without MBR boot code (UEFI-only), SeaBIOS otherwise and for a
    /// kernel booted directly.
    Auto,
    /// Always OVMF (UEFI).
    Uefi,
}

/// What the guest boots from.
#[derive(Debug, Clone)]
pub enum Boot {
    /// A disk image, opened `snapshot=on` (never modified).
    Disk {
        /// The image.
        path: PathBuf,
        /// How it is stored.
        format: DiskFormat,
    },
    /// A kernel with an initramfs (`-kernel -initrd -append`).
    Kernel {
        /// The kernel image.
        kernel: PathBuf,
        /// The initramfs.
        initrd: PathBuf,
        /// The kernel command line.
        append: String,
    },
}

/// A QEMU guest: q35 for x86-64 (`virt` with `-cpu max` and AAVMF for arm64), serial
/// console (with the monitor) on stdio, no display, no reboot, virtio disk, and a virtio
/// NIC on the user-mode network unless left out.
#[derive(Debug, Clone)]
pub struct Qemu {
    /// What to boot.
    pub boot: Boot,
    /// The guest's architecture.
    pub arch: Arch,
    /// Firmware choice.
    pub firmware: Firmware,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs; `None`: two under KVM, one under TCG (two TCG vCPU threads on a busy
    /// host wait on each other, for IPIs and RCU grace periods, whenever one is
    /// descheduled).
    pub smp: Option<u32>,
    /// `kvm` or `tcg`; `None` asks [`kvm::accel`].
    pub accel: Option<&'static str>,
    /// The NIC and its forwarded ports; `None`: no NIC at all.
    pub network: Option<UserNetwork>,
    /// systemd credentials (name, value) passed over SMBIOS type 11 strings, which
    /// systemd >= 252 imports at boot (e.g. `ssh.authorized_keys.root`).
    pub credentials: Vec<(String, Vec<u8>)>,
    /// More QEMU arguments, appended last.
    pub extra_args: Vec<String>,
}

/// A QEMU command line with the scratch files it uses; run it with [`Prepared::watch`].
#[derive(Debug)]
pub struct Prepared {
    /// The command (stdio not yet set up).
    pub command: Command,
    /// The accelerator chosen.
    pub accel: &'static str,
    /// Whether UEFI firmware (OVMF, AAVMF) boots the guest.
    pub uefi: bool,
    /// Holds the guest's copy of the UEFI variable store; removed when dropped.
    scratch: tempfile::TempDir,
}

impl Qemu {
    /// A guest with 1024 MiB, the default CPUs, automatic firmware and a NIC on the
    /// user-mode network, booting `boot`.
    pub fn new(boot: Boot) -> Self {
        Self {
            boot,
            arch: Arch::Amd64,
            firmware: Firmware::Auto,
            memory_mib: 1024,
            smp: None,
            accel: None,
            network: Some(UserNetwork::default()),
            credentials: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// Builds the command line: probes the accelerator (arm64 guests: TCG) and, for
    /// [`Firmware::Auto`] and an x86-64 disk, whether it boots under BIOS (an arm64 disk
    /// always boots with AAVMF); copies the firmware's variable store when UEFI boots.
    pub fn prepare(&self) -> Result<Prepared, VmError> {
        let scratch = tempfile::tempdir().map_err(|source| VmError::Io {
            what: "creating a scratch directory for the VM",
            source,
        })?;
        let accel = match self.arch {
            Arch::Amd64 => self.accel.unwrap_or_else(kvm::accel),
            // No KVM across architectures.
            Arch::Arm64 => "tcg",
        };
        let (program, package) = qemu_binary(self.arch);
        let mut cmd = Command::new(program);
        let smp = self.smp.unwrap_or(if accel == "kvm" { 2 } else { 1 });
        match self.arch {
            Arch::Amd64 => cmd.args(["-machine", "q35"]),
            Arch::Arm64 => cmd.args(["-machine", "virt", "-cpu", "max"]),
        };
        // Missing QEMU is reported before any scratch file is made for it.
        if !on_path(program) {
            return Err(VmError::QemuMissing {
                program: program.to_owned(),
                package,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not on PATH"),
            });
        }
        cmd.args(["-accel", accel])
            .args(["-smp", &smp.to_string()])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-nographic", "-nodefaults", "-no-reboot"])
            .args(["-serial", "mon:stdio"]);
        let uefi = match &self.boot {
            Boot::Disk { path, format } => {
                cmd.arg("-drive").arg(format!(
                    "file={},format={},if=virtio,snapshot=on",
                    path.display(),
                    format.qemu_name()
                ));
                self.arch == Arch::Arm64
                    || self.firmware == Firmware::Uefi
                    || !has_mbr_boot_code(path, *format)?
            }
            Boot::Kernel { .. } => self.firmware == Firmware::Uefi,
        };
        if uefi {
            uefi_firmware(&mut cmd, self.arch, scratch.path())?;
        }
        if let Boot::Kernel {
            kernel,
            initrd,
            append,
        } = &self.boot
        {
            cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
            cmd.args(["-append", append]);
        }
        if let Some(network) = &self.network {
            cmd.args(network.qemu_args());
        }
        for (name, value) in &self.credentials {
            cmd.args(["-smbios", &smbios_credential(name, value)]);
        }
        cmd.args(&self.extra_args);
        Ok(Prepared {
            command: cmd,
            accel,
            uefi,
            scratch,
        })
    }
}

impl Prepared {
    /// Runs QEMU and [`watch`]es its console; the scratch files live until it ends.
    pub fn watch(self, w: Watch<'_>) -> Result<Console, VmError> {
        let Prepared {
            command, scratch, ..
        } = self;
        let console = watch(command, w);
        drop(scratch);
        console
    }
}

/// An SMBIOS type 11 string carrying the systemd credential `name`, base64-encoded (so no
/// comma needs QEMU's `,,` escape).
fn smbios_credential(name: &str, value: &[u8]) -> String {
    use base64::Engine;
    format!(
        "type=11,value=io.systemd.credential.binary:{name}={}",
        base64::engine::general_purpose::STANDARD.encode(value)
    )
}

/// Whether `program` is an executable file in a `PATH` directory.
fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            fs_err::metadata(dir.join(program))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Adds the UEFI firmware's code (read-only) and a fresh copy of its variable store as
/// pflash drives: OVMF for x86-64, AAVMF for arm64.
fn uefi_firmware(cmd: &mut Command, arch: Arch, dir: &Path) -> Result<(), VmError> {
    let (code, vars_template, package) = uefi_files(arch);
    if !Path::new(code).is_file() || !Path::new(vars_template).is_file() {
        return Err(VmError::FirmwareMissing {
            path: code,
            package,
        });
    }
    let vars = dir.join("UEFI_VARS.fd");
    fs_err::copy(vars_template, &vars).map_err(|source| VmError::Io {
        what: "copying the UEFI variable store",
        source,
    })?;
    cmd.arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={code}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(qemu: &Qemu) -> Vec<String> {
        let prepared = qemu.prepare().unwrap();
        prepared
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_nic_unless_left_out_and_extra_arguments_last() {
        let mut qemu = Qemu::new(Boot::Kernel {
            kernel: "k".into(),
            initrd: "i".into(),
            append: "console=ttyS0".into(),
        });
        qemu.accel = Some("tcg");
        qemu.extra_args = vec!["-device".into(), "virtio-rng-pci".into()];
        let with = args(&qemu);
        assert!(with.contains(&"virtio-net-pci,netdev=net0,romfile=".to_owned()));
        assert_eq!(with[with.len() - 2..], ["-device", "virtio-rng-pci"]);
        qemu.network = None;
        let without = args(&qemu);
        assert!(!without.iter().any(|a| a.contains("netdev")), "{without:?}");
    }

    #[test]
    fn an_arm64_guest_is_a_virt_machine_with_aavmf_under_tcg() {
        let mut qemu = Qemu::new(Boot::Disk {
            path: "/nonexistent.qcow2".into(),
            format: DiskFormat::Qcow2,
        });
        qemu.arch = Arch::Arm64;
        qemu.accel = Some("kvm");
        let prepared = qemu.prepare().unwrap();
        assert_eq!(prepared.command.get_program(), "qemu-system-aarch64");
        assert!(prepared.uefi);
        let argv: Vec<String> = prepared
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let text = argv.join(" ");
        assert!(text.contains("-machine virt -cpu max -accel tcg"), "{text}");
        assert!(
            text.contains(&format!(
                "if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}"
            )),
            "{text}"
        );
        assert!(!text.contains("OVMF"), "{text}");
    }

    #[test]
    fn credentials_go_over_smbios_and_forwards_onto_the_netdev() {
        let mut qemu = Qemu::new(Boot::Kernel {
            kernel: "k".into(),
            initrd: "i".into(),
            append: "console=ttyS0".into(),
        });
        qemu.accel = Some("tcg");
        qemu.network = Some(UserNetwork {
            forwards: vec!["40022:22".parse().unwrap()],
        });
        qemu.credentials = vec![(
            "ssh.authorized_keys.root".into(),
            b"ssh-ed25519 AAAA imgbuild\n".to_vec(),
        )];
        let argv = args(&qemu);
        let smbios = argv.iter().position(|a| a == "-smbios").expect("-smbios");
        assert_eq!(
            argv[smbios + 1],
            "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=\
             c3NoLWVkMjU1MTkgQUFBQSBpbWdidWlsZAo="
        );
        assert!(
            argv.contains(&"user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22".to_owned()),
            "{argv:?}"
        );
    }
}
