//! A whole raw disk: plan (metadata only, so size errors come first), then GPT, ESP,
//! bootloaders and the ext4 root, written into one file.

use super::arch::DiskArch;
use super::esp::{install_syslinux, write_esp, EspContent};
use super::grow::image_can_grow;
use super::kernel::{find_kernel, KernelFiles};
use super::layout::{plan, DiskLayout};
use super::options::{BootAssets, DiskOptions};
use super::rootfs::{fstab, RootSink};
use crate::disk::ext4::{spawn_ext4, Ext4Options};
use crate::disk::gpt::{attr, Gpt, PartitionSpec};
use crate::disk::guid::{guid_from_seed, Guid};
use crate::output::WriteSide;
use crate::{rootfs_tar, ExportError, StoredImage};
use imgbuild_store::tarball::{EntryMeta, MergedTree, TarWriter, TreeSink};
use imgbuild_store::Store;
use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

/// A disk whose layout has been checked; nothing has been written yet.
#[derive(Debug)]
pub struct PreparedDisk<'a> {
    store: &'a Store,
    image: &'a StoredImage,
    options: &'a DiskOptions,
    assets: &'a BootAssets,
    tree: MergedTree,
    kernel: KernelFiles,
    /// The image's architecture.
    pub arch: DiskArch,
    /// The sizes.
    pub layout: DiskLayout,
    /// `[disk] grow` is on and the image has `systemd-repart` (see [`super::grow`]).
    pub grows: bool,
    /// The unit [`PreparedDisk::round_size_up`] rounded the disk to.
    round_unit: Option<u64>,
}

/// The identifiers of one disk, all derived from the manifest digest.
#[derive(Debug, Clone, Copy)]
pub struct DiskIds {
    /// The GPT disk GUID.
    pub disk: Guid,
    /// The ESP's PARTUUID.
    pub esp: Guid,
    /// The root partition's PARTUUID.
    pub root: Guid,
    /// The root filesystem's UUID.
    pub root_fs: Guid,
    /// The ext4 directory hash seed.
    pub hash_seed: Guid,
}

impl DiskIds {
    /// The identifiers for `image`.
    pub fn for_image(image: &StoredImage) -> Self {
        let seed = |role: &str| {
            guid_from_seed(format!("imgbuild:{}:{role}", image.manifest_digest).as_bytes())
        };
        Self {
            disk: seed("disk"),
            esp: seed("esp"),
            root: seed("root"),
            root_fs: seed("root-fs"),
            hash_seed: seed("root-hash-seed"),
        }
    }
}

/// Reads the image's metadata, finds its kernel and lays out the disk; an architecture
/// without a disk layout, or BIOS asked for arm64, fails here.
pub fn prepare<'a>(
    store: &'a Store,
    image: &'a StoredImage,
    options: &'a DiskOptions,
    assets: &'a BootAssets,
) -> Result<PreparedDisk<'a>, ExportError> {
    let arch = DiskArch::from_oci(&image.config.architecture)?;
    if options.firmware.bios() && !arch.has_bios() {
        return Err(ExportError::FirmwareArchitecture {
            architecture: arch.name(),
            firmware: options.firmware.name(),
        });
    }
    let tree = rootfs_tar::merged_tree(store, image)?;
    let kernel = find_kernel(&tree)?;
    // A gzip-compressed arm64 kernel is gunzipped onto the ESP: the layout is planned
    // again in `write` once its size is known.
    let layout = plan(
        esp_boot_bytes(kernel.kernel_size, &kernel, assets),
        tree.file_bytes(),
        tree.len() as u64,
        options.size,
    )?;
    let grows = options.grow && image_can_grow(&tree);
    Ok(PreparedDisk {
        store,
        image,
        options,
        assets,
        tree,
        kernel,
        arch,
        layout,
        grows,
        round_unit: None,
    })
}

