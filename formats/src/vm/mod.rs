//! Booting what imgbuild builds in QEMU: the command line for a disk or a kernel and
//! initramfs with SeaBIOS or OVMF ([`Qemu`]), and a watcher of the serial console that
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

/// Why a VM could not be set up or watched.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `qemu-system-x86_64` is not installed (or could not start).
    #[error(
        "qemu-system-x86_64 could not start ({0}): install the Debian package `qemu-system-x86`"
    )]
    QemuMissing(#[source] std::io::Error),
    /// OVMF is not installed.
    #[error("{OVMF_CODE} is missing: install the Debian package `ovmf` to boot with UEFI")]
    FirmwareMissing,
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
        matches!(self, VmError::QemuMissing(_) | VmError::FirmwareMissing)
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

/// A QEMU x86-64 guest: q35, serial console (with the monitor) on stdio, no display, no
/// reboot, virtio disk, and a virtio NIC on the user-mode network unless left out.
#[derive(Debug, Clone)]
pub struct Qemu {
    /// What to boot.
    pub boot: Boot,
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
    /// Whether OVMF boots the guest.
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
            firmware: Firmware::Auto,
            memory_mib: 1024,
            smp: None,
            accel: None,
            network: Some(UserNetwork::default()),
            credentials: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    /// Builds the command line: probes the accelerator and, for [`Firmware::Auto`] and a
    /// disk, whether it boots under BIOS; copies the OVMF variable store when UEFI boots.
    pub fn prepare(&self) -> Result<Prepared, VmError> {
        let scratch = tempfile::tempdir().map_err(|source| VmError::Io {
            what: "creating a scratch directory for the VM",
            source,
        })?;
        let accel = self.accel.unwrap_or_else(kvm::accel);
        let mut cmd = Command::new("qemu-system-x86_64");
        let smp = self.smp.unwrap_or(if accel == "kvm" { 2 } else { 1 });
        cmd.args(["-machine", "q35", "-accel", accel])
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
                self.firmware == Firmware::Uefi || !has_mbr_boot_code(path, *format)?
            }
            Boot::Kernel { .. } => self.firmware == Firmware::Uefi,
        };
        if uefi {
            uefi_firmware(&mut cmd, scratch.path())?;
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

/// Adds OVMF's code (read-only) and a fresh copy of its variable store as pflash drives.
fn uefi_firmware(cmd: &mut Command, dir: &Path) -> Result<(), VmError> {
    if !Path::new(OVMF_CODE).is_file() {
        return Err(VmError::FirmwareMissing);
    }
    let vars = dir.join("OVMF_VARS.fd");
    fs_err::copy(OVMF_VARS, &vars).map_err(|source| VmError::Io {
        what: "copying the OVMF variable store",
        source,
    })?;
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
