//! FAT32 filesystem writer that never mounts (Microsoft FAT Specification,
//! "fatgen103", with VFAT long file names).
//!
//! Build a tree with [`FatImage::add_dir`] / [`FatImage::add_file`], then
//! [`FatImage::write_to`] any `Write + Seek` at a byte offset (e.g. a disk
//! image at a GPT partition's [`byte_offset`](crate::disk::gpt::Partition::byte_offset)).
//!
//! Determinism: the volume serial number is derived from a caller seed, all
//! timestamps come from one caller epoch (SOURCE_DATE_EPOCH semantics),
//! directory entries are sorted by name and clusters are allocated
//! contiguously in a fixed depth-first order. Free clusters are never
//! written, so write into a zeroed (sparse) region to get identical bytes.
//!
//! Size limits: at least [`min_volume_size`] bytes (≈ 32.5 MiB; use ≥ 33 MiB)
//! so the volume keeps ≥ 65,525 clusters and is FAT32 by the type
//! determination rule; at most 2 TiB.
//!
//! Boot loaders: the boot sector carries a stub (`int 18h`, "boot next
//! device") in its code area (bytes 90..510), which
//! [`FatOptions::boot_code`] can replace. `syslinux --install` (Debian
//! `syslinux` / `syslinux-mtools`) can be run on the finished image: it
//! patches that code area and adds `ldlinux.sys` as a file, and needs no
//! space beyond the [`DEFAULT_RESERVED_SECTORS`] reserved sectors kept here
//! (sectors 2..=5 and 9..=31 are free; 0/1 hold the boot sector and FSInfo,
//! 6/7 their backups).

mod dirent;
mod geometry;
mod names;
mod writer;

use std::collections::BTreeMap;
use std::io::{Seek, Write};

pub use crate::disk::source::FileData;
pub use geometry::{min_volume_size, FatGeometry, DEFAULT_RESERVED_SECTORS, MIN_CLUSTERS};

