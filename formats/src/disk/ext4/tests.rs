//! ext4 tests, validated with `e2fsck -fn` and `debugfs`.

use std::path::Path;

use super::*;
use crate::disk::guid::guid_from_seed;
use crate::disk::testutil::{run_ok, s};

const EPOCH: u64 = 1_700_000_000;
const CAP: &[u8] = &[
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn header(kind: tar::EntryType, mode: u32, uid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_mtime(EPOCH - 1000);
    h.set_size(size);
    h
}

/// A root filesystem tar with the interesting cases.
fn rootfs_tar(path: &Path, extra_files: usize) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let dir = |b: &mut tar::Builder<std::fs::File>, p: &str| {
        let mut h = header(tar::EntryType::Directory, 0o755, 0, 0);
        b.append_data(&mut h, p, std::io::empty()).unwrap();
    };
    for d in ["usr", "usr/bin", "etc", "dev", "data"] {
        dir(&mut b, d);
    }
    let su = vec![0x5Au8; 70_000];
    let mut h = header(tar::EntryType::Regular, 0o4755, 1000, su.len() as u64);
    b.append_data(&mut h, "usr/bin/su", &su[..]).unwrap();
    let mut h = header(tar::EntryType::Link, 0o4755, 1000, 0);
    b.append_link(&mut h, "usr/bin/su-hardlink", "usr/bin/su")
        .unwrap();
    b.append_pax_extensions([("SCHILY.xattr.security.capability", CAP)])
        .unwrap();
    let mut h = header(tar::EntryType::Regular, 0o755, 0, 5);
    b.append_data(&mut h, "usr/bin/ping", &b"ping!"[..])
        .unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
    b.append_link(&mut h, "usr/bin/sh", "dash").unwrap();
    let long = "a/very/long/symlink/target/that/does/not/fit/in/the/inode/itself/at/all";
    let mut h = header(tar::EntryType::Symlink, 0o777, 0, 0);
    b.append_link(&mut h, "etc/long-link", long).unwrap();
    let mut h = header(tar::EntryType::Char, 0o666, 0, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev/null", std::io::empty()).unwrap();
    for i in 0..extra_files {
        let data = vec![(i % 251) as u8; (i * 37) % 9000];
        let mut h = header(tar::EntryType::Regular, 0o644, 0, data.len() as u64);
        b.append_data(&mut h, format!("data/file-{i:05}"), &data[..])
            .unwrap();
    }
    b.finish().unwrap();
}

fn debugfs(image: &str, cmd: &str) -> String {
    run_ok("debugfs", "e2fsprogs", &["-R", cmd, image])
}

fn opts(size: u64) -> Ext4Options {
    Ext4Options::new(size, guid_from_seed(b"root-fs"), "root", EPOCH)
}

#[test]
fn tar_metadata_survives_and_fsck_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("root.tar");
    rootfs_tar(&tar, 10);
    let img = dir.path().join("root.ext4");
    make_ext4(&tar, &img, 0, &opts(64 * 1024 * 1024)).unwrap();
    let img = s(&img);
    let fsck = run_ok("e2fsck", "e2fsprogs", &["-fn", img]);
    assert!(fsck.contains("Pass 5"), "{fsck}");

    let su = debugfs(img, "stat /usr/bin/su");
    assert!(su.contains("Mode:  04755"), "{su}");
    assert!(su.contains("User:  1000   Group:  1000"), "{su}");
    assert!(su.contains("Links: 2"), "{su}");
    assert!(su.contains("Size: 70000"), "{su}");
    let inode = |text: &str| text.split_whitespace().nth(1).map(str::to_string);
    let link = debugfs(img, "stat /usr/bin/su-hardlink");
    assert_eq!(inode(&link), inode(&su), "hard link shares the inode");

    let ping = debugfs(img, "ea_list /usr/bin/ping");
    assert!(
        ping.contains("security.capability (20) = 01 00 00 02 00 20"),
        "{ping}"
    );
    let cat = crate::disk::testutil::run("debugfs", "e2fsprogs", &["-R", "cat /usr/bin/ping", img]);
    assert_eq!(cat.stdout, b"ping!");

    let sh = debugfs(img, "stat /usr/bin/sh");
    assert!(
        sh.contains("Type: symlink") && sh.contains("Fast link dest: \"dash\""),
        "{sh}"
    );
    let long = debugfs(img, "stat /etc/long-link");
    assert!(long.contains("Type: symlink"), "{long}");
    let null = debugfs(img, "stat /dev/null");
    assert!(
        null.contains("Type: character special")
            && null.contains("Device major/minor number: 01:03"),
        "{null}"
    );

    let stats = debugfs(img, "stats");
    assert!(
        stats.contains(&format!(
            "Filesystem UUID:          {}",
            guid_from_seed(b"root-fs").to_string().to_lowercase()
        )),
        "{stats}"
    );
    assert!(stats.contains("Filesystem volume name:   root"), "{stats}");
    assert!(!stats.contains("orphan_file"), "{stats}");
}

