//! The sandbox's mount table, planned in the parent and applied in the
//! forked child.
//!
//! All strings are turned into `CString`s by [`MountPlan::new`] *before*
//! the fork; [`MountPlan::apply`] only issues raw syscalls (no allocation,
//! no locks), which is what is allowed between `fork` and `exec` in a
//! multi-threaded program.
//!
//! Two plans: [`MountPlan::pre_userns`] runs in root mode only, as root
//! before the step's user namespace exists (it mounts the overlay and
//! stages secrets, with root's view of the host); [`MountPlan::new`] runs
//! in the sandbox's pid 1, inside the user namespace.
//!
//! Layout inside the new root (`R` = private overlay mount point):
//!
//! * `R` = overlay(lowerdir = lowers topmost-first, upperdir, workdir
//!   [, userxattr]);
//! * `/proc` new procfs (nosuid, nodev, noexec), with the OCI runtime
//!   spec's defaults: `/proc/sys`, `/proc/sysrq-trigger`, `/proc/irq`,
//!   `/proc/bus`, `/proc/fs` read-only; [`MASKED_FILES`] covered by
//!   `/dev/null` and [`MASKED_DIRS`] by an empty read-only tmpfs;
//! * `/sys` an empty read-only tmpfs (sysfs is not exposed);
//! * `/dev` tmpfs with `null zero full random urandom tty` bind-mounted
//!   from the host, `pts` (new devpts instance), `ptmx -> pts/ptmx`,
//!   `shm` tmpfs ([`SHM_SIZE`]), `fd`/`stdin`/`stdout`/`stderr` symlinks;
//! * `/tmp` ([`TMP_SIZE`]) and `/run` ([`RUN_SIZE`]) tmpfs, so nothing
//!   there reaches the upper dir and a step cannot fill the host's memory;
//! * `/run/secrets/<id>` read-only, each secret (inside the `/run` tmpfs,
//!   so neither the file nor its mount point reaches the upper). Rootless,
//!   a bind of the host file; as root, a read-only tmpfs staged before the
//!   user namespace: world-readable files are bound into it, others copied
//!   (mode `0400`, owned by sandbox root) so that sandbox root, which is
//!   not host root, can read them;
//! * with network: `/etc/resolv.conf` and `/etc/hosts` read-only binds of
//!   the host files, following the host's symlinks (systemd-resolved's stub)
//!   as container engines do (skipped when the rootfs has a symlink there or
//!   at `/etc`; created empty when missing, `/etc` too, which
//!   [`super::upper`] filters out again). When the image's `/etc/resolv.conf`
//!   links into `/run` (systemd-resolved's stub), the host file is bound
//!   where the link points, in the `/run` tmpfs.
//!
//! Mount points `/proc`, `/dev`, `/tmp`, `/run` are created (mode 0755) in
//! the merged root when no lower provides them, so they appear as empty
//! directories in the upper; [`super::upper::scan_upper`] drops exactly
//! those (see there).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, StatVfsMountFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, MountFlags, MountPropagationFlags, UnmountFlags};

/// Size of `/tmp` in the sandbox.
pub const TMP_SIZE: &str = "512m";
/// Size of `/run` in the sandbox.
pub const RUN_SIZE: &str = "64m";
/// Size of `/dev/shm` in the sandbox (Docker's default).
pub const SHM_SIZE: &str = "64m";

/// `/proc` entries remounted read-only (OCI runtime spec defaults).
pub const READONLY_PROC: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];
/// `/proc` files hidden behind `/dev/null` (moby's and runc's defaults).
pub const MASKED_FILES: [&str; 7] = [
    "kcore",
    "keys",
    "timer_list",
    "timer_stats",
    "latency_stats",
    "sched_debug",
    "interrupts",
];
/// `/proc` dirs hidden behind an empty read-only tmpfs.
pub const MASKED_DIRS: [&str; 4] = ["acpi", "asound", "scsi", "driver"];

