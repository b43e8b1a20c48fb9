//! imgbuild formats
pub mod disk;
pub mod initramfs;
