//! Initramfs: the newc cpio writer and the `--format initramfs` exporter.

pub mod cpio;
pub mod export;
