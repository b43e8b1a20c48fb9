//! End-to-end sandbox tests on a busybox rootfs in root mode (the rootless
//! mode is exercised in `sandbox_rootless.rs`).

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use common::*;
use imgbuild_sandbox::{EntryKind, RunError, Step, StepCommand, UpperEntry, UpperKind, User};

fn find<'a>(entries: &'a [UpperEntry], path: &str) -> Option<&'a UpperEntry> {
    entries.iter().find(|e| e.path == path)
}

#[test]
fn writes_land_in_upper_and_scan() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let (r, lines) = f.sh("echo hi > /root/hello && ln /root/hello /root/hello2 && ln -s hello /root/sym && cat /etc/motd && id -u");
    r.unwrap();
    assert_eq!(lines, vec!["hello from the lower", "0"]);
    assert_eq!(
        std::fs::read_to_string(f.upper().join("root/hello")).unwrap(),
        "hi\n"
    );

    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        vec!["root", "root/hello", "root/hello2", "root/sym"],
        "{entries:#?}"
    );
    assert_eq!(
        find(&entries, "root").unwrap().kind,
        UpperKind::Entry(EntryKind::Dir)
    );
    let hello = find(&entries, "root/hello").unwrap();
    assert_eq!(hello.kind, UpperKind::Entry(EntryKind::File));
    assert_eq!(hello.size, 3);
    assert_eq!(hello.host_path, f.upper().join("root/hello"));
    assert_eq!((hello.uid, hello.gid), (0, 0));
    assert_eq!(
        find(&entries, "root/hello2").unwrap().kind,
        UpperKind::Entry(EntryKind::Hardlink("root/hello".into()))
    );
    assert_eq!(
        find(&entries, "root/sym").unwrap().kind,
        UpperKind::Entry(EntryKind::Symlink("hello".into()))
    );
}

#[test]
fn deletions_become_whiteouts_and_opaque_dirs() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    std::fs::create_dir_all(f.lower().join("var/lib/old")).unwrap();
    std::fs::write(f.lower().join("var/lib/old/file"), "x").unwrap();
    f.own_lower();
    let (r, lines) =
        f.sh("rm /etc/motd && rm -rf /var/lib && mkdir /var/lib && touch /var/lib/new");
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    assert_eq!(
        find(&entries, "etc/motd").unwrap().kind,
        UpperKind::Whiteout,
        "{entries:#?}"
    );
    assert_eq!(
        find(&entries, "var/lib").unwrap().kind,
        UpperKind::OpaqueDir
    );
    assert!(find(&entries, "var/lib/new").is_some());
    assert!(entries
        .iter()
        .all(|e| !e.xattrs.keys().any(|k| k.contains("overlay"))));
    // The lower is untouched.
    assert!(f.lower().join("etc/motd").exists());
    assert!(f.lower().join("var/lib/old/file").exists());
}

#[test]
fn no_network_by_default() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let (r, lines) = f.sh(&format!(
        "cat /proc/net/dev; ip -o link; echo ping | nc 127.0.0.1 {port} && echo CONNECTED; true"
    ));
    r.unwrap();
    assert!(
        lines.iter().any(|l| l.trim_start().starts_with("lo:")),
        "{lines:?}"
    );
    assert!(
        !lines
            .iter()
            .any(|l| l.trim_start().starts_with("eth") || l.contains("ens")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("lo:") && l.contains("UP")),
        "lo is up: {lines:?}"
    );
    assert!(!lines.iter().any(|l| l == "CONNECTED"), "{lines:?}");
    assert!(
        listener.accept().is_err(),
        "sandbox reached the host loopback"
    );

    // With network = true the host's loopback is reachable.
    let mut step = Step::shell(
        "net",
        format!("echo ping | nc 127.0.0.1 {port} && echo CONNECTED"),
    );
    step.network = true;
    listener.set_nonblocking(false).unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = String::new();
        s.read_to_string(&mut buf).unwrap();
        buf
    });
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(t.join().unwrap(), "ping\n");
    // resolv.conf/hosts are bind mounts, not copied into the upper.
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    assert!(
        entries.iter().all(|e| !e.path.starts_with("etc/")),
        "{entries:#?}"
    );
}

