//! Code that runs after `fork` in the sandbox processes.
//!
//! Process tree (parent = the builder):
//!
//! ```text
//! builder ──fork──▶ C  [root: unshare(NS), mount the overlay and the
//!                       staged secrets (MountPlan::pre_userns)]
//!                      unshare(USER), wait for the id map (written by the
//!                      builder, or newuidmap when rootless)
//!                      unshare(NS|PID|IPC|UTS[|NET]); fork ──▶ P (pid 1)
//!                      waits for P, exits with its status
//!                   P  mounts (MountPlan), pivot_root, fork ──▶ X
//!                      reaps every child; exits when X exits, which makes
//!                      the kernel SIGKILL everything left in the pid ns
//!                   X  drop caps, setgroups/setgid/setuid, chdir,
//!                      RLIMIT_NPROC, no_new_privs + seccomp, execve
//! ```
//!
//! `C` and `P` die with their parent (`PR_SET_PDEATHSIG = SIGKILL`), so a
//! killed builder takes the whole sandbox with it.
//!
//! Between `fork` and `exec` only async-signal-safe operations are allowed
//! (the builder is multi-threaded): everything here works on data prepared
//! by the parent ([`ChildPlan`]), makes raw syscalls through `rustix`/`libc`
//! and never allocates. Failures are reported as a fixed-size record
//! `(stage: u32, errno: i32)` on a close-on-exec pipe; EOF on that pipe
//! without a record means the command was exec'd.

use std::ffi::{c_char, CString};
use std::os::fd::{AsFd, OwnedFd};

use rustix::io::Errno;
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::UnshareFlags;

use super::mounts::MountPlan;

/// Stages outside the mount plan (mount steps use their plan index).
pub(crate) mod stage {
    pub(crate) const UNSHARE_USER: u32 = 1000;
    pub(crate) const SYNC: u32 = 1001;
    pub(crate) const UNSHARE: u32 = 1002;
    pub(crate) const FORK_INIT: u32 = 1003;
    pub(crate) const HOSTNAME: u32 = 1004;
    pub(crate) const FORK_CMD: u32 = 1005;
    pub(crate) const STDIO: u32 = 1006;
    pub(crate) const SETGROUPS: u32 = 1007;
    pub(crate) const SETGID: u32 = 1008;
    pub(crate) const SETUID: u32 = 1009;
    pub(crate) const CHDIR: u32 = 1010;
    pub(crate) const EXEC: u32 = 1011;
    pub(crate) const PDEATHSIG: u32 = 1012;
    pub(crate) const LOOPBACK: u32 = 1013;
    pub(crate) const CAPS: u32 = 1014;
    pub(crate) const NPROC: u32 = 1015;
    pub(crate) const SECCOMP: u32 = 1016;
    pub(crate) const PRE_UNSHARE: u32 = 1017;
    pub(crate) const BECOME_ROOT: u32 = 1018;
    /// Steps of the pre-userns mount plan are `PRE_MOUNTS + index`.
    pub(crate) const PRE_MOUNTS: u32 = 2000;
    /// The overlay mount of the pre-userns plan.
    pub(crate) const PRE_OVERLAY: u32 = PRE_MOUNTS + 1;

    /// Human name of a non-mount stage.
    pub(crate) fn name(s: u32) -> &'static str {
        match s {
            UNSHARE_USER => "create user namespace",
            SYNC => "wait for the id mapping",
            UNSHARE => "create mount/pid/ipc/uts/net namespaces",
            FORK_INIT => "fork the sandbox init (pid 1)",
            HOSTNAME => "set hostname",
            FORK_CMD => "fork the command",
            STDIO => "set up stdin/stdout/stderr",
            SETGROUPS => "drop supplementary groups",
            SETGID => "switch to the step's gid",
            SETUID => "switch to the step's uid",
            CHDIR => "change to the step's workdir",
            EXEC => "execute the command (not found or not executable in the rootfs?)",
            PDEATHSIG => "set parent-death signal",
            LOOPBACK => "bring up the loopback interface",
            CAPS => "drop capabilities",
            NPROC => "limit the number of processes (RLIMIT_NPROC)",
            SECCOMP => "install the seccomp filter (no_new_privs)",
            PRE_UNSHARE => "create the mount namespace for the overlay",
            BECOME_ROOT => "become root of the step's user namespace",
            _ => "unknown stage",
        }
    }
}

