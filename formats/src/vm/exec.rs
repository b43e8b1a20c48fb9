//! `imgbuild run --exec`: boot a guest, log in as root over SSH and run commands in it, as
//! mkosi does. The guest's image is not changed: a throwaway ed25519 key, made per run
//! with the host's `ssh-keygen`, reaches it as the systemd credential
//! `ssh.authorized_keys.root` over SMBIOS (systemd >= 252 writes it to
//! `/root/.ssh/authorized_keys` at boot, tmpfiles' `provision.conf`), and a free loopback
//! port of the host is forwarded to the guest's port 22. The host's `ssh` runs each command,
//! its output streamed to ours; QEMU is stopped at the end (the disk is `snapshot=on`, so
//! nothing of the guest is kept and a clean poweroff would only cost time).

use super::{Outcome, PortForward, Prepared, Qemu, VmError, Watch};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The credential systemd turns into root's `authorized_keys`.
pub const AUTHORIZED_KEYS_CREDENTIAL: &str = "ssh.authorized_keys.root";

/// Why commands could not be run in the guest (a command that fails is not an error: see
/// [`ExecReport::failed`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The host has no `ssh` or `ssh-keygen`.
    #[error("`{tool}` could not start ({source}): install the Debian package `openssh-client`")]
    SshMissing {
        /// The missing program.
        tool: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `--exec` needs the guest's NIC.
    #[error("--exec reaches the guest over SSH through its network card: drop --no-network")]
    NoNetwork,
    /// `ssh-keygen` failed.
    #[error("ssh-keygen could not make the throwaway key: {0}")]
    KeyGen(String),
    /// QEMU could not be set up or watched.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// A scratch file or a process failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The guest stopped before the login worked (it powered off, or QEMU failed).
    #[error(
        "the VM stopped ({status}) before an SSH login worked: --exec needs a guest that stays \
         up with openssh-server running; console tail:\n{console}"
    )]
    Stopped {
        /// How QEMU exited.
        status: ExitStatus,
        /// The end of the console.
        console: String,
    },
    /// No login before the deadline.
    #[error(
        "no SSH login as root to the guest within {seconds}s (last attempt: {last}): the image \
         needs openssh-server, and systemd >= 252 to take the key from the SMBIOS credential \
         `{AUTHORIZED_KEYS_CREDENTIAL}`; on a slow host raise --timeout. Console tail:\n{console}"
    )]
    NoLogin {
        /// How long it waited.
        seconds: u64,
        /// What the last `ssh` said.
        last: String,
        /// The end of the console.
        console: String,
    },
    /// `--timeout` passed while a command ran.
    #[error("`{command}` was still running in the guest when the {seconds}s timeout passed")]
    TimedOut {
        /// The command.
        command: String,
        /// The limit.
        seconds: u64,
    },
}

impl ExecError {
    /// Whether the user has to fix it (install a tool, change the image or the options).
    pub fn is_user_error(&self) -> bool {
        match self {
            ExecError::SshMissing { .. }
            | ExecError::NoNetwork
            | ExecError::NoLogin { .. }
            | ExecError::Stopped { .. } => true,
            ExecError::Vm(e) => e.is_user_error(),
            _ => false,
        }
    }
}

/// The end of a run whose commands all ran or one failed.
#[derive(Debug)]
pub struct ExecReport {
    /// The first command that failed and its exit status (`None` if `ssh` got a signal);
    /// the commands after it did not run.
    pub failed: Option<(String, Option<i32>)>,
    /// From QEMU's start to the first working login.
    pub login_after: Duration,
}

/// The limits of a run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long to wait for the first login.
    pub login: Duration,
    /// The whole run, commands included (`None`: the commands take as long as they take).
    pub total: Option<Duration>,
}

/// A throwaway key pair and the port forwarded to the guest's sshd, set up on a [`Qemu`]
/// by [`ExecSession::new`]; [`ExecSession::run`] then boots it.
#[derive(Debug)]
pub struct ExecSession {
    /// Holds the key pair; removed when dropped.
    dir: tempfile::TempDir,
    port: u16,
}

