//! Deterministic ext4 images from a tarball, via `mke2fs -d file.tar`, or streamed
//! through a pipe with `mke2fs -d -` ([`spawn_ext4`]; e2fsprogs ≥ 1.47.1 populates a
//! filesystem from a tar archive through libarchive, in one pass; see mke2fs(8) `-d`).
//!
//! Reproducibility: the same tar and [`Ext4Options`] give byte-identical
//! images. This wrapper pins everything mke2fs would otherwise take from the
//! host or the clock:
//! - its own `mke2fs.conf` (`MKE2FS_CONFIG`), so the host's
//!   `/etc/mke2fs.conf` cannot change features, inode size or hash;
//! - `E2FSPROGS_FAKE_TIME` for every superblock and inode time mke2fs sets;
//! - `-U` (filesystem UUID, which also seeds metadata checksums) and
//!   `-E hash_seed=` (directory hash seed);
//! - `-E root_owner=0:0`, `-T default`, and the `MKE2FS_*` tuning
//!   variables removed from the environment.
//!
//! The target region is discarded by mke2fs before writing, so garbage in a
//! reused file does not leak into the result.
//!
//! What `mke2fs -d tar` keeps (checked by the tests here with e2fsprogs
//! 1.47.2): owners, modes including setuid, mtimes, symlinks, device nodes,
//! hard links (as real links) and PAX `SCHILY.xattr.*` extended attributes
//! such as `security.capability`. Its requirements on the tar: every parent
//! directory must appear before its children, and a hard link's header
//! metadata overwrites the inode's, so it must match the target's (as tar
//! writers produce). libarchive (`libarchive13`) must be installed.

mod config;
mod estimate;
mod version;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

pub use estimate::{estimate_size, Ext4Estimate};
pub use version::{mke2fs_version, MIN_VERSION};

use crate::disk::guid::Guid;

/// Errors while making an ext4 image.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// mke2fs is not installed.
    #[error("mke2fs not found (tried {tried}): install e2fsprogs >= 1.47.1 (Debian bookworm: apt-get install -t bookworm-backports e2fsprogs)")]
    NotInstalled {
        /// Paths tried.
        tried: String,
    },
    /// mke2fs is too old to read tar archives.
    #[error("mke2fs {found} cannot populate from a tar archive: install e2fsprogs >= 1.47.1 (Debian bookworm: apt-get install -t bookworm-backports e2fsprogs)")]
    TooOld {
        /// The version found.
        found: String,
    },
    /// `mke2fs -V` printed something unexpected.
    #[error("could not read the mke2fs version from {output:?}")]
    UnknownVersion {
        /// What it printed.
        output: String,
    },
    /// An unusable size.
    #[error("ext4 size {size} bytes is unusable: it must be at least {min} bytes (use estimate_size to size the filesystem)")]
    BadSize {
        /// Requested size.
        size: u64,
        /// Smallest accepted size.
        min: u64,
    },
    /// An unusable label.
    #[error("ext4 label {label:?} is too long: at most 16 bytes")]
    BadLabel {
        /// The label.
        label: String,
    },
    /// The tar file is missing.
    #[error("tar archive {path} not found")]
    TarMissing {
        /// Its path.
        path: PathBuf,
    },
    /// mke2fs failed.
    #[error("mke2fs failed ({status}): {stderr}{hint}")]
    Failed {
        /// Exit status.
        status: String,
        /// Its error output.
        stderr: String,
        /// A suggestion, if the failure is recognised.
        hint: String,
    },
    /// Running mke2fs or writing its configuration failed.
    #[error("running mke2fs failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Settings of the filesystem to create.
#[derive(Debug, Clone)]
pub struct Ext4Options {
    /// Filesystem size in bytes (rounded down to whole blocks).
    pub size_bytes: u64,
    /// Filesystem UUID (`-U`); also seeds the metadata checksums.
    pub uuid: Guid,
    /// Directory hash seed; `None` uses `uuid`.
    pub hash_seed: Option<Guid>,
    /// Volume label (≤ 16 bytes).
    pub label: String,
    /// Unix seconds used for every timestamp mke2fs sets itself
    /// (file mtimes come from the tar).
    pub epoch: u64,
    /// Inode count (`-N`); `None` lets mke2fs derive it (one per 16 KiB).
    pub inodes: Option<u64>,
    /// Percentage of blocks reserved for root (`-m`), mke2fs default 5.
    pub reserved_percent: u8,
    /// Block size in bytes (1024, 2048 or 4096).
    pub block_size: u32,
}

impl Ext4Options {
    /// Options with 4 KiB blocks, 5 % reserved, inode count from size.
    pub fn new(size_bytes: u64, uuid: Guid, label: &str, epoch: u64) -> Ext4Options {
        Ext4Options {
            size_bytes,
            uuid,
            hash_seed: None,
            label: label.to_string(),
            epoch,
            inodes: None,
            reserved_percent: 5,
            block_size: 4096,
        }
    }
}

/// Smallest filesystem accepted (mke2fs needs room for the journal).
const MIN_SIZE: u64 = 8 * 1024 * 1024;

