//! A complete bootable-layout disk from the public API: GPT, a FAT32 ESP
//! and an ext4 root from a tar, converted to qcow2. Checks every validator
//! and that two builds are byte-identical (raw and qcow2).
//!
//! Needs Debian packages: gdisk, dosfstools, e2fsprogs (>= 1.47.1),
//! libarchive13, qemu-utils.

use std::path::Path;
use std::process::Command;

use imgbuild_formats::disk::ext4::{make_ext4, Ext4Options};
use imgbuild_formats::disk::fat::{FatImage, FatOptions, FileData};
use imgbuild_formats::disk::gpt::{Gpt, PartitionSpec};
use imgbuild_formats::disk::guid::{guid_from_seed, Guid};
use imgbuild_formats::disk::qcow2::convert_file;

const MIB: u64 = 1024 * 1024;
const EPOCH: u64 = 1_700_000_000;

fn run(tool: &str, package: &str, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("`{tool}` could not run ({e}): install the Debian package `{package}`")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed: {text}");
    text
}

fn root_tar(path: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |p: &str, kind: tar::EntryType, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(EPOCH);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, p, data).unwrap();
    };
    add("etc", tar::EntryType::Directory, 0o755, b"");
    add(
        "etc/os-release",
        tar::EntryType::Regular,
        0o644,
        b"ID=imgbuild\n",
    );
    add("sbin", tar::EntryType::Directory, 0o755, b"");
    add(
        "sbin/init",
        tar::EntryType::Regular,
        0o755,
        &[0x42; 300_000],
    );
    b.finish().unwrap();
}

/// Builds the disk into `dir`; returns (raw path, qcow2 path).
fn build(dir: &Path, tar: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let size = 128 * MIB;
    let mut gpt = Gpt::new(guid_from_seed(b"full-disk"), size).unwrap();
    let esp = gpt
        .add_partition(PartitionSpec {
            name: "esp".into(),
            type_guid: Guid::ESP,
            unique_guid: guid_from_seed(b"full-esp"),
            size_bytes: Some(40 * MIB),
            attributes: 0,
        })
        .unwrap()
        .clone();
    let root = gpt
        .add_partition(PartitionSpec {
            name: "root".into(),
            type_guid: Guid::LINUX_ROOT_X86_64,
            unique_guid: guid_from_seed(b"full-root"),
            size_bytes: None,
            attributes: 0,
        })
        .unwrap()
        .clone();
    let raw = dir.join("disk.raw");
    let f = std::fs::File::create(&raw).unwrap();
    f.set_len(size).unwrap();
    gpt.write(&mut &f).unwrap();

    let mut opts = FatOptions::new(esp.byte_len(), b"full-esp", EPOCH as i64);
    opts.hidden_sectors = esp.first_lba as u32;
    let mut fat = FatImage::new(opts).unwrap();
    fat.add_file(
        "loader/entries/imgbuild.conf",
        FileData::Bytes(b"title imgbuild\nlinux /vmlinuz\n".to_vec()),
    )
    .unwrap();
    fat.add_file("EFI/BOOT/BOOTX64.EFI", FileData::Bytes(vec![0x4D; 123_456]))
        .unwrap();
    fat.write_to(&mut &f, esp.byte_offset()).unwrap();
    drop(f);

    let ext = Ext4Options::new(
        root.byte_len(),
        guid_from_seed(b"full-root-fs"),
        "root",
        EPOCH,
    );
    make_ext4(tar, &raw, root.byte_offset(), &ext).unwrap();
    assert_eq!(std::fs::metadata(&raw).unwrap().len(), size);

    let qcow = dir.join("disk.qcow2");
    convert_file(&raw, &qcow).unwrap();

    let s = |p: &Path| p.to_str().unwrap().to_string();
    let v = run("sgdisk", "gdisk", &["-v", &s(&raw)]);
    assert!(v.contains("No problems found"), "{v}");
    let bytes = std::fs::read(&raw).unwrap();
    let esp_img = dir.join("esp.img");
    let r = esp.byte_offset() as usize..(esp.byte_offset() + esp.byte_len()) as usize;
    std::fs::write(&esp_img, &bytes[r]).unwrap();
    run("fsck.fat", "dosfstools", &["-n", &s(&esp_img)]);
    let spec = format!("{}?offset={}", s(&raw), root.byte_offset());
    run("e2fsck", "e2fsprogs", &["-fn", &spec]);
    let c = run("qemu-img", "qemu-utils", &["check", &s(&qcow)]);
    assert!(c.contains("No errors were found"), "{c}");
    let c = run(
        "qemu-img",
        "qemu-utils",
        &["compare", "-f", "raw", "-F", "qcow2", &s(&raw), &s(&qcow)],
    );
    assert!(c.contains("Images are identical"), "{c}");
    (raw, qcow)
}

#[test]
fn full_disk_is_valid_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("root.tar");
    root_tar(&tar);
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let (raw_a, qcow_a) = build(&a, &tar);
    let (raw_b, qcow_b) = build(&b, &tar);
    assert!(
        std::fs::read(raw_a).unwrap() == std::fs::read(raw_b).unwrap(),
        "raw disks differ"
    );
    assert!(
        std::fs::read(qcow_a).unwrap() == std::fs::read(qcow_b).unwrap(),
        "qcow2 files differ"
    );
}
