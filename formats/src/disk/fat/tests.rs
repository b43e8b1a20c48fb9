//! FAT32 writer tests, validated with dosfstools' `fsck.fat` and mtools.

use std::io::Cursor;
use std::process::Command;

use super::*;
use crate::disk::align::MIB;
use crate::disk::testutil::{run_cmd, run_ok, s};

const EPOCH: i64 = 1_700_000_000;

/// Pseudo-random but reproducible bytes.
fn blob(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A typical ESP tree: `(path, contents)`.
fn esp_files() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("EFI/BOOT/BOOTX64.EFI".to_string(), blob(1, 150_000)),
        ("EFI/BOOT/grubx64.efi".to_string(), blob(2, 1_500_000)),
        (
            "loader/loader.conf".to_string(),
            b"default debian.conf\ntimeout 3\n".to_vec(),
        ),
        (
            "loader/entries/debian.conf".to_string(),
            b"title Debian\nlinux /vmlinuz-6.1.0-18-amd64\n".to_vec(),
        ),
        ("vmlinuz-6.1.0-18-amd64".to_string(), blob(3, 3_000_001)),
        ("vmlinuz-6.1.0-19-amd64".to_string(), blob(4, 1024)),
        (
            "Mixed Case Name With Spaces.txt".to_string(),
            b"hello".to_vec(),
        ),
        ("empty".to_string(), Vec::new()),
        ("ünïcödé.txt".to_string(), b"utf".to_vec()),
    ];
    // Enough entries (with LFNs) to span several directory clusters.
    for i in 0..40 {
        files.push((
            format!("many/a-long-file-name-number-{i:03}.data"),
            blob(100 + i, 700),
        ));
    }
    files
}

fn build(size: u64, files: &[(String, Vec<u8>)]) -> FatImage {
    let mut opts = FatOptions::new(size, b"esp-seed", EPOCH);
    opts.label = Some("ESP".into());
    let mut fat = FatImage::new(opts).unwrap();
    fat.add_dir("empty-dir").unwrap();
    for (p, data) in files {
        fat.add_file(p, FileData::Bytes(data.clone())).unwrap();
    }
    fat
}

fn fsck(path: &std::path::Path) -> String {
    let out = run_ok("fsck.fat", "dosfstools", &["-n", "-v", s(path)]);
    assert!(!out.contains("differences between boot sector"), "{out}");
    out
}

