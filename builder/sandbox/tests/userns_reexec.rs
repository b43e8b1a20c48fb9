//! `reexec_in_user_namespace` end to end. Custom harness (`harness = false`):
//! the function must run before any thread exists, which libtest violates.
//!
//! As root, `main` prepares a fixture owned by the unprivileged test user and
//! runs this binary again as that user (`inner`), which re-executes itself
//! into a mapped user namespace and then does a whole rootless build step:
//! unpack with `Owners::Apply`, run in `SandboxMode::Root`, scan the upper
//! including a 0700 directory owned by a subuid.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use imgbuild_sandbox::{
    reexec_in_user_namespace, unpack_layer, EntryKind, OverlayXattrs, Sandbox, SandboxMode, Step,
    UnpackOptions, UpperKind,
};

const STAGE: &str = "IMGBUILD_USERNS_TEST_DIR";

fn main() {
    // Speak enough of libtest's protocol for cargo-nextest: list one test, run it.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("userns_reexec: test");
        }
        return;
    }
    if let Some(dir) = std::env::var_os(STAGE) {
        inner(&PathBuf::from(dir));
    } else {
        outer();
    }
}

fn outer() {
    assert!(can_run());
    assert!(
        Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap missing: install the Debian package uidmap (scripts/install-test-deps.sh does)"
    );
    let Some((uid, gid)) = ensure_user() else {
        return;
    };
    let tmp = tempfile::Builder::new()
        .prefix("imgbuild-userns-test-")
        .tempdir()
        .unwrap();
    chown_r(tmp.path(), uid, gid);
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .env_clear()
        .env(STAGE, tmp.path())
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "inner run failed ({}):\n{text}",
        out.status
    );
    assert!(text.contains("USERNS-INNER-OK"), "{text}");
    // Host view: sandbox uid 1000 / 100 are subuids, sandbox root is the user.
    let f = std::fs::symlink_metadata(tmp.path().join("layer/app/file")).unwrap();
    assert_eq!((f.uid(), f.gid()), (SUB_START + 999, SUB_START + 999));
    let s = std::fs::symlink_metadata(tmp.path().join("upper/var/secret")).unwrap();
    assert_eq!((s.uid(), s.mode() & 0o777), (SUB_START + 99, 0o700));
    let l = std::fs::symlink_metadata(tmp.path().join("lower/bin/busybox")).unwrap();
    assert_eq!(l.uid(), uid);
    println!("userns_reexec: ok");
}

fn inner(dir: &Path) {
    reexec_in_user_namespace().expect("re-exec into a user namespace");
    // From here on we are root of the mapped user namespace.
    assert!(is_root());
    let mode = SandboxMode::detect().unwrap();
    assert!(
        matches!(&mode, SandboxMode::Root(m) if m.is_identity()),
        "{mode:?}"
    );
    assert_eq!(OverlayXattrs::for_current_process(), OverlayXattrs::User);

    make_busybox_rootfs(&dir.join("lower"));
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, mode) in [
        ("app/", tar::EntryType::Directory, 0o700),
        ("app/file", tar::EntryType::Regular, 0o600),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(if kind == tar::EntryType::Regular {
            3
        } else {
            0
        });
        let data: &[u8] = if kind == tar::EntryType::Regular {
            b"abc"
        } else {
            b""
        };
        b.append_data(&mut h, path, data).unwrap();
    }
    std::fs::create_dir(dir.join("layer")).unwrap();
    unpack_layer(
        &b.into_inner().unwrap()[..],
        &dir.join("layer"),
        &UnpackOptions::default(),
    )
    .unwrap();
    for d in ["upper", "work"] {
        std::fs::create_dir(dir.join(d)).unwrap();
    }
    let sb = Sandbox {
        lowers: vec![dir.join("lower"), dir.join("layer")],
        upper: dir.join("upper"),
        work: dir.join("work"),
        mode: SandboxMode::detect().unwrap(),
    };
    let step = Step::shell(
        "userns",
        "cat /app/file && mkdir /var/secret && echo s > /var/secret/f && chown -R 100:100 /var/secret && chmod 700 /var/secret",
    );
    let (r, lines) = run_collect(&sb, &step);
    r.unwrap_or_else(|e| panic!("{e}\n{lines:#?}"));
    assert_eq!(lines, vec!["abc"]);
    let entries = sb.scan_upper().unwrap();
    let f = entries
        .iter()
        .find(|e| e.path == "var/secret/f")
        .expect("scanned");
    assert_eq!((f.uid, f.gid), (100, 100));
    assert_eq!(f.kind, UpperKind::Entry(EntryKind::File), "{f:?}");
    assert_eq!(
        std::fs::read_to_string(&f.host_path).unwrap(),
        "s\n",
        "readable for the layer writer"
    );
    println!("USERNS-INNER-OK");
}
