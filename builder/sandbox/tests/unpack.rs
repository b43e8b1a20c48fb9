//! Layer unpacking: malicious tars must not write outside the root, and
//! well-formed ones keep owners, modes, times, links, devices and xattrs.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use imgbuild_sandbox::{unpack_layer, OverlayXattrs, Owners, UnpackError, UnpackOptions};
use tar::{EntryType, Header};

/// Builds a header with raw (unvalidated) name and link bytes, so tests can
/// produce what an attacker would.
fn raw_header(name: &str, kind: EntryType, link: Option<&str>, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000);
    {
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname = [0; 100];
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_cksum();
    h
}

fn tar_of(entries: &[(Header, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (h, data) in entries {
        b.append(h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: std::path::PathBuf,
    outside: std::path::PathBuf,
}

/// `<tmp>/root` (destination) next to `<tmp>/outside` (must stay untouched).
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("victim"), b"original").unwrap();
    Fixture {
        _tmp: tmp,
        root,
        outside,
    }
}

fn snapshot(dir: &Path) -> Vec<(String, u64, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.path().symlink_metadata().unwrap();
        let data = if md.is_file() {
            std::fs::read(e.path()).unwrap()
        } else {
            Vec::new()
        };
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            md.nlink(),
            data,
        ));
    }
    out.sort();
    out
}

fn opts() -> UnpackOptions {
    UnpackOptions::default()
}

fn assert_unsafe(r: Result<imgbuild_sandbox::UnpackReport, UnpackError>) {
    match r {
        Err(UnpackError::UnsafePath { .. }) => {}
        Err(UnpackError::Write { .. }) => {}
        other => panic!("expected refusal, got {other:?}"),
    }
}

#[test]
fn dotdot_is_refused() {
    let f = fixture();
    let before = snapshot(&f.outside);
    for name in [
        "../outside/victim",
        "../../outside/x",
        "sub/../../outside/victim",
        "../../etc/x",
    ] {
        let t = tar_of(&[(raw_header(name, EntryType::Regular, None, 4), b"evil")]);
        let r = unpack_layer(&t[..], &f.root, &opts());
        assert!(
            matches!(r, Err(UnpackError::UnsafePath { .. })),
            "{name}: {r:?}"
        );
    }
    assert_eq!(snapshot(&f.outside), before);
    assert!(!Path::new("/etc/x").exists());
}

#[test]
fn absolute_path_lands_inside_root() {
    let f = fixture();
    let name = "/etc/imgbuild-unpack-test-abs";
    let t = tar_of(&[(raw_header(name, EntryType::Regular, None, 4), b"data")]);
    unpack_layer(&t[..], &f.root, &opts()).unwrap();
    assert!(!Path::new(name).exists(), "wrote to the host's {name}");
    assert_eq!(
        std::fs::read(f.root.join("etc/imgbuild-unpack-test-abs")).unwrap(),
        b"data"
    );
}

#[test]
fn path_through_symlink_is_refused() {
    let f = fixture();
    let before = snapshot(&f.outside);
    let outside = f.outside.to_str().unwrap().to_owned();
    for target in ["/", "..", outside.as_str()] {
        let t = tar_of(&[
            (raw_header("a", EntryType::Symlink, Some(target), 0), b""),
            (raw_header("a/victim", EntryType::Regular, None, 4), b"evil"),
            (raw_header("a/etc/x", EntryType::Regular, None, 4), b"evil"),
        ]);
        let _ = std::fs::remove_file(f.root.join("a"));
        assert_unsafe(unpack_layer(&t[..], &f.root, &opts()));
    }
    // A pre-existing symlink in the destination is not followed either.
    let _ = std::fs::remove_file(f.root.join("a"));
    std::os::unix::fs::symlink(&f.outside, f.root.join("b")).unwrap();
    let t = tar_of(&[(raw_header("b/victim", EntryType::Regular, None, 4), b"evil")]);
    assert_unsafe(unpack_layer(&t[..], &f.root, &opts()));
    // A symlink entry replacing a file must not write through an old link.
    let t = tar_of(&[(raw_header("b", EntryType::Regular, None, 4), b"safe")]);
    unpack_layer(&t[..], &f.root, &opts()).unwrap();
    assert_eq!(snapshot(&f.outside), before);
    assert!(!Path::new("/etc/x").exists());
}

#[test]
fn hardlink_outside_is_refused() {
    let f = fixture();
    let before = snapshot(&f.outside);
    let passwd_links = std::fs::metadata("/etc/passwd").unwrap().nlink();
    let outside_victim = f.outside.join("victim");
    for target in [
        "/etc/passwd",
        "../outside/victim",
        outside_victim.to_str().unwrap(),
    ] {
        let t = tar_of(&[(raw_header("pw", EntryType::Link, Some(target), 0), b"")]);
        assert_unsafe(unpack_layer(&t[..], &f.root, &opts()));
    }
    // Link through a symlink in the layer.
    let t = tar_of(&[
        (
            raw_header(
                "up",
                EntryType::Symlink,
                Some(f.outside.to_str().unwrap()),
                0,
            ),
            b"",
        ),
        (raw_header("pw", EntryType::Link, Some("up/victim"), 0), b""),
    ]);
    assert_unsafe(unpack_layer(&t[..], &f.root, &opts()));
    assert_eq!(
        std::fs::metadata("/etc/passwd").unwrap().nlink(),
        passwd_links
    );
    assert_eq!(snapshot(&f.outside), before);
    assert!(!f.root.join("pw").exists());
}