/// Everything the child needs, prepared before `fork`.
pub(crate) struct ChildPlan {
    /// Root mode: mounts made before the user namespace exists.
    pub(crate) pre: Option<MountPlan>,
    /// Descriptors C keeps open (sorted): its pipes and staged secrets.
    pub(crate) keep_fds: Vec<std::os::fd::RawFd>,
    /// `RLIMIT_NPROC` of the command.
    pub(crate) max_procs: u64,
    /// Installed just before `execve`.
    pub(crate) seccomp: super::seccomp::Filters,
    pub(crate) unshare: UnshareFlags,
    pub(crate) new_netns: bool,
    pub(crate) mounts: MountPlan,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) workdir: CString,
    /// Candidate absolute paths for the executable, tried in order.
    pub(crate) exec_paths: Vec<CString>,
    /// Owns the strings `argv_ptrs` / `env_ptrs` point into.
    pub(crate) _strings: Vec<CString>,
    /// NULL-terminated.
    pub(crate) argv_ptrs: Vec<*const c_char>,
    /// NULL-terminated.
    pub(crate) env_ptrs: Vec<*const c_char>,
}

/// File descriptors the child uses.
pub(crate) struct ChildFds {
    pub(crate) parent_pid: Pid,
    pub(crate) ready_w: OwnedFd,
    pub(crate) go_r: OwnedFd,
    pub(crate) err_w: OwnedFd,
    pub(crate) stdin: OwnedFd,
    pub(crate) stdout_w: OwnedFd,
    pub(crate) stderr_w: OwnedFd,
}

pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process immediately without running Rust or
    // libc destructors, which is exactly what a forked child must do.
    unsafe { libc::_exit(code) }
}

pub(crate) fn fork() -> Result<Option<Pid>, Errno> {
    // SAFETY: the child only runs async-signal-safe code from this module
    // (raw syscalls on pre-built data) and ends in `execve` or `_exit`.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        )),
        0 => Ok(None),
        p => Ok(Pid::from_raw(p)),
    }
}

/// Reports a failure to the parent and exits.
pub(crate) fn fail(err_w: &OwnedFd, stage: u32, e: Errno) -> ! {
    let mut rec = [0u8; 8];
    rec[..4].copy_from_slice(&stage.to_ne_bytes());
    rec[4..].copy_from_slice(&e.raw_os_error().to_ne_bytes());
    let _ = rustix::io::write(err_w, &rec);
    exit_now(125)
}

/// Forks `C`. Returns its pid in the parent; never returns in the child.
pub(crate) fn spawn(plan: &ChildPlan, fds: ChildFds) -> Result<Pid, Errno> {
    match fork()? {
        Some(pid) => {
            // Parent: the child's copies are dropped by the caller.
            drop(fds);
            Ok(pid)
        }
        None => run_c(plan, fds),
    }
}

fn run_c(plan: &ChildPlan, fds: ChildFds) -> ! {
    close_other_fds(&plan.keep_fds);
    let err = &fds.err_w;
    die_with_parent(err, Some(fds.parent_pid));
    if let Some(pre) = &plan.pre {
        // SAFETY: single-threaded after fork; only the mount namespace.
        if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) } {
            fail(err, stage::PRE_UNSHARE, e);
        }
        if let Err((idx, e)) = pre.apply() {
            fail(err, stage::PRE_MOUNTS + idx as u32, e);
        }
    }
    // SAFETY: single-threaded after fork; CLONE_NEWUSER does not unshare
    // file tables or fs info that other threads could observe.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER) } {
        fail(err, stage::UNSHARE_USER, e);
    }
    if let Err(e) = rustix::io::write(&fds.ready_w, b"r") {
        fail(err, stage::SYNC, e);
    }
    let mut b = [0u8; 1];
    match rustix::io::read(&fds.go_r, &mut b) {
        Ok(1) => {}
        // The parent could not map us: it reports the error itself.
        _ => exit_now(125),
    }
    if plan.pre.is_some() {
        // Root mode: our ids are still host root's, which the new namespace
        // does not map; become its root (host id of sandbox root). The
        // capabilities in the namespace stay.
        let zero_g = rustix::process::Gid::from_raw(0);
        let zero_u = rustix::process::Uid::from_raw(0);
        let r = rustix::thread::set_thread_res_gid(zero_g, zero_g, zero_g)
            .and_then(|()| rustix::thread::set_thread_groups(&[]))
            .and_then(|()| rustix::thread::set_thread_res_uid(zero_u, zero_u, zero_u));
        if let Err(e) = r {
            fail(err, stage::BECOME_ROOT, e);
        }
    }
    // Again: a change of credentials clears the parent-death signal.
    die_with_parent(err, Some(fds.parent_pid));
    // SAFETY: single-threaded after fork, see above.
    if let Err(e) = unsafe { rustix::thread::unshare_unsafe(plan.unshare) } {
        fail(err, stage::UNSHARE, e);
    }
    match fork() {
        Err(e) => fail(err, stage::FORK_INIT, e),
        Ok(None) => run_init(plan, fds),
        Ok(Some(init)) => {
            // C keeps nothing open that would delay EOF on the pipes.
            // (Dropping `OwnedFd`s is just close(2).)
            drop(fds);
            let status = loop {
                match rustix::process::waitpid(Some(init), WaitOptions::empty()) {
                    Ok(Some((_, st))) => break st,
                    Err(Errno::INTR) => continue,
                    _ => exit_now(125),
                }
            };
            exit_now(exit_code(status))
        }
    }
}

