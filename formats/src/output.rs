//! Choosing an exporter and writing its output atomically.

use crate::bootdisk::{raw, BootAssets, DiskOptions};
use crate::disk::gce::write_tar_gz;
use crate::disk::guid::guid_from_seed;
use crate::disk::qcow2::{convert_file, convert_file_compressed};
use crate::disk::sparse::copy_sparse;
use crate::disk::vhd::raw_to_fixed_vhd;
use crate::disk::vmdk::write_stream_optimized;
use crate::initramfs::export::{self as initramfs, InitramfsOptions};
use crate::oci_layout::LayoutContent;
use crate::staging::{self, Staged};
use crate::{
    docker_archive, oci_archive, oci_layout, rootfs_tar, ExportError, StoredImage, StoredIndex,
};
use imgbuild_store::Store;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// An OCI image layout directory.
    Oci,
    /// An OCI layout in one tar file.
    OciArchive,
    /// A docker-archive tar (`docker load`, `podman load`).
    DockerArchive,
    /// The flattened root filesystem as a tar.
    Tar,
    /// A bootable raw disk image (GPT, ESP, ext4 root).
    Raw,
    /// The same bootable disk as qcow2.
    Qcow2,
    /// The same bootable disk as a streamOptimized VMDK (VMware, OVA).
    Vmdk,
    /// The same bootable disk as a fixed VHD (Azure).
    Vhd,
    /// The same bootable disk as a dynamic VHDX (Hyper-V).
    Vhdx,
    /// The same bootable disk as `disk.raw` in a gzip'd GNU tar (Google Compute Engine).
    Gce,
    /// A compressed newc cpio of the userland, with the kernel beside it.
    Initramfs,
}

impl Format {
    /// Every format, for `--help` and error messages.
    pub const ALL: [Format; 11] = [
        Format::Oci,
        Format::OciArchive,
        Format::DockerArchive,
        Format::Tar,
        Format::Raw,
        Format::Qcow2,
        Format::Vmdk,
        Format::Vhd,
        Format::Vhdx,
        Format::Gce,
        Format::Initramfs,
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oci => "oci",
            Self::OciArchive => "oci-archive",
            Self::DockerArchive => "docker-archive",
            Self::Tar => "tar",
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Vmdk => "vmdk",
            Self::Vhd => "vhd",
            Self::Vhdx => "vhdx",
            Self::Gce => "gce",
            Self::Initramfs => "initramfs",
        }
    }

    /// The artifact's file name for an image called `stem`.
    pub fn file_name(self, stem: &str) -> String {
        match self {
            Self::Oci => format!("{stem}.oci"),
            Self::OciArchive => format!("{stem}.oci.tar"),
            Self::DockerArchive => format!("{stem}.docker.tar"),
            Self::Tar => format!("{stem}.rootfs.tar"),
            Self::Raw => format!("{stem}.raw"),
            Self::Qcow2 => format!("{stem}.qcow2"),
            Self::Vmdk => format!("{stem}.vmdk"),
            Self::Vhd => format!("{stem}.vhd"),
            Self::Vhdx => format!("{stem}.vhdx"),
            Self::Gce => format!("{stem}.gce.tar.gz"),
            Self::Initramfs => format!("{stem}.initramfs.cpio.zst"),
        }
    }

    /// True for the formats `imgbuild run` boots (the other disk formats boot too, elsewhere).
    pub fn is_bootable(self) -> bool {
        matches!(self, Self::Raw | Self::Qcow2 | Self::Initramfs)
    }

    /// True for the disk formats (they need a kernel and bootloader binaries).
    pub fn is_disk(self) -> bool {
        matches!(
            self,
            Self::Raw | Self::Qcow2 | Self::Vmdk | Self::Vhd | Self::Vhdx | Self::Gce
        )
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown format `{s}`; choose one of: {}",
                    Self::ALL.map(Format::name).join(", ")
                )
            })
    }
}

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The output directory (created if missing).
    pub out_dir: PathBuf,
    /// Disk layout for the disk formats.
    pub disk: DiskOptions,
    /// Bootloader binaries for the disk formats.
    pub boot_assets: BootAssets,
    /// Compression and `/init` for `initramfs`.
    pub initramfs: InitramfsOptions,
}

