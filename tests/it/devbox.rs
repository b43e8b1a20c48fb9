//! The shipped devbox recipe: a VM declared in `[system]` (a user with an SSH key and sudo,
//! a hostname, a timezone, DHCP, sshd) that builds the same from two stores, boots under
//! `imgbuild run -p`, and lets its user in over SSH. Two copies of the disk make their own
//! host keys and machine ids.

use crate::common::*;
use crate::running_vm::{free_port, RunningVm};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const EPOCH: &str = "1700000000";

/// The shipped recipes, copied to `dir` with a fresh key pair for alice: its private key.
fn recipes_with_a_key_of_ours(dir: &Path) -> PathBuf {
    copy_tree(&repo().join("recipes"), dir);
    let key = dir.join("alice_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "alice@test", "-f"])
            .arg(&key),
    );
    fs_err::copy(key.with_extension("pub"), dir.join("devbox/alice.pub")).unwrap();
    key
}

/// `ssh alice@127.0.0.1 -p PORT -- COMMAND` with `key`, retried until sshd lets alice in
/// (QEMU accepts forwarded connections before the guest listens).
fn ssh(port: u16, key: &Path, command: &str, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        let out = Command::new("ssh")
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "LogLevel=ERROR",
                "-i",
            ])
            .arg(key)
            .args(["-p", &port.to_string(), "alice@127.0.0.1", "--", command])
            .output()
            .expect("run ssh");
        // 255: ssh itself failed (no connection, or not let in yet).
        if out.status.code() != Some(255) || start.elapsed() > limit {
            return out;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What a shell command as alice printed, which must succeed.
fn ssh_ok(port: u16, key: &Path, command: &str) -> String {
    let out = ssh(port, key, command, Duration::from_secs(240));
    assert!(
        out.status.success(),
        "`{command}` as alice failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Host key and machine id of one booted copy, after checking what `[system]` declared.
fn check_a_booted_copy(qcow2: &Path, key: &Path) -> (String, String) {
    let port = free_port();
    let publish = format!("{port}:22");
    let vm = RunningVm::boot(
        qcow2,
        "devbox login:",
        &["-p", &publish],
        Duration::from_secs(600),
    );
    assert_eq!(ssh_ok(port, key, "hostname"), "devbox", "{}", vm.tail());
    let id = ssh_ok(port, key, "id alice");
    assert!(
        id.contains("uid=1000(alice)") && id.contains("(sudo)"),
        "{id}"
    );
    assert_eq!(ssh_ok(port, key, "sudo -n id -u"), "0");
    assert_eq!(
        ssh_ok(port, key, "readlink /etc/localtime; cat /etc/timezone"),
        "/usr/share/zoneinfo/Europe/Berlin\nEurope/Berlin"
    );
    let offset = ssh_ok(port, key, "date +%z");
    assert!(
        offset == "+0100" || offset == "+0200",
        "Berlin time is {offset}"
    );
    let addr = ssh_ok(port, key, "ip -4 -o addr show scope global");
    assert!(addr.contains("inet 10.0.2."), "no DHCP address: {addr}");
    assert_eq!(
        ssh_ok(port, key, "systemctl is-active ssh systemd-networkd"),
        "active\nactive"
    );
    let size: u64 = ssh_ok(port, key, "df -B1 --output=size / | tail -n1")
        .parse()
        .unwrap();
    assert!(
        size > 7 * 1024 * 1024 * 1024 && size <= 8 * 1024 * 1024 * 1024,
        "the root filesystem is {size} bytes, not close to 8 GiB"
    );
    let host_key = ssh_ok(port, key, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    let machine_id = ssh_ok(port, key, "cat /etc/machine-id");
    assert_eq!(machine_id.len(), 32, "{machine_id}");
    (host_key, machine_id)
}

#[test]
fn devbox_builds_the_same_twice_and_lets_alice_in_over_ssh_after_boot() {
    require_tool("ssh", "openssh-client");
    require_tool("ssh-keygen", "openssh-client");
    require_tool("qemu-img", "qemu-utils");
    let tmp = tempfile::tempdir().unwrap();
    let recipes = tmp.path().join("recipes");
    let key = recipes_with_a_key_of_ours(&recipes);
    let recipe = recipes.join("devbox.toml");
    let args = ["--locked", "-f", "qcow2", "--source-date-epoch", EPOCH];

    let first = build_json(&recipe, shared_store(), &tmp.path().join("a"), &args);
    let second = build_json(
        &recipe,
        &tmp.path().join("fresh-store"),
        &tmp.path().join("b"),
        &args,
    );
    assert!(cache_outcomes(&second).iter().all(|c| c == "miss"));
    assert_eq!(first["digest"], second["digest"], "two fresh builds differ");
    let qcow2 = tmp.path().join("a/devbox.qcow2");
    assert!(
        fs_err::read(&qcow2).unwrap() == fs_err::read(tmp.path().join("b/devbox.qcow2")).unwrap(),
        "devbox.qcow2 differs between two fresh stores"
    );
    drop(fs_err::remove_dir_all(tmp.path().join("fresh-store")));

    // The shipped recipe compresses its qcow2; uncompressed, the same disk is at least twice
    // the size.
    let text = fs_err::read_to_string(&recipe).unwrap();
    let plain_recipe = recipes.join("devbox-plain.toml");
    fs_err::write(
        &plain_recipe,
        text.replace("compress = true", "compress = false"),
    )
    .unwrap();
    fs_err::copy(
        recipes.join("devbox.lock"),
        recipes.join("devbox-plain.lock"),
    )
    .unwrap();
    build_json(
        &plain_recipe,
        shared_store(),
        &tmp.path().join("plain"),
        &args,
    );
    let compressed = fs_err::metadata(&qcow2).unwrap().len();
    let plain = fs_err::metadata(tmp.path().join("plain/devbox.qcow2"))
        .unwrap()
        .len();
    eprintln!("devbox.qcow2: {plain} bytes plain, {compressed} compressed");
    assert!(
        compressed * 2 <= plain,
        "compressed {compressed} is more than half of plain {plain}"
    );

    let started = Instant::now();
    let (host_key, machine_id) = check_a_booted_copy(&qcow2, &key);
    eprintln!(
        "devbox: booted and checked over ssh in {:?}",
        started.elapsed()
    );

    // `run RECIPE --exec`: a second copy of the disk (built again from the recipe, all cached),
    // booted with commands run as root; `false` fails the run with its status.
    let run = imgbuild()
        .arg("run")
        .arg(&recipe)
        .arg("--store")
        .arg(shared_store())
        .arg("-o")
        .arg(tmp.path().join("run"))
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["--exec", "systemctl is-system-running --wait"])
        .args([
            "--exec",
            "cat /etc/ssh/ssh_host_ed25519_key.pub /etc/machine-id",
        ])
        .args(["--exec", "false", "--exec", "echo never"])
        .output()
        .expect("run imgbuild run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(1),
        "{stdout}\n{}",
        last_lines(&run.stderr, 40)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "running", "{stdout}");
    assert_ne!(lines[1], host_key, "two copies share their SSH host key");
    assert_ne!(lines[2], machine_id, "two copies share their machine id");
}