#[test]
fn host_is_untouched() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let lower_passwd = std::fs::read(f.lower().join("etc/passwd")).unwrap();
    let marker = f.dir.path().join("marker");
    std::fs::write(&marker, "keep").unwrap();
    let script = format!(
        "echo pwned > /etc/passwd; touch /host-file; test -e {m} && echo SEES_HOST; echo x > {m} 2>/dev/null; true",
        m = marker.display()
    );
    let (r, lines) = f.sh(&script);
    r.unwrap();
    assert!(!lines.iter().any(|l| l == "SEES_HOST"), "{lines:?}");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd);
    assert_eq!(
        std::fs::read(f.lower().join("etc/passwd")).unwrap(),
        lower_passwd
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "keep");
    assert!(!std::path::Path::new("/host-file").exists());
    assert_eq!(
        std::fs::read_to_string(f.upper().join("etc/passwd")).unwrap(),
        "pwned\n"
    );
}

#[test]
fn process_tree_dies_with_the_step() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let arg = format!("{}", 900_000 + std::process::id() % 90_000);
    let (r, _) = f.sh(&format!(
        "sleep {arg} & (setsid sleep {arg} &) ; nohup sleep {arg} >/dev/null 2>&1 & echo started"
    ));
    r.unwrap();
    // PID 1 exiting makes the kernel kill the namespace; give it a moment.
    for _ in 0..50 {
        if !host_has_process_with_arg(&arg) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("a `sleep {arg}` from the sandbox survived the step");
}