/// One step of the plan.
#[derive(Debug)]
enum Op {
    MakeRootPrivate,
    /// Covers an existing file with `/dev/null` or an existing directory
    /// with an empty read-only tmpfs; skipped when `target` is missing.
    Mask {
        target: CString,
    },
    /// Copies an open file to a new file `target` with owner and mode.
    Copy {
        source: std::os::fd::OwnedFd,
        target: CString,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    /// Bind-mounts a tree recursively (and remounts the top read-only).
    BindTree {
        source: CString,
        target: CString,
        readonly: bool,
    },
    /// Remounts a mount read-only.
    RemountReadOnly {
        target: CString,
    },
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: MountFlags,
        data: Option<CString>,
    },
    Mkdir {
        path: CString,
        mode: u32,
    },
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    /// Bind mount; `readonly` remounts it read-only keeping locked flags.
    /// `optional` skips it when the source does not exist.
    Bind {
        source: CString,
        target: CString,
        readonly: bool,
        optional: bool,
    },
    /// Read-only bind of a host file (its symlinks followed) onto `target`
    /// inside the root, unless `target` or its `parent` is a symlink or not
    /// what it should be (skipped); a missing target, and a missing parent
    /// (mode 0755), are created empty.
    BindFileIfNotSymlink {
        source: CString,
        target: CString,
        parent: CString,
    },
    PivotRoot {
        new_root: CString,
    },
}

/// A step with a human description for error reports.
#[derive(Debug)]
struct Planned {
    op: Op,
    what: String,
}

/// Everything the child mounts, in order.
#[derive(Debug)]
pub(crate) struct MountPlan {
    ops: Vec<Planned>,
}

/// Inputs of [`MountPlan::new`].
pub(crate) struct MountSpec<'a> {
    pub(crate) root: &'a Path,
    pub(crate) overlay_options: &'a str,
    pub(crate) network: bool,
    /// The overlay's upper, then its lowers topmost first, as overlayfs looks up a path.
    pub(crate) image_dirs: Vec<&'a Path>,
    pub(crate) secrets: Secrets<'a>,
    /// The overlay is already mounted on `root` ([`MountPlan::pre_userns`]).
    pub(crate) premounted: bool,
}

/// Where the sandbox's pid 1 finds the secrets.
pub(crate) enum Secrets<'a> {
    /// Bind each host file (rootless).
    Host(&'a [(String, std::path::PathBuf)]),
    /// A directory staged by [`MountPlan::pre_userns`] (root).
    Staged(&'a Path),
}

/// Inputs of [`MountPlan::pre_userns`].
pub(crate) struct PreSpec<'a> {
    pub(crate) root: &'a Path,
    pub(crate) overlay_options: &'a str,
    /// Staging dir for secrets and the secrets (empty: no staging).
    pub(crate) staging: &'a Path,
    pub(crate) secrets: &'a [(String, std::path::PathBuf)],
    /// Host ids of sandbox root.
    pub(crate) root_ids: (u32, u32),
}

/// Where the image's `/etc/resolv.conf` points when it is a symlink into `/run` (as
/// systemd-resolved's `../run/systemd/resolve/stub-resolv.conf`), as path components
/// (`["run", "systemd", ...]`). Looked up in the overlay's dirs in overlay order, never
/// through a symlinked `etc`; the link's target is resolved lexically, from `/etc`.
fn resolv_conf_in_run(dirs: &[&Path]) -> Option<Vec<String>> {
    use std::path::Component;
    let (dir, meta) = dirs.iter().find_map(|d| {
        let etc = d.join("etc").symlink_metadata().ok()?;
        let meta = d.join("etc/resolv.conf").symlink_metadata().ok()?;
        etc.is_dir().then_some((d, meta))
    })?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    let link = fs_err::read_link(dir.join("etc/resolv.conf")).ok()?;
    let mut parts: Vec<String> = if link.is_absolute() {
        Vec::new()
    } else {
        vec!["etc".into()]
    };
    for c in link.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n.to_str()?.to_owned()),
            Component::Prefix(_) => return None,
        }
    }
    (parts.len() >= 2 && parts[0] == "run" && parts[1] != "secrets").then_some(parts)
}

