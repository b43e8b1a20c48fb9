//! Rootless mode, really exercised: the test (running as root) creates an
//! unprivileged user with a subuid/subgid range, prepares a fixture owned by
//! it and re-runs this test binary as that user (`rootless_inner`), which
//! runs the sandbox with `SandboxMode::detect()` (user namespace mapped by
//! newuidmap/newgidmap) and checks the scan. The outer test then checks the
//! host ids in the upper dir as root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use imgbuild_sandbox::{
    apply_owners_in_userns, unpack_layer, OverlayXattrs, Owners, SandboxMode, Step, UnpackOptions,
    UpperKind,
};

const ENV: &str = "IMGBUILD_SANDBOX_ROOTLESS_FIXTURE";

#[test]
fn rootless_sandbox_maps_subuids() {
    if !can_run() {
        return;
    }
    assert!(
        Path::new("/usr/bin/newuidmap").exists(),
        "newuidmap missing: install the Debian package uidmap (scripts/install-test-deps.sh does)"
    );
    let Some((uid, gid)) = ensure_user() else {
        return;
    };
    let f = Fixture::new();
    // The fixture belongs to the user: its root becomes the sandbox's root.
    chown_r(f.dir.path(), uid, gid);
    std::fs::set_permissions(
        f.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .args([
            "--exact",
            "rootless_inner",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env(ENV, f.dir.path())
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
    assert!(out.status.success(), "inner rootless test failed:\n{text}");
    assert!(
        text.contains("ROOTLESS-INNER-RAN"),
        "inner test did not run:\n{text}"
    );

    // Host view of the upper: sandbox uid 1000 is host SUB_START + 999.
    let app = std::fs::symlink_metadata(f.upper().join("home/app/f")).unwrap();
    assert_eq!((app.uid(), app.gid()), (SUB_START + 999, SUB_START + 1000));
    let x = std::fs::symlink_metadata(f.upper().join("root/x")).unwrap();
    assert_eq!(
        (x.uid(), x.gid()),
        (uid, gid),
        "sandbox root is the invoking user"
    );
    // Nothing was written with real root's ids.
    assert_ne!(app.uid(), 0);
    // Rootless unpack with deferred owners: host ids are the mapped ones,
    // modes (setuid, read-only dir) survive the chown.
    let layer = f.dir.path().join("layer");
    let opt = std::fs::symlink_metadata(layer.join("opt")).unwrap();
    assert_eq!(
        (opt.uid(), opt.gid(), opt.mode() & 0o7777),
        (SUB_START + 999, SUB_START + 999, 0o555)
    );
    let tool = std::fs::symlink_metadata(layer.join("opt/tool")).unwrap();
    assert_eq!(
        (tool.uid(), tool.gid(), tool.mode() & 0o7777),
        (SUB_START + 999, SUB_START + 999, 0o4755)
    );
    let mut cap = [0u8; 64];
    let n = rustix::fs::lgetxattr(layer.join("opt/tool"), "security.capability", &mut cap[..])
        .expect("file capability restored");
    assert!(n >= 20, "capability xattr of {n} bytes");
    let link = std::fs::symlink_metadata(layer.join("opt/link")).unwrap();
    assert_eq!((link.uid(), link.gid()), (SUB_START + 1, SUB_START + 1));
    let root_owned = std::fs::symlink_metadata(layer.join("etc/conf")).unwrap();
    assert_eq!((root_owned.uid(), root_owned.gid()), (uid, gid));

    // The background sleep started in the rootless sandbox is gone.
    let alive = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == b"876543"))
        });
    assert!(!alive, "rootless sandbox left a process behind");
}

