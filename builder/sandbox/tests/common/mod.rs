//! Shared fixtures: a busybox rootfs as the lower dir.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use imgbuild_sandbox::{OutputLine, RunError, Sandbox, SandboxMode, Step};

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

/// The mode imgbuild uses here (as root: `Root` with its id map).
pub(crate) fn root_mode() -> SandboxMode {
    SandboxMode::detect().expect("sandbox mode")
}

impl Fixture {
    /// The lower belongs to sandbox root (host ids of [`root_mode`]), as
    /// an unpacked layer would.
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("imgbuild-sbx-test-")
            .tempdir()
            .unwrap();
        let f = Self { dir };
        make_busybox_rootfs(&f.lower());
        install_probe(&f.lower());
        std::fs::create_dir(f.upper()).unwrap();
        std::fs::create_dir(f.work()).unwrap();
        f.own_lower();
        f
    }

    /// Gives the lower to sandbox root again (after a test added files).
    pub(crate) fn own_lower(&self) {
        if is_root() {
            let m = root_mode();
            let map = m.id_map();
            chown_r(&self.lower(), map.host_uid, map.host_gid);
        }
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
        run_collect(&self.sandbox(root_mode()), &Step::shell("test", script))
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

/// Compiles `fixtures/probe.c` statically into `root/bin/probe`.
pub(crate) fn install_probe(root: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/probe.c");
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(root.join("bin/probe"))
        .arg(&src)
        .output()
        .expect("cc missing: install the Debian packages gcc and libc6-dev (scripts/install-test-deps.sh does)");
    assert!(
        out.status.success(),
        "cc -static failed (install gcc and libc6-dev): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shell part of [`check_hardening`].
const HARDENING_SCRIPT: &str = r#"
for f in /proc/sys/kernel/core_pattern /proc/sys/kernel/modprobe /proc/sys/vm/drop_caches \
         /proc/sys/fs/suid_dumpable /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/hostname \
         /proc/sysrq-trigger; do
  if ( : > "$f" ) 2>/dev/null; then echo "WRITABLE $f"; else echo "readonly $f"; fi
done
cat /proc/sys/kernel/core_pattern > /tmp/cp
cat /tmp/cp > /proc/sys/kernel/core_pattern 2>/dev/null && echo CORE_PATTERN_WRITTEN
touch /sys/x 2>/dev/null && echo SYS_WRITABLE
mkdir /sys/d 2>/dev/null && echo SYS_WRITABLE
echo "sys entries: $(ls -A /sys | wc -l)"
grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status
echo "uid_map: $(head -n1 /proc/self/uid_map)"
for f in kcore keys timer_list sched_debug; do echo "masked $f: $(cat /proc/$f 2>/dev/null | wc -c)"; done
echo "acpi entries: $(ls -A /proc/acpi 2>/dev/null | wc -l)"
mkdir -p /mnt && mount -t tmpfs none /mnt 2>/dev/null && echo MOUNTED
unshare -U true 2>/dev/null && echo UNSHARE_U
unshare -Ur true 2>/dev/null && echo UNSHARE_UR
/bin/probe
dd if=/dev/zero of=/tmp/big bs=1M count=600 2>&1 | grep -o 'No space left on device' | head -n1
rm -f /tmp/big
echo "tmp size: $(df -m /tmp | tail -n1 | awk '{print $2}')"
echo "run size: $(df -m /run | tail -n1 | awk '{print $2}')"
echo DONE
"#;

/// Runs the adversarial checks of issue 8 in `sb` and asserts each: no
/// writable /proc/sys, sysrq-trigger or /sys, no_new_privs and seccomp,
/// a user namespace not mapped to host root, masked /proc files, no mount,
/// no module loading, no keyrings/bpf/perf/userfaultfd, no new user
/// namespaces, a bounded /tmp.
pub(crate) fn check_hardening(sb: &Sandbox) {
    let host_core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let (r, lines) = run_collect(sb, &Step::shell("hardening", HARDENING_SCRIPT));
    r.unwrap_or_else(|e| panic!("{e}\n{lines:#?}"));
    let text = lines.join("\n");
    assert!(lines.last().is_some_and(|l| l == "DONE"), "{text}");
    assert!(!text.contains("WRITABLE"), "{text}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("readonly ")).count(),
        7,
        "{text}"
    );
    assert!(!text.contains("CORE_PATTERN_WRITTEN"), "{text}");
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        host_core_pattern
    );
    assert!(lines.contains(&"sys entries: 0".to_string()), "{text}");
    assert!(lines.contains(&"NoNewPrivs:\t1".to_string()), "{text}");
    assert!(lines.contains(&"Seccomp:\t2".to_string()), "{text}");
    let map = lines
        .iter()
        .find_map(|l| l.strip_prefix("uid_map: "))
        .unwrap_or_else(|| panic!("{text}"));
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields[0], "0", "{text}");
    assert_ne!(fields[1], "0", "sandbox root is host root: {text}");
    assert_eq!(
        fields[1],
        sb.mode.id_map().host_uid.to_string(),
        "sandbox root maps to the mode's host uid: {text}"
    );
    for f in ["kcore", "keys", "timer_list", "sched_debug"] {
        assert!(
            lines.contains(&format!("masked {f}: 0")),
            "/proc/{f} is masked: {text}"
        );
    }
    assert!(lines.contains(&"acpi entries: 0".to_string()), "{text}");
    for bad in ["MOUNTED", "UNSHARE_U", "UNSHARE_UR"] {
        assert!(!lines.contains(&bad.to_string()), "{bad}: {text}");
    }
    let probe = |name: &str| -> i32 {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("probe printed no {name}: {text}"))
            .parse()
            .unwrap()
    };
    for name in [
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "init_module",
        "finit_module",
        "delete_module",
        "kexec_load",
        "mount",
        "umount2",
        "pivot_root",
        "open_tree",
        "unshare_user",
        "unshare_ns",
        "setns",
        "swapoff",
        "syslog",
        "open_by_handle_at",
        "clone_newuser",
    ] {
        assert_eq!(probe(name), libc::EPERM, "{name}: {text}");
    }
    assert_eq!(probe("clone3"), libc::ENOSYS, "{text}");
    assert_eq!(probe("fork"), 0, "{text}");
    assert!(
        lines.contains(&"No space left on device".to_string()),
        "/tmp is bounded: {text}"
    );
    assert!(lines.contains(&"tmp size: 512".to_string()), "{text}");
    assert!(lines.contains(&"run size: 64".to_string()), "{text}");
}

/// A fork bomb of 3,000 processes in `sb` fails with the process-limit
/// hint, and none of its processes survives the step.
pub(crate) fn check_fork_bomb(sb: &Sandbox) {
    let tag = format!("{}", 700_000 + std::process::id() % 90_000);
    let script =
        format!("i=0; while [ $i -lt 3000 ]; do sleep {tag} & i=$((i+1)); done; echo ALL_STARTED");
    let t = std::time::Instant::now();
    let (r, lines) = run_collect(sb, &Step::shell("forkbomb", &script));
    assert!(!lines.contains(&"ALL_STARTED".to_string()), "{lines:?}");
    match r {
        Err(RunError::CommandFailed { last_lines, .. }) => assert!(
            last_lines
                .last()
                .is_some_and(|l| l.contains("at most 2048 processes")),
            "{last_lines:#?}"
        ),
        other => panic!("fork bomb: {other:?}"),
    }
    assert!(t.elapsed() < std::time::Duration::from_secs(60));
    for _ in 0..100 {
        if !host_has_process_with_arg(&tag) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("a process of the fork bomb survived the step");
}

pub(crate) fn host_has_process_with_arg(arg: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
                .unwrap_or(false)
        })
}
