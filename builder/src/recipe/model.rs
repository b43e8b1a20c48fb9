//! A validated recipe: every path checked, every default filled in.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use super::{RecipeError, Sources};

/// A recipe that passed validation.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The recipe file (the lock file is found beside it).
    pub path: PathBuf,
    /// Its text and that of every file it includes, for errors found after parsing
    /// ([`Recipe::step_error`]); spans of steps index into it.
    pub source: Arc<Sources>,
    /// The recipe file's directory (an included file's `copy` sources are relative to its
    /// own directory, and already resolved in each copy step's `matches`).
    pub dir: PathBuf,
    /// `[image]`.
    pub image: ImageSpec,
    /// `[from]`.
    pub base: Base,
    /// `[[step]]`s in order.
    pub steps: Vec<Step>,
    /// `[config]`.
    pub config: ConfigSpec,
    /// `[disk]`: how the disk formats (raw, qcow2, vmdk, vhd, vhdx, gce) lay out the disk.
    pub disk: DiskSpec,
    /// `[initramfs]`: how `--format initramfs` packs the userland.
    pub initramfs: InitramfsSpec,
    /// `[stage.NAME]`: other images built first, for `copy ... from_stage = NAME`, in an
    /// order where every stage comes after the stages it copies from.
    pub stages: Vec<Stage>,
}

impl Recipe {
    /// An error found after parsing about `step` (of the recipe or one of its stages),
    /// pointing at the first occurrence of `needle` in the step's table, else at its kind.
    pub fn step_error(&self, step: &Step, needle: &str, message: impl Into<String>) -> RecipeError {
        let table = step.table.clone();
        let span = self
            .source
            .text(table.clone())
            .and_then(|t| t.find(needle))
            .filter(|_| !needle.is_empty())
            .map_or(step.span.clone(), |at| {
                table.start + at..table.start + at + needle.len()
            });
        self.source.error(Some(span), message)
    }

    /// Every step, the recipe's and its stages', with the stage's name.
    pub fn all_steps(&self) -> impl Iterator<Item = (Option<&str>, &Step)> {
        self.stages
            .iter()
            .flat_map(|s| s.steps.iter().map(move |st| (Some(s.name.as_str()), st)))
            .chain(self.steps.iter().map(|st| (None, st)))
    }
}

/// A build stage: an image of its own whose files later steps can copy.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The stage's name.
    pub name: String,
    /// What it starts from.
    pub base: Base,
    /// Its steps.
    pub steps: Vec<Step>,
}

impl Stage {
    /// The stages this one copies from.
    pub fn depends_on(&self) -> impl Iterator<Item = &str> {
        stage_refs(&self.steps)
    }
}

/// The stages a list of steps copies from.
pub fn stage_refs(steps: &[Step]) -> impl Iterator<Item = &str> {
    steps.iter().filter_map(|s| match &s.op {
        StepOp::Copy {
            from_stage: Some(stage),
            ..
        } => Some(stage.as_str()),
        _ => None,
    })
}

/// Firmware a disk boots with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootMode {
    /// UEFI only.
    Uefi,
    /// Legacy BIOS only.
    Bios,
    /// Both, from one disk (the default).
    Hybrid,
}

/// The `[disk]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Total disk size in bytes; `None` means the content plus headroom.
    pub size: Option<u64>,
    /// Which firmware it boots with.
    pub boot: BootMode,
    /// The root filesystem (only `ext4` for now).
    pub filesystem: String,
    /// The kernel command line (the root= argument is added by imgbuild).
    pub cmdline: String,
    /// qcow2 with compressed clusters (vmdk is always compressed).
    pub compress: bool,
    /// The root partition and its ext4 grow to fill a larger disk on first boot; `None`
    /// when not set (on, the default).
    pub grow: Option<bool>,
}

impl DiskSpec {
    /// The defaults for an image of the OCI architecture `arch`: arm64 disks boot under
    /// UEFI only, with the console on `ttyAMA0` (the PL011 of QEMU's `virt`).
    pub fn for_architecture(arch: &str) -> Self {
        if arch == "arm64" {
            Self {
                boot: BootMode::Uefi,
                cmdline: "console=ttyAMA0".into(),
                ..Self::default()
            }
        } else {
            Self::default()
        }
    }
}

