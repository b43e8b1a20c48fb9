//! Shared fixtures: a busybox rootfs as the lower dir.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgbuild_builder::sandbox::{OutputLine, RunError, Sandbox, SandboxMode, Step};

pub(crate) const BUSYBOX: &str = "/bin/busybox";

/// Unprivileged test user for the rootless tests.
pub(crate) const USER: &str = "imgbuild-sbx";
/// Its subuid/subgid range.
pub(crate) const SUB_START: u32 = 400_000;
pub(crate) const SUB_COUNT: u32 = 65_536;

pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips (returns false) when the machine cannot run sandbox tests.
pub(crate) fn can_run() -> bool {
    // Never a silent skip: these tests must run wherever the suite runs.
    assert!(
        is_root(),
        "sandbox tests need root (they set up the rootless case themselves): run scripts/test.sh as root, as CI does"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: install the Debian package busybox-static (scripts/install-test-deps.sh does)"
    );
    true
}

/// A temp dir with `lower/` (busybox rootfs), `upper/`, `work/`.
pub(crate) struct Fixture {
    pub(crate) dir: tempfile::TempDir,
}

impl Fixture {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-sbx-test-")
            .tempdir()
            .unwrap();
        let f = Self { dir };
        make_busybox_rootfs(&f.lower());
        std::fs::create_dir(f.upper()).unwrap();
        std::fs::create_dir(f.work()).unwrap();
        f
    }

    pub(crate) fn lower(&self) -> PathBuf {
        self.dir.path().join("lower")
    }
    pub(crate) fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
    pub(crate) fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub(crate) fn sandbox(&self, mode: SandboxMode) -> Sandbox {
        Sandbox {
            lowers: vec![self.lower()],
            upper: self.upper(),
            work: self.work(),
            mode,
        }
    }

    /// Runs a shell step as root mode, collecting output lines.
    pub(crate) fn sh(&self, script: &str) -> (Result<(), RunError>, Vec<String>) {
        run_collect(
            &self.sandbox(SandboxMode::Root),
            &Step::shell("test", script),
        )
    }
}

pub(crate) fn run_collect(sb: &Sandbox, step: &Step) -> (Result<(), RunError>, Vec<String>) {
    let mut lines = Vec::new();
    let r = sb.run(step, None, &mut |l: &OutputLine<'_>| {
        lines.push(l.line.to_owned())
    });
    (r, lines)
}

pub(crate) fn make_busybox_rootfs(root: &Path) {
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "etc", "root", "tmp", "proc", "dev", "run", "var/lib",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    std::fs::write(root.join("etc/motd"), "hello from the lower\n").unwrap();
}

/// Creates (once) the unprivileged test user with a subuid/subgid range;
/// returns its uid and gid.
pub(crate) fn ensure_user() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, USER]).output().ok()?;
        String::from_utf8(o.stdout).ok()?.trim().parse().ok()
    };
    if id("-u").is_none() {
        let ok = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok || id("-u").is_some(),
            "cannot create the test user {USER} with useradd"
        );
    }
    let range = format!("{}-{}", SUB_START, SUB_START + SUB_COUNT - 1);
    let has = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&format!("{USER}:")))
    };
    if !has("/etc/subuid") || !has("/etc/subgid") {
        let ok = Command::new("usermod")
            .args(["--add-subuids", &range, "--add-subgids", &range, USER])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "usermod --add-subuids failed");
    }
    Some((id("-u")?, id("-g")?))
}

pub(crate) fn chown_r(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .args(["-R", "-h", &format!("{uid}:{gid}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}
