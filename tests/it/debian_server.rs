//! Reproducible Debian installs by default: the shipped debian-server recipe (a kernel,
//! systemd, OpenSSH, D-Bus, a user with a password) gives the same manifest digest, rootfs
//! tar, qcow2, SBOM and provenance bytes from two stores and two checkout paths, with what
//! Debian makes random normalised away, and boots to a running sshd with host keys made on first boot,
//! reached through `imgbuild run -p`.

use crate::common::*;
use crate::running_vm::{banner, free_port, RunningVm};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Not 0, so that the shadow days are real days.
const EPOCH: u64 = 1_700_000_000;

/// One build per store (tar and qcow2 together), compared byte for byte, then one boot:
/// sshd must come up with the host keys made on that first boot.
#[test]
fn debian_server_is_the_same_from_two_stores_and_two_checkouts() {
    require_tool("tar", "tar");
    let tmp = tempfile::tempdir().unwrap();
    let epoch = EPOCH.to_string();
    let args = [
        "--locked",
        "-f",
        "tar",
        "-f",
        "qcow2",
        "--source-date-epoch",
        &epoch,
        "--sbom",
        "spdx",
        "--sbom",
        "cyclonedx",
        "--provenance",
    ];
    let first = build_json(
        &repo().join("recipes/debian-server.toml"),
        shared_store(),
        &tmp.path().join("out-a"),
        &args,
    );
    let checkout = tmp.path().join("somewhere/else/recipes");
    fs_err::create_dir_all(checkout.parent().unwrap()).unwrap();
    copy_tree(&repo().join("recipes"), &checkout);
    let second = build_json(
        &checkout.join("debian-server.toml"),
        &tmp.path().join("fresh-store"),
        &tmp.path().join("out-b"),
        &args,
    );
    assert!(cache_outcomes(&second).iter().all(|c| c == "miss"));
    assert_eq!(
        first["digest"], second["digest"],
        "two fresh builds of debian-server differ"
    );
    for file in [
        "debian-server.rootfs.tar",
        "debian-server.qcow2",
        "debian-server.spdx.json",
        "debian-server.cdx.json",
        "debian-server.provenance.json",
    ] {
        let [a, b] =
            ["out-a", "out-b"].map(|o| fs_err::read(tmp.path().join(o).join(file)).unwrap());
        assert!(
            a == b,
            "{file} differs byte for byte between the two builds"
        );
    }
    eprintln!(
        "debian-server: manifest {}, qcow2 sha256 {}",
        first["digest"],
        sha256_hex(&tmp.path().join("out-a/debian-server.qcow2"))
    );

    let rootfs = tmp.path().join("rootfs");
    fs_err::create_dir(&rootfs).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xpf")
            .arg(tmp.path().join("out-a/debian-server.rootfs.tar"))
            .arg("-C")
            .arg(&rootfs)
            .arg("--numeric-owner"),
    );
    assert_normalised(&rootfs);

    // The image has no host keys (asserted above); the marker needs them and a running
    // sshd, which answers through the default NIC and a forwarded port.
    let port = free_port();
    let vm = RunningVm::boot(
        &tmp.path().join("out-a/debian-server.qcow2"),
        "IMGBUILD-SERVER-READY",
        &["-p", &format!("{port}:22")],
        Duration::from_secs(300),
    );
    let hello = banner(port, Duration::from_secs(60));
    assert!(
        hello.starts_with("SSH-2.0-OpenSSH"),
        "port {port} -> guest 22 answered {hello:?}; console:\n{}",
        vm.tail()
    );
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(fs_err::read(path).unwrap()))
}

fn assert_normalised(rootfs: &Path) {
    assert_eq!(
        fs_err::read(rootfs.join("etc/machine-id")).unwrap(),
        b"",
        "/etc/machine-id is not empty"
    );
    assert_eq!(
        fs_err::read_link(rootfs.join("var/lib/dbus/machine-id")).unwrap(),
        Path::new("/etc/machine-id")
    );
    let keys: Vec<String> = fs_err::read_dir(rootfs.join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    assert!(keys.is_empty(), "SSH host keys in the image: {keys:?}");
    assert!(
        rootfs.join("etc/ssh/sshd_config").is_file(),
        "openssh-server is not installed"
    );
    let unit = "/etc/systemd/system/imgbuild-ssh-host-keys.service";
    let text = fs_err::read_to_string(rootfs.join(&unit[1..])).unwrap();
    assert!(text.contains("ExecStart=/usr/bin/ssh-keygen -A"), "{text}");
    assert!(text.contains("Before=ssh.service"), "{text}");
    assert!(
        text.contains("ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key"),
        "{text}"
    );
    assert_eq!(
        fs_err::read_link(
            rootfs
                .join("etc/systemd/system/multi-user.target.wants/imgbuild-ssh-host-keys.service")
        )
        .unwrap(),
        Path::new(unit),
        "the first-boot unit is not enabled"
    );
    for gone in [
        "var/lib/systemd/random-seed",
        "var/cache/ldconfig/aux-cache",
        "var/log/dpkg.log",
        "var/log/alternatives.log",
        "var/log/apt/history.log",
        "var/log/apt/term.log",
        "etc/passwd-",
        "etc/shadow-",
        "etc/group-",
        "etc/gshadow-",
        "var/lib/dpkg/status-old",
    ] {
        assert!(
            rootfs.join(gone).symlink_metadata().is_err(),
            "/{gone} is in the image"
        );
    }
    let shadow = fs_err::read_to_string(rootfs.join("etc/shadow")).unwrap();
    let day = (EPOCH / 86_400).to_string();
    let mut users = Vec::new();
    for line in shadow.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        assert_eq!(fields[2], day, "shadow's last-change day in `{line}`");
        users.push(fields[0]);
    }
    assert!(
        users.contains(&"admin") && users.contains(&"sshd"),
        "{users:?}"
    );
    assert!(
        shadow.contains("admin:$6$imgbuildsalt$"),
        "the recipe's password hash is not admin's: {shadow}"
    );
}
