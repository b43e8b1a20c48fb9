//! `imgbuild run --exec`: commands run in the booted guest as root over SSH (a throwaway
//! key passed as a systemd credential), their output on stdout, the exit status the first
//! failing command's, and the artifact left unchanged.

use crate::common::*;
use std::path::Path;

/// One TCG boot of the shipped debian-server qcow2 (openssh-server, systemd 252): every
/// command up to the failing one runs, in order, and nothing after it.
#[test]
fn exec_boots_debian_server_runs_commands_in_order_and_exits_with_the_failing_status() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    require_tool("ssh", "openssh-client");
    let tmp = tempfile::tempdir().unwrap();
    build_json(
        &repo().join("recipes/debian-server.toml"),
        shared_store(),
        tmp.path(),
        &[
            "--locked",
            "-f",
            "qcow2",
            "--source-date-epoch",
            "1700000000",
        ],
    );
    let disk = tmp.path().join("debian-server.qcow2");
    let before = sha256_hex(&disk);
    let out = imgbuild()
        .arg("run")
        .arg(&disk)
        .args(["--timeout", "600"])
        .args(["--exec", "cat /etc/hostname"])
        .args(["--exec", "id -u"])
        .args(["--exec", "exit 3"])
        .args(["--exec", "echo never"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = last_lines(&out.stderr, 60);
    // The boot-to-SSH time, for the record.
    for line in stderr.lines().filter(|l| l.contains("logged in after")) {
        eprintln!("{line}");
    }
    assert_eq!(
        out.status.code(),
        Some(3),
        "stdout:\n{stdout}\nstderr (last lines):\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["debian-server", "0"], "stderr:\n{stderr}");
    assert!(
        stderr.contains("`exit 3` exited with status 3 in the guest"),
        "{stderr}"
    );
    assert_eq!(sha256_hex(&disk), before, "the qcow2 changed");
}

#[test]
fn exec_without_network_is_refused_before_anything_boots() {
    let out = imgbuild()
        .args(["run", "missing.qcow2", "--no-network", "--exec", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--exec reaches the guest over SSH") && stderr.contains("--no-network"),
        "{stderr}"
    );
}

/// Without `ssh` on the host, `--exec` stops before booting and names the package.
#[test]
fn exec_without_ssh_on_the_host_names_openssh_client() {
    let tmp = tempfile::tempdir().unwrap();
    let disk = tmp.path().join("blank.raw");
    fs_err::File::create(&disk)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    // A PATH with neither ssh nor QEMU: the check comes before anything starts.
    let empty = tmp.path().join("bin");
    fs_err::create_dir(&empty).unwrap();
    let out = imgbuild()
        .arg("run")
        .arg(&disk)
        .args(["--exec", "true"])
        .env("PATH", &empty)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`ssh` could not start") && stderr.contains("openssh-client"),
        "{stderr}"
    );
}

#[test]
fn exec_and_expect_do_not_go_together() {
    let out = imgbuild()
        .args([
            "run",
            "missing.qcow2",
            "--expect",
            "login:",
            "--exec",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--expect"), "{stderr}");
}

fn sha256_hex(path: &Path) -> String {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut fs_err::File::open(path).unwrap(), &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// A guest that powers off by itself (the busybox fixture) ends the wait for the login at
/// once, with the console tail and exit 2.
#[test]
fn exec_on_a_guest_that_powers_off_boots_and_says_so() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    require_tool("ssh", "openssh-client");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = crate::boot_fixture::recipe(tmp.path(), "bootfix", "");
    let out = imgbuild()
        .arg("run")
        .arg(&recipe)
        .args([
            "--format",
            "initramfs",
            "--timeout",
            "240",
            "--exec",
            "true",
        ])
        .arg("-o")
        .arg(tmp.path().join("out"))
        .arg("--store")
        .arg(tmp.path().join("store"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("imgbuild") || l.starts_with("error"))
        .collect();
    assert_eq!(out.status.code(), Some(2), "{ours:#?}");
    assert!(
        stderr.contains("before an SSH login worked")
            && stderr.contains(crate::boot_fixture::MARKER),
        "{}",
        last_lines(&out.stderr, 40)
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `run NAME` with several tags lists them; a name the store does not know is a missing
/// file.
#[test]
fn run_names_images_of_the_store_and_lists_several_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("vm.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"vm\"\ntags = [\"a\", \"b\"]\n\n[[step]]\nwrite = \"/etc/hostname\"\ncontent = \"vm\\n\"\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    build_json(&recipe, &store, &tmp.path().join("out"), &["-f", "oci"]);
    let run = |target: &str| {
        let out = imgbuild()
            .arg("--store")
            .arg(&store)
            .args(["run", target])
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_ne!(out.status.code(), Some(0), "run {target}: {stderr}");
        (out.status.code(), stderr)
    };
    let (code, many) = run("vm");
    assert_eq!(code, Some(2), "{many}");
    assert!(
        many.contains("`vm` names 2 images in the store: vm:a, vm:b"),
        "{many}"
    );
    let (code, none) = run("nothing-here");
    assert_eq!(code, Some(2), "{none}");
    assert!(none.contains("nothing-here does not exist"), "{none}");
}

/// `run NAME:TAG` of a Debian image in the store writes it as a qcow2 with the default
/// `[disk]` and boots it: systemd greets on the console, so the root filesystem mounted.
#[test]
fn run_boots_a_store_image_by_name() {
    require_tool("qemu-system-x86_64", "qemu-system-x86");
    let tmp = tempfile::tempdir().unwrap();
    build_json(
        &repo().join("recipes/debian-server.toml"),
        shared_store(),
        tmp.path(),
        &["--locked", "-f", "oci", "--source-date-epoch", "1700000000"],
    );
    let out = imgbuild()
        .arg("--store")
        .arg(shared_store())
        .args(["run", "debian-server:bookworm"])
        .args([
            "--expect",
            "Welcome to Debian GNU/Linux",
            "--timeout",
            "400",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\nstderr:\n{}",
        last_lines(&out.stdout, 40),
        last_lines(&out.stderr, 40)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("debian-server:bookworm is an image in the store"),
        "{stderr}"
    );
}
