//! Namespaces and id mapping.
//!
//! Policy: a sandbox always gets new user, mount, pid, ipc and uts
//! namespaces, and a new network namespace unless the step asks for
//! `network = true`. Sandbox root is never host root: the step's user
//! namespace maps sandbox ids `0..N` to an [`IdMap`]:
//!
//! | mode | sandbox 0 | sandbox 1 ..= count | map written by |
//! |------|-----------|---------------------|----------------|
//! | [`SandboxMode::Root`], real root | [`ROOT_SUBID_START`] (or root's `/etc/subuid` range) | the ids after it | imgbuild (`/proc/PID/uid_map`) |
//! | [`SandboxMode::Root`], root of a user namespace (rootless CLI) | the same id (identity map of our own map) | the same ids | imgbuild |
//! | [`SandboxMode::Rootless`] | the invoking user's uid | its `/etc/subuid` range | `newuidmap`/`newgidmap` (package `uidmap`) |
//!
//! so package installs that `chown` to system users work, and the upper
//! dir contains host ids that [`IdMap::to_container_uid`] maps back.

use std::io;
use std::path::PathBuf;
use std::process::Command;

/// First host id of the range that sandbox ids map to when imgbuild runs
/// as real root and root has no `/etc/subuid` / `/etc/subgid` entry:
/// 2^30, inside systemd's container id range (524288..=1879048191), above
/// the ranges `useradd` hands out (`SUB_UID_MAX` = 600100000) and below
/// 2^31 (tools that treat ids as signed). [`ROOT_SUBID_COUNT`] ids.
pub const ROOT_SUBID_START: u32 = 1 << 30;
/// Number of sandbox ids (0..=65535) mapped when imgbuild runs as root.
pub const ROOT_SUBID_COUNT: u32 = 65_536;

/// How the sandbox gets its privileges; both kinds run every step in a new
/// user namespace (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxMode {
    /// imgbuild is root (real, or of a user namespace): it mounts the
    /// overlay itself and writes the step's id map directly.
    Root(IdMap),
    /// Unprivileged: the user namespace is mapped with `newuidmap`.
    Rootless(IdMap),
}

impl SandboxMode {
    /// `Root` with [`IdMap::for_root`] when euid is 0, otherwise `Rootless`
    /// with the invoking user's ranges from `/etc/subuid` and `/etc/subgid`.
    pub fn detect() -> Result<Self, IdMapError> {
        if rustix::process::geteuid().is_root() {
            Ok(Self::Root(IdMap::for_root()?))
        } else {
            Ok(Self::Rootless(IdMap::for_current_user()?))
        }
    }

    /// The step's id map.
    pub fn id_map(&self) -> &IdMap {
        match self {
            Self::Root(m) | Self::Rootless(m) => m,
        }
    }
}

/// Who writes an [`IdMap`] into a new user namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapWriter {
    /// The setuid helpers `newuidmap`/`newgidmap` (unprivileged).
    Helpers,
    /// imgbuild itself, writing `/proc/PID/uid_map` (root).
    Direct,
}

