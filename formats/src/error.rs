//! The exporters' error type.

use std::path::PathBuf;

/// An export failed; nothing was left at the output path.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An I/O error the exporter could not place on the output side (the message names
    /// the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A format that holds one platform was asked of a multi-platform image.
    #[error("{format} holds one platform; choose one with --platform (only oci and oci-archive hold several)")]
    OnePlatform {
        /// The format.
        format: &'static str,
    },
    /// The output's filesystem is full (ENOSPC) or the user's quota is used up (EDQUOT).
    #[error("no space left on device while writing {path}{}; free space there or choose another -o", if *quota { " (disk quota exceeded)" } else { "" })]
    NoSpace {
        /// The output being written.
        path: PathBuf,
        /// True for EDQUOT.
        quota: bool,
    },
    /// Writing the output failed for another reason than space.
    #[error("writing {path}: {source}")]
    Write {
        /// The output being written.
        path: PathBuf,
        /// What the write returned.
        #[source]
        source: std::io::Error,
    },
    /// Reading from the store failed.
    #[error(transparent)]
    Store(#[from] imgbuild_store::StoreError),
    /// A layer in the store could not be read as a tar stream.
    #[error("layer {diff_id}: {source}")]
    Layer {
        /// The layer.
        diff_id: imgbuild_store::Digest,
        /// What is wrong.
        #[source]
        source: imgbuild_store::tarball::LayerReadError,
    },
    /// The output path exists and is not what this format writes.
    #[error("{path} exists and is not a {expected}; remove it or choose another -o")]
    OutputInTheWay {
        /// The path.
        path: PathBuf,
        /// What the format writes there.
        expected: &'static str,
    },
    /// The image has no kernel in `/boot`.
    #[error(
        "the image has no kernel (no /boot/vmlinuz-*): add `linux-image-amd64` (`linux-image-arm64` for arm64) to a packages step"
    )]
    NoKernel,
    /// An initramfs has nothing to run as `/init`.
    #[error("the image has neither /init nor /sbin/init: set `[initramfs] init = \"/path/to/init\"` or add an init to the image")]
    NoInit,
    /// The requested disk size cannot hold the content.
    #[error("[disk] size is {requested} bytes ({} MiB) but the content needs at least {needed} bytes ({} MiB); raise [disk] size or remove it to size the disk automatically", requested / 1048576, needed.div_ceil(1048576))]
    DiskTooSmall {
        /// The requested size, rounded down to a MiB.
        requested: u64,
        /// The smallest size that holds the ESP and the root filesystem.
        needed: u64,
    },
    /// The image's architecture has no bootable disk layout.
    #[error("the image's architecture is `{architecture}`; bootable disks are written for amd64 and arm64 only")]
    DiskArchitecture {
        /// The image config's `architecture`.
        architecture: String,
    },
    /// Legacy BIOS boot asked for a disk of an architecture without it.
    #[error("an {architecture} disk boots under UEFI only, not `{firmware}`: set [disk] boot = \"uefi\" (the default for {architecture})")]
    FirmwareArchitecture {
        /// The image's architecture.
        architecture: &'static str,
        /// The requested firmware (`bios` or `hybrid`).
        firmware: &'static str,
    },
    /// The image's gzip-compressed arm64 kernel could not be decompressed for the ESP.
    #[error("decompressing the image's kernel {path}: {source}")]
    Kernel {
        /// The kernel's path in the image.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A bootloader binary the firmware choice needs was not provided.
    #[error("no {what} was provided for this disk; the CLI fetches it from Debian, check the mirror is reachable")]
    MissingBootAssets {
        /// What is missing.
        what: &'static str,
    },
    /// Installing a bootloader failed.
    #[error("installing the bootloader: {reason}")]
    Bootloader {
        /// What went wrong.
        reason: String,
    },
    /// Writing the partition table failed.
    #[error("writing the partition table: {0}")]
    Gpt(#[from] crate::disk::gpt::GptError),
    /// Writing the EFI system partition failed.
    #[error("writing the EFI system partition: {0}")]
    Fat(#[from] crate::disk::fat::FatError),
    /// Making the root filesystem failed.
    #[error("making the ext4 root filesystem: {0}")]
    Ext4(#[from] crate::disk::ext4::Ext4Error),
    /// Converting to qcow2 failed.
    #[error("converting the disk to qcow2: {0}")]
    Qcow2(#[from] crate::disk::qcow2::Qcow2Error),
    /// Turning the disk into a fixed VHD failed.
    #[error("writing the VHD: {0}")]
    Vhd(#[from] crate::disk::vhd::VhdError),
    /// Writing the GCE archive failed.
    #[error("writing the GCE image archive: {0}")]
    Gce(#[from] crate::disk::gce::GceError),
    /// Writing the VHDX failed.
    #[error("converting the disk to VHDX: {0}")]
    Vhdx(#[from] crate::disk::vhdx::VhdxError),
    /// Writing the VMDK failed.
    #[error("converting the disk to VMDK: {0}")]
    Vmdk(#[from] crate::disk::vmdk::VmdkError),
    /// Writing the initramfs archive failed.
    #[error("writing the initramfs: {0}")]
    Cpio(#[from] crate::initramfs::cpio::CpioError),
}

/// ENOSPC or EDQUOT: `Some(true)` for a quota, `Some(false)` for a full filesystem.
pub(crate) fn no_space(e: &std::io::Error) -> Option<bool> {
    match e.kind() {
        std::io::ErrorKind::StorageFull => Some(false),
        std::io::ErrorKind::QuotaExceeded => Some(true),
        _ => None,
    }
}

impl From<imgbuild_store::MergeError> for ExportError {
    fn from(e: imgbuild_store::MergeError) -> Self {
        match e {
            imgbuild_store::MergeError::Store(e) => Self::Store(e),
            imgbuild_store::MergeError::Layer { diff_id, source } => {
                Self::Layer { diff_id, source }
            }
        }
    }
}

impl ExportError {
    /// True when the user has to fix something: an output path in the way, a `[disk]`
    /// size too small, an image without a kernel or init. Write failures are not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::OutputInTheWay { .. }
            | Self::OnePlatform { .. }
            | Self::DiskTooSmall { .. }
            | Self::NoKernel
            | Self::NoInit
            | Self::DiskArchitecture { .. }
            | Self::FirmwareArchitecture { .. }
            | Self::Kernel { .. } => true,
            Self::Store(e) => e.is_user_error(),
            Self::Io(_)
            | Self::NoSpace { .. }
            | Self::Write { .. }
            | Self::Layer { .. }
            | Self::MissingBootAssets { .. }
            | Self::Bootloader { .. }
            | Self::Gpt(_)
            | Self::Fat(_)
            | Self::Ext4(_)
            | Self::Qcow2(_)
            | Self::Vhd(_)
            | Self::Vmdk(_)
            | Self::Vhdx(_)
            | Self::Gce(_)
            | Self::Cpio(_) => false,
        }
    }

    /// Whether this error is an ENOSPC/EDQUOT from writing (`Some(true)` for a quota).
    /// Store errors are never counted: those are the store's disk, not the output's.
    pub(crate) fn no_space(&self) -> Option<bool> {
        match self {
            Self::Io(e) => no_space(e),
            Self::Store(_) => None,
            Self::NoSpace { quota, .. } => Some(*quota),
            other => std::error::Error::source(other).and_then(no_space_in_chain),
        }
    }
}

/// The first ENOSPC/EDQUOT in `err`'s chain of sources, if any.
fn no_space_in_chain(err: &(dyn std::error::Error + 'static)) -> Option<bool> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<std::io::Error>().and_then(no_space) {
            return Some(found);
        }
        next = e.source();
    }
    None
}
