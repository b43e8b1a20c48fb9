//! A VM booted with `imgbuild run` that keeps running after its console showed a marker,
//! for tests that then talk to the guest over the network (`-p HOST:GUEST`).

use crate::common::{imgbuild, require_tool};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The running `imgbuild run` (in its own process group, so that QEMU dies with it).
pub(crate) struct RunningVm {
    child: Child,
    console: Arc<Mutex<String>>,
}

impl RunningVm {
    /// Boots `target` with `extra` arguments and waits (up to `limit`) for `marker`.
    pub(crate) fn boot(target: &Path, marker: &str, extra: &[&str], limit: Duration) -> RunningVm {
        require_tool("qemu-system-x86_64", "qemu-system-x86");
        let mut child = imgbuild()
            .arg("run")
            .arg(target)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("start imgbuild run");
        let console = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("piped stdout");
        let sink = Arc::clone(&console);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let vm = RunningVm { child, console };
        let start = Instant::now();
        while !vm.console.lock().unwrap().contains(marker) {
            assert!(
                start.elapsed() < limit,
                "`{marker}` did not appear within {limit:?}; console tail:\n{}",
                vm.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        vm
    }

    /// The last 3000 characters of the console.
    pub(crate) fn tail(&self) -> String {
        let console = self.console.lock().unwrap();
        let start = console.char_indices().rev().nth(3000).map_or(0, |(i, _)| i);
        console[start..].to_owned()
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// The first line a TCP server on 127.0.0.1:`port` sends, retried until `limit` (QEMU
/// accepts forwarded connections before the guest listens, then closes them).
pub(crate) fn banner(port: u16, limit: Duration) -> String {
    let start = Instant::now();
    loop {
        let attempt = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            while s.read(&mut byte)? == 1 && byte[0] != b'\n' {
                line.push(byte[0]);
            }
            Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
        });
        match attempt {
            Ok(line) if !line.is_empty() => return line,
            _ if start.elapsed() > limit => {
                panic!("nothing answered on 127.0.0.1:{port} within {limit:?}: {attempt:?}")
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}