/// Closes every inherited descriptor above 2 except `keep` (sorted). C and
/// pid 1 never exec, so close-on-exec does not help them: without this they
/// would hold whatever the builder had open (store database, another step's
/// pipes caught mid-setup, descriptors without `O_CLOEXEC` from C libraries)
/// for the whole step.
pub(crate) fn close_other_fds(keep: &[std::os::fd::RawFd]) {
    let mut next: u32 = 3;
    for fd in keep.iter().map(|&fd| fd as u32).chain([u32::MAX]) {
        if fd > next {
            let last = if fd == u32::MAX { u32::MAX } else { fd - 1 };
            // SAFETY: close_range(2) only closes descriptors; none of the
            // closed ones is referenced by code running in this child.
            unsafe { libc::close_range(next, last, 0) };
        }
        next = fd.saturating_add(1).max(next);
    }
}

fn exit_code(st: rustix::process::WaitStatus) -> i32 {
    if let Some(c) = st.exit_status() {
        c
    } else if let Some(s) = st.terminating_signal() {
        128 + s
    } else {
        255
    }
}

/// Arms `PR_SET_PDEATHSIG`; `parent` (if given) is checked afterwards to
/// close the race with a parent that died before the signal was armed.
fn die_with_parent(err: &OwnedFd, parent: Option<Pid>) {
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(Signal::KILL)) {
        fail(err, stage::PDEATHSIG, e);
    }
    if parent.is_some() && rustix::process::getppid() != parent {
        exit_now(125);
    }
}

/// P: pid 1 of the sandbox.
fn run_init(plan: &ChildPlan, fds: ChildFds) -> ! {
    let err = &fds.err_w;
    // C is outside our new pid namespace (getppid() is 0 here), and it
    // cannot exit before us: it waits for us.
    die_with_parent(err, None);
    if let Err((idx, e)) = plan.mounts.apply() {
        fail(err, idx as u32, e);
    }
    if let Err(e) = rustix::system::sethostname(b"imgbuild") {
        fail(err, stage::HOSTNAME, e);
    }
    if plan.new_netns {
        if let Err(e) = loopback_up() {
            fail(err, stage::LOOPBACK, e);
        }
    }
    let stdio = rustix::stdio::dup2_stdin(&fds.stdin)
        .and_then(|()| rustix::stdio::dup2_stdout(&fds.stdout_w))
        .and_then(|()| rustix::stdio::dup2_stderr(&fds.stderr_w));
    if let Err(e) = stdio {
        fail(err, stage::STDIO, e);
    }
    let cmd = match fork() {
        Err(e) => fail(err, stage::FORK_CMD, e),
        Ok(None) => run_command(plan, err),
        Ok(Some(pid)) => pid,
    };
    // Only the command keeps the error pipe open (until its exec).
    drop(fds);
    // Reap everything; leave (killing the namespace) when the command ends.
    loop {
        match rustix::process::wait(WaitOptions::empty()) {
            Ok(Some((pid, st))) if pid == cmd => exit_now(exit_code(st)),
            Ok(_) | Err(Errno::INTR) => continue,
            Err(_) => exit_now(255),
        }
    }
}