/// Finds mke2fs: `$PATH` first, then the sbin directories that are often
/// missing from a non-root `$PATH`.
pub fn find_mke2fs() -> Result<PathBuf, Ext4Error> {
    let candidates = ["mke2fs", "/usr/sbin/mke2fs", "/sbin/mke2fs"];
    for c in candidates {
        match Command::new(c).arg("-V").output() {
            Ok(_) => return Ok(PathBuf::from(c)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Ext4Error::NotInstalled {
        tried: candidates.join(", "),
    })
}

/// Creates an ext4 filesystem populated from `tar` in `target` starting at
/// byte `offset` (0 for a standalone image file; a partition's byte offset
/// to write into a disk image, which must then already exist). Only
/// `offset..offset + size_bytes` of `target` is written.
pub fn make_ext4(
    tar: &Path,
    target: &Path,
    offset: u64,
    opts: &Ext4Options,
) -> Result<(), Ext4Error> {
    if !tar.is_file() {
        return Err(Ext4Error::TarMissing {
            path: tar.to_path_buf(),
        });
    }
    let (mut cmd, _conf) = command(tar.as_os_str(), target, offset, opts)?;
    let out = cmd.output()?;
    check(out.status, &String::from_utf8_lossy(&out.stderr))
}

/// A running `mke2fs -d -` that populates the filesystem from the tar written to
/// [`Ext4Stream::input`], in one pass and with no copy of the archive on disk. The
/// same tar gives the same bytes as [`make_ext4`] reading it from a file.
#[derive(Debug)]
pub struct Ext4Stream {
    child: Child,
    input: Option<ChildStdin>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The configuration file, kept until mke2fs exits.
    _conf: tempfile::NamedTempFile,
}

/// Starts mke2fs on `target` at `offset` (as [`make_ext4`]), reading the tar from a pipe.
pub fn spawn_ext4(target: &Path, offset: u64, opts: &Ext4Options) -> Result<Ext4Stream, Ext4Error> {
    let (mut cmd, conf) = command("-".as_ref(), target, offset, opts)?;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let input = child.stdin.take();
    if let Some(pipe) = &input {
        // A larger pipe means fewer switches between the tar writer and mke2fs; a
        // kernel that refuses (over /proc/sys/fs/pipe-max-size) keeps the default.
        let _ = rustix::pipe::fcntl_setpipe_size(pipe, 1 << 20);
    }
    // Drained on its own thread, so a chatty mke2fs never blocks on a full pipe.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = e.read_to_string(&mut text);
            text
        })
    });
    Ok(Ext4Stream {
        child,
        input,
        stderr,
        _conf: conf,
    })
}

impl Ext4Stream {
    /// Where the tar goes.
    pub fn input(&mut self) -> &mut ChildStdin {
        self.input.as_mut().expect("input open until finish")
    }

    /// Closes the input (the end of the tar) and waits for mke2fs.
    pub fn finish(mut self) -> Result<(), Ext4Error> {
        drop(self.input.take());
        let status = self.child.wait()?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        check(status, &stderr)
    }
}

impl Drop for Ext4Stream {
    fn drop(&mut self) {
        // Abandoned before finish (the tar writer failed): stop mke2fs and reap it.
        if self.input.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The mke2fs command for `source` (a tar file, or `-` for stdin), with the
/// configuration file it needs kept alive.
fn command(
    source: &std::ffi::OsStr,
    target: &Path,
    offset: u64,
    opts: &Ext4Options,
) -> Result<(Command, tempfile::NamedTempFile), Ext4Error> {
    if opts.size_bytes < MIN_SIZE {
        return Err(Ext4Error::BadSize {
            size: opts.size_bytes,
            min: MIN_SIZE,
        });
    }
    if opts.label.len() > 16 {
        return Err(Ext4Error::BadLabel {
            label: opts.label.clone(),
        });
    }
    let mke2fs = find_mke2fs()?;
    version::require_supported(&mke2fs)?;
    let conf = config::write_config(opts.block_size)?;

    let uuid = opts.uuid.to_string().to_lowercase();
    let seed = opts
        .hash_seed
        .unwrap_or(opts.uuid)
        .to_string()
        .to_lowercase();
    let mut ext = format!("hash_seed={seed},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0");
    if offset > 0 {
        ext.push_str(&format!(",offset={offset}"));
    }
    let blocks = opts.size_bytes / u64::from(opts.block_size);
    let mut cmd = Command::new(&mke2fs);
    cmd.env("MKE2FS_CONFIG", conf.path())
        .env("E2FSPROGS_FAKE_TIME", opts.epoch.to_string())
        .env("LC_ALL", "C")
        .env_remove("MKE2FS_SYNC")
        .env_remove("MKE2FS_DEVICE_SECTSIZE")
        .env_remove("MKE2FS_DEVICE_PHYS_SECTSIZE")
        .env_remove("MKE2FS_FIRST_META_BG")
        .args(["-q", "-F", "-t", "ext4", "-T", "default"])
        .args(["-b", &opts.block_size.to_string()])
        .args(["-m", &opts.reserved_percent.to_string()])
        .args(["-U", &uuid, "-E", &ext, "-L", &opts.label])
        .arg("-d")
        .arg(source);
    if let Some(n) = opts.inodes {
        cmd.args(["-N", &n.to_string()]);
    }
    cmd.arg(target).arg(blocks.to_string());
    Ok((cmd, conf))
}

/// Maps a failed mke2fs to [`Ext4Error::Failed`].
fn check(status: std::process::ExitStatus, stderr: &str) -> Result<(), Ext4Error> {
    if status.success() {
        return Ok(());
    }
    let stderr = stderr.trim().to_string();
    let hint = failure_hint(&stderr);
    Err(Ext4Error::Failed {
        status: status.to_string(),
        stderr,
        hint,
    })
}

/// A suggestion for well-known mke2fs failures.
fn failure_hint(stderr: &str) -> String {
    let s = stderr.to_lowercase();
    if s.contains("libarchive") || s.contains("archive_read") {
        " (hint: install libarchive, Debian package libarchive13)".into()
    } else if s.contains("could not allocate")
        || s.contains("no space")
        || s.contains("no free space")
    {
        " (hint: the filesystem is too small for the tar; size it with estimate_size)".into()
    } else if s.contains("ext2_lookup") {
        " (hint: the tar must list every parent directory before its contents)".into()
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests;