/// Errors while building or writing a FAT32 volume.
#[derive(Debug, thiserror::Error)]
pub enum FatError {
    /// The volume cannot hold 65,525 clusters.
    #[error("FAT32 volume of {size} bytes is too small: it needs at least {min} bytes (65,525 clusters); make the partition at least 33 MiB")]
    VolumeTooSmall {
        /// Requested size.
        size: u64,
        /// Minimum size.
        min: u64,
    },
    /// Beyond what FAT32 with 512-byte sectors can address.
    #[error("FAT32 volume of {size} bytes is too large: FAT32 supports at most 2 TiB; use a smaller ESP")]
    VolumeTooLarge {
        /// Requested size.
        size: u64,
    },
    /// The files do not fit.
    #[error("FAT32 volume is full: the files and directories need {needed} clusters of {cluster_bytes} bytes but only {available} exist; enlarge the partition")]
    NoSpace {
        /// Clusters needed.
        needed: u64,
        /// Clusters in the volume.
        available: u64,
        /// Cluster size.
        cluster_bytes: u64,
    },
    /// More entries in one directory than FAT allows.
    #[error("{path}: directory needs {entries} 32-byte entries, FAT allows 65,536; spread the files over subdirectories or use shorter names")]
    DirectoryTooLarge {
        /// Directory path.
        path: String,
        /// Entries needed (including long-name entries).
        entries: usize,
    },
    /// A file larger than 4 GiB - 1.
    #[error("{path}: {size} bytes is over the FAT32 file size limit of 4 GiB - 1")]
    FileTooLarge {
        /// Path in the volume.
        path: String,
        /// File size.
        size: u64,
    },
    /// A path component FAT cannot store.
    #[error("{path}: invalid FAT name: {reason}")]
    InvalidName {
        /// Path in the volume.
        path: String,
        /// Why.
        reason: &'static str,
    },
    /// Two names that FAT treats as equal, or a file in the way of a directory.
    #[error("{path}: conflicts with existing entry {existing:?} (FAT names are case-insensitive; each path may be added once)")]
    Conflict {
        /// Path being added.
        path: String,
        /// Entry it clashes with.
        existing: String,
    },
    /// An invalid volume label.
    #[error("invalid volume label {label:?}: use at most 11 characters from A-Z, 0-9, space and $%'-_@~`!(){{}}^#&")]
    InvalidLabel {
        /// The label.
        label: String,
    },
    /// Boot code larger than the boot sector code area.
    #[error("boot code is {len} bytes; the FAT32 boot sector code area holds at most 420")]
    BootCodeTooLong {
        /// Supplied length.
        len: usize,
    },
    /// A file source yielded fewer bytes than declared.
    #[error("{path}: source ended after {got} of the declared {expected} bytes")]
    ShortRead {
        /// Path in the volume.
        path: String,
        /// Declared length.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// Reading a source file failed.
    #[error("{path}: reading source failed: {source}")]
    Source {
        /// Path in the volume.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the image failed.
    #[error("writing the FAT32 image failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Volume-wide settings.
#[derive(Debug, Clone)]
pub struct FatOptions {
    /// Volume size in bytes (rounded down to 512-byte sectors).
    pub size_bytes: u64,
    /// Seed for the volume serial number (first 4 bytes of its SHA-256).
    pub volume_id_seed: Vec<u8>,
    /// Unix seconds for every timestamp (clamped to 1980..=2107).
    pub epoch: i64,
    /// Volume label (≤ 11 characters, stored upper case); `None` = "NO NAME".
    pub label: Option<String>,
    /// Reserved sectors before the first FAT; values below 8 are raised to 8
    /// (sectors 0/1 boot sector and FSInfo, 6/7 their backups).
    pub reserved_sectors: u16,
    /// `BPB_HiddSec`: the partition's starting LBA (needed by some boot code).
    pub hidden_sectors: u32,
    /// Boot code for bytes 90..510 of the boot sector (≤ 420 bytes).
    pub boot_code: Option<Vec<u8>>,
}

impl FatOptions {
    /// Options with defaults: no label, 32 reserved sectors, no hidden sectors.
    pub fn new(size_bytes: u64, volume_id_seed: &[u8], epoch: i64) -> FatOptions {
        FatOptions {
            size_bytes,
            volume_id_seed: volume_id_seed.to_vec(),
            epoch,
            label: None,
            reserved_sectors: DEFAULT_RESERVED_SECTORS,
            hidden_sectors: 0,
            boot_code: None,
        }
    }
}

/// What [`FatImage::write_to`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatSummary {
    /// The volume layout.
    pub geometry: FatGeometry,
    /// The volume serial number.
    pub volume_id: u32,
    /// Clusters in use (directories and files).
    pub used_clusters: u64,
}

/// A directory tree node.
#[derive(Debug)]
pub(crate) enum Node {
    Dir(BTreeMap<String, Node>),
    File(FileData),
}

/// A FAT32 volume being assembled.
#[derive(Debug)]
pub struct FatImage {
    opts: FatOptions,
    geometry: FatGeometry,
    root: BTreeMap<String, Node>,
}

impl FatImage {
    /// Starts an empty volume; fails early if the size is unusable.
    pub fn new(opts: FatOptions) -> Result<FatImage, FatError> {
        let geometry = FatGeometry::compute(opts.size_bytes, opts.reserved_sectors.max(8))?;
        if let Some(label) = &opts.label {
            writer::label_bytes(label)?;
        }
        if let Some(code) = &opts.boot_code {
            if code.len() > 420 {
                return Err(FatError::BootCodeTooLong { len: code.len() });
            }
        }
        Ok(FatImage {
            opts,
            geometry,
            root: BTreeMap::new(),
        })
    }

    /// The computed layout.
    pub fn geometry(&self) -> FatGeometry {
        self.geometry
    }

    /// Creates directory `path` and its parents (like `mkdir -p`).
    /// Components are separated by `/`.
    pub fn add_dir(&mut self, path: &str) -> Result<(), FatError> {
        self.dir_mut(path, &components(path)?)?;
        Ok(())
    }

    /// Adds file `path`, creating parent directories.
    pub fn add_file(&mut self, path: &str, data: FileData) -> Result<(), FatError> {
        let comps = components(path)?;
        let Some((name, parents)) = comps.split_last() else {
            return Err(FatError::InvalidName {
                path: path.to_string(),
                reason: "a file needs a name",
            });
        };
        if data.len() > u64::from(u32::MAX) {
            return Err(FatError::FileTooLarge {
                path: path.to_string(),
                size: data.len(),
            });
        }
        let dir = self.dir_mut(path, parents)?;
        check_no_case_clash(dir, name, path)?;
        dir.insert(name.to_string(), Node::File(data));
        Ok(())
    }

    fn dir_mut(
        &mut self,
        path: &str,
        comps: &[&str],
    ) -> Result<&mut BTreeMap<String, Node>, FatError> {
        let mut dir = &mut self.root;
        for comp in comps {
            if !dir.contains_key(*comp) {
                check_no_case_clash(dir, comp, path)?;
            }
            let node = dir
                .entry(comp.to_string())
                .or_insert_with(|| Node::Dir(BTreeMap::new()));
            dir = match node {
                Node::Dir(d) => d,
                Node::File(_) => {
                    return Err(FatError::Conflict {
                        path: path.to_string(),
                        existing: comp.to_string(),
                    })
                }
            };
        }
        Ok(dir)
    }

    /// Writes the volume into `w` starting at byte `offset`. Only the
    /// volume's `size_bytes` starting there are touched (its last sector is
    /// always written, so a plain file grows to the full size).
    pub fn write_to<W: Write + Seek>(self, w: &mut W, offset: u64) -> Result<FatSummary, FatError> {
        writer::write(self.opts, self.geometry, self.root, w, offset)
    }
}

/// Errors if `dir` holds a name equal to `name` ignoring case.
fn check_no_case_clash(
    dir: &BTreeMap<String, Node>,
    name: &str,
    path: &str,
) -> Result<(), FatError> {
    let upper = name.to_uppercase();
    match dir.keys().find(|k| k.to_uppercase() == upper) {
        Some(existing) => Err(FatError::Conflict {
            path: path.to_string(),
            existing: existing.clone(),
        }),
        None => Ok(()),
    }
}

/// Splits `path` on `/`, ignoring empty components, validating each.
fn components(path: &str) -> Result<Vec<&str>, FatError> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    for c in &comps {
        if let Some(reason) = names::invalid_reason(c) {
            return Err(FatError::InvalidName {
                path: path.to_string(),
                reason,
            });
        }
    }
    Ok(comps)
}

#[cfg(test)]
mod tests;