impl ExecSession {
    /// Makes a key pair, passes its public half to `qemu` as a credential and forwards a
    /// free loopback port to the guest's port 22.
    pub fn new(qemu: &mut Qemu) -> Result<Self, ExecError> {
        let network = qemu.network.as_mut().ok_or(ExecError::NoNetwork)?;
        for tool in ["ssh", "ssh-keygen"] {
            Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|source| ExecError::SshMissing { tool, source })?;
        }
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-exec-")
            .tempdir()
            .map_err(|source| ExecError::Io {
                what: "creating a directory for the throwaway SSH key",
                source,
            })?;
        let key = dir.path().join("id_ed25519");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "imgbuild-run", "-f"])
            .arg(&key)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ExecError::SshMissing {
                tool: "ssh-keygen",
                source,
            })?;
        if !out.status.success() {
            return Err(ExecError::KeyGen(format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let public = fs_err::read(key.with_extension("pub")).map_err(|source| ExecError::Io {
            what: "reading the throwaway public key",
            source,
        })?;
        let port = free_port()?;
        network.forwards.push(PortForward {
            host_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port: port,
            guest_port: 22,
        });
        qemu.credentials
            .push((AUTHORIZED_KEYS_CREDENTIAL.to_owned(), public));
        Ok(Self { dir, port })
    }

    /// The loopback port forwarded to the guest's sshd.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Boots `vm` (prepared from the [`Qemu`] given to [`ExecSession::new`]), its console
    /// on stderr until the login works, then runs `commands` in order until one fails and
    /// stops QEMU.
    pub fn run(
        &self,
        vm: Prepared,
        commands: &[String],
        limits: Limits,
    ) -> Result<ExecReport, ExecError> {
        let stop = AtomicBool::new(false);
        let echo_on = AtomicBool::new(true);
        let start = Instant::now();
        let (result, console) = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let mut echo = Gated {
                    on: &echo_on,
                    out: std::io::stderr(),
                };
                vm.watch(Watch {
                    timeout: None,
                    expect: None,
                    echo: Some(&mut echo),
                    stop: Some(&stop),
                })
            });
            let result = self.login(start, limits, || watcher.is_finished());
            let result = result.and_then(|login_after| {
                echo_on.store(false, Ordering::SeqCst);
                eprintln!(
                    "\nimgbuild run: logged in after {:.1}s; the console is no longer shown",
                    login_after.as_secs_f64()
                );
                let failed = self.commands(commands, start, limits)?;
                Ok(ExecReport {
                    failed,
                    login_after,
                })
            });
            stop.store(true, Ordering::SeqCst);
            let console = watcher.join().expect("the console watcher panicked");
            (result, console)
        });
        let console = console?;
        result.map_err(|e| match e {
            Early::Exec(e) => e,
            Early::NoLogin { seconds, last } => ExecError::NoLogin {
                seconds,
                last,
                console: console.tail(3000).to_owned(),
            },
            Early::QemuEnded => match console.outcome {
                Outcome::Exited(status) => ExecError::Stopped {
                    status,
                    console: console.tail(3000).to_owned(),
                },
                other => ExecError::Io {
                    what: "watching the VM",
                    source: std::io::Error::other(format!("the watch ended with {other:?}")),
                },
            },
        })
    }

    /// `ssh` with the throwaway key to root@127.0.0.1:PORT, no config, no known hosts.
    fn ssh(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(self.key())
            .args(["-p", &self.port.to_string()])
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=30",
                "-o",
                "ServerAliveInterval=30",
                "root@127.0.0.1",
                "--",
            ])
            .stdin(Stdio::null());
        cmd
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    /// Tries `ssh ... true` every 2 s until it works, QEMU ends or the deadline passes.
    fn login(
        &self,
        start: Instant,
        limits: Limits,
        qemu_ended: impl Fn() -> bool,
    ) -> Result<Duration, Early> {
        let limit = match limits.total {
            Some(total) => total.min(limits.login),
            None => limits.login,
        };
        eprintln!(
            "imgbuild run: waiting up to {}s for sshd on 127.0.0.1:{} (root, throwaway key) \
             while the guest boots; its console follows",
            limit.as_secs(),
            self.port
        );
        let mut last = String::from("none yet");
        loop {
            if qemu_ended() {
                return Err(Early::QemuEnded);
            }
            if start.elapsed() > limit {
                return Err(Early::NoLogin {
                    seconds: limit.as_secs(),
                    last,
                });
            }
            let out = self
                .ssh()
                .arg("true")
                .output()
                .map_err(|source| ExecError::SshMissing {
                    tool: "ssh",
                    source,
                })?;
            if out.status.success() {
                return Ok(start.elapsed());
            }
            last = format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Runs `commands` in order, output to ours, until one fails.
    fn commands(
        &self,
        commands: &[String],
        start: Instant,
        limits: Limits,
    ) -> Result<Option<(String, Option<i32>)>, ExecError> {
        for command in commands {
            eprintln!("imgbuild run: # {command}");
            let mut child = self
                .ssh()
                .arg(command)
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .spawn()
                .map_err(|source| ExecError::SshMissing {
                    tool: "ssh",
                    source,
                })?;
            let status = loop {
                let done = child.try_wait().map_err(|source| ExecError::Io {
                    what: "waiting for ssh",
                    source,
                })?;
                if let Some(status) = done {
                    break status;
                }
                if let Some(total) = limits.total.filter(|t| start.elapsed() > *t) {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::TimedOut {
                        command: command.clone(),
                        seconds: total.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !status.success() {
                return Ok(Some((command.clone(), status.code())));
            }
        }
        Ok(None)
    }
}

/// How a run ended before its commands, completed with the console once QEMU stopped.
enum Early {
    Exec(ExecError),
    NoLogin { seconds: u64, last: String },
    QemuEnded,
}

impl From<ExecError> for Early {
    fn from(e: ExecError) -> Self {
        Early::Exec(e)
    }
}

/// Writes to `out` while `on` is set.
struct Gated<'a, W> {
    on: &'a AtomicBool,
    out: W,
}

impl<W: Write> Write for Gated<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.on.load(Ordering::SeqCst) {
            self.out.write(buf)
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (QEMU binds it next).
fn free_port() -> Result<u16, ExecError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| ExecError::Io {
            what: "finding a free loopback port for SSH",
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::Boot;

    fn qemu() -> Qemu {
        let mut qemu = Qemu::new(Boot::Kernel {
            kernel: "k".into(),
            initrd: "i".into(),
            append: "console=ttyS0".into(),
        });
        qemu.accel = Some("tcg");
        qemu
    }

    #[test]
    fn the_session_passes_its_key_as_a_credential_and_forwards_a_port_to_22() {
        use base64::Engine;
        let mut qemu = qemu();
        qemu.network.as_mut().unwrap().forwards = vec!["8080:80".parse().unwrap()];
        let session = ExecSession::new(&mut qemu).unwrap();
        let public = fs_err::read_to_string(session.key().with_extension("pub")).unwrap();
        assert!(public.starts_with("ssh-ed25519 "), "{public}");
        let argv: Vec<String> = qemu
            .prepare()
            .unwrap()
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let netdev = format!(
            "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=tcp:127.0.0.1:{}-:22",
            session.port()
        );
        assert!(argv.contains(&netdev), "{argv:?}");
        let smbios = format!(
            "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root={}",
            base64::engine::general_purpose::STANDARD.encode(&public)
        );
        assert!(
            argv.windows(2).any(|w| w == ["-smbios", &smbios]),
            "{argv:?}"
        );
        let key = session.key();
        drop(session);
        assert!(!key.exists(), "the throwaway key outlived the session");
    }

    #[test]
    fn a_session_needs_the_network() {
        let mut qemu = qemu();
        qemu.network = None;
        let e = ExecSession::new(&mut qemu).unwrap_err();
        assert!(matches!(e, ExecError::NoNetwork), "{e}");
        assert!(e.is_user_error());
        assert!(qemu.credentials.is_empty());
    }
}
