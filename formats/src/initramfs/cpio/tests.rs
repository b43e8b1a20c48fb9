//! cpio writer tests, validated with GNU cpio (`cpio -itv`, `cpio -id`).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use super::*;
use crate::disk::testutil::{run_cmd, s};

const MTIME: u64 = 1_700_000_000;

fn dir(p: &str) -> Entry {
    Entry::new(p, 0o755, MTIME, EntryKind::Dir)
}

fn file(p: &str, mode: u32, data: &[u8]) -> Entry {
    Entry::file(p, mode, MTIME, FileData::Bytes(data.to_vec()))
}

/// A small initramfs tree; `devices` adds device nodes (listing only).
fn archive(devices: bool) -> Vec<u8> {
    let mut a = CpioArchive::new();
    for e in entries(devices) {
        a.add(e);
    }
    let mut out = Vec::new();
    let sum = a.write_to(&mut out).unwrap();
    assert_eq!(sum.bytes, out.len() as u64);
    assert_eq!(out.len() % 4, 0);
    out
}

/// The entries of [`archive`].
fn entries(devices: bool) -> Vec<Entry> {
    let mut su = file("usr/bin/su", 0o100_4755, &[0x55; 1001]);
    su.uid = 1000;
    su.gid = 1000;
    let mut a = vec![
        dir("."),
        dir("bin"),
        file("bin/busybox", 0o755, b"\x7fELF fake busybox"),
        Entry::new("bin/sh", 0o777, MTIME, EntryKind::Symlink("busybox".into())),
        dir("/etc"),
        file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n"),
        dir("usr"),
        dir("usr/bin"),
        su,
    ];
    a.push(Entry::new(
        "usr/bin/su-again",
        0,
        MTIME,
        EntryKind::Hardlink("usr/bin/su".into()),
    ));
    a.push(file("empty", 0o600, b""));
    a.push(Entry::file(
        "init",
        0o755,
        MTIME,
        FileData::Reader {
            reader: Box::new(std::io::Cursor::new(b"#!/bin/sh\nexec sh\n".to_vec())),
            len: 18,
        },
    ));
    a.push(dir("run"));
    a.push(Entry::new("run/fifo", 0o644, MTIME, EntryKind::Fifo));
    if devices {
        a.push(dir("dev"));
        a.push(Entry::new(
            "dev/console",
            0o600,
            MTIME,
            EntryKind::CharDevice(5, 1),
        ));
        a.push(Entry::new(
            "dev/sda",
            0o660,
            MTIME,
            EntryKind::BlockDevice(8, 0),
        ));
    }
    a
}