/// Host device nodes bind-mounted into `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub(crate) fn cstr(p: impl AsRef<std::ffi::OsStr>) -> CString {
    // Paths with NUL bytes are rejected earlier by `validate`; a NUL here is
    // a bug, not user input.
    CString::new(p.as_ref().as_bytes()).expect("path without NUL")
}

/// The overlay mount of a plan.
fn overlay(root: &Path, options: &str) -> Planned {
    Planned {
        op: Op::Mount {
            source: cstr("overlay"),
            target: cstr(root),
            fstype: cstr("overlay"),
            flags: MountFlags::empty(),
            data: Some(cstr(options)),
        },
        what: format!("mount overlay on {} with {options}", root.display()),
    }
}

impl MountPlan {
    /// Root mode, before the user namespace: a private mount namespace with
    /// the overlay on `root` and, if there are secrets, a read-only tmpfs on
    /// `staging` holding them. Opens the secrets that sandbox root could not
    /// read (fails with the path when one cannot be opened).
    pub(crate) fn pre_userns(spec: &PreSpec<'_>) -> Result<Self, String> {
        let mut ops = vec![
            Planned {
                op: Op::MakeRootPrivate,
                what: "make / a private mount (rprivate)".into(),
            },
            overlay(spec.root, spec.overlay_options),
        ];
        if spec.secrets.is_empty() {
            return Ok(Self { ops });
        }
        let (uid, gid) = spec.root_ids;
        let mut size: u64 = 64 * 1024;
        let mut files = Vec::new();
        for (id, host) in spec.secrets {
            let target = cstr(spec.staging.join(id));
            let md = fs_err::metadata(host).map_err(|e| format!("secret {id}: {e}"))?;
            if md.permissions().mode() & 0o004 != 0 {
                // Readable by anyone on the host: bind it, no copy.
                files.push(Planned {
                    op: Op::Touch {
                        path: target.clone(),
                    },
                    what: format!("create staged secret {id}"),
                });
                files.push(Planned {
                    op: Op::Bind {
                        source: cstr(host),
                        target,
                        readonly: true,
                        optional: false,
                    },
                    what: format!("bind-mount secret {id} from {}", host.display()),
                });
            } else {
                let f = fs_err::File::open(host).map_err(|e| format!("secret {id}: {e}"))?;
                size += md.len() + 4096;
                files.push(Planned {
                    op: Op::Copy {
                        source: f.into_parts().0.into(),
                        target,
                        uid,
                        gid,
                        mode: 0o400,
                    },
                    what: format!("copy secret {id} from {}", host.display()),
                });
            }
        }
        let staging = cstr(spec.staging);
        ops.push(Planned {
            op: tmpfs(
                staging.clone(),
                &format!(
                    "mode=0555,uid={uid},gid={gid},size={}k",
                    size.div_ceil(1024)
                ),
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            ),
            what: format!("mount tmpfs for secrets on {}", spec.staging.display()),
        });
        ops.extend(files);
        ops.push(Planned {
            op: Op::RemountReadOnly { target: staging },
            what: "make the secrets read-only".into(),
        });
        Ok(Self { ops })
    }

