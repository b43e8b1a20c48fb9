//! Rootless unpacking, second half: applying the owners recorded by
//! [`Owners::Defer`](super::unpack::Owners::Defer) from inside a user
//! namespace mapped like the sandbox's (so sandbox uid 1000 becomes host
//! subuid `start + 999`, exactly what the sandbox will see).
//!
//! An unprivileged process cannot `chown` to its subordinate ids, but the
//! root of a user namespace mapped with `newuidmap` can. We fork a child
//! that unshares its user namespace, wait for the parent to install the map,
//! and then issue only `lchown`/`chmod`/`lsetxattr` syscalls on paths
//! prepared before the fork (async-signal-safe, like the sandbox child).
//! Paths are resolved by the kernel here, which is safe because the tree
//! was just written by [`unpack_layer`](super::unpack_layer), which refuses
//! any entry that would traverse a symlink, and nothing else writes to it.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, XattrFlags};
use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Signal, WaitOptions};
use rustix::thread::UnshareFlags;

use super::child::{close_other_fds, exit_now, fail, fork};
use super::mounts::cstr;
use super::namespaces::{IdMap, IdMapError};
use super::unpack::OwnerFix;

/// Errors of [`apply_owners_in_userns`].
#[derive(Debug, thiserror::Error)]
pub enum OwnersError {
    /// Setting up the helper process failed.
    #[error("cannot start the id-mapped helper for {root}: {source}")]
    Spawn {
        /// Unpacked layer dir.
        root: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Mapping the helper's ids failed.
    #[error("cannot map ids for the unpack helper of {root}")]
    IdMap {
        /// Unpacked layer dir.
        root: PathBuf,
        /// Cause.
        #[source]
        source: IdMapError,
    },
    /// One of the operations failed.
    #[error("cannot {op} {path:?} under {root} to {uid}:{gid}: {source}; is the id inside the subuid range (see /etc/subuid)?")]
    Apply {
        /// Unpacked layer dir.
        root: PathBuf,
        /// Entry path.
        path: String,
        /// The operation.
        op: &'static str,
        /// Wanted uid.
        uid: u32,
        /// Wanted gid.
        gid: u32,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

struct Op {
    path: CString,
    uid: u32,
    gid: u32,
    mode: Option<u32>,
    cap: Option<Vec<u8>>,
}

const OPS: [&str; 3] = [
    "chown",
    "chmod after chown",
    "restore security.capability on",
];

/// Applies `fixes` to the tree at `root` from inside a user namespace
/// mapped with `map` (see module docs).
pub fn apply_owners_in_userns(
    root: &Path,
    fixes: &[OwnerFix],
    map: &IdMap,
) -> Result<(), OwnersError> {
    let spawn_err = |source: io::Error| OwnersError::Spawn {
        root: root.to_owned(),
        source,
    };
    if fixes.is_empty() {
        return Ok(());
    }
    let abs = fs_err::canonicalize(root).map_err(spawn_err)?;
    let ops: Vec<Op> = fixes
        .iter()
        .map(|f| Op {
            path: if f.path.is_empty() {
                cstr(&abs)
            } else {
                cstr(abs.join(&f.path))
            },
            uid: f.uid,
            gid: f.gid,
            mode: f.mode,
            cap: f.capability.clone(),
        })
        .collect();
    let pipe = || rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| spawn_err(e.into()));
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let parent = rustix::process::getpid();

    let pid = match fork().map_err(|e| spawn_err(e.into()))? {
        None => {
            let mut keep = [ready_w.as_raw_fd(), go_r.as_raw_fd(), err_w.as_raw_fd()];
            keep.sort_unstable();
            close_other_fds(&keep);
            let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
            if rustix::process::getppid() != Some(parent) {
                exit_now(125);
            }
            // SAFETY: single-threaded after fork; only the user namespace
            // is unshared.
            if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) } {
                fail(&err_w, u32::MAX, e);
            }
            let mut b = [0u8; 1];
            if rustix::io::write(&ready_w, b"r").is_err()
                || rustix::io::read(&go_r, &mut b) != Ok(1)
            {
                exit_now(125);
            }
            for (i, op) in ops.iter().enumerate() {
                apply_one(op).unwrap_or_else(|(k, e)| fail(&err_w, (i * OPS.len() + k) as u32, e));
            }
            exit_now(0)
        }
        Some(pid) => pid,
    };
    drop((ready_w, go_r, err_w));
    let mut b = [0u8; 1];
    let mapped = if rustix::io::read(&ready_r, &mut b) == Ok(1) {
        map.install(pid.as_raw_nonzero().get())
    } else {
        Ok(())
    };
    if let Err(source) = mapped {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        return Err(OwnersError::IdMap {
            root: root.to_owned(),
            source,
        });
    }
    let _ = rustix::io::write(&go_w, b"g");
    drop(go_w);
    let mut rec = [0u8; 8];
    let mut n = 0;
    while n < rec.len() {
        match rustix::io::read(&err_r, &mut rec[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::INTR) => {}
            Err(_) => break,
        }
    }
    let status = loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Err(Errno::INTR) => continue,
            other => break other,
        }
    };
    if n == rec.len() {
        let idx = u32::from_ne_bytes([rec[0], rec[1], rec[2], rec[3]]);
        let errno = i32::from_ne_bytes([rec[4], rec[5], rec[6], rec[7]]);
        let source = io::Error::from_raw_os_error(errno);
        if idx == u32::MAX {
            return Err(spawn_err(source));
        }
        let fix = &fixes[idx as usize / OPS.len()];
        return Err(OwnersError::Apply {
            root: root.to_owned(),
            path: fix.path.clone(),
            op: OPS[idx as usize % OPS.len()],
            uid: fix.uid,
            gid: fix.gid,
            source,
        });
    }
    match status {
        Ok(Some((_, st))) if st.exit_status() == Some(0) => Ok(()),
        other => Err(spawn_err(io::Error::other(format!(
            "helper ended with {other:?}"
        )))),
    }
}

/// chown, then chmod and capability (a chown clears both). Async-signal-safe.
fn apply_one(op: &Op) -> Result<(), (usize, Errno)> {
    rfs::chownat(
        rfs::CWD,
        op.path.as_c_str(),
        Some(rfs::Uid::from_raw(op.uid)),
        Some(rfs::Gid::from_raw(op.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| (0, e))?;
    if let Some(mode) = op.mode {
        rfs::chmodat(
            rfs::CWD,
            op.path.as_c_str(),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )
        .map_err(|e| (1, e))?;
    }
    if let Some(cap) = &op.cap {
        rfs::lsetxattr(
            op.path.as_c_str(),
            c"security.capability",
            cap,
            XattrFlags::empty(),
        )
        .map_err(|e| (2, e))?;
    }
    Ok(())
}