#[test]
fn failure_reports_code_and_last_lines() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let log = f.dir.path().join("step.log");
    let step = Step::shell("failing", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32; do echo line$i; done; echo boom >&2; exit 3");
    let r = f.sandbox(root_mode()).run(&step, Some(&log), &mut |_| {});
    match r {
        Err(RunError::CommandFailed {
            step,
            code,
            last_lines,
        }) => {
            assert_eq!(step, "failing");
            assert_eq!(code, 3);
            assert_eq!(last_lines.len(), 30);
            // stdout and stderr are separate pipes: their relative order is
            // not defined (so `boom` may have been evicted), but the tail is
            // there.
            assert!(last_lines.contains(&"line32".to_string()), "{last_lines:?}");
            assert!(!last_lines.contains(&"line1".to_string()));
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    let log = std::fs::read_to_string(log).unwrap();
    assert!(log.contains("[failing] line1\n"), "{log}");
    assert!(log.contains("[failing] (stderr) boom\n"), "{log}");

    let (r, _) = f.sh("kill -9 $$");
    assert!(
        matches!(r, Err(RunError::CommandFailed { code: 137, .. })),
        "{r:?}"
    );
}

#[test]
fn setup_errors_name_the_stage() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let mut step = Step::shell("wd", "true");
    step.workdir = "/does/not/exist".into();
    let (r, _) = run_collect(&f.sandbox(root_mode()), &step);
    match r {
        Err(e @ RunError::Setup { .. }) => assert!(e.to_string().contains("workdir"), "{e}"),
        other => panic!("{other:?}"),
    }
    let mut step = Step::shell("exec", "");
    step.command = StepCommand::Argv(vec!["no-such-tool".into()]);
    let (r, _) = run_collect(&f.sandbox(root_mode()), &step);
    match r {
        Err(e @ RunError::Setup { .. }) => {
            assert!(e.to_string().contains("execute the command"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn env_user_workdir_and_secrets() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let secret = f.dir.path().join("npmrc");
    std::fs::write(&secret, "token=s3cr3t\n").unwrap();
    let mut step = Step::shell(
        "env",
        "env | sort; id -u; id -g; pwd; cat /run/secrets/npmrc; echo x > /run/secrets/npmrc || echo READONLY; \
         cp /run/secrets/npmrc /tmp/copy; touch /tmp/t",
    );
    step.env = BTreeMap::from([("FOO".to_string(), "bar baz".to_string())]);
    step.user = "1000:1001".parse::<User>().unwrap();
    step.workdir = "/tmp".into();
    step.secrets = BTreeMap::from([("npmrc".to_string(), secret.clone())]);
    // Non-root needs to be able to write somewhere; tmp is 1777.
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    let env: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains('=') && !l.starts_with("token"))
        .collect();
    let keys: Vec<&str> = env.iter().map(|l| l.split('=').next().unwrap()).collect();
    for k in &keys {
        assert!(
            ["FOO", "HOME", "PATH", "PWD", "SHLVL"].contains(k),
            "unexpected env {k}: {env:?}"
        );
    }
    assert!(lines.contains(&"FOO=bar baz".to_string()));
    assert!(lines.contains(&"HOME=/".to_string()));
    assert!(lines.contains(&format!("PATH={}", imgbuild_sandbox::DEFAULT_PATH)));
    assert!(
        lines.contains(&"1000".to_string()) && lines.contains(&"1001".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"/tmp".to_string()));
    assert!(
        lines.contains(&"token=s3cr3t".to_string()),
        "secret readable: {lines:?}"
    );
    assert!(lines.contains(&"READONLY".to_string()), "{lines:?}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "token=s3cr3t\n");
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    assert!(
        entries.is_empty(),
        "secrets, /tmp and /run must not reach the upper: {entries:#?}"
    );
}

#[test]
fn sandbox_mount_points_do_not_leak() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    // A rootfs without /proc, /dev, /tmp, /run (like a minimal scratch image).
    for d in ["proc", "dev", "tmp", "run"] {
        std::fs::remove_dir(f.lower().join(d)).unwrap();
    }
    let mut step = Step::shell("mp", "ls /proc/self >/dev/null && touch /tmp/x /made");
    step.network = true;
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, vec!["made"], "{entries:#?}");
}

#[test]
fn init_reaps_orphans() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    // `sh -c '... &'` subshells exit and their children are re-parented to
    // the sandbox's pid 1, which must reap them (no zombies left).
    let (r, lines) = f.sh("for i in 1 2 3 4 5; do (true &) ; (sleep 0.05 &) ; done; sleep 0.3; ps -o pid,stat,comm; echo pid1=$(cat /proc/1/comm 2>/dev/null)");
    r.unwrap();
    assert!(
        !lines.iter().any(|l| l
            .split_whitespace()
            .nth(1)
            .is_some_and(|s| s.starts_with('Z'))),
        "zombies: {lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("pid1=")), "{lines:?}");
}

#[test]
fn capabilities_are_reduced() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    let (r, lines) = f.sh(
        "grep -E 'Cap(Bnd|Eff)' /proc/self/status; mount -t tmpfs none /tmp 2>/dev/null && echo MOUNTED; \
         mknod /root/sda b 8 0 2>/dev/null && echo MKNOD; touch /root/owned && chown 1000:1000 /root/owned && echo CHOWNED",
    );
    r.unwrap();
    // Docker's default set without mknod (see child.rs KEPT_CAPS).
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["CapBnd:", "00000000a00425fb"]),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["CapEff:", "00000000a00425fb"]),
        "{lines:?}"
    );
    assert!(!lines.contains(&"MOUNTED".to_string()), "{lines:?}");
    assert!(!lines.contains(&"MKNOD".to_string()), "{lines:?}");
    assert!(lines.contains(&"CHOWNED".to_string()), "{lines:?}");
    assert!(!f.upper().join("root/sda").exists());
}