impl ExportOptions {
    /// Defaults for everything but the output directory.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        Self {
            out_dir: out_dir.into(),
            disk: DiskOptions::default(),
            boot_assets: BootAssets::default(),
            initramfs: InitramfsOptions::default(),
        }
    }
}

/// A written output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Artifact {
    /// The format's name.
    pub format: &'static str,
    /// Where it is.
    pub path: PathBuf,
    /// The kernel written beside it (initramfs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
}

/// Where [`export`] writes `image` as `format` with `options`: the artifact it returns.
pub fn artifact_for(image: &StoredImage, format: Format, options: &ExportOptions) -> Artifact {
    let stem = image.file_stem();
    let (path, kernel) = match format {
        Format::Initramfs => {
            let ext = options.initramfs.compression.extension();
            (
                options.out_dir.join(format!("{stem}.initramfs.cpio.{ext}")),
                Some(options.out_dir.join(format!("{stem}.vmlinuz"))),
            )
        }
        _ => (options.out_dir.join(format.file_name(stem)), None),
    };
    Artifact {
        format: format.name(),
        path,
        kernel,
    }
}

/// Writes `image` as `format` into the output directory.
///
/// First removes the staged entries of dead builds from the output directory (see
/// [`crate::staging`]). A full output disk (ENOSPC, EDQUOT) is reported as
/// [`ExportError::NoSpace`] naming the output, whatever the exporter was doing.
pub fn export(
    store: &Store,
    image: &StoredImage,
    format: Format,
    options: &ExportOptions,
) -> Result<Artifact, ExportError> {
    export_one(store, image, format, options, &mut None)
}

/// Writes `image` as each of `formats` once, in [`Format`] order, calling `written` after
/// each; like [`export`], but the disk formats share one raw disk: written once (`raw`'s
/// own output when it is asked for, else a staged file beside the outputs, removed at the
/// end) and converted for each.
pub fn export_all(
    store: &Store,
    image: &StoredImage,
    formats: &[Format],
    options: &ExportOptions,
    written: &mut dyn FnMut(&Artifact),
) -> Result<Vec<Artifact>, ExportError> {
    let mut formats = formats.to_vec();
    formats.sort();
    formats.dedup();
    let mut shared = None;
    let mut artifacts = Vec::with_capacity(formats.len());
    for format in formats {
        let artifact = export_one(store, image, format, options, &mut shared)?;
        written(&artifact);
        artifacts.push(artifact);
    }
    Ok(artifacts)
}

/// Writes a multi-platform image as `format`: an OCI layout or OCI archive whose
/// `index.json` names the image index. Every other format holds one platform:
/// [`ExportError::OnePlatform`].
pub fn export_index(
    store: &Store,
    index: &StoredIndex,
    format: Format,
    options: &ExportOptions,
) -> Result<Artifact, ExportError> {
    let path = options.out_dir.join(format.file_name(index.file_stem()));
    prepare_out_dir(&options.out_dir)?;
    let content = LayoutContent::of_index(index);
    match format {
        Format::Oci => write_dir_atomically(&path, |dir| oci_layout::write(store, &content, dir))?,
        Format::OciArchive => {
            write_file_atomically(&path, |out| oci_archive::write(store, &content, out))?
        }
        other => {
            return Err(ExportError::OnePlatform {
                format: other.name(),
            })
        }
    }
    Ok(Artifact {
        format: format.name(),
        path,
        kernel: None,
    })
}

/// Creates the output directory and removes the staged entries of dead builds from it;
/// a full disk there is [`ExportError::NoSpace`].
fn prepare_out_dir(out_dir: &Path) -> Result<(), ExportError> {
    let on_dir = |e: std::io::Error| match crate::error::no_space(&e) {
        Some(quota) => ExportError::NoSpace {
            path: out_dir.to_owned(),
            quota,
        },
        None => e.into(),
    };
    fs_err::create_dir_all(out_dir).map_err(on_dir)?;
    staging::sweep(out_dir).map_err(on_dir)?;
    Ok(())
}

/// The raw disk the disk formats of one [`export_all`] are made from.
struct SharedRaw {
    /// Where it is: `raw`'s output, or `staged`.
    path: PathBuf,
    /// Its size in bytes.
    size: u64,
    /// Keeps a staged raw disk (and its lock) until the exports are done.
    _staged: Option<Staged>,
}

