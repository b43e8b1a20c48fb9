//! Namespaces and id mapping.
//!
//! Policy: a sandbox always gets new mount, pid, ipc and uts namespaces, and
//! a new network namespace unless the step asks for `network = true`.
//! A new *user* namespace is created only in [`SandboxMode::Rootless`]: when
//! the builder runs as real root the step runs as real root too (chrooted
//! and namespaced, but not a security boundary against a hostile recipe).
//!
//! Rootless id map (written by the setuid helpers `newuidmap`/`newgidmap`
//! from package `uidmap`):
//!
//! | in sandbox      | on the host                       |
//! |-----------------|-----------------------------------|
//! | 0               | the invoking user's uid / gid     |
//! | 1 ..= count     | subuid_start ..= subuid_start+count-1 |
//!
//! so package installs that `chown` to system users work, and the upper
//! dir contains host ids that [`IdMap::to_container_uid`] maps back.

use std::io;
use std::path::PathBuf;
use std::process::Command;

/// How the sandbox gets its privileges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// We are (namespaced or real) root already: no new user namespace.
    Root,
    /// Unprivileged: new user namespace mapped with the given ranges.
    Rootless(IdMap),
}

impl SandboxMode {
    /// `Root` when euid is 0, otherwise `Rootless` with the invoking
    /// user's ranges from `/etc/subuid` and `/etc/subgid`.
    pub fn detect() -> Result<Self, IdMapError> {
        if rustix::process::geteuid().is_root() {
            Ok(Self::Root)
        } else {
            Ok(Self::Rootless(IdMap::for_current_user()?))
        }
    }
}

/// A rootless id mapping (see module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMap {
    /// Host uid that becomes root in the sandbox.
    pub host_uid: u32,
    /// Host gid that becomes group 0 in the sandbox.
    pub host_gid: u32,
    /// First host subuid; mapped to sandbox uid 1.
    pub subuid_start: u32,
    /// Number of subuids.
    pub subuid_count: u32,
    /// First host subgid; mapped to sandbox gid 1.
    pub subgid_start: u32,
    /// Number of subgids.
    pub subgid_count: u32,
}

/// Errors of id-map lookup and installation.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    /// `/etc/subuid` or `/etc/subgid` could not be read.
    #[error("cannot read {path}: {source}; install package `uidmap` and give user {user} a range, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}`")]
    ReadSubIds {
        /// The file.
        path: PathBuf,
        /// The user.
        user: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// No range for this user.
    #[error("no {file} range for user {user}: add one, e.g. `usermod --add-{flag} 100000-165535 {user}`")]
    NoRange {
        /// `subuid` or `subgid`.
        file: &'static str,
        /// `subuids` / `subgids`.
        flag: &'static str,
        /// The user.
        user: String,
    },
    /// Running `newuidmap`/`newgidmap` failed.
    #[error("{tool} for sandbox pid {pid} failed: {detail}; install package `uidmap` and check the ranges in /etc/subuid and /etc/subgid")]
    Helper {
        /// `newuidmap` or `newgidmap`.
        tool: &'static str,
        /// Target process.
        pid: i32,
        /// Exit status and stderr, or the spawn error.
        detail: String,
    },
}

impl IdMap {
    /// Looks up the current user's first subordinate id ranges.
    pub fn for_current_user() -> Result<Self, IdMapError> {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        let name = user_name(uid).unwrap_or_else(|| uid.to_string());
        let (subuid_start, subuid_count) =
            lookup_range("/etc/subuid", "subuid", "subuids", &name, uid)?;
        let (subgid_start, subgid_count) =
            lookup_range("/etc/subgid", "subgid", "subgids", &name, uid)?;
        Ok(Self {
            host_uid: uid,
            host_gid: gid,
            subuid_start,
            subuid_count,
            subgid_start,
            subgid_count,
        })
    }

    /// Host uid of a sandbox uid, if mapped.
    pub fn to_host_uid(&self, uid: u32) -> Option<u32> {
        map_fwd(uid, self.host_uid, self.subuid_start, self.subuid_count)
    }

    /// Sandbox uid of a host uid, if mapped.
    pub fn to_container_uid(&self, host: u32) -> Option<u32> {
        map_back(host, self.host_uid, self.subuid_start, self.subuid_count)
    }

