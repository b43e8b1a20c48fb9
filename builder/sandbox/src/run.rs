//! Running one recipe step: validation, the fork, rootless id mapping,
//! output pumping and result decoding (the child side is in `child.rs`).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal, WaitOptions};
use rustix::thread::UnshareFlags;

use super::child::{self, stage, ChildFds, ChildPlan};
use super::mounts::{cstr, MountPlan, MountSpec, PreSpec, Secrets};
use super::namespaces::{in_initial_user_namespace, IdMapError, SandboxMode};
use super::output::{self, OutputLine};
use super::overlay::OverlayXattrs;
use super::seccomp::{self, Filters};

/// `RLIMIT_NPROC` of a step: processes and threads per user inside the
/// sandbox (podman's default `pids_limit`), so a fork bomb ends with
/// `EAGAIN` instead of exhausting the host.
pub const MAX_PROCS: u64 = 2048;

/// Default `PATH` when the step does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The filesystem a step runs on.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// Read-only lower dirs in **layer order: base layer first, topmost
    /// last** (the order of an OCI manifest). They are passed to overlayfs
    /// reversed. May be empty (an empty lower is used).
    pub lowers: Vec<PathBuf>,
    /// Empty (or previous-step) upper dir; receives the step's changes.
    pub upper: PathBuf,
    /// Empty overlay work dir on the same filesystem as `upper`.
    pub work: PathBuf,
    /// Root or rootless; see [`SandboxMode::detect`].
    pub mode: SandboxMode,
}

/// What to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepCommand {
    /// `/bin/sh -c SCRIPT`.
    Shell(String),
    /// Executed directly; `argv[0]` without `/` is searched in `PATH`.
    Argv(Vec<String>),
}

/// Numeric `uid:gid` the command runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct User {
    /// User id inside the sandbox.
    pub uid: u32,
    /// Group id inside the sandbox.
    pub gid: u32,
}

impl std::str::FromStr for User {
    type Err = String;

    /// Parses `uid` or `uid:gid` (numeric; `gid` defaults to `uid`).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid user {s:?}: expected numeric `uid:gid`, e.g. \"0:0\" or \"1000:1000\"")
        };
        let (u, g) = s.split_once(':').unwrap_or((s, s));
        Ok(Self {
            uid: u.parse().map_err(|_| bad())?,
            gid: g.parse().map_err(|_| bad())?,
        })
    }
}

/// One `[[step]]` with `run`.
#[derive(Debug, Clone)]
pub struct Step {
    /// Name shown in front of every output line.
    pub name: String,
    /// The command.
    pub command: StepCommand,
    /// Environment; the command gets only this plus `PATH`/`HOME` defaults.
    pub env: BTreeMap<String, String>,
    /// Absolute working directory inside the sandbox.
    pub workdir: String,
    /// Who runs the command.
    pub user: User,
    /// Share the host network (and bind its resolv.conf/hosts).
    pub network: bool,
    /// Secret id -> host file, bind-mounted read-only at `/run/secrets/<id>`.
    pub secrets: BTreeMap<String, PathBuf>,
}

impl Step {
    /// A `sh -c` step with defaults: root, `/`, no network, no secrets.
    pub fn shell(name: impl Into<String>, script: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            command: StepCommand::Shell(script.into()),
            env: BTreeMap::new(),
            workdir: "/".into(),
            user: User::default(),
            network: false,
            secrets: BTreeMap::new(),
        }
    }
}

/// Errors of [`Sandbox::run`].
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The step or sandbox description is unusable.
    #[error("step {step}: {what}")]
    Invalid {
        /// Step name.
        step: String,
        /// What is wrong and how to fix it.
        what: String,
    },
    /// Host-side I/O around the sandbox failed.
    #[error("step {step}: cannot {op}: {source}")]
    Io {
        /// Step name.
        step: String,
        /// The operation, with its path.
        op: String,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// Id mapping failed.
    #[error("step {step}: cannot map ids into the sandbox")]
    IdMap {
        /// Step name.
        step: String,
        /// Cause.
        #[source]
        source: IdMapError,
    },
    /// The sandbox could not be set up (before the command started).
    #[error("step {step}: sandbox setup failed at \"{stage}\": {source}{hint}")]
    Setup {
        /// Step name.
        step: String,
        /// The failing stage, e.g. the mount.
        stage: String,
        /// Hint on what to do.
        hint: &'static str,
        /// Cause.
        #[source]
        source: io::Error,
    },
    /// The command ran and exited non-zero (signals: 128 + signal number).
    #[error("step {step}: command failed with exit code {code}; last output:\n{}", last_lines.join("\n"))]
    CommandFailed {
        /// Step name.
        step: String,
        /// Exit code.
        code: i32,
        /// Up to 30 last output lines (stdout and stderr interleaved).
        last_lines: Vec<String>,
    },
}