    pub(crate) fn new(spec: &MountSpec<'_>) -> Self {
        let r = spec.root;
        let mut ops = Vec::new();
        let mut push = |op: Op, what: String| ops.push(Planned { op, what });
        let c = |rel: &str| cstr(r.join(rel));
        let nosuid_nodev = MountFlags::NOSUID | MountFlags::NODEV;

        push(
            Op::MakeRootPrivate,
            "make / a private mount (rprivate)".into(),
        );
        if spec.premounted {
            // The overlay came from a more privileged mount namespace, so
            // it is locked here and pivot_root refuses it; a bind of it
            // made here is not (runc does the same).
            push(
                Op::BindTree {
                    source: cstr(r),
                    target: cstr(r),
                    readonly: false,
                },
                format!("bind-mount {} onto itself", r.display()),
            );
        } else {
            let o = overlay(r, spec.overlay_options);
            push(o.op, o.what);
        }
        for d in ["proc", "dev", "tmp", "run", "sys"] {
            push(
                Op::Mkdir {
                    path: c(d),
                    mode: 0o755,
                },
                format!("create mount point /{d}"),
            );
        }
        push(
            Op::Mount {
                source: cstr("proc"),
                target: c("proc"),
                fstype: cstr("proc"),
                flags: nosuid_nodev | MountFlags::NOEXEC,
                data: None,
            },
            "mount /proc".into(),
        );
        for p in READONLY_PROC {
            let target = c(&format!("proc/{p}"));
            push(
                Op::Bind {
                    source: target.clone(),
                    target,
                    readonly: true,
                    optional: true,
                },
                format!("make /proc/{p} read-only"),
            );
        }
        for p in MASKED_FILES.iter().chain(&MASKED_DIRS) {
            push(
                Op::Mask {
                    target: c(&format!("proc/{p}")),
                },
                format!("mask /proc/{p}"),
            );
        }
        push(
            tmpfs(
                c("sys"),
                "mode=0555,size=4k",
                nosuid_nodev | MountFlags::NOEXEC | MountFlags::RDONLY,
            ),
            "mount an empty read-only tmpfs on /sys".into(),
        );
        push(
            tmpfs(
                c("dev"),
                "mode=0755,size=65536k",
                MountFlags::NOSUID | MountFlags::NOEXEC,
            ),
            "mount tmpfs on /dev".into(),
        );
        for n in DEV_NODES {
            let target = c(&format!("dev/{n}"));
            push(
                Op::Touch {
                    path: target.clone(),
                },
                format!("create /dev/{n}"),
            );
            push(
                Op::Bind {
                    source: cstr(format!("/dev/{n}")),
                    target,
                    readonly: false,
                    // e.g. no /dev/tty in some CI containers
                    optional: true,
                },
                format!("bind-mount host /dev/{n}"),
            );
        }
        push(
            Op::Mkdir {
                path: c("dev/pts"),
                mode: 0o755,
            },
            "create /dev/pts".into(),
        );
        push(
            Op::Mount {
                source: cstr("devpts"),
                target: c("dev/pts"),
                fstype: cstr("devpts"),
                flags: MountFlags::NOSUID | MountFlags::NOEXEC,
                data: Some(cstr("newinstance,ptmxmode=0666,mode=0620")),
            },
            "mount devpts on /dev/pts".into(),
        );
        push(
            Op::Mkdir {
                path: c("dev/shm"),
                mode: 0o1777,
            },
            "create /dev/shm".into(),
        );
        push(
            tmpfs(
                c("dev/shm"),
                &format!("mode=1777,size={SHM_SIZE}"),
                nosuid_nodev,
            ),
            "mount tmpfs on /dev/shm".into(),
        );
        for (link, target) in [
            ("dev/ptmx", "pts/ptmx"),
            ("dev/fd", "/proc/self/fd"),
            ("dev/stdin", "/proc/self/fd/0"),
            ("dev/stdout", "/proc/self/fd/1"),
            ("dev/stderr", "/proc/self/fd/2"),
        ] {
            push(
                Op::Symlink {
                    target: cstr(target),
                    link: c(link),
                },
                format!("create /{link}"),
            );
        }
        push(
            tmpfs(
                c("tmp"),
                &format!("mode=1777,size={TMP_SIZE}"),
                nosuid_nodev,
            ),
            format!("mount tmpfs on /tmp (size={TMP_SIZE})"),
        );
        push(
            tmpfs(
                c("run"),
                &format!("mode=0755,size={RUN_SIZE}"),
                nosuid_nodev,
            ),
            format!("mount tmpfs on /run (size={RUN_SIZE})"),
        );
        let host_secrets = match spec.secrets {
            Secrets::Host(s) => s,
            Secrets::Staged(_) => &[],
        };
        if !host_secrets.is_empty() || matches!(spec.secrets, Secrets::Staged(_)) {
            push(
                Op::Mkdir {
                    path: c("run/secrets"),
                    mode: 0o755,
                },
                "create /run/secrets".into(),
            );
        }
        if let Secrets::Staged(dir) = spec.secrets {
            push(
                Op::BindTree {
                    source: cstr(dir),
                    target: c("run/secrets"),
                    readonly: true,
                },
                format!("bind-mount the staged secrets from {}", dir.display()),
            );
        }
        for (id, host) in host_secrets {
            let target = c(&format!("run/secrets/{id}"));
            push(
                Op::Touch {
                    path: target.clone(),
                },
                format!("create /run/secrets/{id}"),
            );
            push(
                Op::Bind {
                    source: cstr(host),
                    target,
                    readonly: true,
                    optional: false,
                },
                format!("bind-mount secret {id} from {}", host.display()),
            );
        }
        if spec.network {
            for f in ["etc/resolv.conf", "etc/hosts"] {
                push(
                    Op::BindFileIfNotSymlink {
                        source: cstr(format!("/{f}")),
                        target: c(f),
                        parent: c("etc"),
                    },
                    format!("bind-mount host /{f}"),
                );
            }
            if let Some(parts) = resolv_conf_in_run(&spec.image_dirs) {
                // The image links /etc/resolv.conf into /run, which is our fresh tmpfs:
                // the host's file goes where the link points, and never into the upper.
                let full = parts.join("/");
                for i in 2..parts.len() {
                    let dir = parts[..i].join("/");
                    push(
                        Op::Mkdir {
                            path: c(&dir),
                            mode: 0o755,
                        },
                        format!("create /{dir}"),
                    );
                }
                push(Op::Touch { path: c(&full) }, format!("create /{full}"));
                push(
                    Op::Bind {
                        source: cstr("/etc/resolv.conf"),
                        target: c(&full),
                        readonly: true,
                        optional: true,
                    },
                    format!("bind-mount host /etc/resolv.conf onto /{full}"),
                );
            }
        }
        push(
            Op::PivotRoot { new_root: cstr(r) },
            format!("pivot_root into {}", r.display()),
        );
        Self { ops }
    }

