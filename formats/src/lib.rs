//! imgbuild's exporters. Each reads an image (manifest, config, layers) from the store and
//! streams it into one output format; none reaches into the builder.
//!
//! - [`oci_layout`]: an [OCI image layout](https://github.com/opencontainers/image-spec/blob/main/image-layout.md) directory
//! - [`oci_archive`]: the same layout as one tar file
//! - [`docker_archive`]: what `docker load` and `podman load` read
//! - [`rootfs_tar`]: the flattened root filesystem as one tar
//!
//! Every output is written beside its final path and renamed into place when complete,
//! so a failed or killed export never leaves a half-written artifact.

pub mod docker_archive;
mod error;
mod image;
pub mod oci_archive;
pub mod oci_layout;
mod output;
pub mod rootfs_tar;

pub use error::ExportError;
pub use image::StoredImage;
pub use output::{export, Artifact, ExportOptions, Format};