/// Runs only when started by `rootless_sandbox_maps_subuids` as the user.
#[test]
fn rootless_inner() {
    let Some(dir) = std::env::var_os(ENV).map(PathBuf::from) else {
        return;
    };
    assert!(!is_root(), "inner test must run unprivileged");
    let mode = SandboxMode::detect().expect("subuid range");
    assert!(matches!(mode, SandboxMode::Rootless(_)));
    let sb = imgbuild_sandbox::Sandbox {
        lowers: vec![dir.join("lower")],
        upper: dir.join("upper"),
        work: dir.join("work"),
        mode,
    };
    assert_eq!(sb.overlay_xattrs(), OverlayXattrs::User);
    let secret = dir.join("secret");
    std::fs::write(&secret, "pssst\n").unwrap();
    let mut step = Step::shell(
        "rootless",
        "id -u; cat /proc/self/uid_map; mkdir -p /home/app && touch /home/app/f && chown -R 1000:1001 /home/app && \
         echo hi > /root/x && rm /etc/motd && cat /run/secrets/s && (sleep 876543 &) && cat /proc/net/dev",
    );
    step.secrets.insert("s".into(), secret);
    let (r, lines) = run_collect(&sb, &step);
    r.unwrap_or_else(|e| panic!("{e}\n{lines:#?}"));
    assert_eq!(lines[0], "0", "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "400000", "65536"]),
        "{lines:?}"
    );
    assert!(lines.contains(&"pssst".to_string()));
    assert!(
        !lines.iter().any(|l| l.trim_start().starts_with("eth")),
        "{lines:?}"
    );

    let entries = sb.scan_upper().unwrap();
    let get = |p: &str| {
        entries
            .iter()
            .find(|e| e.path == p)
            .unwrap_or_else(|| panic!("{p} missing: {entries:#?}"))
    };
    let f = get("home/app/f");
    assert_eq!(
        (f.uid, f.gid),
        (1000, 1001),
        "ids mapped back to sandbox ids"
    );
    assert_eq!((get("root/x").uid, get("root/x").gid), (0, 0));
    assert_eq!(get("etc/motd").kind, UpperKind::Whiteout);
    assert!(entries
        .iter()
        .all(|e| !e.path.starts_with("run") && !e.path.starts_with("tmp")));
    // Rootless layer unpack: files keep their (mapped) owners.
    let mut b = tar::Builder::new(Vec::new());
    let entry = |b: &mut tar::Builder<Vec<u8>>,
                 path: &str,
                 kind: tar::EntryType,
                 mode: u32,
                 id: u64,
                 link: Option<&str>,
                 data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(id);
        h.set_gid(id);
        h.set_size(data.len() as u64);
        h.set_mtime(1);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        b.append_data(&mut h, path, data).unwrap();
    };
    entry(
        &mut b,
        "opt/",
        tar::EntryType::Directory,
        0o555,
        1000,
        None,
        b"",
    );
    // cap_net_raw+ep (VFS_CAP_REVISION_2).
    let cap: [u8; 20] = [1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &cap[..])])
        .unwrap();
    entry(
        &mut b,
        "opt/tool",
        tar::EntryType::Regular,
        0o4755,
        1000,
        None,
        b"#!/bin/sh\n",
    );
    entry(
        &mut b,
        "opt/link",
        tar::EntryType::Symlink,
        0o777,
        2,
        Some("tool"),
        b"",
    );
    entry(
        &mut b,
        "etc/conf",
        tar::EntryType::Regular,
        0o644,
        0,
        None,
        b"x",
    );
    // Whiteout of a lower file and an opaque directory replacing /var.
    for (path, data) in [
        ("etc/.wh.motd", &b""[..]),
        ("var/.wh..wh..opq", b""),
        ("var/new", b"new\n"),
    ] {
        entry(&mut b, path, tar::EntryType::Regular, 0o644, 0, None, data);
    }
    let tar_bytes = b.into_inner().unwrap();
    let layer = dir.join("layer");
    std::fs::create_dir(&layer).unwrap();
    let opts = UnpackOptions {
        overlay: OverlayXattrs::User,
        owners: Owners::Defer,
    };
    let report = unpack_layer(&tar_bytes[..], &layer, &opts).unwrap();
    assert_eq!(report.deferred_owners.len(), 5, "{report:?}");
    let SandboxMode::Rootless(map) = &sb.mode else {
        unreachable!()
    };
    apply_owners_in_userns(&layer, &report.deferred_owners, map).unwrap();

    // The unpacked layer stacks on the base in a rootless sandbox:
    // whiteout and opaque dir (user.overlay.opaque) take effect, and the
    // sandbox sees the layer's owners.
    std::fs::create_dir(dir.join("upper2")).unwrap();
    std::fs::create_dir(dir.join("work2")).unwrap();
    let sb2 = imgbuild_sandbox::Sandbox {
        lowers: vec![dir.join("lower"), layer.clone()],
        upper: dir.join("upper2"),
        work: dir.join("work2"),
        mode: sb.mode.clone(),
    };
    let step = Step::shell(
        "stacked",
        "test ! -e /etc/motd && test ! -e /var/lib && cat /var/new && stat -c '%u:%g %a' /opt/tool /opt && \
         chown 1000 /opt/tool && echo CHOWN-COPYUP-OK",
    );
    let (r, lines) = run_collect(&sb2, &step);
    r.unwrap_or_else(|e| panic!("{e}\n{lines:#?}"));
    assert_eq!(
        lines,
        vec!["new", "1000:1000 4755", "1000:1000 555", "CHOWN-COPYUP-OK"]
    );

    // The adversarial checks of issue 8 hold rootless too.
    std::fs::create_dir(dir.join("upper3")).unwrap();
    std::fs::create_dir(dir.join("work3")).unwrap();
    let sb3 = imgbuild_sandbox::Sandbox {
        lowers: vec![dir.join("lower")],
        upper: dir.join("upper3"),
        work: dir.join("work3"),
        mode: sb.mode.clone(),
    };
    check_hardening(&sb3);
    check_fork_bomb(&sb3);
    println!("ROOTLESS-INNER-RAN");
}