    /// Sandbox gid of a host gid, if mapped.
    pub fn to_container_gid(&self, host: u32) -> Option<u32> {
        map_back(host, self.host_gid, self.subgid_start, self.subgid_count)
    }

    /// Host gid of a sandbox gid, if mapped.
    pub fn to_host_gid(&self, gid: u32) -> Option<u32> {
        map_fwd(gid, self.host_gid, self.subgid_start, self.subgid_count)
    }

    /// Writes the maps of process `pid` (which has just unshared its user
    /// namespace) with `newuidmap` and `newgidmap`.
    pub fn install(&self, pid: i32) -> Result<(), IdMapError> {
        run_helper(
            "newuidmap",
            pid,
            self.host_uid,
            self.subuid_start,
            self.subuid_count,
        )?;
        run_helper(
            "newgidmap",
            pid,
            self.host_gid,
            self.subgid_start,
            self.subgid_count,
        )
    }
}

fn map_fwd(id: u32, host: u32, start: u32, count: u32) -> Option<u32> {
    match id {
        0 => Some(host),
        n if n <= count => start.checked_add(n - 1),
        _ => None,
    }
}

fn map_back(host_id: u32, host: u32, start: u32, count: u32) -> Option<u32> {
    if host_id == host {
        Some(0)
    } else if host_id >= start && host_id - start < count {
        Some(host_id - start + 1)
    } else {
        None
    }
}

