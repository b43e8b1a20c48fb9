//! A build whose sandboxed step fills the store's disk (the sandbox's own tests are in
//! `builder/sandbox/tests/`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const BUSYBOX: &str = "/bin/busybox";

/// Never a silent skip: the test must run wherever the suite runs.
fn need_root_and_busybox() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test mounts a tmpfs and runs the sandbox: run scripts/test.sh as root, as CI does"
    );
    assert!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} missing: install the Debian package busybox-static (scripts/install-test-deps.sh does)"
    );
}

/// A minimal busybox rootfs at `root`.
fn make_busybox_rootfs(root: &Path) {
    for d in ["bin", "etc", "root", "tmp", "proc", "dev", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).unwrap();
    let list = Command::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
}

#[test]
fn a_build_that_fills_the_store_disk_fails_clearly_and_leaves_no_scratch() {
    need_root_and_busybox();
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    make_busybox_rootfs(&lower);
    // The store on a 48 MiB tmpfs; the base is a busybox rootfs tar.
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    rustix::mount::mount(
        c"tmpfs",
        &disk,
        c"tmpfs",
        rustix::mount::MountFlags::empty(),
        Some(c"size=48m"),
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let _guard = Unmount(disk.clone());
    let rootfs = dir.path().join("rootfs.tar");
    let st = std::process::Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-cf"])
        .arg(&rootfs)
        .arg("-C")
        .arg(&lower)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let recipe_path = dir.path().join("fill.toml");
    std::fs::write(
        &recipe_path,
        "[image]\nname = \"fill\"\n\n[from]\nrootfs = \"rootfs.tar\"\n\n[[step]]\nrun = \"dd if=/dev/zero of=/big bs=1M count=100\"\n",
    )
    .unwrap();
    let recipe = imgbuild_builder::recipe::load(&recipe_path).unwrap();
    let store = imgbuild_store::Store::open(&disk.join("store")).unwrap();
    let registry =
        imgbuild_registry::Client::new(imgbuild_registry::RegistryOptions::default()).unwrap();
    let options = imgbuild_builder::BuildOptions {
        epoch: 0,
        compression: imgbuild_store::Compression::Gzip,
        progress: &|_| {},
        lock_mode: Default::default(),
        secrets: BTreeMap::new(),
        registry: &registry,
    };
    let err = imgbuild_builder::build(&store, &recipe, &options)
        .expect_err("the step fills the disk")
        .to_string();
    assert!(err.contains("imgbuild: no space left on device"), "{err}");
    // The step's scratch dir (upper, work) is gone with it. Closing the store removes its
    // owner lock (`tmp/owner-*.lock`, held while it is open) but no scratch dir.
    drop(store);
    let tmp: Vec<_> = std::fs::read_dir(disk.join("store/v1/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "left in the store's tmp: {tmp:?}");
}