#[test]
fn unpacked_layers_stack_with_whiteouts_and_opaque_dirs() {
    if !can_run() {
        return;
    }
    use imgbuild_sandbox::{unpack_layer, UnpackOptions};
    let f = Fixture::new();
    std::fs::create_dir_all(f.lower().join("var/lib/old")).unwrap();
    std::fs::write(f.lower().join("var/lib/old/file"), "x").unwrap();
    // A second layer (topmost) deleting /etc/motd and replacing /var/lib.
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in [
        ("etc/.wh.motd", &b""[..]),
        ("var/lib/.wh..wh..opq", b""),
        ("var/lib/new", b"new\n"),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    }
    let layer = f.dir.path().join("layer2");
    std::fs::create_dir(&layer).unwrap();
    let sb = imgbuild_sandbox::Sandbox {
        lowers: vec![f.lower(), layer.clone()],
        ..f.sandbox(root_mode())
    };
    let (uid, gid, count) = sb.mode.id_map().contiguous().unwrap();
    let opts = UnpackOptions {
        overlay: sb.overlay_xattrs(),
        owners: imgbuild_sandbox::Owners::Shift { uid, gid, count },
    };
    unpack_layer(&b.into_inner().unwrap()[..], &layer, &opts).unwrap();
    let (r, lines) = run_collect(
        &sb,
        &Step::shell("stack", "test ! -e /etc/motd && ls /var/lib && cat /var/lib/new && test -e /etc/passwd && stat -c '%u:%g' /var/lib/new /var && touch /var/lib/x && echo OK"),
    );
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(lines, vec!["new", "new", "0:0", "0:0", "OK"]);
    // On the host the layer's owners are the shifted ids.
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(layer.join("var/lib/new")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    assert_ne!(uid, 0);
}

#[test]
fn concurrent_steps_do_not_wait_for_each_other() {
    if !can_run() {
        return;
    }
    let fixtures: Vec<Fixture> = (0..4).map(|_| Fixture::new()).collect();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for (i, f) in fixtures.iter().enumerate() {
            s.spawn(move || {
                // Step 0 is slow; the others, run at the same time from
                // other threads, must not wait for it.
                let script = if i == 0 {
                    "sleep 2; echo slow"
                } else {
                    "echo fast"
                };
                let t = std::time::Instant::now();
                let (r, lines) = f.sh(script);
                r.unwrap();
                if i != 0 {
                    assert_eq!(lines, vec!["fast"]);
                    assert!(
                        t.elapsed() < std::time::Duration::from_millis(1500),
                        "step {i} took {:?}",
                        t.elapsed()
                    );
                }
            });
        }
    });
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn step_cannot_reach_the_host_kernel() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    check_hardening(&f.sandbox(root_mode()));
}

#[test]
fn fork_bomb_ends_with_a_clear_error() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    check_fork_bomb(&f.sandbox(root_mode()));
}

