//! Low-level disk image writers.
//!
//! Every writer here is pure library code: it never mounts, loops or
//! partitions a real device, and given the same inputs it produces the same
//! bytes. The CLI wires them into `--format raw|qcow2|vmdk|vhd|vhdx|gce|initramfs`.
//!
//! - [`gpt`]: GUID partition table plus protective (or hybrid) MBR.
//! - [`guid`]: GUIDs with the GPT mixed-endian encoding, seeded GUIDs.
//! - [`fat`]: a FAT32 filesystem writer (for the EFI system partition).
//! - [`qcow2`]: a streaming qcow2 v3 writer from a raw image, and a reader of guest bytes.
//! - [`gce`]: the raw image as a sparse `disk.raw` in a gzip'd GNU tar (GCE).
//! - [`vhd`]: a fixed VHD (Azure) from a raw image, in place.
//! - [`vhdx`]: a dynamic VHDX (Hyper-V) from a raw image.
//! - [`vmdk`]: a streamOptimized VMDK (VMware, OVA) from a raw image.
//! - [`probe`]: what a given disk image is: qcow2 or raw, BIOS-bootable or UEFI-only.
//! - [`ext4`]: deterministic ext4 from a tarball via `mke2fs -d`.
//! - [`align`]: 1 MiB alignment helpers.
//! - [`source`]: file contents (bytes, reader, host path).
//! - [`sparse`]: data extents of sparse files (`SEEK_DATA`/`SEEK_HOLE`).

pub mod align;
mod crc32;
pub mod ext4;
pub mod fat;
pub mod gce;
pub mod gpt;
pub mod guid;
pub mod probe;
pub mod qcow2;
pub mod source;
pub mod sparse;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

#[cfg(test)]
pub(crate) mod testutil;