/// Sandbox id -> host id mapping (see module docs): sandbox 0 is
/// `host_uid`, sandbox `1..=count` is `subuid_start..`.
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
    /// Who installs the map.
    pub writer: MapWriter,
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
    /// Root of a user namespace that maps no run of ids from 0.
    #[error("this user namespace maps no ids from 0 (see /proc/self/uid_map and gid_map), so steps cannot get a user namespace of their own; run imgbuild as real root or as a user with an /etc/subuid range")]
    NoOwnIds,
    /// Writing a map as root failed.
    #[error("cannot write {map:?} to {path}: {source}; imgbuild as root maps sandbox ids to a subordinate range (root's /etc/subuid entry or 1073741824..+65536), which must not overlap an existing map")]
    WriteMap {
        /// `/proc/PID/uid_map` or `gid_map`.
        path: PathBuf,
        /// What was written.
        map: String,
        /// Cause.
        #[source]
        source: io::Error,
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
            writer: MapWriter::Helpers,
        })
    }

    /// The map for steps started by root: in the initial user namespace,
    /// root's first `/etc/subuid` / `/etc/subgid` range (at most
    /// [`ROOT_SUBID_COUNT`] ids) or else [`ROOT_SUBID_START`]; inside a user
    /// namespace (the rootless CLI re-executed itself), the identity on the
    /// ids mapped there.
    pub fn for_root() -> Result<Self, IdMapError> {
        let read = |path: &str| {
            fs_err::read_to_string(path).map_err(|source| IdMapError::ReadSubIds {
                path: path.into(),
                user: "root".into(),
                source,
            })
        };
        if !in_initial_user_namespace() {
            let uids = identity_count(&read("/proc/self/uid_map")?);
            let gids = identity_count(&read("/proc/self/gid_map")?);
            if uids < 1 || gids < 1 {
                return Err(IdMapError::NoOwnIds);
            }
            return Ok(Self {
                host_uid: 0,
                host_gid: 0,
                subuid_start: 1,
                subuid_count: uids.min(ROOT_SUBID_COUNT) - 1,
                subgid_start: 1,
                subgid_count: gids.min(ROOT_SUBID_COUNT) - 1,
                writer: MapWriter::Direct,
            });
        }
        let range = |path: &str| -> (u32, u32) {
            let text = fs_err::read_to_string(path).unwrap_or_default();
            match parse_range(&text, "root", 0) {
                Some((start, count)) if count >= 1 => (start, count.min(ROOT_SUBID_COUNT)),
                _ => (ROOT_SUBID_START, ROOT_SUBID_COUNT),
            }
        };
        let (u, uc) = range("/etc/subuid");
        let (g, gc) = range("/etc/subgid");
        Ok(Self {
            host_uid: u,
            host_gid: g,
            subuid_start: u + 1,
            subuid_count: uc - 1,
            subgid_start: g + 1,
            subgid_count: gc - 1,
            writer: MapWriter::Direct,
        })
    }

    /// True when every sandbox id is the same id outside.
    pub fn is_identity(&self) -> bool {
        self.host_uid == 0 && self.host_gid == 0 && self.subuid_start == 1 && self.subgid_start == 1
    }

    /// Whether sandbox ids form one contiguous host range
    /// (`host_uid .. host_uid + count`), as in [`SandboxMode::Root`]:
    /// returns `(uid base, gid base, count)` where count covers both.
    pub fn contiguous(&self) -> Option<(u32, u32, u32)> {
        (self.subuid_start == self.host_uid.wrapping_add(1)
            && self.subgid_start == self.host_gid.wrapping_add(1))
        .then(|| {
            (
                self.host_uid,
                self.host_gid,
                self.subuid_count.min(self.subgid_count) + 1,
            )
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
    /// namespace), with `newuidmap` and `newgidmap` or directly.
    pub fn install(&self, pid: i32) -> Result<(), IdMapError> {
        if self.writer == MapWriter::Direct {
            for (file, host, start, count) in [
                (
                    "uid_map",
                    self.host_uid,
                    self.subuid_start,
                    self.subuid_count,
                ),
                (
                    "gid_map",
                    self.host_gid,
                    self.subgid_start,
                    self.subgid_count,
                ),
            ] {
                let mut text = format!("0 {host} 1\n");
                if count > 0 {
                    text.push_str(&format!("1 {start} {count}\n"));
                }
                let path = format!("/proc/{pid}/{file}");
                fs_err::write(&path, &text).map_err(|source| IdMapError::WriteMap {
                    path: path.into(),
                    map: text,
                    source,
                })?;
            }
            return Ok(());
        }
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

/// Length of the run of ids `0..n` that `/proc/self/uid_map` text maps.
fn identity_count(map: &str) -> u32 {
    let mut ranges: Vec<(u32, u32)> = map
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u32>().ok());
            let inside = f.next()??;
            let _outside = f.next()??;
            Some((inside, f.next()??))
        })
        .collect();
    ranges.sort_unstable();
    let mut n: u32 = 0;
    for (inside, count) in ranges {
        if inside == n {
            n = n.saturating_add(count);
        }
    }
    n
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
            writer: MapWriter::Helpers,
        };
        assert_eq!(m.to_host_uid(0), Some(1000));
        assert_eq!(m.to_host_uid(1), Some(100000));
        assert_eq!(m.to_container_uid(100999), Some(1000));
        assert_eq!(m.to_container_uid(1000), Some(0));
        assert_eq!(m.to_container_uid(5), None);
        assert_eq!(m.to_host_uid(65537), None);
        assert_eq!(m.contiguous(), None);
        assert_eq!(identity_count("0 1000 1\n1 400000 65536\n"), 65537);
        assert_eq!(identity_count("0 0 4294967295\n"), u32::MAX);
        assert_eq!(identity_count("1 0 10\n"), 0);
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
/// Inside, [`SandboxMode::detect`] gives `Root` with an identity map, the
/// overlay flavour is `User`, layers unpack with
/// [`Owners::Apply`](super::Owners::Apply), and
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
