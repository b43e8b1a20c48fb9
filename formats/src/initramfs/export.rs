//! `--format initramfs`: the whole merged userland as one deterministic newc cpio
//! (compressed with zstd or gzip), with `/init` set up, and the image's kernel beside it
//! so that `qemu -kernel NAME.vmlinuz -initrd NAME.initramfs.cpio.zst` boots it.
//!
//! Entries keep the layers' order (directories first), owners, modes and hard links;
//! newc has no room for xattrs, so they are dropped. The kernel and initrd in `/boot`
//! are left out of the archive: the kernel is written beside it and an initrd inside an
//! initramfs is dead weight.

use super::cpio::{CpioError, CpioStream, Entry};
use crate::bootdisk::kernel::{find_kernel, KernelFiles};
use crate::disk::source::FileData;
use crate::{rootfs_tar, ExportError, StoredImage};
use imgbuild_store::tarball::{EntryKind, EntryMeta, MergedTree, TreeSink};
use imgbuild_store::Store;
use std::collections::{BTreeSet, HashMap};
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

/// Streams the merged tree into a cpio archive, leaving out `skip`.
struct CpioSink<W: Write> {
    archive: CpioStream<W>,
    skip: BTreeSet<String>,
    kernel_path: String,
    kernel: Vec<u8>,
    /// The archive's own error, which the tree stream only sees as an I/O error.
    failed: Option<CpioError>,
}

impl<W: Write> CpioSink<W> {
    fn add(&mut self, entry: Entry) -> io::Result<()> {
        self.archive.add(entry).map_err(|e| {
            let io = match &e {
                CpioError::Io(io) => io::Error::new(io.kind(), io.to_string()),
                other => io::Error::other(other.to_string()),
            };
            self.failed = Some(e);
            io
        })
    }
}

impl<W: Write> TreeSink for CpioSink<W> {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> io::Result<()> {
        if meta.path == self.kernel_path {
            data.read_to_end(&mut self.kernel)?;
            return Ok(());
        }
        if !keeps(&self.kernel_path, &self.skip, &meta.path, &meta.kind) {
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
            kind => Entry::new(meta.path.clone(), meta.mode, meta.mtime, kind.clone()),
        };
        entry.uid = meta.uid;
        entry.gid = meta.gid;
        self.add(entry)
    }
}

/// True when the entry at `path` of `kind` goes into the archive: neither it nor a hard
/// link's target is the kernel or in `skip`.
fn keeps(kernel: &str, skip: &BTreeSet<String>, path: &str, kind: &EntryKind) -> bool {
    let left_out = |p: &str| p == kernel || skip.contains(p);
    !left_out(path) && !matches!(kind, EntryKind::Hardlink(t) if left_out(t))
}

/// Writes the image as a compressed initramfs to `out`, cpio entries compressed as they
/// stream out of the layers (the tree is never whole in memory); returns the kernel's
/// bytes.
pub fn write(
    store: &Store,
    image: &StoredImage,
    options: &InitramfsOptions,
    out: &mut dyn Write,
) -> Result<Vec<u8>, ExportError> {
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
    match options.compression {
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, 3)?;
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            enc.multithread(u32::try_from(workers).unwrap_or(1))?;
            let (enc, kernel) = write_cpio(store, image, &tree, &kernel, skip, init_target, enc)?;
            enc.finish()?;
            Ok(kernel)
        }
        Compression::Gzip => {
            let enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(out, flate2::Compression::new(6));
            let (enc, kernel) = write_cpio(store, image, &tree, &kernel, skip, init_target, enc)?;
            enc.finish()?;
            Ok(kernel)
        }
    }
}

/// Streams the cpio archive into `out` (the compressor); returns it and the kernel.
fn write_cpio<W: Write>(
    store: &Store,
    image: &StoredImage,
    tree: &MergedTree,
    kernel: &KernelFiles,
    skip: BTreeSet<String>,
    init_target: Option<String>,
    out: W,
) -> Result<(W, Vec<u8>), ExportError> {
    // Each kept file's number of kept names, for the newc link rule.
    let mut nlink = HashMap::new();
    for meta in tree.iter() {
        if let EntryKind::Hardlink(target) = &meta.kind {
            if keeps(&kernel.kernel, &skip, &meta.path, &meta.kind) {
                *nlink.entry(target.clone()).or_insert(1) += 1;
            }
        }
    }
    let mut sink = CpioSink {
        archive: CpioStream::new(out, nlink)?,
        skip,
        kernel_path: kernel.kernel.clone(),
        kernel: Vec::new(),
        failed: None,
    };
    let streamed = rootfs_tar::stream_tree(store, image, tree, &mut sink);
    if let Some(failed) = sink.failed.take() {
        return Err(failed.into());
    }
    streamed?;
    if let Some(target) = init_target {
        sink.add(Entry::new(
            "init",
            0o777,
            image.epoch(),
            EntryKind::Symlink(target),
        ))?;
    }
    let (out, _) = sink.archive.finish()?;
    Ok((out, sink.kernel))
}

/// True when `path`, resolved inside the image, is a regular file (or a hard link to one).
fn runs(tree: &MergedTree, path: &str) -> bool {
    tree.resolve(path)
        .ok()
        .and_then(|p| tree.get(&p))
        .is_some_and(|m| matches!(m.kind, EntryKind::File | EntryKind::Hardlink(_)))
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