impl Default for DiskSpec {
    fn default() -> Self {
        Self {
            size: None,
            boot: BootMode::Hybrid,
            filesystem: "ext4".into(),
            cmdline: "console=ttyS0".into(),
            compress: false,
            grow: None,
        }
    }
}

/// Compression of an initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitramfsCompression {
    /// zstd (the default).
    Zstd,
    /// gzip.
    Gzip,
}

/// The `[initramfs]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsSpec {
    /// How the cpio is compressed.
    pub compression: InitramfsCompression,
    /// What `/init` runs; `None` means the image's own `/init` or `/sbin/init`.
    pub init: Option<String>,
}

impl Default for InitramfsSpec {
    fn default() -> Self {
        Self {
            compression: InitramfsCompression::Zstd,
            init: None,
        }
    }
}

/// The image's name, tags and platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The image name.
    pub name: String,
    /// Its tags (at least one).
    pub tags: Vec<String>,
    /// The platform this recipe value builds: `linux/amd64` or `linux/arm64`.
    pub platform: PlatformSpec,
    /// Every platform the recipe declares (`platforms`, or the one `platform`), in its
    /// order; the first is the primary one, whose lock is `RECIPE.lock`.
    pub platforms: Vec<PlatformSpec>,
    /// Where `platforms` (or `platform`) is written, for errors about it.
    pub platforms_span: Option<std::ops::Range<usize>>,
    /// SBOMs every build writes beside its outputs (`sbom = ["spdx", "cyclonedx"]`).
    pub sbom: Vec<SbomFormat>,
    /// Whether every build writes SLSA provenance beside its outputs.
    pub provenance: bool,
}

/// A software bill of materials format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    /// SPDX 2.3 JSON, written as `NAME.spdx.json`.
    Spdx,
    /// CycloneDX 1.6 JSON, written as `NAME.cdx.json`.
    Cyclonedx,
}

impl SbomFormat {
    /// Every format, as the recipe and `--sbom` spell them.
    pub const NAMES: &'static str = "spdx, cyclonedx";

    /// The file name suffix (`spdx.json`, `cdx.json`).
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Spdx => "spdx.json",
            Self::Cyclonedx => "cdx.json",
        }
    }

    /// The document's media type (also its OCI artifact type).
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Spdx => "application/spdx+json",
            Self::Cyclonedx => "application/vnd.cyclonedx+json",
        }
    }
}

impl std::str::FromStr for SbomFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spdx" => Ok(Self::Spdx),
            "cyclonedx" | "cdx" => Ok(Self::Cyclonedx),
            other => Err(format!(
                "unknown SBOM format `{other}`; choose one of {}",
                Self::NAMES
            )),
        }
    }
}

impl std::fmt::Display for SbomFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Spdx => "spdx",
            Self::Cyclonedx => "cyclonedx",
        })
    }
}

/// An OS/architecture pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// `linux`.
    pub os: String,
    /// `amd64` or `arm64`.
    pub architecture: String,
    /// `v8` for arm64.
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// Every platform imgbuild builds, as recipes and `--platform` spell them.
    pub const NAMES: &'static str = "linux/amd64, linux/arm64";

    /// `linux/amd64`.
    pub fn amd64() -> Self {
        Self {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }

    /// `linux/arm64/v8`.
    pub fn arm64() -> Self {
        Self {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        }
    }
}