fn mtools(tool: &str, args: &[&str]) -> Vec<u8> {
    let out = run_cmd(
        Command::new(tool).args(args).env("MTOOLS_SKIP_CHECK", "1"),
        tool,
        "mtools",
    );
    assert!(
        out.status.success(),
        "{tool} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn check_image(img: &str, files: &[(String, Vec<u8>)]) {
    for (p, data) in files {
        let got = mtools("mcopy", &["-n", "-i", img, &format!("::/{p}"), "-"]);
        assert!(
            got == *data,
            "{p}: content differs ({} vs {} bytes)",
            got.len(),
            data.len()
        );
    }
    let listing = String::from_utf8(mtools("mdir", &["-i", img, "::/EFI/BOOT"])).unwrap();
    assert!(listing.contains("BOOTX64  EFI"), "{listing}");
    assert!(listing.contains("grubx64  efi"), "{listing}");
    let root = String::from_utf8(mtools("mdir", &["-i", img, "::/"])).unwrap();
    assert!(root.contains("vmlinuz-6.1.0-18-amd64"), "{root}");
    assert!(root.contains("Volume in drive : is ESP"), "{root}");
    assert!(root.contains("empty-dir"), "{root}");
}

#[test]
fn esp_passes_fsck_and_reads_back_with_mtools() {
    let files = esp_files();
    let f = tempfile::NamedTempFile::new().unwrap();
    let summary = build(40 * MIB, &files)
        .write_to(&mut f.as_file(), 0)
        .unwrap();
    assert_eq!(summary.geometry.sectors_per_cluster, 1);
    assert_eq!(f.as_file().metadata().unwrap().len(), 40 * MIB);
    let out = fsck(f.path());
    assert!(out.contains("512 bytes per cluster"), "{out}");
    check_image(s(f.path()), &files);
}

#[test]
fn large_clusters_pass_fsck() {
    // 600 MiB selects 4 KiB clusters; files still read back.
    let files = esp_files();
    let f = tempfile::NamedTempFile::new().unwrap();
    let summary = build(600 * MIB, &files)
        .write_to(&mut f.as_file(), 0)
        .unwrap();
    assert_eq!(summary.geometry.sectors_per_cluster, 8);
    fsck(f.path());
    check_image(s(f.path()), &files);
}

#[test]
fn minimum_size_volume_passes_fsck() {
    let size = min_volume_size(DEFAULT_RESERVED_SECTORS);
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut fat = FatImage::new(FatOptions::new(size, b"x", 0)).unwrap();
    fat.add_file("EFI/BOOT/BOOTX64.EFI", FileData::Bytes(blob(9, 4000)))
        .unwrap();
    fat.write_to(&mut f.as_file(), 0).unwrap();
    let out = fsck(f.path());
    assert!(out.contains("65525 data clusters"), "{out}");
}

#[test]
fn writes_inside_a_gpt_disk_at_an_offset() {
    use crate::disk::gpt::{Gpt, PartitionSpec};
    use crate::disk::guid::{guid_from_seed, Guid};
    let disk = 64 * MIB;
    let mut gpt = Gpt::new(guid_from_seed(b"disk"), disk).unwrap();
    let esp = gpt
        .add_partition(PartitionSpec {
            name: "ESP".into(),
            type_guid: Guid::ESP,
            unique_guid: guid_from_seed(b"esp"),
            size_bytes: Some(40 * MIB),
            attributes: 0,
        })
        .unwrap()
        .clone();
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(disk).unwrap();
    gpt.write(&mut f.as_file()).unwrap();
    let files = esp_files();
    let mut opts = FatOptions::new(esp.byte_len(), b"esp-seed", EPOCH);
    opts.label = Some("ESP".into());
    opts.hidden_sectors = esp.first_lba as u32;
    let mut fat = FatImage::new(opts).unwrap();
    fat.add_dir("empty-dir").unwrap();
    for (p, d) in &files {
        fat.add_file(p, FileData::Bytes(d.clone())).unwrap();
    }
    fat.write_to(&mut f.as_file(), esp.byte_offset()).unwrap();
    assert_eq!(f.as_file().metadata().unwrap().len(), disk);
    let v = run_ok("sgdisk", "gdisk", &["-v", s(f.path())]);
    assert!(v.contains("No problems found"), "{v}");
    check_image(&format!("{}@@{}", s(f.path()), esp.byte_offset()), &files);
}

#[test]
fn deterministic() {
    let files = esp_files();
    let write = || {
        let mut c = Cursor::new(Vec::new());
        build(40 * MIB, &files).write_to(&mut c, 0).unwrap();
        c.into_inner()
    };
    let a = write();
    assert_eq!(a.len() as u64, 40 * MIB);
    assert!(a == write(), "two writes differ");
}

#[test]
fn reader_and_path_sources() {
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("kernel");
    std::fs::write(&host, blob(5, 10_000)).unwrap();
    let mut fat = FatImage::new(FatOptions::new(34 * MIB, b"s", EPOCH)).unwrap();
    fat.add_file("from-path", FileData::from_path(&host).unwrap())
        .unwrap();
    fat.add_file(
        "from-reader",
        FileData::Reader {
            reader: Box::new(Cursor::new(blob(6, 5000))),
            len: 5000,
        },
    )
    .unwrap();
    let img = dir.path().join("img");
    let mut out = fs_err::File::create(&img).unwrap();
    fat.write_to(&mut out, 0).unwrap();
    drop(out);
    fsck(&img);
    assert_eq!(
        mtools("mcopy", &["-n", "-i", s(&img), "::/from-path", "-"]),
        blob(5, 10_000)
    );
    assert_eq!(
        mtools("mcopy", &["-n", "-i", s(&img), "::/from-reader", "-"]),
        blob(6, 5000)
    );

    let mut short = FatImage::new(FatOptions::new(34 * MIB, b"s", EPOCH)).unwrap();
    short
        .add_file(
            "x",
            FileData::Reader {
                reader: Box::new(Cursor::new(vec![1u8; 10])),
                len: 20,
            },
        )
        .unwrap();
    let err = short.write_to(&mut Cursor::new(Vec::new()), 0).unwrap_err();
    assert!(
        matches!(
            err,
            FatError::ShortRead {
                expected: 20,
                got: 10,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn errors_are_clear() {
    let err = FatImage::new(FatOptions::new(16 * MIB, b"s", 0)).unwrap_err();
    assert!(matches!(err, FatError::VolumeTooSmall { .. }));
    assert!(err.to_string().contains("at least 33 MiB"), "{err}");
    let mut fat = FatImage::new(FatOptions::new(34 * MIB, b"s", 0)).unwrap();
    fat.add_file("README", FileData::Bytes(vec![1])).unwrap();
    assert!(matches!(
        fat.add_file("readme", FileData::Bytes(vec![1])),
        Err(FatError::Conflict { .. })
    ));
    assert!(matches!(
        fat.add_file("README/x", FileData::Bytes(vec![1])),
        Err(FatError::Conflict { .. })
    ));
    assert!(matches!(
        fat.add_file("a/b?c", FileData::Bytes(vec![1])),
        Err(FatError::InvalidName { .. })
    ));
    fat.add_file("big", FileData::Bytes(vec![7; 40 * MIB as usize]))
        .unwrap();
    assert!(matches!(
        fat.write_to(&mut Cursor::new(Vec::new()), 0),
        Err(FatError::NoSpace { .. })
    ));
    let mut opts = FatOptions::new(34 * MIB, b"s", 0);
    opts.label = Some("label too long".into());
    assert!(matches!(
        FatImage::new(opts),
        Err(FatError::InvalidLabel { .. })
    ));
}
