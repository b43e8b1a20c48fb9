//! Initramfs archive writers.

pub mod cpio;