impl std::str::FromStr for PlatformSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linux/amd64" => Ok(Self::amd64()),
            "linux/arm64" | "linux/arm64/v8" => Ok(Self::arm64()),
            other => Err(format!(
                "unsupported platform `{other}`; choose one of {}",
                Self::NAMES
            )),
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// What the image starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// Nothing.
    Scratch,
    /// A rootfs tarball (tar, tar.gz or tar.zst) on the host.
    Rootfs(PathBuf),
    /// An image in a local OCI layout, by tag (or the only image when no tag is given).
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`).
        tag: Option<String>,
    },
    /// An image in an OCI archive (a tarred OCI layout).
    OciArchive(PathBuf),
    /// A Debian userland bootstrapped from a mirror.
    Debian(crate::debian::DebianFrom),
    /// An image in a registry: `HOST/REPO:TAG` or `HOST/REPO@sha256:HEX`.
    Registry {
        /// The reference, parsed once when the recipe is read.
        reference: imgbuild_registry::Reference,
    },
}

/// One build step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based position among the steps.
    pub number: usize,
    /// The line of its `[[step]]` table, in the file that holds it.
    pub line: usize,
    /// Byte range of its kind's value (`copy = "..."`) in [`Recipe::source`] (global to
    /// the recipe's files).
    pub span: Range<usize>,
    /// Byte range of its whole table in [`Recipe::source`].
    pub table: Range<usize>,
    /// What it does.
    pub op: StepOp,
}

/// Owner of created files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepOp {
    /// Copy host files into the image.
    Copy {
        /// The source as written (file, directory or glob relative to the recipe).
        source: String,
        /// The matched host paths, sorted.
        matches: Vec<PathBuf>,
        /// Destination in the image.
        to: String,
        /// Mode for copied files (directories stay 0755).
        mode: Option<u32>,
        /// Owner for everything copied.
        owner: Owner,
        /// Copy from this stage's image instead of the host (`source` is then a path in it).
        from_stage: Option<String>,
    },
    /// Write a file with the given content.
    Write {
        /// Path in the image.
        path: String,
        /// The bytes.
        content: String,
        /// Mode (default 0644).
        mode: u32,
        /// Owner.
        owner: Owner,
    },
    /// Create a directory and its parents.
    Mkdir {
        /// Path in the image.
        path: String,
        /// Mode (default 0755).
        mode: u32,
        /// Owner.
        owner: Owner,
    },
    /// Create a symbolic link.
    Symlink {
        /// Path of the link.
        path: String,
        /// What it points to.
        target: String,
        /// Owner.
        owner: Owner,
    },
    /// Delete paths from the image below (as OCI whiteouts).
    Remove {
        /// Paths or globs in the image, each matched against the image below the step.
        paths: Vec<String>,
        /// A path or glob that matches nothing is not an error.
        missing_ok: bool,
    },
    /// Install Debian packages (with their dependencies).
    Packages {
        /// Package names (or relations such as `foo (>= 1.2)`).
        names: Vec<String>,
    },
    /// Run a shell command in the sandbox.
    Run(RunSpec),
    /// `[system]`: hostname, timezone, users, services, network, written natively as the
    /// image's last step.
    System(SystemSpec),
}

/// A `run` step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSpec {
    /// The `sh -c` script.
    pub script: String,
    /// Share the host's network (reported as `network` in `--json`; whether the layer
    /// is reproducible is what `build --check` tells).
    pub network: bool,
    /// Environment variables (besides PATH and HOME defaults).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub workdir: String,
    /// Numeric user.
    pub user: Owner,
    /// Ids of build secrets mounted at `/run/secrets/<id>`.
    pub secrets: Vec<String>,
}

impl StepOp {
    /// The key that names this kind of step in a recipe.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Copy { .. } => "copy",
            Self::Write { .. } => "write",
            Self::Mkdir { .. } => "mkdir",
            Self::Symlink { .. } => "symlink",
            Self::Remove { .. } => "remove",
            Self::Packages { .. } => "packages",
            Self::Run(_) => "run",
            Self::System(_) => "system",
        }
    }

    /// A one-line description for progress output and image history.
    pub fn describe(&self) -> String {
        match self {
            Self::Copy {
                source,
                to,
                from_stage: Some(stage),
                ..
            } => format!("copy {stage}:{source} {to}"),
            Self::Copy { source, to, .. } => format!("copy {source} {to}"),
            Self::Write { path, .. } => format!("write {path}"),
            Self::Mkdir { path, .. } => format!("mkdir {path}"),
            Self::Symlink { path, target, .. } => format!("symlink {path} -> {target}"),
            Self::Remove { paths, .. } => format!("remove {}", paths.join(" ")),
            Self::Packages { names } => format!("packages {}", names.join(" ")),
            Self::Run(run) => {
                let first = run.script.lines().next().unwrap_or_default();
                let more = if run.script.trim_end().contains('\n') {
                    " ..."
                } else {
                    ""
                };
                format!("run {first}{more}")
            }
            Self::System(spec) => spec.describe(),
        }
    }
}

/// The `[config]` section: what goes into the OCI image config.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigSpec {
    /// Entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// Cmd.
    pub cmd: Option<Vec<String>>,
    /// Environment, merged over the base image's.
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User.
    pub user: Option<String>,
    /// Labels, merged over the base image's.
    pub labels: BTreeMap<String, String>,
    /// Exposed ports (`8080/tcp`).
    pub ports: Vec<String>,
    /// Volumes.
    pub volumes: Vec<String>,
    /// Stop signal.
    pub stop_signal: Option<String>,
}

/// The `[system]` section, validated (see `docs/recipe.md`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct SystemSpec {
    /// `/etc/hostname` and `/etc/hosts`.
    pub hostname: Option<String>,
    /// A zone under `/usr/share/zoneinfo`.
    pub timezone: Option<String>,
    /// `LANG` in `/etc/default/locale`.
    pub locale: Option<String>,
    /// `KEYMAP` in `/etc/vconsole.conf`.
    pub keymap: Option<String>,
    /// Units to enable, disable and mask.
    pub services: ServicesSpec,
    /// `[[system.user]]`s in order.
    pub users: Vec<UserSpec>,
    /// `[system.network]`.
    pub network: Option<NetworkSpec>,
}

impl SystemSpec {
    /// `system (hostname devbox, 1 user, 2 services ...)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("hostname {h}"));
        }
        if let Some(t) = &self.timezone {
            parts.push(format!("timezone {t}"));
        }
        if let Some(l) = &self.locale {
            parts.push(format!("locale {l}"));
        }
        if let Some(k) = &self.keymap {
            parts.push(format!("keymap {k}"));
        }
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        if !self.users.is_empty() {
            parts.push(plural(self.users.len(), "user"));
        }
        let services =
            self.services.enable.len() + self.services.disable.len() + self.services.mask.len();
        if services > 0 {
            parts.push(plural(services, "service"));
        }
        match &self.network {
            Some(NetworkSpec::Dhcp) => parts.push("network dhcp".into()),
            Some(NetworkSpec::Static { address, .. }) => parts.push(format!("network {address}")),
            None => {}
        }
        format!("system ({})", parts.join(", "))
    }
}