    /// Descriptors the plan reads from (the child must keep them open).
    pub(crate) fn fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.ops
            .iter()
            .filter_map(|p| match &p.op {
                Op::Copy { source, .. } => Some(source.as_raw_fd()),
                _ => None,
            })
            .collect()
    }

    /// Description of step `idx` for error messages.
    pub(crate) fn describe(&self, idx: usize) -> &str {
        self.ops
            .get(idx)
            .map_or("unknown mount step", |p| p.what.as_str())
    }

    /// Applies the plan. Async-signal-safe: only raw syscalls on prepared
    /// C strings. Returns the failing step index and errno.
    pub(crate) fn apply(&self) -> Result<(), (usize, Errno)> {
        for (i, p) in self.ops.iter().enumerate() {
            apply_op(&p.op).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

fn tmpfs(target: CString, data: &str, flags: MountFlags) -> Op {
    Op::Mount {
        source: cstr("tmpfs"),
        target,
        fstype: cstr("tmpfs"),
        flags,
        data: Some(cstr(data)),
    }
}

fn apply_op(op: &Op) -> Result<(), Errno> {
    match op {
        Op::MakeRootPrivate => rmount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        ),
        Op::Mask { target } => {
            let st = match rfs::statat(rfs::CWD, target.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Err(Errno::NOENT) => return Ok(()),
                r => r?,
            };
            if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                rmount::mount(
                    c"tmpfs",
                    target.as_c_str(),
                    c"tmpfs",
                    MountFlags::RDONLY
                        | MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC,
                    Some(c"mode=0555,size=4k"),
                )
            } else {
                rmount::mount_bind(c"/dev/null", target.as_c_str())
            }
        }
        Op::Copy {
            source,
            target,
            uid,
            gid,
            mode,
        } => {
            let out = rfs::open(
                target.as_c_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            loop {
                match rfs::sendfile(&out, source, None, 1 << 30) {
                    Ok(0) => break,
                    Ok(_) | Err(Errno::INTR) => {}
                    Err(e) => return Err(e),
                }
            }
            rfs::fchown(
                &out,
                Some(rfs::Uid::from_raw(*uid)),
                Some(rfs::Gid::from_raw(*gid)),
            )?;
            rfs::fchmod(&out, Mode::from_raw_mode(*mode))
        }
        Op::BindTree {
            source,
            target,
            readonly,
        } => {
            rmount::mount_bind_recursive(source.as_c_str(), target.as_c_str())?;
            if *readonly {
                remount_readonly(target)?;
            }
            Ok(())
        }
        Op::RemountReadOnly { target } => remount_readonly(target),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => rmount::mount(
            source.as_c_str(),
            target.as_c_str(),
            fstype.as_c_str(),
            *flags,
            data.as_deref(),
        ),
        Op::Mkdir { path, mode } => match rfs::mkdir(path.as_c_str(), Mode::from_raw_mode(*mode)) {
            Err(Errno::EXIST) => Ok(()),
            r => r,
        },
        Op::Touch { path } => touch(path),
        Op::Symlink { target, link } => rfs::symlink(target.as_c_str(), link.as_c_str()),
        Op::Bind {
            source,
            target,
            readonly,
            optional,
        } => {
            if *optional
                && matches!(
                    rfs::statat(rfs::CWD, source.as_c_str(), AtFlags::empty()),
                    Err(Errno::NOENT)
                )
            {
                return Ok(());
            }
            rmount::mount_bind(source.as_c_str(), target.as_c_str())?;
            if *readonly {
                remount_readonly(target)?;
            }
            Ok(())
        }
        Op::BindFileIfNotSymlink {
            source,
            target,
            parent,
        } => {
            match rfs::statat(rfs::CWD, source.as_c_str(), AtFlags::empty()) {
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            // Before pivot_root a symlinked `/etc` would resolve on the host: skip it.
            // An image without `/etc` gets one, so that names resolve in it too.
            match rfs::statat(rfs::CWD, parent.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory => {}
                Ok(_) => return Ok(()),
                Err(Errno::NOENT) => {
                    match rfs::mkdir(parent.as_c_str(), Mode::from_raw_mode(0o755)) {
                        Err(Errno::EXIST) => return Ok(()),
                        r => r?,
                    }
                }
                Err(e) => return Err(e),
            }
            match rfs::statat(rfs::CWD, target.as_c_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Symlink => {
                    return Ok(())
                }
                Ok(_) => {}
                // No /etc in the rootfs: nothing to resolve names with anyway.
                Err(Errno::NOENT) => match touch(target) {
                    Err(Errno::NOENT) => return Ok(()),
                    r => r?,
                },
                Err(e) => return Err(e),
            }
            rmount::mount_bind(source.as_c_str(), target.as_c_str())?;
            remount_readonly(target)
        }
        Op::PivotRoot { new_root } => {
            rustix::process::chdir(new_root.as_c_str())?;
            rustix::process::pivot_root(c".", c".")?;
            rmount::unmount(c".", UnmountFlags::DETACH)?;
            rustix::process::chdir(c"/")
        }
    }
}

fn touch(path: &CStr) -> Result<(), Errno> {
    rfs::open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map(drop)
}

/// Remounts a bind mount read-only, keeping the flags a user namespace may
/// not clear (nosuid, nodev, noexec, atime flags) as they are.
fn remount_readonly(target: &CStr) -> Result<(), Errno> {
    let st = rfs::statvfs(target)?;
    let mut flags = MountFlags::BIND
        | MountFlags::RDONLY
        | MountFlags::NOSUID
        | MountFlags::NODEV
        | MountFlags::NOEXEC;
    let f = st.f_flag;
    for (have, want) in [
        (StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
        (StatVfsMountFlags::NODIRATIME, MountFlags::NODIRATIME),
        (StatVfsMountFlags::RELATIME, MountFlags::RELATIME),
    ] {
        if f.contains(have) {
            flags |= want;
        }
    }
    rmount::mount_remount(target, flags, c"")
}