fn getx(p: &Path, name: &str) -> Vec<u8> {
    let mut v = vec![0u8; 1024];
    let n = rustix::fs::lgetxattr(p, name, &mut v[..]).unwrap();
    v.truncate(n);
    v
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn metadata_links_devices_xattrs_whiteouts() {
    let f = fixture();
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = raw_header("usr/", EntryType::Directory, None, 0);
    dir.set_mode(0o750);
    dir.set_uid(12);
    dir.set_gid(34);
    dir.set_mtime(1234);
    dir.set_cksum();
    b.append(&dir, &b""[..]).unwrap();
    b.append_pax_extensions([
        ("SCHILY.xattr.user.demo", &b"hello"[..]),
        (
            "SCHILY.xattr.security.capability",
            &[
                1u8, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ][..],
        ),
        ("uid", &b"3000000"[..]),
    ])
    .unwrap();
    let mut file = raw_header("usr/bin/ping", EntryType::Regular, None, 5);
    file.set_mode(0o4755);
    file.set_gid(7);
    file.set_mtime(5555);
    file.set_cksum();
    b.append(&file, &b"ping!"[..]).unwrap();
    b.append(
        &raw_header("usr/bin/ping2", EntryType::Link, Some("usr/bin/ping"), 0),
        &b""[..],
    )
    .unwrap();
    b.append(
        &raw_header("usr/sh", EntryType::Symlink, Some("/bin/busybox"), 0),
        &b""[..],
    )
    .unwrap();
    let mut dev = raw_header("dev/null", EntryType::Char, None, 0);
    dev.set_device_major(1).unwrap();
    dev.set_device_minor(3).unwrap();
    dev.set_mode(0o666);
    dev.set_cksum();
    b.append(&dev, &b""[..]).unwrap();
    b.append(&raw_header("run/fifo", EntryType::Fifo, None, 0), &b""[..])
        .unwrap();
    b.append(
        &raw_header("etc/.wh.gone", EntryType::Regular, None, 0),
        &b""[..],
    )
    .unwrap();
    b.append(
        &raw_header("var/cache/.wh..wh..opq", EntryType::Regular, None, 0),
        &b""[..],
    )
    .unwrap();
    let t = b.into_inner().unwrap();

    let report = unpack_layer(
        &t[..],
        &f.root,
        &UnpackOptions {
            overlay: OverlayXattrs::Trusted,
            owners: if is_root() {
                Owners::Apply
            } else {
                Owners::Ignore
            },
        },
    )
    .unwrap();
    let r = &f.root;

    let usr = std::fs::symlink_metadata(r.join("usr")).unwrap();
    assert_eq!(usr.permissions().mode() & 0o7777, 0o750);
    assert_eq!(usr.mtime(), 1234, "directory mtime restored after children");
    let ping = std::fs::symlink_metadata(r.join("usr/bin/ping")).unwrap();
    assert_eq!(ping.permissions().mode() & 0o7777, 0o4755, "setuid kept");
    assert_eq!(ping.mtime(), 5555);
    assert_eq!(ping.nlink(), 2);
    assert_eq!(
        std::fs::symlink_metadata(r.join("usr/bin/ping2"))
            .unwrap()
            .ino(),
        ping.ino()
    );
    assert_eq!(
        std::fs::read_link(r.join("usr/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert!(std::fs::symlink_metadata(r.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let wh = std::fs::symlink_metadata(r.join("etc/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0:0 char device"
    );
    let user = getx(&r.join("usr/bin/ping"), "user.demo");
    assert_eq!(user, b"hello");
    if is_root() {
        assert_eq!((usr.uid(), usr.gid()), (12, 34));
        assert_eq!(
            (ping.uid(), ping.gid()),
            (3_000_000, 7),
            "PAX uid overrides header"
        );
        let dev = std::fs::symlink_metadata(r.join("dev/null")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), rustix::fs::makedev(1, 3));
        let cap = getx(&r.join("usr/bin/ping"), "security.capability");
        assert_eq!(cap.len(), 20, "file capability kept");
        let opq = getx(&r.join("var/cache"), "trusted.overlay.opaque");
        assert_eq!(opq, b"y");
        assert!(report.notes.is_empty(), "{:?}", report.notes);
    }
}

/// A GNU tar archive of one 2 MiB file with data at 1 MiB and holes elsewhere, made with
/// `tar --sparse --format=FORMAT`; returns (archive, file content).
fn sparse_archive(format: &str) -> (Vec<u8>, Vec<u8>) {
    use std::io::{Seek, SeekFrom, Write};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tree");
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = std::fs::File::create(dir.join("disk.img")).unwrap();
    f.set_len(2 << 20).unwrap();
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.write_all(b"data in the middle").unwrap();
    drop(f);
    let status = std::process::Command::new("tar")
        .arg("--sparse")
        .arg(format!("--format={format}"))
        .arg("-cf")
        .arg(tmp.path().join("a.tar"))
        .arg("-C")
        .arg(&dir)
        .arg("disk.img")
        .status()
        .expect("GNU tar (Debian package `tar`) is needed");
    assert!(status.success());
    (
        std::fs::read(tmp.path().join("a.tar")).unwrap(),
        std::fs::read(dir.join("disk.img")).unwrap(),
    )
}

#[test]
fn gnu_sparse_files_unpack_with_their_holes_and_pax_sparse_ones_are_refused() {
    let f = fixture();
    let (gnu, content) = sparse_archive("gnu");
    unpack_layer(&gnu[..], &f.root, &opts()).unwrap();
    assert_eq!(std::fs::read(f.root.join("disk.img")).unwrap(), content);

    let g = fixture();
    let (pax, _) = sparse_archive("pax");
    let r = unpack_layer(&pax[..], &g.root, &opts());
    match r {
        Err(e @ UnpackError::Refused { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("disk.img") && msg.contains("PAX sparse"),
                "{msg}"
            );
        }
        other => panic!("a PAX sparse file must be refused: {other:?}"),
    }
}