fn cpio(args: &[&str], cwd: &std::path::Path) -> String {
    let out = run_cmd(
        Command::new("cpio").args(args).current_dir(cwd),
        "cpio",
        "cpio",
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cpio {args:?} failed:\n{text}");
    text
}

#[test]
fn gnu_cpio_lists_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("initrd.cpio");
    std::fs::write(&path, archive(true)).unwrap();
    let list = cpio(&["-itvn", "-F", s(&path)], tmp.path());
    let line = |name: &str| {
        list.lines()
            .find(|l| l.ends_with(name) || l.contains(&format!("{name} ->")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{list}"))
            .to_string()
    };
    assert!(line("dev/console").starts_with("crw-------"), "{list}");
    assert!(line("dev/console").contains("5,   1"), "{list}");
    assert!(line("dev/sda").starts_with("brw-rw----"), "{list}");
    assert!(line("bin/sh").starts_with("lrwxrwxrwx"), "{list}");
    assert!(line("bin/sh").ends_with("bin/sh -> busybox"), "{list}");
    let su = line("usr/bin/su");
    assert!(su.starts_with("-rwsr-xr-x   2 1000     1000"), "{su}");
    assert!(line("run/fifo").starts_with("prw-r--r--"), "{list}");
    assert!(
        line("etc/passwd").starts_with("-rw-r--r--   1 0        0"),
        "{list}"
    );
    assert!(list.contains("blocks"), "{list}");
}

#[test]
fn gnu_cpio_extracts_contents_modes_links() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("initrd.cpio");
    std::fs::write(&path, archive(false)).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    cpio(&["-idm", "--no-absolute-filenames", "-F", s(&path)], &root);
    let meta = |p: &str| std::fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(
        std::fs::read(root.join("bin/busybox")).unwrap(),
        b"\x7fELF fake busybox"
    );
    assert_eq!(
        std::fs::read(root.join("init")).unwrap(),
        b"#!/bin/sh\nexec sh\n"
    );
    assert_eq!(
        std::fs::read(root.join("usr/bin/su")).unwrap(),
        vec![0x55; 1001]
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap().to_str(),
        Some("busybox")
    );
    assert_eq!(meta("etc/passwd").permissions().mode() & 0o7777, 0o644);
    assert_eq!(meta("init").permissions().mode() & 0o7777, 0o755);
    assert_eq!(meta("empty").len(), 0);
    let su = meta("usr/bin/su");
    // Running as root, cpio restores owners (and then the setuid bit).
    if std::fs::metadata("/proc/self").unwrap().uid() == 0 {
        assert_eq!((su.uid(), su.gid()), (1000, 1000));
        assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    }
    assert_eq!(su.mtime() as u64, MTIME);
    let again = meta("usr/bin/su-again");
    assert_eq!(again.ino(), su.ino(), "hard link restored as a link");
    assert_eq!(su.nlink(), 2);
    assert!(meta("run/fifo").file_type().is_fifo_like());
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for std::fs::FileType {
    fn is_fifo_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_fifo()
    }
}

#[test]
fn hard_link_data_goes_with_the_last_link() {
    let bytes = archive(false);
    let text = String::from_utf8_lossy(&bytes);
    let first = text.find("usr/bin/su\0").unwrap();
    let second = text.find("usr/bin/su-again\0").unwrap();
    // filesize is header field 7 (offset 6 + 6*8); namesize field 12.
    let size_at = |name_pos: usize| &text[name_pos - 110 + 54..name_pos - 110 + 62];
    assert_eq!(size_at(first), "00000000");
    assert_eq!(size_at(second), format!("{:08X}", 1001));
    let ino_at = |name_pos: usize| &text[name_pos - 110 + 6..name_pos - 110 + 14];
    assert_eq!(ino_at(first), ino_at(second));
    assert!(text.contains("TRAILER!!!"));
}

#[test]
fn deterministic() {
    assert!(archive(true) == archive(true));
}

#[test]
fn rejects_bad_entries() {
    let mut a = CpioArchive::new();
    a.add(Entry::new("x", 0, 0, EntryKind::Hardlink("missing".into())));
    assert!(matches!(
        a.write_to(&mut Vec::new()),
        Err(CpioError::BadLinkTarget { .. })
    ));
    let mut a = CpioArchive::new();
    a.add(dir("a/../../etc"));
    assert!(matches!(
        a.write_to(&mut Vec::new()),
        Err(CpioError::InvalidPath { .. })
    ));
    let mut a = CpioArchive::new();
    a.add(Entry::new("d", 0o100_644, 0, EntryKind::Dir));
    assert!(matches!(
        a.write_to(&mut Vec::new()),
        Err(CpioError::ModeMismatch { .. })
    ));
    let mut a = CpioArchive::new();
    a.add(Entry::file(
        "f",
        0o644,
        0,
        FileData::Reader {
            reader: Box::new(std::io::empty()),
            len: 3,
        },
    ));
    assert!(matches!(
        a.write_to(&mut Vec::new()),
        Err(CpioError::ShortRead { .. })
    ));
}

#[test]
fn streamed_archive_matches_the_assembled_one() {
    let extra = || {
        Entry::new(
            "bin/su-3",
            0,
            MTIME,
            EntryKind::Hardlink("usr/bin/su".into()),
        )
    };
    let mut a = CpioArchive::new();
    for e in entries(true) {
        a.add(e);
    }
    a.add(extra());
    let mut whole = Vec::new();
    let sum = a.write_to(&mut whole).unwrap();

    let links = HashMap::from([("/usr/bin/su".to_owned(), 3)]);
    let mut stream = CpioStream::new(Vec::new(), links.clone()).unwrap();
    for e in entries(true) {
        stream.add(e).unwrap();
    }
    stream.add(extra()).unwrap();
    let (streamed, streamed_sum) = stream.finish().unwrap();
    assert_eq!(streamed_sum, sum);
    assert!(streamed == whole, "the streamed archive differs");

    // A link that never comes is an error, not an archive without the file's bytes.
    let mut stream = CpioStream::new(Vec::new(), links).unwrap();
    for e in entries(false) {
        stream.add(e).unwrap();
    }
    let err = stream.finish().unwrap_err();
    assert!(
        matches!(err, CpioError::MissingLinks { missing: 1, .. }),
        "{err}"
    );
    // A link to a file not announced as linked.
    let mut stream = CpioStream::new(Vec::new(), HashMap::new()).unwrap();
    stream.add(file("a", 0o644, b"x")).unwrap();
    let err = stream
        .add(Entry::new("b", 0, MTIME, EntryKind::Hardlink("a".into())))
        .unwrap_err();
    assert!(matches!(err, CpioError::BadLinkTarget { .. }), "{err}");
}
