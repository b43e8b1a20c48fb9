//! A small bootable image the disk and initramfs tests build without `[from] debian`:
//! busybox-static and the Debian kernel fetched with imgbuild's own Debian client
//! (cached under `target/`), assembled into a rootfs tarball, plus a tiny initrd written
//! with imgbuild's cpio writer that loads the virtio and ext4 modules, mounts the root
//! read-only and switches to it.
//!
//! Booted as a disk or as an initramfs, busybox init runs `/etc/rc`, which prints
//! [`MARKER`], the kernel command line and `/etc/fstab`, then powers off.

use imgbuild_builder::debian::deb::Deb;
use imgbuild_builder::debian::fetch::fetch_debs;
use imgbuild_builder::debian::http::Http;
use imgbuild_builder::debian::release::ReleaseOptions;
use imgbuild_builder::debian::{resolve_from_mirror, DebianFrom, DirCache, DEFAULT_MIRROR};
use imgbuild_formats::disk::source::FileData;
use imgbuild_formats::initramfs::cpio::{CpioArchive, Entry};
use imgbuild_store::tarball::{EntryKind, EntryMeta, TarWriter};
use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What `/etc/rc` prints once the userland runs.
pub(crate) const MARKER: &str = "IMGBUILD-USERLAND-OK";

/// Modules the initrd loads, in dependency order.
const MODULES: [&str; 11] = [
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "lib/crc16.ko",
    "crypto/crc32c_generic.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];

const EPOCH: u64 = 1_700_000_000;

const RC: &str = "#!/bin/sh
/bin/busybox mount -t proc proc /proc
echo
echo IMGBUILD-USERLAND-OK
echo \"cmdline: $(/bin/busybox cat /proc/cmdline)\"
/bin/busybox cat /etc/fstab
/bin/busybox poweroff -f
";

const INITRD_INIT: &str = "#!/bin/sh
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for m in $($B cat /modules.order); do $B insmod /modules/$m; done
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /dev/vd?2 /dev/sd?2; do
    [ -b \"$d\" ] && $B mount -t ext4 -o ro \"$d\" /root && break 2
  done
  $B sleep 1
done
$B mount --move /dev /root/dev
$B umount /sys /proc
exec $B switch_root /root /sbin/init
";

/// The fetched `.deb` contents the fixture needs.
struct Parts {
    busybox: Vec<u8>,
    version: String,
    vmlinuz: Vec<u8>,
    modules: Vec<(String, Vec<u8>)>,
}

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/imgbuild-test-debs")
}

/// Fetches busybox-static and the kernel from bookworm (once per test process).
fn parts() -> &'static Parts {
    static PARTS: OnceLock<Parts> = OnceLock::new();
    PARTS.get_or_init(|| {
        let cache = DirCache::new(cache_dir()).expect("test deb cache");
        let from = DebianFrom {
            suite: "bookworm".into(),
            variant: "custom".into(),
            mirror: DEFAULT_MIRROR.into(),
            components: vec!["main".into()],
            keyring: None,
            architecture: "amd64".into(),
            snapshot: None,
            updates: false,
            security: false,
            apt: false,
            sources: Vec::new(),
        };
        let http = Http::new();
        let wanted = ["busybox-static".to_owned(), "linux-image-amd64".to_owned()];
        let resolved =
            resolve_from_mirror(&http, &from, &wanted, &cache, &ReleaseOptions::default())
                .expect("resolving busybox-static and linux-image-amd64 from deb.debian.org");
        let pkgs: Vec<_> = resolved
            .lock
            .packages
            .into_iter()
            .filter(|p| {
                p.name == "busybox-static"
                    || (p.name.starts_with("linux-image-6") && p.name.ends_with("-amd64"))
            })
            .collect();
        assert_eq!(pkgs.len(), 2, "{pkgs:?}");
        let paths = fetch_debs(&http, DEFAULT_MIRROR, &pkgs, &cache, 2).expect("fetching debs");
        let mut busybox = Vec::new();
        let mut vmlinuz = Vec::new();
        let mut version = String::new();
        let mut modules = BTreeMap::new();
        for path in &paths {
            let deb = Deb::open(path).expect("deb");
            let mut data = deb.data().expect("deb data");
            for entry in data.entries().expect("entries") {
                let mut entry = entry.expect("entry");
                let p = entry.path().expect("path").to_string_lossy().into_owned();
                let p = p.trim_start_matches("./").to_owned();
                if p == "bin/busybox" {
                    entry.read_to_end(&mut busybox).expect("read");
                } else if let Some(v) = p.strip_prefix("boot/vmlinuz-") {
                    version = v.to_owned();
                    entry.read_to_end(&mut vmlinuz).expect("read");
                } else if let Some(m) = MODULES
                    .iter()
                    .find(|m| p.ends_with(&format!("/kernel/{m}")))
                {
                    let mut bytes = Vec::new();
                    entry.read_to_end(&mut bytes).expect("read");
                    modules.insert(*m, bytes);
                }
            }
        }
        assert!(
            !busybox.is_empty() && !vmlinuz.is_empty(),
            "busybox or kernel missing"
        );
        let modules = MODULES
            .iter()
            .map(|m| {
                let name = m.rsplit('/').next().unwrap_or(m).to_owned();
                (
                    name,
                    modules
                        .remove(m)
                        .unwrap_or_else(|| panic!("module {m} missing")),
                )
            })
            .collect();
        Parts {
            busybox,
            version,
            vmlinuz,
            modules,
        }
    })
}

