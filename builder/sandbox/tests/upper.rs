//! `scan_upper` on hand-made upper dirs (no sandbox): whiteouts, opaque
//! dirs, hard links, overlay xattrs, and the mount point rule.

use std::collections::BTreeMap;
use std::path::Path;

use imgbuild_sandbox::{scan_upper, EntryKind, OverlayXattrs, ScanOptions, UpperEntry, UpperKind};
use rustix::fs::{makedev, mknodat, FileType, Mode, XattrFlags, CWD};

fn setx(p: &Path, name: &str, v: &[u8]) {
    rustix::fs::lsetxattr(p, name, v, XattrFlags::empty()).unwrap();
}

fn scan(upper: &Path, lower: &Path) -> BTreeMap<String, UpperEntry> {
    let lowers = [lower.to_path_buf()];
    let opts = ScanOptions {
        overlay: OverlayXattrs::Trusted,
        lowers: &lowers,
        id_map: None,
    };
    let v = scan_upper(upper, &opts).unwrap();
    let paths: Vec<&String> = v.iter().map(|e| &e.path).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "sorted output");
    v.into_iter().map(|e| (e.path.clone(), e)).collect()
}

#[test]
fn scan_rules() {
    assert!(
        rustix::process::geteuid().is_root(),
        "scan_rules needs root for trusted.* xattrs and mknod: run scripts/test.sh as root, as CI does"
    );
    let t = tempfile::tempdir().unwrap();
    let (u, l) = (t.path().join("upper"), t.path().join("lower"));
    for d in [
        "upper/tmp",
        "upper/proc",
        "upper/run",
        "upper/dev",
        "upper/sys/x",
        "upper/etc",
        "lower/tmp",
        "lower/etc",
    ] {
        std::fs::create_dir_all(t.path().join(d)).unwrap();
    }
    std::fs::write(u.join("run/x"), "").unwrap();
    setx(&u.join("dev"), "trusted.overlay.opaque", b"y");
    std::fs::write(u.join("etc/resolv.conf"), "").unwrap(); // lower has etc, not resolv.conf
    std::fs::write(u.join("etc/hosts"), "127.0.0.1 x\n").unwrap(); // non-empty: real change
    mknodat(
        CWD,
        u.join("gone"),
        FileType::CharacterDevice,
        Mode::empty(),
        makedev(0, 0),
    )
    .unwrap();
    std::fs::hard_link(u.join("gone"), u.join("gone2")).unwrap();
    mknodat(
        CWD,
        u.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    mknodat(
        CWD,
        u.join("blk"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o600),
        makedev(8, 1),
    )
    .unwrap();
    std::fs::write(u.join("a"), "data").unwrap();
    std::fs::hard_link(u.join("a"), u.join("b")).unwrap();
    std::fs::hard_link(u.join("a"), u.join("z")).unwrap();
    setx(&u.join("a"), "user.keep", b"1");
    setx(&u.join("a"), "trusted.overlay.origin", b"junk");
    std::os::unix::fs::symlink("a", u.join("s")).unwrap();

    let m = scan(&u, &l);
    let keys: Vec<&str> = m.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec!["a", "b", "blk", "dev", "etc", "etc/hosts", "fifo", "gone", "gone2", "run", "run/x", "s", "sys", "sys/x", "tmp", "z"],
        "proc (sandbox-made, empty, not in lower) and etc/resolv.conf (empty, not in lower) are dropped; \
         tmp (exists in lower), run (has content), dev (opaque), sys (has content) are kept"
    );
    assert_eq!(m["gone"].kind, UpperKind::Whiteout);
    assert_eq!(
        m["gone2"].kind,
        UpperKind::Whiteout,
        "shared whiteout inodes are not hard links"
    );
    assert_eq!(m["dev"].kind, UpperKind::OpaqueDir);
    assert!(m["dev"].xattrs.is_empty());
    assert_eq!(m["a"].kind, UpperKind::Entry(EntryKind::File));
    assert_eq!(m["a"].size, 4);
    assert_eq!(
        m["b"].kind,
        UpperKind::Entry(EntryKind::Hardlink("a".into()))
    );
    assert_eq!(
        m["z"].kind,
        UpperKind::Entry(EntryKind::Hardlink("a".into()))
    );
    assert_eq!(
        m["a"].xattrs,
        BTreeMap::from([("user.keep".to_string(), b"1".to_vec())])
    );
    assert_eq!(
        m["blk"].kind,
        UpperKind::Entry(EntryKind::BlockDevice(8, 1))
    );
    assert_eq!(m["fifo"].kind, UpperKind::Entry(EntryKind::Fifo));
    assert_eq!(
        m["s"].kind,
        UpperKind::Entry(EntryKind::Symlink("a".into()))
    );
    assert_eq!(m["fifo"].mode, 0o600);
}