#[test]
fn deterministic_standalone_and_at_offset() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("root.tar");
    rootfs_tar(&tar, 50);
    let size = 40 * 1024 * 1024;
    let a = dir.path().join("a.ext4");
    let b = dir.path().join("b.ext4");
    make_ext4(&tar, &a, 0, &opts(size)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    make_ext4(&tar, &b, 0, &opts(size)).unwrap();
    assert!(
        std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
        "two builds differ"
    );

    // Into a region of a disk image: one fresh, one full of garbage.
    let offset = 1024 * 1024;
    let disk_len = offset + size + 1024 * 1024;
    let fresh = dir.path().join("fresh.img");
    std::fs::File::create(&fresh)
        .unwrap()
        .set_len(disk_len)
        .unwrap();
    let dirty = dir.path().join("dirty.img");
    std::fs::write(&dirty, vec![0xFFu8; disk_len as usize]).unwrap();
    for disk in [&fresh, &dirty] {
        make_ext4(&tar, disk, offset, &opts(size)).unwrap();
        assert_eq!(std::fs::metadata(disk).unwrap().len(), disk_len);
        let spec = format!("{}?offset={offset}", s(disk));
        run_ok("e2fsck", "e2fsprogs", &["-fn", &spec]);
    }
    let region =
        |p: &Path| std::fs::read(p).unwrap()[offset as usize..(offset + size) as usize].to_vec();
    assert!(
        region(&fresh) == region(&dirty),
        "region depends on previous contents"
    );
    let dirty_bytes = std::fs::read(&dirty).unwrap();
    assert!(
        dirty_bytes[..offset as usize].iter().all(|&b| b == 0xFF),
        "wrote before the region"
    );
    assert!(
        dirty_bytes[(offset + size) as usize..]
            .iter()
            .all(|&b| b == 0xFF),
        "wrote after the region"
    );
}

#[test]
fn estimate_fits_and_too_small_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("root.tar");
    let files = 3000;
    rootfs_tar(&tar, files);
    let total: u64 = (0..files).map(|i| ((i * 37) % 9000) as u64).sum::<u64>() + 70_000 + 5;
    let est = estimate_size(total, files as u64 + 12);
    let img = dir.path().join("sized.ext4");
    let mut o = opts(est.size_bytes);
    o.inodes = Some(est.inodes);
    make_ext4(&tar, &img, 0, &o).unwrap();
    run_ok("e2fsck", "e2fsprogs", &["-fn", s(&img)]);

    let tiny = dir.path().join("tiny.ext4");
    let err = make_ext4(&tar, &tiny, 0, &opts(9 * 1024 * 1024)).unwrap_err();
    assert!(matches!(err, Ext4Error::Failed { .. }), "{err}");
    assert!(err.to_string().contains("estimate_size"), "{err}");

    let err = make_ext4(&tar, &tiny, 0, &opts(1024 * 1024)).unwrap_err();
    assert!(matches!(err, Ext4Error::BadSize { .. }), "{err}");
    let err = make_ext4(&dir.path().join("missing.tar"), &tiny, 0, &opts(16 << 20)).unwrap_err();
    assert!(matches!(err, Ext4Error::TarMissing { .. }), "{err}");
}

/// Writes `tar` into a streaming mke2fs; the write error, if mke2fs stopped reading.
fn stream(tar: &Path, target: &Path, offset: u64, o: &Ext4Options) -> Result<(), Ext4Error> {
    let mut run = spawn_ext4(target, offset, o)?;
    let copied = std::io::copy(&mut std::fs::File::open(tar).unwrap(), run.input());
    let finished = run.finish();
    if finished.is_ok() {
        copied.unwrap();
    }
    finished
}

#[test]
fn streamed_through_a_pipe_gives_the_same_bytes_as_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let tar = dir.path().join("root.tar");
    rootfs_tar(&tar, 500);
    let size = 40 * 1024 * 1024;
    let from_file = dir.path().join("file.ext4");
    make_ext4(&tar, &from_file, 0, &opts(size)).unwrap();
    let offset = 1024 * 1024;
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0xFFu8; (offset + size + offset) as usize]).unwrap();
    stream(&tar, &disk, offset, &opts(size)).unwrap();
    let spec = format!("{}?offset={offset}", s(&disk));
    run_ok("e2fsck", "e2fsprogs", &["-fn", &spec]);
    let disk_bytes = std::fs::read(&disk).unwrap();
    assert!(
        disk_bytes[offset as usize..(offset + size) as usize] == std::fs::read(&from_file).unwrap(),
        "the streamed filesystem differs from the one read from a file"
    );
    assert!(disk_bytes[..offset as usize].iter().all(|&b| b == 0xFF));
    assert!(disk_bytes[(offset + size) as usize..]
        .iter()
        .all(|&b| b == 0xFF));

    // Too small: mke2fs stops reading, and its own error is what the caller gets.
    let big = dir.path().join("big.tar");
    rootfs_tar(&big, 3000);
    let tiny = dir.path().join("tiny.ext4");
    let err = stream(&big, &tiny, 0, &opts(9 * 1024 * 1024)).unwrap_err();
    assert!(matches!(err, Ext4Error::Failed { .. }), "{err}");
    assert!(err.to_string().contains("estimate_size"), "{err}");
}