#[test]
fn sandbox_root_is_not_host_root() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let f = Fixture::new();
    let (r, lines) = f.sh(
        "touch /root/made && mkdir -p /home/app && chown 1000:1000 /home/app && \
              cp /bin/busybox /root/ping && /bin/probe setcap /root/ping && id -u",
    );
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(lines, vec!["0"]);
    let map = root_mode().id_map().clone();
    let root_has_range = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("root:") || l.starts_with("0:"));
    assert_ne!(map.host_uid, 0);
    if !root_has_range {
        assert_eq!(map.host_uid, imgbuild_sandbox::ROOT_SUBID_START);
    }
    // On the host: sandbox root's files belong to the subordinate range.
    let made = std::fs::symlink_metadata(f.upper().join("root/made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (map.host_uid, map.host_gid));
    let app = std::fs::symlink_metadata(f.upper().join("home/app")).unwrap();
    assert_eq!(app.uid(), map.host_uid + 1000);
    // The layer sees sandbox ids.
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    let app = find(&entries, "home/app").unwrap();
    assert_eq!((app.uid, app.gid), (1000, 1000));
    assert_eq!(find(&entries, "root/made").unwrap().uid, 0);
    // The kernel stored a v3 capability with the host id of sandbox root;
    // the layer gets the v2 form, as before user namespaces.
    let mut raw = [0u8; 64];
    let n = rustix::fs::lgetxattr(
        f.upper().join("root/ping"),
        "security.capability",
        &mut raw[..],
    )
    .unwrap();
    assert_eq!((n, raw[3]), (24, 3), "{:?}", &raw[..n]);
    let cap = &find(&entries, "root/ping").unwrap().xattrs["security.capability"];
    assert_eq!(
        cap[..],
        [1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn private_secrets_are_copied_for_sandbox_root() {
    if !can_run() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    // A root-only secret (as `--secret` files usually are) and a
    // world-readable one.
    let private = f.dir.path().join("token");
    std::fs::write(&private, "t0ken\n").unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    let public = f.dir.path().join("pub");
    std::fs::write(&public, "public\n").unwrap();
    let mut step = Step::shell(
        "secrets",
        "cat /run/secrets/token /run/secrets/pub; stat -c '%a %u' /run/secrets/token; \
         echo x > /run/secrets/token || echo READONLY; rm /run/secrets/token || echo KEPT; \
         touch /run/secrets/new || echo NOCREATE",
    );
    step.secrets = BTreeMap::from([
        ("token".to_string(), private.clone()),
        ("pub".to_string(), public.clone()),
    ]);
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    for want in ["t0ken", "public", "400 0", "READONLY", "KEPT", "NOCREATE"] {
        assert!(lines.contains(&want.to_string()), "{want}: {lines:?}");
    }
    assert_eq!(std::fs::read_to_string(&private).unwrap(), "t0ken\n");
    assert!(f.sandbox(root_mode()).scan_upper().unwrap().is_empty());
}

#[test]
fn full_disk_ends_with_a_clear_error() {
    if !can_run() {
        return;
    }
    let f = Fixture::new();
    // Upper and work on a 16 MiB tmpfs: the step fills it.
    let small = f.dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    rustix::mount::mount(
        c"tmpfs",
        &small,
        c"tmpfs",
        rustix::mount::MountFlags::empty(),
        Some(c"size=16m"),
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _guard = Unmount(small.clone());
    std::fs::create_dir(small.join("upper")).unwrap();
    std::fs::create_dir(small.join("work")).unwrap();
    let sb = imgbuild_sandbox::Sandbox {
        upper: small.join("upper"),
        work: small.join("work"),
        ..f.sandbox(root_mode())
    };
    let (r, _) = run_collect(
        &sb,
        &Step::shell("fill", "dd if=/dev/zero of=/big bs=1M count=64"),
    );
    match r {
        Err(RunError::CommandFailed { last_lines, .. }) => assert!(
            last_lines
                .last()
                .is_some_and(|l| l.starts_with("imgbuild: no space left on device")),
            "{last_lines:#?}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn shifted_unpack_refuses_owners_outside_the_map() {
    if !can_run() {
        return;
    }
    use imgbuild_sandbox::{unpack_layer, Owners, UnpackError, UnpackOptions};
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let layer = |uid: u64| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(1);
        b.append_data(&mut h, "usr/bin/tool", &b"x"[..]).unwrap();
        b.into_inner().unwrap()
    };
    let opts = UnpackOptions {
        owners: Owners::Shift {
            uid: 1 << 30,
            gid: (1 << 30) + 7,
            count: 65536,
        },
        ..UnpackOptions::default()
    };
    let ok = dir.path().join("ok");
    std::fs::create_dir(&ok).unwrap();
    unpack_layer(&layer(1000)[..], &ok, &opts).unwrap();
    let tool = std::fs::symlink_metadata(ok.join("usr/bin/tool")).unwrap();
    assert_eq!(
        (tool.uid(), tool.gid(), tool.mode() & 0o7777),
        ((1 << 30) + 1000, (1 << 30) + 7 + 1000, 0o4755)
    );
    // Parents the layer does not list, and the root, belong to sandbox root.
    let usr = std::fs::symlink_metadata(ok.join("usr")).unwrap();
    assert_eq!((usr.uid(), usr.gid()), (1 << 30, (1 << 30) + 7));
    let bad = dir.path().join("bad");
    std::fs::create_dir(&bad).unwrap();
    let err = unpack_layer(&layer(70_000)[..], &bad, &opts).unwrap_err();
    assert!(
        matches!(
            err,
            UnpackError::OutsideIdRange {
                uid: 70_000,
                count: 65536,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("/etc/subuid"), "{err}");
}

#[test]
fn the_same_layer_twice_stacks() {
    if !can_run() {
        return;
    }
    // Two steps that changed nothing have the same (empty) layer, unpacked
    // once: base, empty, other, empty.
    let f = Fixture::new();
    let empty = f.dir.path().join("empty");
    let other = f.dir.path().join("other");
    std::fs::create_dir_all(other.join("etc")).unwrap();
    std::fs::write(other.join("etc/other"), "x\n").unwrap();
    std::fs::create_dir(&empty).unwrap();
    chown_r(
        &other,
        root_mode().id_map().host_uid,
        root_mode().id_map().host_gid,
    );
    let sb = imgbuild_sandbox::Sandbox {
        lowers: vec![f.lower(), empty.clone(), other, empty],
        ..f.sandbox(root_mode())
    };
    let (r, lines) = run_collect(&sb, &Step::shell("twice", "cat /etc/other /etc/motd"));
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(lines, vec!["x", "hello from the lower"]);
}

#[test]
fn network_steps_resolve_names_without_etc_or_through_a_stub_link_and_never_write_the_host() {
    if !can_run() {
        return;
    }
    // No /etc at all (a scratch image with a static busybox): one is made for the
    // read-only resolver files, and none of it reaches the upper.
    let f = Fixture::new();
    std::fs::remove_dir_all(f.lower().join("etc")).unwrap();
    let mut step = Step::shell(
        "dns",
        "cat /etc/resolv.conf; echo x > /etc/resolv.conf && echo WROTE; true",
    );
    step.network = true;
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let host: Vec<&str> = host.lines().collect();
    assert!(!host.is_empty());
    // stdout and stderr come through separate pipes, so the shell's complaint
    // about the read-only file may arrive before or after the file's lines.
    let (refused, read): (Vec<&String>, Vec<&String>) = lines
        .iter()
        .partition(|l| l.contains("Read-only file system"));
    assert_eq!(read, host, "{lines:?}");
    assert_eq!(refused.len(), 1, "{lines:?}");
    assert!(!lines.iter().any(|l| l == "WROTE"), "{lines:?}");
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    assert!(entries.is_empty(), "{entries:#?}");

    // `/etc/resolv.conf` a link to systemd-resolved's stub in `/run` (empty in a build):
    // the host's file is bound where it points, in the `/run` tmpfs.
    let f = Fixture::new();
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        f.lower().join("etc/resolv.conf"),
    )
    .unwrap();
    f.own_lower();
    let mut step = Step::shell("dns", "cat /etc/resolv.conf");
    step.network = true;
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(lines, host, "through the image's link");
    let entries = f.sandbox(root_mode()).scan_upper().unwrap();
    assert!(entries.is_empty(), "{entries:#?}");

    // `/etc` a symlink to a host directory: before pivot_root it would resolve on the
    // host, so the resolver files are left out rather than created there.
    let f = Fixture::new();
    let outside = f.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::remove_dir_all(f.lower().join("etc")).unwrap();
    std::os::unix::fs::symlink(&outside, f.lower().join("etc")).unwrap();
    let mut step = Step::shell("dns", "true");
    step.network = true;
    let (r, lines) = run_collect(&f.sandbox(root_mode()), &step);
    r.unwrap_or_else(|e| panic!("{e}: {lines:?}"));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "the sandbox wrote through the image's /etc symlink onto the host"
    );
}