fn export_one(
    store: &Store,
    image: &StoredImage,
    format: Format,
    options: &ExportOptions,
    shared: &mut Option<SharedRaw>,
) -> Result<Artifact, ExportError> {
    let Artifact {
        path,
        kernel: vmlinuz,
        ..
    } = artifact_for(image, format, options);
    prepare_out_dir(&options.out_dir)?;
    let mut kernel = None;
    match format {
        Format::Oci => {
            let content = LayoutContent::of_image(image);
            write_dir_atomically(&path, |dir| oci_layout::write(store, &content, dir))?
        }
        Format::OciArchive => {
            let content = LayoutContent::of_image(image);
            write_file_atomically(&path, |out| oci_archive::write(store, &content, out))?
        }
        Format::DockerArchive => {
            write_file_atomically(&path, |out| docker_archive::write(store, image, out))?
        }
        Format::Tar => write_file_atomically(&path, |out| rootfs_tar::write(store, image, out))?,
        Format::Raw | Format::Qcow2 | Format::Vmdk | Format::Vhd | Format::Vhdx | Format::Gce => {
            export_disk(store, image, format, options, &path, shared)?
        }
        Format::Initramfs => {
            let vmlinuz = vmlinuz.expect("an initramfs has a kernel beside it");
            let mut kernel_bytes = Vec::new();
            // Both staged before either goes in, so a full disk leaves neither.
            let archive = stage_file(&path, |out| {
                kernel_bytes = initramfs::write(store, image, &options.initramfs, out)?;
                Ok(())
            })?;
            let kernel_file = stage_file(&vmlinuz, |out| Ok(out.write_all(&kernel_bytes)?))?;
            archive.commit(&path)?;
            kernel_file.commit(&vmlinuz)?;
            kernel = Some(vmlinuz);
        }
    }
    Ok(Artifact {
        format: format.name(),
        path,
        kernel,
    })
}

/// Writes one disk format to `path`, from `shared` when it holds the raw disk (writing it
/// there first when it is empty and the format can use it).
fn export_disk(
    store: &Store,
    image: &StoredImage,
    format: Format,
    options: &ExportOptions,
    path: &Path,
    shared: &mut Option<SharedRaw>,
) -> Result<(), ExportError> {
    const GIB: u64 = 1 << 30;
    if format == Format::Raw {
        let mut disk = raw::prepare(store, image, &options.disk, &options.boot_assets)?;
        write_path_atomically(path, |tmp| disk.write(tmp))?;
        *shared = Some(SharedRaw {
            path: path.to_owned(),
            size: disk.layout.disk_size,
            _staged: None,
        });
        return Ok(());
    }
    // GCE imports only disks of a whole GiB: its own raw disk unless the shared one is.
    let own_gce_disk =
        format == Format::Gce && shared.as_ref().is_none_or(|s| !s.size.is_multiple_of(GIB));
    let _own;
    let src: &Path = if own_gce_disk {
        let mut disk = raw::prepare(store, image, &options.disk, &options.boot_assets)?;
        disk.round_size_up(GIB)?;
        let staged = Staged::file_in(&options.out_dir).map_err(|e| no_space_at(path, e.into()))?;
        disk.write(staged.path())
            .map_err(|e| no_space_by_path(path, staged.path(), e))?;
        _own = staged;
        _own.path()
    } else {
        if shared.is_none() {
            let mut disk = raw::prepare(store, image, &options.disk, &options.boot_assets)?;
            // Staged, so a killed build's copy is swept.
            let staged =
                Staged::file_in(&options.out_dir).map_err(|e| no_space_at(path, e.into()))?;
            // Judged while the raw disk still takes its space.
            disk.write(staged.path())
                .map_err(|e| no_space_by_path(path, staged.path(), e))?;
            *shared = Some(SharedRaw {
                path: staged.path().to_owned(),
                size: disk.layout.disk_size,
                _staged: Some(staged),
            });
        }
        &shared.as_ref().expect("written above").path
    };
    let seed = |role: &str| {
        guid_from_seed(format!("imgbuild:{}:{role}", image.manifest_digest).as_bytes())
    };
    match format {
        Format::Qcow2 => write_path_atomically(path, |tmp| {
            if options.disk.compress {
                convert_file_compressed(src, tmp)?;
            } else {
                convert_file(src, tmp)?;
            }
            Ok(())
        }),
        Format::Vmdk => {
            let id = seed("vmdk").0;
            // Any value but ffffffff, which means "no content ID" (as parentCID does).
            let cid = u32::from_le_bytes([id[0], id[1], id[2], id[3]]).min(0xffff_fffe);
            let name = format.file_name(image.file_stem());
            write_file_atomically(path, |out| {
                write_stream_optimized(src, &name, cid, out)?;
                Ok(())
            })
        }
        Format::Vhd => write_path_atomically(path, |tmp| {
            copy_sparse(src, tmp)?;
            raw_to_fixed_vhd(tmp, image.epoch(), seed("vhd").0)?;
            Ok(())
        }),
        Format::Vhdx => write_path_atomically(path, |tmp| {
            let seed = format!("imgbuild:{}", image.manifest_digest);
            crate::disk::vhdx::convert_file(src, tmp, &seed)?;
            Ok(())
        }),
        Format::Gce => write_file_atomically(path, |out| {
            write_tar_gz(src, image.epoch(), out)?;
            Ok(())
        }),
        _ => unreachable!("export_disk is only called for disk formats"),
    }
}

