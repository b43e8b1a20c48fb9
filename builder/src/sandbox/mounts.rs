//! The sandbox's mount table, planned in the parent and applied in the
//! forked child.
//!
//! All strings are turned into `CString`s by [`MountPlan::new`] *before*
//! the fork; [`MountPlan::apply`] only issues raw syscalls (no allocation,
//! no locks), which is what is allowed between `fork` and `exec` in a
//! multi-threaded program.
//!
//! Layout inside the new root (`R` = private overlay mount point):
//!
//! * `R` = overlay(lowerdir = lowers topmost-first, upperdir, workdir
//!   [, userxattr]);
//! * `/proc` new procfs (nosuid, nodev, noexec); `/sys` is not mounted;
//! * `/dev` tmpfs with `null zero full random urandom tty` bind-mounted
//!   from the host, `pts` (new devpts instance), `ptmx -> pts/ptmx`,
//!   `shm` tmpfs, `fd`/`stdin`/`stdout`/`stderr` symlinks;
//! * `/tmp` and `/run` tmpfs, so nothing there reaches the upper dir;
//! * `/run/secrets/<id>` read-only bind of each secret (inside the `/run`
//!   tmpfs, so neither the file nor its mount point reaches the upper);
//! * with network: `/etc/resolv.conf` and `/etc/hosts` read-only binds of
//!   the host files (skipped when the rootfs has a symlink there; created
//!   empty when missing, which [`super::upper`] filters out again).
//!
//! Mount points `/proc`, `/dev`, `/tmp`, `/run` are created (mode 0755) in
//! the merged root when no lower provides them, so they appear as empty
//! directories in the upper; [`super::upper::scan_upper`] drops exactly
//! those (see there).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, StatVfsMountFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, MountFlags, MountPropagationFlags, UnmountFlags};

/// One step of the plan.
#[derive(Debug)]
enum Op {
    MakeRootPrivate,
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
    /// Read-only bind of a host file onto `target` inside the root, unless
    /// `target` is a symlink (skipped); a missing target is created empty.
    BindFileIfNotSymlink {
        source: CString,
        target: CString,
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
    pub(crate) secrets: &'a [(String, std::path::PathBuf)],
}

/// Host device nodes bind-mounted into `/dev`.
const DEV_NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

pub(crate) fn cstr(p: impl AsRef<std::ffi::OsStr>) -> CString {
    // Paths with NUL bytes are rejected earlier by `validate`; a NUL here is
    // a bug, not user input.
    CString::new(p.as_ref().as_bytes()).expect("path without NUL")
}

impl MountPlan {
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
        push(
            Op::Mount {
                source: cstr("overlay"),
                target: cstr(r),
                fstype: cstr("overlay"),
                flags: MountFlags::empty(),
                data: Some(cstr(spec.overlay_options)),
            },
            format!(
                "mount overlay on {} with {}",
                r.display(),
                spec.overlay_options
            ),
        );
        for d in ["proc", "dev", "tmp", "run"] {
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
            tmpfs(c("dev/shm"), "mode=1777", nosuid_nodev),
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
            tmpfs(c("tmp"), "mode=1777", nosuid_nodev),
            "mount tmpfs on /tmp".into(),
        );
        push(
            tmpfs(c("run"), "mode=0755", nosuid_nodev),
            "mount tmpfs on /run".into(),
        );
        if !spec.secrets.is_empty() {
            push(
                Op::Mkdir {
                    path: c("run/secrets"),
                    mode: 0o755,
                },
                "create /run/secrets".into(),
            );
        }
        for (id, host) in spec.secrets {
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
                    },
                    format!("bind-mount host /{f}"),
                );
            }
        }
        push(
            Op::PivotRoot { new_root: cstr(r) },
            format!("pivot_root into {}", r.display()),
        );
        Self { ops }
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
        Op::BindFileIfNotSymlink { source, target } => {
            match rfs::statat(rfs::CWD, source.as_c_str(), AtFlags::empty()) {
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(e),
                Ok(_) => {}
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