impl Sandbox {
    /// The overlay flavour this sandbox mounts with; lower dirs must have
    /// been unpacked with the same one.
    pub fn overlay_xattrs(&self) -> OverlayXattrs {
        match self.mode {
            SandboxMode::Root(_) if in_initial_user_namespace() => OverlayXattrs::Trusted,
            _ => OverlayXattrs::User,
        }
    }

    /// Host uid and gid of sandbox root.
    pub fn root_ids(&self) -> (u32, u32) {
        let m = self.mode.id_map();
        (m.host_uid, m.host_gid)
    }

    /// Runs `step`, streaming output to `on_line` and appending it to `log`.
    ///
    /// Returns `Ok(())` for exit code 0 and [`RunError::CommandFailed`]
    /// otherwise (a command killed by signal N reports code 128 + N). When
    /// it returns, every process of the sandbox is gone.
    ///
    /// Notes for callers:
    /// * blocking; there is no timeout (a step that never exits blocks);
    /// * `on_line` runs on the calling thread, lines of stdout and stderr
    ///   in arrival order (their relative order is not exact);
    /// * the sandbox dies with the calling *thread* (`PR_SET_PDEATHSIG`),
    ///   so do not call it from a thread that exits before it returns;
    /// * several steps may run concurrently from different threads, each
    ///   with its own upper/work dirs.
    pub fn run(
        &self,
        step: &Step,
        log: Option<&Path>,
        on_line: &mut dyn FnMut(&OutputLine<'_>),
    ) -> Result<(), RunError> {
        let name = step.name.as_str();
        let io_err = |op: String| {
            move |source: io::Error| RunError::Io {
                step: name.to_owned(),
                op,
                source,
            }
        };
        let errno = |op: &str| {
            let op = op.to_owned();
            move |e: Errno| RunError::Io {
                step: name.to_owned(),
                op,
                source: e.into(),
            }
        };
        let invalid = |what: String| RunError::Invalid {
            step: name.to_owned(),
            what,
        };

        let mountpoint = tempfile::Builder::new()
            .prefix("imgbuild-root-")
            .tempdir()
            .map_err(io_err("create a temporary mount point".into()))?;
        let (root, staging) = (
            mountpoint.path().join("root"),
            mountpoint.path().join("secrets"),
        );
        for d in [&root, &staging] {
            fs_err::create_dir(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        if let SandboxMode::Root(_) = self.mode {
            // Sandbox root must reach its root dir and own the image's `/`
            // (the upper's root dir), as host root did before.
            let (uid, gid) = self.root_ids();
            for d in [mountpoint.path(), &self.upper] {
                rustix::fs::chown(
                    d,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                )
                .map_err(errno(&format!("chown {} to sandbox root", d.display())))?;
            }
        }
        let empty_lower = if self.lowers.is_empty() {
            Some(
                tempfile::Builder::new()
                    .prefix("imgbuild-empty-")
                    .tempdir()
                    .map_err(io_err("create an empty lower dir".into()))?,
            )
        } else {
            None
        };
        let overlay_options = self
            .overlay_options(empty_lower.as_ref().map(|d| d.path()))
            .map_err(invalid)?;
        let secrets = validate_secrets(&step.secrets).map_err(invalid)?;
        let mut plan = self
            .child_plan(step, &root, &staging, &overlay_options, &secrets)
            .map_err(invalid)?;

        let mut log_file = log
            .map(|p| output::open_log(p).map_err(io_err(format!("open log file {}", p.display()))))
            .transpose()?;

        let (ready_r, ready_w) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(errno("create a pipe"))?;
        let (go_r, go_w) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(errno("create a pipe"))?;
        let (err_r, err_w) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(errno("create a pipe"))?;
        let (out_r, out_w) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(errno("create a pipe"))?;
        let (serr_r, serr_w) =
            rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(errno("create a pipe"))?;
        let stdin = fs_err::File::open("/dev/null").map_err(io_err("open /dev/null".into()))?;
        {
            use std::os::fd::AsRawFd;
            plan.keep_fds.extend([
                ready_w.as_raw_fd(),
                go_r.as_raw_fd(),
                err_w.as_raw_fd(),
                stdin.as_raw_fd(),
                out_w.as_raw_fd(),
                serr_w.as_raw_fd(),
            ]);
            plan.keep_fds.sort_unstable();
        }
        let fds = ChildFds {
            parent_pid: rustix::process::getpid(),
            ready_w,
            go_r,
            err_w,
            stdin: stdin.into_parts().0.into(),
            stdout_w: out_w,
            stderr_w: serr_w,
        };

        let pid = child::spawn(&plan, fds).map_err(errno("fork the sandbox"))?;
        let mut guard = KillGuard(Some(pid));

        let mut b = [0u8; 1];
        let got = rustix::io::read(&ready_r, &mut b).unwrap_or(0);
        if got == 1 {
            if let Err(source) = self.mode.id_map().install(pid.as_raw_nonzero().get()) {
                guard.kill();
                return Err(RunError::IdMap {
                    step: name.to_owned(),
                    source,
                });
            }
            rustix::io::write(&go_w, b"g").map_err(errno("signal the sandbox"))?;
        }
        drop((ready_r, go_w));

        let (mut last_lines, log_error) =
            output::pump(name, out_r, serr_r, log_file.as_mut(), on_line);
        let mut rec = [0u8; 8];
        let n = read_full(&err_r, &mut rec);
        let code = guard.wait();
        if let Some(e) = log_error {
            if code == Some(0) || n == rec.len() {
                return Err(io_err(format!(
                    "write log file {}",
                    log.unwrap_or(Path::new("")).display()
                ))(e));
            }
            // The command failed, maybe by filling the disk the log is on:
            // its failure is the news.
            last_lines.push(format!("(log file not written: {e})"));
        }
        drop(mountpoint);

        if n == rec.len() {
            let st = u32::from_ne_bytes(rec[..4].try_into().unwrap_or_default());
            let e = i32::from_ne_bytes(rec[4..].try_into().unwrap_or_default());
            let stage_name = if st >= stage::PRE_MOUNTS {
                plan.pre
                    .as_ref()
                    .map_or("unknown mount step", |p| {
                        p.describe((st - stage::PRE_MOUNTS) as usize)
                    })
                    .to_owned()
            } else if st >= 1000 {
                stage::name(st).to_owned()
            } else {
                plan.mounts.describe(st as usize).to_owned()
            };
            return Err(RunError::Setup {
                step: name.to_owned(),
                hint: hint(st, e, &self.mode),
                stage: stage_name,
                source: io::Error::from_raw_os_error(e),
            });
        }
        match code {
            Some(0) => Ok(()),
            Some(code) => Err(RunError::CommandFailed {
                step: name.to_owned(),
                code,
                last_lines: with_limit_hint(last_lines),
            }),
            None => Err(RunError::Io {
                step: name.to_owned(),
                op: "wait for the sandbox".into(),
                source: io::Error::other("sandbox process vanished"),
            }),
        }
    }

    fn overlay_options(&self, empty: Option<&Path>) -> Result<String, String> {
        let mut lowers: Vec<&Path> = self.lowers.iter().rev().map(PathBuf::as_path).collect();
        // The same layer twice (e.g. two steps that changed nothing) is one
        // dir, which overlayfs refuses to stack (ELOOP). Its topmost
        // occurrence covers everything the lower ones add, remove or make
        // opaque, so dropping those gives the same tree.
        let mut seen = std::collections::HashSet::new();
        lowers.retain(|p| seen.insert(*p));
        if let Some(e) = empty {
            lowers.push(e);
        }
        let check = |p: &Path| -> Result<String, String> {
            let s = p
                .to_str()
                .ok_or_else(|| format!("path {} is not UTF-8", p.display()))?;
            if !p.is_absolute() || s.contains([',', ':', '\n', '\0', '\\']) {
                return Err(format!("overlay path {s:?} must be absolute and free of `,` `:` `\\`; move it to a plainer location"));
            }
            Ok(s.to_owned())
        };
        let lower = lowers
            .into_iter()
            .map(check)
            .collect::<Result<Vec<_>, _>>()?
            .join(":");
        let mut opts = format!(
            "lowerdir={lower},upperdir={},workdir={},redirect_dir=nofollow,metacopy=off,index=off",
            check(&self.upper)?,
            check(&self.work)?
        );
        if self.overlay_xattrs() == OverlayXattrs::User {
            opts.push_str(",userxattr");
        }
        if opts.len() >= 4000 {
            return Err(format!(
                "overlay options are {} bytes, over the kernel's one-page limit; use shorter store paths or fewer layers",
                opts.len()
            ));
        }
        Ok(opts)
    }

    fn child_plan(
        &self,
        step: &Step,
        root: &Path,
        staging: &Path,
        overlay_options: &str,
        secrets: &[(String, PathBuf)],
    ) -> Result<ChildPlan, String> {
        let nul = |s: &str, what: &str| -> Result<CString, String> {
            CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
        };
        if !step.workdir.starts_with('/') {
            return Err(format!(
                "workdir {:?} must be an absolute path inside the image",
                step.workdir
            ));
        }
        let argv: Vec<String> = match &step.command {
            StepCommand::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            StepCommand::Argv(a) if a.is_empty() => return Err("empty command".into()),
            StepCommand::Argv(a) => a.clone(),
        };
        let mut env = step.env.clone();
        for k in env.keys() {
            if k.is_empty() || k.contains('=') {
                return Err(format!("invalid environment variable name {k:?}"));
            }
        }
        env.entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        env.entry("HOME".into()).or_insert_with(|| {
            if step.user.uid == 0 {
                "/root".into()
            } else {
                "/".into()
            }
        });
        let path_var = env["PATH"].clone();
        let exec_paths = if argv[0].contains('/') {
            vec![nul(&argv[0], "command")?]
        } else {
            path_var
                .split(':')
                .filter(|d| d.starts_with('/'))
                .map(|d| {
                    nul(
                        &format!("{}/{}", d.trim_end_matches('/'), argv[0]),
                        "command",
                    )
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let mut strings = Vec::new();
        for a in &argv {
            strings.push(nul(a, "an argument")?);
        }
        let n_args = strings.len();
        for (k, v) in &env {
            strings.push(nul(&format!("{k}={v}"), "the environment")?);
        }
        let mut argv_ptrs: Vec<_> = strings[..n_args].iter().map(|s| s.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut env_ptrs: Vec<_> = strings[n_args..].iter().map(|s| s.as_ptr()).collect();
        env_ptrs.push(std::ptr::null());

        let mut unshare = UnshareFlags::NEWNS
            | UnshareFlags::NEWPID
            | UnshareFlags::NEWIPC
            | UnshareFlags::NEWUTS;
        if !step.network {
            unshare |= UnshareFlags::NEWNET;
        }
        let pre = match self.mode {
            SandboxMode::Root(_) => Some(MountPlan::pre_userns(&PreSpec {
                root,
                overlay_options,
                staging,
                secrets,
                root_ids: self.root_ids(),
            })?),
            SandboxMode::Rootless(_) => None,
        };
        let keep_fds = pre.as_ref().map(MountPlan::fds).unwrap_or_default();
        let spec_secrets = match (&pre, secrets.is_empty()) {
            (Some(_), false) => Secrets::Staged(staging),
            (Some(_), true) => Secrets::Host(&[]),
            (None, _) => Secrets::Host(secrets),
        };
        Ok(ChildPlan {
            pre,
            keep_fds,
            max_procs: MAX_PROCS,
            seccomp: filters()?,
            unshare,
            new_netns: !step.network,
            mounts: MountPlan::new(&MountSpec {
                root,
                overlay_options,
                network: step.network,
                image_dirs: std::iter::once(self.upper.as_path())
                    .chain(self.lowers.iter().rev().map(PathBuf::as_path))
                    .collect(),
                secrets: spec_secrets,
                premounted: matches!(self.mode, SandboxMode::Root(_)),
            }),
            uid: step.user.uid,
            gid: step.user.gid,
            workdir: cstr(&step.workdir),
            exec_paths,
            _strings: strings,
            argv_ptrs,
            env_ptrs,
        })
    }
}

/// The seccomp filters, compiled once per process.
fn filters() -> Result<Filters, String> {
    static FILTERS: std::sync::OnceLock<Result<Filters, String>> = std::sync::OnceLock::new();
    FILTERS
        .get_or_init(|| {
            seccomp::compile().map_err(|e| format!("cannot build the seccomp filter: {e}"))
        })
        .clone()
}

/// Appends a line naming the sandbox limit that a failed command's output
/// suggests it hit.
fn with_limit_hint(mut lines: Vec<String>) -> Vec<String> {
    let has = |s: &str| lines.iter().any(|l| l.contains(s));
    let hint = if has("Resource temporarily unavailable") || has("can't fork") || has("Cannot fork")
    {
        Some(format!("imgbuild: a step may run at most {MAX_PROCS} processes and threads per user (RLIMIT_NPROC); the command could not fork"))
    } else if has("No space left on device") {
        Some(format!("imgbuild: no space left on device: /tmp holds at most {}, /run {}, /dev/shm {}; the image itself is limited by the store's disk", super::mounts::TMP_SIZE, super::mounts::RUN_SIZE, super::mounts::SHM_SIZE))
    } else {
        None
    };
    lines.extend(hint);
    lines
}

fn validate_secrets(secrets: &BTreeMap<String, PathBuf>) -> Result<Vec<(String, PathBuf)>, String> {
    secrets
        .iter()
        .map(|(id, host)| {
            let ok = !id.is_empty()
                && id != "."
                && id != ".."
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(format!("secret id {id:?} must match [A-Za-z0-9._-]+"));
            }
            if host.as_os_str().as_bytes().contains(&0) || !host.is_file() {
                return Err(format!(
                    "secret {id}: host file {} does not exist or is not a regular file",
                    host.display()
                ));
            }
            let host = fs_err::canonicalize(host).map_err(|e| format!("secret {id}: {e}"))?;
            Ok((id.clone(), host))
        })
        .collect()
}

fn hint(stage: u32, errno: i32, mode: &SandboxMode) -> &'static str {
    let rootless = matches!(mode, SandboxMode::Rootless(_));
    match (stage, Errno::from_raw_os_error(errno)) {
        (stage::UNSHARE_USER | stage::UNSHARE, Errno::PERM | Errno::NOSPC) => {
            "; every step runs in a user namespace, which seems disabled: check sysctls user.max_user_namespaces and kernel.apparmor_restrict_unprivileged_userns"
        }
        (stage::EXEC, _) => "; check that the command exists in the image and PATH",
        (stage::CHDIR, _) => "; the workdir must exist in the image",
        (1 | stage::PRE_OVERLAY, Errno::INVAL) => "; upper and work must be empty-or-previous dirs on the same filesystem (not overlayfs), lowers must exist",
        (1, Errno::PERM) if rootless => "; rootless overlay needs Linux >= 5.11 (userxattr)",
        _ => "",
    }
}

fn read_full(fd: &std::os::fd::OwnedFd, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match rustix::io::read(fd, &mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    n
}

/// Kills and reaps the sandbox's first process if the run is abandoned.
struct KillGuard(Option<Pid>);

impl KillGuard {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        }
    }

    /// Waits for the sandbox; exit code (128 + signal for signals).
    fn wait(&mut self) -> Option<i32> {
        let pid = self.0.take()?;
        loop {
            match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
                Ok(Some((_, st))) => {
                    return st
                        .exit_status()
                        .or_else(|| st.terminating_signal().map(|s| 128 + s));
                }
                Err(Errno::INTR) => continue,
                _ => return None,
            }
        }
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
