//! `--format initramfs`: the whole merged userland as one deterministic newc cpio
//! (compressed with zstd or gzip), with `/init` set up, and the image's kernel beside it
//! so that `qemu -kernel NAME.vmlinuz -initrd NAME.initramfs.cpio.zst` boots it.
//!
//! Entries keep the layers' order (directories first), owners, modes and hard links;
//! newc has no room for xattrs, so they are dropped. The kernel and initrd in `/boot`
//! are left out of the archive: the kernel is written beside it and an initrd inside an
//! initramfs is dead weight.

use super::cpio::{CpioArchive, Entry};
use crate::bootdisk::kernel::find_kernel;
use crate::disk::source::FileData;
use crate::{rootfs_tar, ExportError, StoredImage};
use imgbuild_store::tarball::{EntryKind, EntryMeta, MergedTree, TreeSink};
use imgbuild_store::Store;
use std::collections::BTreeSet;
use std::io::{self, Read, Write};

/// How the archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// zstd level 3, multi-threaded (the output does not depend on the thread count).
    #[default]
    Zstd,
    /// gzip level 6, no name, mtime 0.
    Gzip,
}

impl Compression {
    /// The file name suffix.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Zstd => "zst",
            Self::Gzip => "gz",
        }
    }
}

/// The `[initramfs]` choices.
#[derive(Debug, Clone, Default)]
pub struct InitramfsOptions {
    /// How the cpio is compressed.
    pub compression: Compression,
    /// What `/init` should run (a path in the image); `None`: the image's own `/init`,
    /// else `/sbin/init`.
    pub init: Option<String>,
}

/// A built initramfs, ready to be written.
#[derive(Debug)]
pub struct Initramfs {
    archive: CpioArchive,
    /// The kernel's bytes.
    pub kernel: Vec<u8>,
    compression: Compression,
}

/// Collects the merged tree into a cpio archive, leaving out `skip`.
struct CpioSink {
    archive: CpioArchive,
    skip: BTreeSet<String>,
    kernel_path: String,
    kernel: Vec<u8>,
}

impl TreeSink for CpioSink {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        if meta.path == self.kernel_path {
            data.read_to_end(&mut self.kernel)?;
            return Ok(());
        }
        if self.skip.contains(&meta.path) {
            return io::copy(data, &mut io::sink()).map(drop);
        }
        let mut entry = match &meta.kind {
            EntryKind::File => {
                let mut bytes = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
                data.read_to_end(&mut bytes)?;
                Entry::file(
                    meta.path.clone(),
                    meta.mode,
                    meta.mtime,
                    FileData::Bytes(bytes),
                )
            }
            EntryKind::Hardlink(t) if self.skip.contains(t) || *t == self.kernel_path => {
                return Ok(())
            }
            kind => Entry::new(meta.path.clone(), meta.mode, meta.mtime, kind.clone()),
        };
        entry.uid = meta.uid;
        entry.gid = meta.gid;
        self.archive.add(entry);
        Ok(())
    }
}

/// Reads the image into an initramfs.
pub fn build(
    store: &Store,
    image: &StoredImage,
    options: &InitramfsOptions,
) -> Result<Initramfs, ExportError> {
    let tree = rootfs_tar::merged_tree(store, image)?;
    let kernel = find_kernel(&tree)?;
    let mut skip: BTreeSet<String> = kernel.initrd.iter().cloned().collect();
    let init_target = match &options.init {
        Some(path) => {
            skip.insert("init".into());
            Some(path.clone())
        }
        None if tree.get("init").is_some() => None,
        // Resolved inside the image: a systemd image's `/sbin/init` is reached through
        // `sbin -> usr/sbin` and is itself a link to `../lib/systemd/systemd`.
        None if runs(&tree, "sbin/init") => Some("/sbin/init".into()),
        None => return Err(ExportError::NoInit),
    };
    let mut sink = CpioSink {
        archive: CpioArchive::new(),
        skip,
        kernel_path: kernel.kernel.clone(),
        kernel: Vec::new(),
    };
    rootfs_tar::stream_tree(store, image, &tree, &mut sink)?;
    if let Some(target) = init_target {
        sink.archive.add(Entry::new(
            "init",
            0o777,
            image.epoch(),
            EntryKind::Symlink(target),
        ));
    }
    Ok(Initramfs {
        archive: sink.archive,
        kernel: sink.kernel,
        compression: options.compression,
    })
}

/// True when `path`, resolved inside the image, is a regular file (or a hard link to one).
fn runs(tree: &MergedTree, path: &str) -> bool {
    tree.resolve(path)
        .ok()
        .and_then(|p| tree.get(&p))
        .is_some_and(|m| matches!(m.kind, EntryKind::File | EntryKind::Hardlink(_)))
}

impl Initramfs {
    /// Writes the compressed archive to `out`.
    pub fn write_archive(self, out: &mut dyn Write) -> Result<(), ExportError> {
        match self.compression {
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
                enc.multithread(u32::try_from(workers).unwrap_or(1))?;
                self.archive.write_to(&mut enc)?;
                enc.finish()?;
            }
            Compression::Gzip => {
                let mut enc = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(out, flate2::Compression::new(6));
                self.archive.write_to(&mut enc)?;
                enc.finish()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgbuild_store::tarball::TarWriter;

    fn tree(links: &[(&str, &str)], files: &[&str]) -> MergedTree {
        let mut w = TarWriter::new(Vec::new());
        for (path, target) in links {
            let m = EntryMeta::new(*path, EntryKind::Symlink((*target).into()), 0o777, 0);
            w.append(&m, &mut io::empty()).unwrap();
        }
        for path in files {
            let mut m = EntryMeta::file(*path, 1, 0);
            m.mode = 0o755;
            w.append(&m, &mut &b"x"[..]).unwrap();
        }
        let bytes = w.finish().unwrap();
        MergedTree::build([bytes.as_slice()]).unwrap()
    }

    #[test]
    fn a_usrmerged_systemd_init_is_found_through_its_links() {
        let systemd = tree(
            &[
                ("sbin", "usr/sbin"),
                ("lib", "usr/lib"),
                ("usr/sbin/init", "../lib/systemd/systemd"),
            ],
            &["usr/lib/systemd/systemd"],
        );
        assert!(runs(&systemd, "sbin/init"));
        let dangling = tree(&[("sbin", "usr/sbin"), ("usr/sbin/init", "nowhere")], &[]);
        assert!(!runs(&dangling, "sbin/init"));
    }
}