/// An ENOSPC/EDQUOT anywhere in `err` becomes [`ExportError::NoSpace`] for `path`.
fn no_space_at(path: &Path, err: ExportError) -> ExportError {
    match err.no_space() {
        Some(quota) => ExportError::NoSpace {
            path: path.to_owned(),
            quota,
        },
        None => err,
    }
}

/// Like [`no_space_at`], for outputs written by path, partly by other programs (`mke2fs`
/// reports a full disk on stderr, not as an errno): a failure while the filesystem of
/// `staged` has less than a MiB left to unprivileged users is put down to space too (store
/// errors included: whatever wraps a failed write, the output's disk is the full one).
/// Call it while the staged entry still exists, as its bytes are what filled the disk.
fn no_space_by_path(path: &Path, staged: &Path, err: ExportError) -> ExportError {
    let err = no_space_at(path, err);
    if matches!(err, ExportError::NoSpace { .. }) {
        return err;
    }
    match rustix::fs::statvfs(staged) {
        Ok(fs) if fs.f_bavail.saturating_mul(fs.f_frsize) < 1 << 20 => ExportError::NoSpace {
            path: path.to_owned(),
            quota: false,
        },
        _ => err,
    }
}

/// Lets `fill` write a file by path next to `path`, fsyncs it and renames it into place.
pub(crate) fn write_path_atomically(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if path.is_dir() {
        return Err(ExportError::OutputInTheWay {
            path: path.to_owned(),
            expected: "file",
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let staged = Staged::file_in(dir).map_err(|e| no_space_at(path, e.into()))?;
    fill(staged.path()).map_err(|e| no_space_by_path(path, staged.path(), e))?;
    staged.commit_file(path).map_err(|e| write_error(path, e))
}

/// Writes a file next to `path`, fsyncs it and renames it into place.
///
/// Every write to the staged file goes through a [`WriteSide`], so a failed write is
/// reported as a write to `path` (ENOSPC as [`ExportError::NoSpace`]) even when the
/// exporter turned it into something else on the way up (the tar writer reports a short
/// copy as "expected N bytes, read M", which reads like a damaged layer).
pub(crate) fn write_file_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    stage_file(path, fill)?.commit(path)
}

/// A file staged for `path` by [`stage_file`], not yet in place.
pub(crate) struct StagedFile(Staged);

impl StagedFile {
    /// Syncs it and renames it to `path`.
    pub(crate) fn commit(self, path: &Path) -> Result<(), ExportError> {
        self.0.commit_file(path).map_err(|e| write_error(path, e))
    }
}

/// The first half of [`write_file_atomically`]: the filled, staged file.
pub(crate) fn stage_file(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
) -> Result<StagedFile, ExportError> {
    if path.is_dir() {
        return Err(ExportError::OutputInTheWay {
            path: path.to_owned(),
            expected: "file",
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let staged = Staged::file_in(dir).map_err(|e| no_space_at(path, e.into()))?;
    let mut tracked = WriteSide::new(staged.file());
    let filled = {
        let mut out = BufWriter::with_capacity(1 << 20, &mut tracked);
        let filled = fill(&mut out).and_then(|()| Ok(out.flush()?));
        // After a failure, drop what is buffered rather than flush it on drop.
        let _ = out.into_parts();
        filled
    };
    if let Some(failed) = tracked.failed.take() {
        return Err(write_error(path, failed));
    }
    filled.map_err(|e| no_space_at(path, e))?;
    Ok(StagedFile(staged))
}

/// Fills a directory next to `path` and swaps it into place (see [`Staged::commit_dir`]).
pub(crate) fn write_dir_atomically(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if path.exists() && !path.is_dir() {
        return Err(ExportError::OutputInTheWay {
            path: path.to_owned(),
            expected: "directory",
        });
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let staged = Staged::dir_in(parent).map_err(|e| no_space_at(path, e.into()))?;
    fill(staged.path()).map_err(|e| no_space_by_path(path, staged.path(), e))?;
    staged.commit_dir(path).map_err(|e| write_error(path, e))
}

/// A failed write to the output at `path`.
fn write_error(path: &Path, source: std::io::Error) -> ExportError {
    match crate::error::no_space(&source) {
        Some(quota) => ExportError::NoSpace {
            path: path.to_owned(),
            quota,
        },
        None => ExportError::Write {
            path: path.to_owned(),
            source,
        },
    }
}

/// A writer that remembers its first failure, so the caller can tell a failed write to
/// the output from a failed read of the store whatever error comes back up.
pub(crate) struct WriteSide<W> {
    inner: W,
    /// The first error a write or flush returned.
    pub(crate) failed: Option<std::io::Error>,
}

impl<W: Write> WriteSide<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            failed: None,
        }
    }

    fn record<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        match result {
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                let copy = std::io::Error::new(e.kind(), e.to_string());
                self.failed.get_or_insert(e);
                Err(copy)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for WriteSide<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = self.inner.write(buf);
        self.record(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.inner.flush();
        self.record(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every writer's commit succeeds, and what is left is one writer's output, whole.
    fn race(
        commit: impl Fn(&Path, usize) -> Result<(), ExportError> + Sync,
        whole: impl Fn(&Path) -> bool,
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("out");
        std::thread::scope(|s| {
            for writer in 0..6 {
                let (commit, target) = (&commit, &target);
                s.spawn(move || {
                    for round in 0..60 {
                        commit(target, writer * 1000 + round)
                            .unwrap_or_else(|e| panic!("writer {writer}, round {round}: {e}"));
                    }
                });
            }
        });
        let left: Vec<_> = fs_err::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["out"]);
        assert!(whole(&target), "the output mixes writers");
    }

    #[test]
    fn concurrent_directory_outputs_all_land_whole() {
        race(
            |target, n| {
                write_dir_atomically(target, |dir| {
                    for part in 0..3 {
                        fs_err::write(dir.join(part.to_string()), n.to_string())?;
                    }
                    Ok(())
                })
            },
            |dir| {
                let parts: Vec<String> = (0..3)
                    .map(|p| fs_err::read_to_string(dir.join(p.to_string())).unwrap())
                    .collect();
                fs_err::read_dir(dir).unwrap().count() == 3 && parts.iter().all(|p| *p == parts[0])
            },
        );
    }

    #[test]
    fn concurrent_file_outputs_all_land_whole() {
        race(
            |target, n| {
                write_file_atomically(target, |out| Ok(out.write_all(&[n as u8; 100_000])?))
            },
            |file| {
                let bytes = fs_err::read(file).unwrap();
                bytes.len() == 100_000 && bytes.iter().all(|b| *b == bytes[0])
            },
        );
    }

    #[test]
    fn enospc_and_edquot_name_the_output() {
        let path = Path::new("out/x.tar");
        for (errno, quota) in [
            (rustix::io::Errno::NOSPC, false),
            (rustix::io::Errno::DQUOT, true),
        ] {
            let err = write_error(
                path,
                std::io::Error::from_raw_os_error(errno.raw_os_error()),
            );
            assert!(
                matches!(&err, ExportError::NoSpace { quota: q, .. } if *q == quota),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(
                message.starts_with("no space left on device while writing out/x.tar"),
                "{message}"
            );
        }
        // Wrapped by an exporter, as the disk writers do.
        let wrapped = ExportError::Qcow2(crate::disk::qcow2::Qcow2Error::Io(
            std::io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
        ));
        assert!(matches!(
            no_space_at(path, wrapped),
            ExportError::NoSpace { quota: false, .. }
        ));
    }
}
