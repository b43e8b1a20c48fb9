//! Choosing an exporter and writing its output atomically.

use crate::{docker_archive, oci_archive, oci_layout, rootfs_tar, ExportError, StoredImage};
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
}

impl Format {
    /// Every format, for `--help` and error messages.
    pub const ALL: [Format; 4] = [
        Format::Oci,
        Format::OciArchive,
        Format::DockerArchive,
        Format::Tar,
    ];

    /// The name users type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Oci => "oci",
            Self::OciArchive => "oci-archive",
            Self::DockerArchive => "docker-archive",
            Self::Tar => "tar",
        }
    }

    /// The artifact's file name for an image called `stem`.
    pub fn file_name(self, stem: &str) -> String {
        match self {
            Self::Oci => format!("{stem}.oci"),
            Self::OciArchive => format!("{stem}.oci.tar"),
            Self::DockerArchive => format!("{stem}.docker.tar"),
            Self::Tar => format!("{stem}.rootfs.tar"),
        }
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
}

/// A written output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Artifact {
    /// The format's name.
    pub format: &'static str,
    /// Where it is.
    pub path: PathBuf,
}

/// Writes `image` as `format` into the output directory.
pub fn export(
    store: &Store,
    image: &StoredImage,
    format: Format,
    options: &ExportOptions,
) -> Result<Artifact, ExportError> {
    fs_err::create_dir_all(&options.out_dir)?;
    let path = options.out_dir.join(format.file_name(image.file_stem()));
    match format {
        Format::Oci => write_dir_atomically(&path, |dir| oci_layout::write(store, image, dir))?,
        Format::OciArchive => {
            write_file_atomically(&path, |out| oci_archive::write(store, image, out))?
        }
        Format::DockerArchive => {
            write_file_atomically(&path, |out| docker_archive::write(store, image, out))?
        }
        Format::Tar => write_file_atomically(&path, |out| rootfs_tar::write(store, image, out))?,
    }
    Ok(Artifact {
        format: format.name(),
        path,
    })
}

/// Writes a file next to `path`, fsyncs it and renames it into place.
pub(crate) fn write_file_atomically(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    if path.is_dir() {
        return Err(ExportError::OutputInTheWay {
            path: path.to_owned(),
            expected: "file",
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".imgbuild-")
        .tempfile_in(dir)?;
    let mut out = BufWriter::with_capacity(1 << 20, tmp);
    fill(&mut out)?;
    let tmp = out
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    // Temp files are created 0600; an artifact is as readable as any other output.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Fills a directory next to `path` and swaps it into place.
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
    let tmp = tempfile::Builder::new()
        .prefix(".imgbuild-")
        .tempdir_in(parent)?;
    fill(tmp.path())?;
    fs_err::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    let staged = tmp.keep();
    if path.exists() {
        let old = tempfile::Builder::new()
            .prefix(".imgbuild-old-")
            .tempdir_in(parent)?;
        let old_path = old.path().join("old");
        fs_err::rename(path, &old_path)?;
        fs_err::rename(&staged, path)?;
        drop(old);
    } else {
        fs_err::rename(&staged, path)?;
    }
    Ok(())
}