fn run_helper(
    tool: &'static str,
    pid: i32,
    host: u32,
    start: u32,
    count: u32,
) -> Result<(), IdMapError> {
    let out = Command::new(tool)
        .args([pid.to_string(), "0".into(), host.to_string(), "1".into()])
        .args(["1".to_string(), start.to_string(), count.to_string()])
        .output()
        .map_err(|e| IdMapError::Helper {
            tool,
            pid,
            detail: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(IdMapError::Helper {
            tool,
            pid,
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = fs_err::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id = f.nth(1)?;
        (id.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

fn lookup_range(
    path: &str,
    file: &'static str,
    flag: &'static str,
    name: &str,
    uid: u32,
) -> Result<(u32, u32), IdMapError> {
    let text = fs_err::read_to_string(path).map_err(|e| IdMapError::ReadSubIds {
        path: path.into(),
        user: name.to_owned(),
        source: e,
    })?;
    parse_range(&text, name, uid).ok_or_else(|| IdMapError::NoRange {
        file,
        flag,
        user: name.to_owned(),
    })
}

/// First `name:start:count` (or `uid:start:count`) line for the user.
fn parse_range(text: &str, name: &str, uid: u32) -> Option<(u32, u32)> {
    let uid = uid.to_string();
    text.lines().find_map(|l| {
        let mut f = l.trim().split(':');
        let who = f.next()?;
        let start = f.next()?.parse().ok()?;
        let count = f.next()?.parse().ok()?;
        (who == name || who == uid).then_some((start, count))
    })
}

/// True when this process is in the initial user namespace (so `trusted.*`
/// xattrs and `mknod` are possible for root).
pub fn in_initial_user_namespace() -> bool {
    fs_err::read_to_string("/proc/self/uid_map")
        .map(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_mapping() {
        let text = "alice:100000:65536\n1001:200000:1000\n";
        assert_eq!(parse_range(text, "alice", 1000), Some((100000, 65536)));
        assert_eq!(parse_range(text, "bob", 1001), Some((200000, 1000)));
        assert_eq!(parse_range(text, "carol", 1002), None);
        let m = IdMap {
            host_uid: 1000,
            host_gid: 1000,
            subuid_start: 100000,
            subuid_count: 65536,
            subgid_start: 100000,
            subgid_count: 65536,
        };
        assert_eq!(m.to_host_uid(0), Some(1000));
        assert_eq!(m.to_host_uid(1), Some(100000));
        assert_eq!(m.to_container_uid(100999), Some(1000));
        assert_eq!(m.to_container_uid(1000), Some(0));
        assert_eq!(m.to_container_uid(5), None);
        assert_eq!(m.to_host_uid(65537), None);
    }
}

/// Environment variable carrying the sync pipe fds to the re-executed child.
const REEXEC_ENV: &str = "_IMGBUILD_USERNS_SYNC";

/// Errors of [`reexec_in_user_namespace`].
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// No usable subordinate id range.
    #[error("cannot run rootless")]
    IdMap(#[from] IdMapError),
    /// Spawning or synchronising with the re-executed program failed.
    #[error("cannot re-execute {exe} inside a user namespace: {source}; unprivileged user namespaces may be disabled (sysctl user.max_user_namespaces, kernel.apparmor_restrict_unprivileged_userns)")]
    Reexec {
        /// The program.
        exe: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Makes the rest of the program run as root of a user namespace mapped
/// like [`SandboxMode::Rootless`] (0 = invoking user, 1.. = subuids) — the
/// `buildah unshare` model for rootless builds. Call it first thing in
/// `main`, before any thread exists.
///
/// * Already euid 0 (real root, or already re-executed): returns `Ok(())`.
/// * Unprivileged: re-executes the current program with the same arguments;
///   the new process unshares its user namespace, this one maps it with
///   `newuidmap`/`newgidmap`, and then **exits with the child's exit code**
///   (it never returns).
///
/// Inside, [`SandboxMode::detect`] gives `Root`, the overlay flavour is
/// `User`, layers unpack with [`Owners::Apply`](super::Owners::Apply), and
/// upper dirs with files of any mapped owner can be scanned and read, which
/// an unprivileged process outside the namespace cannot do.
pub fn reexec_in_user_namespace() -> Result<(), UsernsError> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    let exe_err = |source: io::Error| UsernsError::Reexec {
        exe: std::env::current_exe().unwrap_or_default(),
        source,
    };
    if let Some(fds) = std::env::var_os(REEXEC_ENV) {
        // Child side. The variable is ours; it is never set by a user.
        let fds = fds.to_string_lossy().into_owned();
        // Not for our own children (e.g. a nested re-exec).
        std::env::remove_var(REEXEC_ENV);
        let (r, w) = fds.split_once(',').unwrap_or(("", ""));
        let parse = |s: &str| {
            s.parse::<i32>()
                .map_err(|e| exe_err(io::Error::new(io::ErrorKind::InvalidInput, e)))
        };
        let (go_fd, ready_fd) = (parse(r)?, parse(w)?);
        // SAFETY: the parent passed these two inherited pipe ends to us and
        // nothing else in this process owns them.
        let (go, ready) = unsafe { (OwnedFd::from_raw_fd(go_fd), OwnedFd::from_raw_fd(ready_fd)) };
        // SAFETY: called before any thread exists (documented contract; the
        // kernel refuses CLONE_NEWUSER in a multi-threaded process anyway).
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWUSER) }
            .map_err(|e| exe_err(e.into()))?;
        rustix::io::write(&ready, b"r").map_err(|e| exe_err(e.into()))?;
        let mut b = [0u8; 1];
        if rustix::io::read(&go, &mut b).map_err(|e| exe_err(e.into()))? != 1 {
            return Err(exe_err(io::Error::other("parent failed to map ids")));
        }
        return Ok(());
    }
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let map = IdMap::for_current_user()?;
    // Child ends without CLOEXEC so they survive the exec; ours with it.
    let (go_r, go_w) = rustix::pipe::pipe().map_err(|e| exe_err(e.into()))?;
    let (ready_r, ready_w) = rustix::pipe::pipe().map_err(|e| exe_err(e.into()))?;
    for fd in [&go_w, &ready_r] {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC).map_err(|e| exe_err(e.into()))?;
    }
    let mut args = std::env::args_os();
    let mut cmd = Command::new("/proc/self/exe");
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let mut child = cmd
        .args(args)
        .env(
            REEXEC_ENV,
            format!("{},{}", go_r.as_raw_fd(), ready_w.as_raw_fd()),
        )
        .spawn()
        .map_err(exe_err)?;
    drop((go_r, ready_w));
    let mut b = [0u8; 1];
    if rustix::io::read(&ready_r, &mut b) == Ok(1) {
        if let Err(e) = map.install(child.id() as i32) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e.into());
        }
        rustix::io::write(&go_w, b"g").map_err(|e| exe_err(e.into()))?;
    }
    drop(go_w);
    let status = child.wait().map_err(exe_err)?;
    std::process::exit(
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
    )
}