/// X: becomes the step's command.
fn run_command(plan: &ChildPlan, err: &OwnedFd) -> ! {
    reset_signals();
    let _ = rustix::process::setsid();
    if let Err(e) = drop_capabilities() {
        fail(err, stage::CAPS, e);
    }
    if let Err(e) = rustix::thread::set_thread_groups(&[]) {
        fail(err, stage::SETGROUPS, e);
    }
    let gid = rustix::process::Gid::from_raw(plan.gid);
    if let Err(e) = rustix::thread::set_thread_res_gid(gid, gid, gid) {
        fail(err, stage::SETGID, e);
    }
    let uid = rustix::process::Uid::from_raw(plan.uid);
    if let Err(e) = rustix::thread::set_thread_res_uid(uid, uid, uid) {
        fail(err, stage::SETUID, e);
    }
    if let Err(e) = rustix::process::chdir(plan.workdir.as_c_str()) {
        fail(err, stage::CHDIR, e);
    }
    let limit = rustix::process::Rlimit {
        current: Some(plan.max_procs),
        maximum: Some(plan.max_procs),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nproc, limit) {
        fail(err, stage::NPROC, e);
    }
    if let Err(e) = plan.seccomp.apply() {
        fail(err, stage::SECCOMP, Errno::from_raw_os_error(e));
    }
    let mut last = Errno::NOENT;
    for path in &plan.exec_paths {
        // SAFETY: all pointers come from `CString`s owned by `plan`, which
        // outlives this call; both arrays are NULL-terminated.
        unsafe {
            libc::execve(
                path.as_ptr(),
                plan.argv_ptrs.as_ptr(),
                plan.env_ptrs.as_ptr(),
            )
        };
        let e =
            Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
        if e != Errno::NOENT {
            last = e;
        }
    }
    fail(err, stage::EXEC, last)
}

/// Capabilities a step keeps (Docker's default set minus `CAP_MKNOD`):
/// chown, dac_override, fowner, fsetid, kill, setgid, setuid, setpcap,
/// net_bind_service, net_raw, sys_chroot, audit_write, setfcap. Everything
/// else (sys_admin → no mounts, sys_module, sys_rawio, net_admin, mknod →
/// no device nodes, ...) is removed from the bounding, effective, permitted,
/// inheritable and ambient sets, in root and rootless mode alike.
pub(crate) const KEPT_CAPS: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 6)
    | (1 << 7)
    | (1 << 8)
    | (1 << 10)
    | (1 << 13)
    | (1 << 18)
    | (1 << 29)
    | (1 << 31);

fn drop_capabilities() -> Result<(), Errno> {
    for cap in 0..64u32 {
        if KEPT_CAPS & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl(PR_CAPBSET_DROP) takes plain integers.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 {
            let e = Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            );
            if e == Errno::INVAL {
                break; // past the kernel's last capability
            }
            return Err(e);
        }
    }
    rustix::thread::clear_ambient_capability_set()?;
    let keep = rustix::thread::CapabilitySet::from_bits_retain(KEPT_CAPS);
    let cur = rustix::thread::capabilities(None)?;
    rustix::thread::set_capabilities(
        None,
        rustix::thread::CapabilitySets {
            effective: cur.effective & keep,
            permitted: cur.permitted & keep,
            inheritable: rustix::thread::CapabilitySet::empty(),
        },
    )
}

/// Undoes what the Rust runtime set up (SIGPIPE ignored) and unblocks all
/// signals, so the command sees default signal behaviour.
fn reset_signals() {
    // SAFETY: `sigemptyset`, `sigprocmask` and `signal` are async-signal-safe
    // and only touch this (single-threaded) process's state.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// `ip link set lo up` via the SIOCSIFFLAGS ioctl.
fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket(2); the fd is wrapped in an OwnedFd right away.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        ));
    }
    // SAFETY: `fd` is a fresh, valid descriptor we exclusively own.
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as c_char;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&sock.as_fd());
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read/write the `ifreq` we own.
    unsafe {
        if libc::ioctl(raw, libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(raw, libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Errno::from_raw_os_error(
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ));
        }
    }
    Ok(())
}