/// The initrd: busybox, the modules and an `/init` that mounts the root partition.
fn initrd(p: &Parts) -> Vec<u8> {
    let mut a = CpioArchive::new();
    for d in ["bin", "dev", "proc", "sys", "root", "modules"] {
        a.add(Entry::new(d, 0o755, EPOCH, EntryKind::Dir));
    }
    let file =
        |path: &str, mode, bytes: Vec<u8>| Entry::file(path, mode, EPOCH, FileData::Bytes(bytes));
    a.add(file("bin/busybox", 0o755, p.busybox.clone()));
    a.add(Entry::new(
        "bin/sh",
        0o777,
        EPOCH,
        EntryKind::Symlink("busybox".into()),
    ));
    a.add(file("init", 0o755, INITRD_INIT.as_bytes().to_vec()));
    let mut order = String::new();
    for (name, bytes) in &p.modules {
        a.add(file(&format!("modules/{name}"), 0o644, bytes.clone()));
        order.push_str(name);
        order.push('\n');
    }
    a.add(file("modules.order", 0o644, order.into_bytes()));
    let mut out = Vec::new();
    a.write_to(&mut out).expect("cpio");
    out
}

/// Writes the fixture's rootfs tarball to `path`; returns the kernel release.
pub(crate) fn rootfs_tar(path: &Path) -> String {
    let p = parts();
    let mut w = TarWriter::new(fs_err::File::create(path).expect("create rootfs tar"));
    let mut add = |path: &str, kind: EntryKind, mode: u32, bytes: &[u8]| {
        let mut m = EntryMeta::new(path, kind, mode, EPOCH);
        m.size = if m.kind == EntryKind::File {
            bytes.len() as u64
        } else {
            0
        };
        w.append(&m, &mut &bytes[..]).expect("tar entry");
    };
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "boot", "root", "tmp",
    ] {
        add(d, EntryKind::Dir, 0o755, b"");
    }
    add("bin/busybox", EntryKind::File, 0o755, &p.busybox);
    add("bin/sh", EntryKind::Symlink("busybox".into()), 0o777, b"");
    add(
        "sbin/init",
        EntryKind::Symlink("../bin/busybox".into()),
        0o777,
        b"",
    );
    // A hard link, to check the disk keeps it as one inode.
    add(
        "bin/ash",
        EntryKind::Hardlink("bin/busybox".into()),
        0o755,
        b"",
    );
    add(
        "etc/inittab",
        EntryKind::File,
        0o644,
        b"::sysinit:/etc/rc\n",
    );
    add("etc/rc", EntryKind::File, 0o755, RC.as_bytes());
    add(
        "etc/fstab",
        EntryKind::File,
        0o644,
        b"# the image's own, replaced on disks\n",
    );
    let v = &p.version;
    add(
        &format!("boot/vmlinuz-{v}"),
        EntryKind::File,
        0o644,
        &p.vmlinuz,
    );
    add(
        &format!("boot/initrd.img-{v}"),
        EntryKind::File,
        0o644,
        &initrd(p),
    );
    w.finish().expect("finish tar");
    let _ = io::sink();
    v.clone()
}

/// Writes a recipe building the fixture (`rootfs.tar` beside it) with extra TOML.
pub(crate) fn recipe(dir: &Path, name: &str, extra: &str) -> PathBuf {
    let tar = dir.join("rootfs.tar");
    if !tar.exists() {
        rootfs_tar(&tar);
    }
    let recipe = dir.join(format!("{name}.toml"));
    fs_err::write(
        &recipe,
        format!("[image]\nname = \"{name}\"\n\n[from]\nrootfs = \"rootfs.tar\"\n\n{extra}"),
    )
    .expect("write recipe");
    recipe
}