/// The ESP's files: the kernel (`kernel_size` bytes as the ESP holds it), the initrd, the
/// bootloaders.
fn esp_boot_bytes(kernel_size: u64, kernel: &KernelFiles, assets: &BootAssets) -> u64 {
    kernel_size + kernel.initrd_size + assets.esp_bytes()
}

impl PreparedDisk<'_> {
    /// Grows the disk to a whole multiple of `unit` bytes (the root partition takes the
    /// rest), for formats whose importers want one (GCE: a whole GiB).
    pub fn round_size_up(&mut self, unit: u64) -> Result<(), ExportError> {
        self.round_unit = Some(unit);
        let size = self.layout.disk_size;
        if !size.is_multiple_of(unit) {
            self.layout = plan(
                esp_boot_bytes(self.kernel.kernel_size, &self.kernel, self.assets),
                self.tree.file_bytes(),
                self.tree.len() as u64,
                Some(size.div_ceil(unit) * unit),
            )?;
        }
        Ok(())
    }

    /// Lays the disk out again for a kernel of `kernel_size` bytes on the ESP (rounded as
    /// [`Self::round_size_up`] asked).
    fn replan(&mut self, kernel_size: u64) -> Result<(), ExportError> {
        let boot = esp_boot_bytes(kernel_size, &self.kernel, self.assets);
        let (bytes, entries) = (self.tree.file_bytes(), self.tree.len() as u64);
        self.layout = plan(boot, bytes, entries, self.options.size)?;
        if let Some(unit) = self.round_unit {
            let size = self.layout.disk_size;
            if !size.is_multiple_of(unit) {
                self.layout = plan(boot, bytes, entries, Some(size.div_ceil(unit) * unit))?;
            }
        }
        Ok(())
    }

    /// Writes the disk to `path` (created or truncated). A gzip-compressed arm64 kernel is
    /// gunzipped for the ESP here, and the layout grown to hold it.
    pub fn write(&mut self, path: &Path) -> Result<(), ExportError> {
        let ids = DiskIds::for_image(self.image);
        let epoch = self.image.epoch();
        let firmware = self.options.firmware;
        let lower = |g: Guid| g.to_string().to_lowercase();

        // An arm64 kernel may be gzip'd and is gunzipped for the ESP: its size must be
        // known before the layout is fixed and mke2fs starts, so it is read first.
        let mut esp_kernel = None;
        if self.arch.may_unpack_kernel() {
            let mut sink = CaptureSink::new(&[self.kernel.kernel.as_str()]);
            rootfs_tar::stream_tree(self.store, self.image, &self.tree, &mut sink)?;
            let vmlinuz = sink.files.remove(&self.kernel.kernel).unwrap_or_default();
            let on_esp = self.arch.esp_kernel(&self.kernel.kernel, vmlinuz)?;
            if on_esp.len() as u64 > self.kernel.kernel_size {
                self.replan(on_esp.len() as u64)?;
            }
            esp_kernel = Some(on_esp);
        }

        let mut gpt = Gpt::new(ids.disk, self.layout.disk_size)?;
        let esp = gpt
            .add_partition(PartitionSpec {
                name: "esp".into(),
                type_guid: Guid::ESP,
                unique_guid: ids.esp,
                size_bytes: Some(self.layout.esp_size),
                attributes: if firmware.bios() {
                    attr::LEGACY_BIOS_BOOTABLE
                } else {
                    0
                },
            })?
            .clone();
        let root = gpt
            .add_partition(PartitionSpec {
                name: "root".into(),
                type_guid: self.arch.root_type(),
                unique_guid: ids.root,
                size_bytes: None,
                attributes: if self.grows {
                    attr::GROW_FILE_SYSTEM
                } else {
                    0
                },
            })?
            .clone();
        if firmware.bios() {
            let s = self
                .assets
                .syslinux
                .as_ref()
                .ok_or(ExportError::MissingBootAssets {
                    what: "syslinux (packages syslinux and syslinux-common)",
                })?;
            gpt.mbr.boot_code = Some(s.gptmbr.clone());
        }
        {
            let mut f = fs_err::File::create(path)?;
            f.set_len(self.layout.disk_size)?;
            gpt.write(&mut f)?;
            f.flush()?;
        }
        // The root filesystem: mke2fs reads the merged tree as a tar from a pipe while it
        // streams past (no copy of the tree on disk); the kernel and initrd are kept
        // aside for the ESP, which is written while mke2fs finishes.
        // e2fsprogs reads E2FSPROGS_FAKE_TIME=0 as "not set" and uses the clock, so the
        // epoch 0 (the default SOURCE_DATE_EPOCH) becomes 1.
        let mut ext = Ext4Options::new(root.byte_len(), ids.root_fs, "root", epoch.max(1));
        ext.hash_seed = Some(ids.hash_seed);
        ext.inodes = Some(self.layout.root_inodes.max(root.byte_len() / 16384));
        let mut wanted = vec![self.kernel.kernel.as_str()];
        wanted.extend(self.kernel.initrd.as_deref());
        let mut mke2fs = spawn_ext4(path, root.byte_offset(), &ext)?;
        // A failed write is reported as such, not as the short read the tar writer sees.
        let mut side = WriteSide::new(mke2fs.input());
        let files = (|| -> Result<_, ExportError> {
            let mut writer = TarWriter::new(BufWriter::with_capacity(1 << 20, &mut side));
            let esp = self.grows.then(|| lower(ids.esp));
            let fstab = fstab(&lower(ids.root_fs), esp.as_deref());
            let mut sink = RootSink::new(&mut writer, fstab, epoch, &wanted);
            rootfs_tar::stream_tree(self.store, self.image, &self.tree, &mut sink)?;
            let files = sink.finish()?;
            writer
                .finish()?
                .into_inner()
                .map_err(std::io::IntoInnerError::into_error)?
                .flush()?;
            Ok(files)
        })();
        if let Some(failed) = side.failed.take() {
            // mke2fs stopped reading: its own error says why (e.g. the disk is full).
            mke2fs.finish()?;
            return Err(failed.into());
        }
        let mut files = files?;
        if let Some(on_esp) = esp_kernel {
            files.insert(self.kernel.kernel.clone(), on_esp);
        }

        let cmdline = format!(
            "root=PARTUUID={} ro {}",
            lower(ids.root),
            self.options.cmdline
        );
        let content = EspContent {
            kernel: &self.kernel,
            files: &files,
            cmdline: cmdline.trim_end(),
            title: &self.image.name,
            grow: self.grows,
            arch: self.arch,
        };
        let seed = format!("imgbuild:{}:esp-fat", self.image.manifest_digest);
        write_esp(
            path,
            &esp,
            firmware,
            self.assets,
            &content,
            seed.as_bytes(),
            epoch,
        )?;
        if let Some(s) = self.assets.syslinux.as_ref().filter(|_| firmware.bios()) {
            install_syslinux(path, &esp, &s.installer, epoch)?;
        }
        mke2fs.finish()?;
        Ok(())
    }
}

/// Keeps the bytes of chosen files of a streamed tree and drops the rest.
struct CaptureSink {
    files: BTreeMap<String, Vec<u8>>,
}

impl CaptureSink {
    fn new(paths: &[&str]) -> Self {
        Self {
            files: paths
                .iter()
                .map(|p| ((*p).to_owned(), Vec::new()))
                .collect(),
        }
    }
}

impl TreeSink for CaptureSink {
    fn entry(&mut self, meta: &EntryMeta, data: &mut dyn Read) -> std::io::Result<()> {
        match self.files.get_mut(&meta.path) {
            Some(buf) => data.read_to_end(buf).map(drop),
            None => std::io::copy(data, &mut std::io::sink()).map(drop),
        }
    }
}