/// `services = { enable, disable, mask }`: unit names (`ssh` means `ssh.service`).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ServicesSpec {
    /// Enabled through their `[Install]` sections.
    pub enable: Vec<String>,
    /// Their symlinks under `/etc/systemd/system` removed.
    pub disable: Vec<String>,
    /// Linked to `/dev/null`.
    pub mask: Vec<String>,
}

/// One `[[system.user]]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserSpec {
    /// Login name.
    pub name: String,
    /// Fixed uid; `None` takes the first free one from 1000.
    pub uid: Option<u32>,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Create missing groups instead of failing.
    pub create_groups: bool,
    /// Login shell; `None` means `/bin/bash` when the image has it, else `/bin/sh`.
    pub shell: Option<String>,
    /// Home directory; `None` means `/home/NAME`.
    pub home: Option<String>,
    /// Every `authorized_keys` line: the inline ones, then the file's.
    pub ssh_authorized_keys: Vec<String>,
    /// `ssh_authorized_keys_file` as written (its lines are in `ssh_authorized_keys`).
    pub ssh_authorized_keys_file: Option<String>,
    /// A crypt(5) hash; `None` locks the password.
    pub password_hash: Option<String>,
    /// A sudoers rule.
    pub sudo: Option<Sudo>,
}

/// `sudo = "password" | "nopasswd"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sudo {
    /// `ALL=(ALL:ALL) ALL`.
    Password,
    /// `ALL=(ALL:ALL) NOPASSWD: ALL`.
    Nopasswd,
}

/// `[system.network]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkSpec {
    /// DHCP on every ethernet interface.
    Dhcp,
    /// A fixed address.
    Static {
        /// An interface name or glob (`en*`).
        interface: String,
        /// Address with prefix length (`10.0.0.5/24`).
        address: String,
        /// Default gateway.
        gateway: Option<String>,
        /// DNS servers.
        dns: Vec<String>,
    },
}
