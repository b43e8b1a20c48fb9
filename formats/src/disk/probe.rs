//! What a disk image handed to imgbuild is: qcow2 or raw, and whether it boots under BIOS
//! (sector 0 carries boot code) or only under UEFI.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::qcow2::read::{Qcow2ReadError, Qcow2Reader, MAGIC};

/// How a disk image is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// Byte for byte the guest disk.
    Raw,
    /// qcow2.
    Qcow2,
}

impl DiskFormat {
    /// QEMU's name for the format (`-drive format=...`).
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A disk image that could not be probed.
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub struct ProbeError {
    /// The image.
    pub path: PathBuf,
    /// What went wrong.
    #[source]
    pub source: Qcow2ReadError,
}

fn probe_err(path: &Path) -> impl Fn(Qcow2ReadError) -> ProbeError + '_ {
    move |source| ProbeError {
        path: path.to_owned(),
        source,
    }
}

/// Whether `path` starts with the qcow2 magic (a file shorter than it is not qcow2).
pub fn is_qcow2(path: &Path) -> Result<bool, ProbeError> {
    let err = probe_err(path);
    let mut f = fs_err::File::open(path).map_err(|e| err(e.into()))?;
    let mut magic = [0u8; 4];
    Ok(f.read_exact(&mut magic).is_ok() && magic == MAGIC)
}

/// What `path` is when it is one of the containers imgbuild writes but does not boot
/// (`imgbuild run` boots raw and qcow2): "a VMDK", "a VHDX", "a gzip archive" (a GCE
/// image), "a tar archive" (an OCI or Docker archive, a rootfs tar) or "a zstd-compressed
/// file". `None` for anything else, a fixed VHD included (its guest bytes come first, so
/// it boots as raw).
pub fn unbootable_container(path: &Path) -> Result<Option<&'static str>, ProbeError> {
    let err = probe_err(path);
    let mut f = fs_err::File::open(path).map_err(|e| err(e.into()))?;
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]).map_err(|e| err(e.into()))? {
            0 => break,
            n => got += n,
        }
    }
    Ok(if head[..4] == *b"KDMV" {
        Some("a VMDK")
    } else if head[..8] == *b"vhdxfile" {
        Some("a VHDX")
    } else if head[..2] == [0x1f, 0x8b] {
        Some("a gzip archive")
    } else if got == head.len() && head[257..262] == *b"ustar" {
        Some("a tar archive")
    } else if head[..4] == [0x28, 0xb5, 0x2f, 0xfd] {
        Some("a zstd-compressed file")
    } else {
        None
    })
}

/// Whether the first 440 bytes of the guest disk (the MBR's boot code area) are not all
/// zero: such a disk boots under BIOS; one without is UEFI-only.
pub fn has_mbr_boot_code(path: &Path, format: DiskFormat) -> Result<bool, ProbeError> {
    let err = probe_err(path);
    let f = fs_err::File::open(path).map_err(|e| err(e.into()))?;
    let mut code = [0u8; 440];
    match format {
        DiskFormat::Raw => {
            let mut f = f;
            f.seek(SeekFrom::Start(0))
                .and_then(|_| f.read_exact(&mut code))
                .map_err(|e| err(e.into()))?;
        }
        DiskFormat::Qcow2 => {
            let mut r = Qcow2Reader::open(f).map_err(&err)?;
            r.read_at(0, &mut code).map_err(&err)?;
        }
    }
    Ok(code.iter().any(|b| *b != 0))
}

