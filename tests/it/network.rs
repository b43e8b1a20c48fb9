//! `run` steps with `network = true` resolve names with the host's resolver configuration,
//! even in an image that has no `/etc`, and nothing of it reaches the step's layer.

use crate::common::*;
use std::process::Command;

#[test]
fn a_network_step_resolves_names_in_an_image_without_etc_and_leaves_no_resolv_conf() {
    require_tool("busybox", "busybox-static");
    let host = run_ok(Command::new("getent").args(["hosts", "deb.debian.org"]));
    let host = String::from_utf8_lossy(&host.stdout);
    let address = host
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("the host resolves deb.debian.org: {host}"));
    let tmp = tempfile::tempdir().unwrap();
    let busybox = which("busybox");
    fs_err::copy(&busybox, tmp.path().join("busybox")).unwrap();
    let recipe = tmp.path().join("dns.toml");
    // busybox's nslookup asks the servers of /etc/resolv.conf (the image has no /etc, and
    // no /etc/hosts to fall back on) and fails when it cannot resolve the name.
    fs_err::write(
        &recipe,
        r#"
[image]
name = "dns"

[[step]]
copy = "busybox"
to = "/bin/busybox"

[[step]]
symlink = "/bin/sh"
target = "busybox"

[[step]]
run = "/bin/busybox nslookup deb.debian.org > /resolved"
network = true
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    build_json(&recipe, &tmp.path().join("store"), &out, &["-f", "tar"]);
    let tar = out.join("dns.rootfs.tar");
    let paths = tar_paths(&tar);
    assert_eq!(
        paths,
        ["bin/", "bin/busybox", "bin/sh", "resolved"],
        "the resolver's mount points (and the /etc made for them) stay out of the layer"
    );
    let resolved = run_ok(Command::new("tar").arg("-xOf").arg(&tar).arg("resolved"));
    let resolved = String::from_utf8_lossy(&resolved.stdout);
    assert!(
        resolved.contains("deb.debian.org") && resolved.contains(address),
        "expected {address} for deb.debian.org in:\n{resolved}"
    );
}

fn which(tool: &str) -> std::path::PathBuf {
    let out = run_ok(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
