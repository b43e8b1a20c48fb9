//! qcow2 writer tests, validated with `qemu-img check` and `qemu-img compare`.

use std::io::{Cursor, Seek, SeekFrom, Write};
use std::path::Path;

use super::*;
use crate::disk::testutil::{run_ok, s};

const MIB: u64 = 1024 * 1024;

/// A sparse raw image with data in a few places, including a second L2
/// range (> 512 MiB), an explicitly written zero cluster and a partial
/// last cluster.
fn sparse_raw(path: &Path, size: u64) {
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
    let mut put = |at: u64, data: &[u8]| {
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(data).unwrap();
    };
    put(0, &[0xAB; 512]);
    put(MIB + 100, b"unaligned data crossing nothing");
    put(3 * MIB - 10, &[7u8; 20]); // crosses a cluster boundary
    put(5 * MIB, &vec![0u8; 65536]); // real zeros: must stay unallocated
    put(600 * MIB, &[1u8; 200_000]);
    put(size - 5, b"tail!");
}

fn check_and_compare(raw: &Path, qcow: &Path) {
    let out = run_ok("qemu-img", "qemu-utils", &["check", s(qcow)]);
    assert!(out.contains("No errors were found"), "{out}");
    assert!(!out.contains("leaked"), "{out}");
    let out = run_ok(
        "qemu-img",
        "qemu-utils",
        &["compare", "-f", "raw", "-F", "qcow2", s(raw), s(qcow)],
    );
    assert!(out.contains("Images are identical"), "{out}");
}

#[test]
fn sparse_file_converts_and_matches_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let qcow = dir.path().join("disk.qcow2");
    let size = 700 * MIB + 4096;
    sparse_raw(&raw, size);
    let sum = convert_file(&raw, &qcow).unwrap();
    assert_eq!(sum.virtual_size, size);
    // clusters: 0, 1 MiB, 3 MiB-10 spans two, 600 MiB spans 4, the tail.
    assert_eq!(sum.data_clusters, 1 + 1 + 2 + 4 + 1);
    assert_eq!(std::fs::metadata(&qcow).unwrap().len(), sum.file_size);
    check_and_compare(&raw, &qcow);
    let info = run_ok("qemu-img", "qemu-utils", &["info", s(&qcow)]);
    assert!(
        info.contains("compat: 1.1") && info.contains(&format!("({size} bytes)")),
        "{info}"
    );

    let theirs = dir.path().join("qemu.qcow2");
    run_ok(
        "qemu-img",
        "qemu-utils",
        &["convert", "-f", "raw", "-O", "qcow2", s(&raw), s(&theirs)],
    );
    let theirs_len = std::fs::metadata(&theirs).unwrap().len();
    assert!(
        sum.file_size <= theirs_len,
        "ours {} > qemu-img {theirs_len}",
        sum.file_size
    );
}

#[test]
fn in_memory_reader_converts() {
    let dir = tempfile::tempdir().unwrap();
    let mut raw = vec![0u8; (4 * MIB) as usize];
    for (i, b) in raw.iter_mut().enumerate().skip(70_000).take(300_000) {
        *b = (i % 253) as u8;
    }
    let raw_path = dir.path().join("r.raw");
    std::fs::write(&raw_path, &raw).unwrap();
    let mut out = Cursor::new(Vec::new());
    let sum = write_qcow2(&mut Cursor::new(&raw), raw.len() as u64, &mut out).unwrap();
    assert_eq!(sum.file_size, out.get_ref().len() as u64);
    let qcow = dir.path().join("r.qcow2");
    std::fs::write(&qcow, out.get_ref()).unwrap();
    check_and_compare(&raw_path, &qcow);
}

#[test]
fn all_zero_and_odd_sized_images() {
    let dir = tempfile::tempdir().unwrap();
    for size in [512u64, 65536, 3 * MIB + 512] {
        let raw = dir.path().join("z.raw");
        std::fs::File::create(&raw).unwrap().set_len(size).unwrap();
        let qcow = dir.path().join("z.qcow2");
        let sum = convert_file(&raw, &qcow).unwrap();
        assert_eq!(sum.data_clusters, 0);
        check_and_compare(&raw, &qcow);
    }
}

#[test]
fn deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("d.raw");
    sparse_raw(&raw, 700 * MIB + 4096);
    let a = dir.path().join("a.qcow2");
    let b = dir.path().join("b.qcow2");
    convert_file(&raw, &a).unwrap();
    convert_file(&raw, &b).unwrap();
    assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap());
    // The plain (non-sparse-aware) path produces the same bytes.
    let mut out = Cursor::new(Vec::new());
    let mut f = std::fs::File::open(&raw).unwrap();
    let mut src = std::io::BufReader::new(&mut f);
    write_qcow2(&mut src, 700 * MIB + 4096, &mut out).unwrap();
    assert!(out.into_inner() == std::fs::read(&a).unwrap());
}

#[test]
fn short_source_is_an_error() {
    let mut out = Cursor::new(Vec::new());
    let err = write_qcow2(&mut Cursor::new(vec![1u8; 1000]), 4096, &mut out).unwrap_err();
    assert!(
        matches!(
            err,
            Qcow2Error::ShortSource {
                expected: 4096,
                got: 1000
            }
        ),
        "{err}"
    );
}

#[test]
fn compressed_clusters_read_back_and_are_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("c.raw");
    let size = 700 * MIB + 4096;
    sparse_raw(&raw, size);
    {
        // 8 MiB of compressible text and 1 MiB that does not compress.
        let mut f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
        f.seek(SeekFrom::Start(10 * MIB + 3)).unwrap();
        let text: Vec<u8> = b"imgbuild writes disks. "
            .iter()
            .copied()
            .cycle()
            .take(8 << 20)
            .collect();
        f.write_all(&text).unwrap();
        let mut x = 0x1234_5678u32;
        let noise: Vec<u8> = (0..MIB)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        f.write_all(&noise).unwrap();
    }
    let plain = dir.path().join("plain.qcow2");
    let packed = dir.path().join("packed.qcow2");
    let p = convert_file(&raw, &plain).unwrap();
    let c = convert_file_compressed(&raw, &packed).unwrap();
    assert_eq!(p.data_clusters, c.data_clusters);
    assert_eq!(std::fs::metadata(&packed).unwrap().len(), c.file_size);
    assert!(
        c.file_size * 2 <= p.file_size,
        "compressed {} vs plain {}",
        c.file_size,
        p.file_size
    );
    check_and_compare(&raw, &packed);
    let info = run_ok(
        "qemu-img",
        "qemu-utils",
        &["check", "--output=json", s(&packed)],
    );
    assert!(info.contains("\"compressed-clusters\": "), "{info}");
    assert!(!info.contains("\"compressed-clusters\": 0,"), "{info}");
    // qemu-img's own compressed conversion is no smaller.
    let theirs = dir.path().join("qemu-c.qcow2");
    run_ok(
        "qemu-img",
        "qemu-utils",
        &[
            "convert",
            "-c",
            "-f",
            "raw",
            "-O",
            "qcow2",
            s(&raw),
            s(&theirs),
        ],
    );
    let theirs_len = std::fs::metadata(&theirs).unwrap().len();
    assert!(
        c.file_size <= theirs_len,
        "ours {} > qemu-img -c {theirs_len}",
        c.file_size
    );
    let again = dir.path().join("again.qcow2");
    convert_file_compressed(&raw, &again).unwrap();
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&packed).unwrap());
}