/// The architecture of a disk imgbuild wrote, from its GPT's root partition type (root
/// x86-64 or root arm64, read from the primary partition entries at LBA 2); `None` when
/// it has neither.
pub fn root_arch(
    path: &Path,
    format: DiskFormat,
) -> Result<Option<crate::bootdisk::DiskArch>, ProbeError> {
    use crate::bootdisk::DiskArch;
    let err = probe_err(path);
    let f = fs_err::File::open(path).map_err(|e| err(e.into()))?;
    // 128 entries of 128 bytes, the layout every GPT writer uses (imgbuild's included).
    let mut entries = vec![0u8; 128 * 128];
    let read = match format {
        DiskFormat::Raw => {
            let mut f = f;
            f.seek(SeekFrom::Start(1024))
                .and_then(|_| f.read_exact(&mut entries))
                .map_err(|e| err(e.into()))
        }
        DiskFormat::Qcow2 => {
            let mut r = Qcow2Reader::open(f).map_err(&err)?;
            r.read_at(1024, &mut entries).map_err(&err)
        }
    };
    if read.is_err() {
        // Too small to hold a GPT.
        return Ok(None);
    }
    Ok(entries.chunks_exact(128).find_map(|e| {
        let ty: [u8; 16] = e[..16].try_into().ok()?;
        [DiskArch::Amd64, DiskArch::Arm64]
            .into_iter()
            .find(|a| a.root_type().to_gpt_bytes() == ty)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::qcow2::{write_qcow2, write_qcow2_compressed};
    use crate::disk::sparse::AllData;
    use std::io::Write;

    const MIB: u64 = 1024 * 1024;

    /// A raw disk of `size` bytes with `boot` at 0 and a few data runs, and its qcow2
    /// written by our converter.
    fn disks(dir: &Path, boot: &[u8], size: u64) -> (PathBuf, PathBuf) {
        let raw = dir.join("disk.raw");
        let mut f = fs_err::File::create(&raw).unwrap();
        f.set_len(size).unwrap();
        let mut put = |at: u64, data: &[u8]| {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(data).unwrap();
        };
        put(0, boot);
        put(MIB - 3, b"across a cluster boundary");
        put(600 * MIB, b"second L2 table");
        drop(f);
        let qcow2 = dir.join("disk.qcow2");
        let mut src = fs_err::File::open(&raw).unwrap();
        let mut out = fs_err::File::create(&qcow2).unwrap();
        write_qcow2(&mut src, size, &mut out).unwrap();
        (raw, qcow2)
    }

    #[test]
    fn reads_back_what_the_writer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let size = 700 * MIB + 512;
        let (raw, qcow2) = disks(dir.path(), &[0xEB; 440], size);
        assert!(is_qcow2(&qcow2).unwrap());
        assert!(!is_qcow2(&raw).unwrap());
        let compressed = dir.path().join("compressed.qcow2");
        let mut src = fs_err::File::open(&raw).unwrap();
        let mut out = fs_err::File::create(&compressed).unwrap();
        write_qcow2_compressed(&mut src, size, &mut AllData, &mut out).unwrap();
        for image in [&qcow2, &compressed] {
            let mut r = Qcow2Reader::open(fs_err::File::open(image).unwrap()).unwrap();
            assert_eq!(r.virtual_size(), size);
            let mut want = fs_err::File::open(&raw).unwrap();
            for (at, len) in [
                (0, 600),
                (MIB - 100, 200),
                (5 * MIB, 4096),
                (600 * MIB - 7, 40),
                (size - 300, 300),
            ] {
                let (mut a, mut b) = (vec![0u8; len], vec![1u8; len]);
                want.seek(SeekFrom::Start(at)).unwrap();
                want.read_exact(&mut a).unwrap();
                r.read_at(at, &mut b).unwrap();
                assert_eq!(a, b, "guest bytes at {at} of {}", image.display());
            }
        }
        assert!(matches!(
            Qcow2Reader::open(fs_err::File::open(&raw).unwrap()),
            Err(Qcow2ReadError::NotQcow2)
        ));
    }

    #[test]
    fn the_other_containers_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let (raw, qcow2) = disks(dir.path(), &[0xEB; 440], 700 * MIB);
        assert_eq!(unbootable_container(&raw).unwrap(), None);
        assert_eq!(unbootable_container(&qcow2).unwrap(), None);
        let vmdk = dir.path().join("d.vmdk");
        crate::disk::vmdk::write_stream_optimized(
            &raw,
            "d.vmdk",
            1,
            fs_err::File::create(&vmdk).unwrap(),
        )
        .unwrap();
        assert_eq!(unbootable_container(&vmdk).unwrap(), Some("a VMDK"));
        let vhdx = dir.path().join("d.vhdx");
        crate::disk::vhdx::convert_file(&raw, &vhdx, "t").unwrap();
        assert_eq!(unbootable_container(&vhdx).unwrap(), Some("a VHDX"));
        let gce = dir.path().join("d.tar.gz");
        crate::disk::gce::write_tar_gz(&raw, 0, fs_err::File::create(&gce).unwrap()).unwrap();
        assert_eq!(unbootable_container(&gce).unwrap(), Some("a gzip archive"));
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(0);
        tar.append_data(&mut header, "etc/hostname", std::io::empty())
            .unwrap();
        let archive = dir.path().join("image.tar");
        fs_err::write(&archive, tar.into_inner().unwrap()).unwrap();
        assert_eq!(
            unbootable_container(&archive).unwrap(),
            Some("a tar archive")
        );
        let zst = dir.path().join("x.zst");
        fs_err::write(&zst, zstd::encode_all(&b"hello"[..], 3).unwrap()).unwrap();
        assert_eq!(
            unbootable_container(&zst).unwrap(),
            Some("a zstd-compressed file")
        );
        let tiny = dir.path().join("tiny");
        fs_err::write(&tiny, b"K").unwrap();
        assert_eq!(unbootable_container(&tiny).unwrap(), None);
    }

    #[test]
    fn boot_code_is_found_in_raw_and_qcow2_disks() {
        for (boot, expected) in [(&[0xEBu8, 0x63, 0x90][..], true), (&[0u8; 440][..], false)] {
            let dir = tempfile::tempdir().unwrap();
            let (raw, qcow2) = disks(dir.path(), boot, 700 * MIB);
            assert_eq!(has_mbr_boot_code(&raw, DiskFormat::Raw).unwrap(), expected);
            assert_eq!(
                has_mbr_boot_code(&qcow2, DiskFormat::Qcow2).unwrap(),
                expected
            );
        }
        // A partition table alone (bytes 446..) is no boot code.
        let dir = tempfile::tempdir().unwrap();
        let mut mbr = vec![0u8; 512];
        mbr[446] = 0x80;
        mbr[510..].copy_from_slice(&[0x55, 0xAA]);
        let (raw, qcow2) = disks(dir.path(), &mbr, 2 * MIB);
        assert!(!has_mbr_boot_code(&raw, DiskFormat::Raw).unwrap());
        assert!(!has_mbr_boot_code(&qcow2, DiskFormat::Qcow2).unwrap());
    }
}
