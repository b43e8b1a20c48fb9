//! imgbuild's exporters. Each reads an image (manifest, config, layers) from the store and
//! streams it into one output format; none reaches into the builder.
//!
//! - [`oci_layout`]: an [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md) directory
//! - [`oci_archive`]: the same layout as one tar file
//! - [`docker_archive`]: what `docker load` and `podman load` read
//! - [`rootfs_tar`]: the flattened root filesystem as one tar
//! - [`bootdisk`]: bootable raw/qcow2 disks (GPT, ESP with systemd-boot and syslinux, ext4 root)
//! - [`disk`]: the pieces of a bootable disk: GPT, FAT32 ESP, ext4 root, qcow2
//! - [`initramfs`]: a newc cpio of the whole userland, with the kernel beside it
//! - [`vm`]: booting those outputs in QEMU and watching the serial console
//!
//! Every output is written beside its final path as a hidden, locked
//! `.imgbuild-staged-*` entry and renamed into place when complete, so a failed or killed
//! export never leaves a half-written artifact, and the next export into the directory
//! removes what a killed one staged.
#![forbid(unsafe_code)]

pub mod bootdisk;
pub mod disk;
pub mod docker_archive;
mod error;
mod image;
pub mod initramfs;
pub mod oci_archive;
pub mod oci_layout;
mod output;
pub mod reuse;
pub mod rootfs_tar;
mod staging;
pub mod vm;

pub use error::ExportError;
pub use image::{StoredImage, StoredIndex};
pub use output::{artifact_for, export, export_all, export_index, Artifact, ExportOptions, Format};
pub use staging::sweep as sweep_staged;
pub use staging::write_file as write_output_file;
