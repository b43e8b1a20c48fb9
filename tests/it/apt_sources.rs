//! Several apt sources: Debian bookworm with `updates` and `security`, plus a third-party
//! repository (a signed one made here with dpkg-deb, dpkg-scanpackages and gpg, served on
//! loopback). All three are locked, the image gets their deb822 files and keyrings, and
//! `apt-get update` works in a `network = true` step.

use crate::common::*;
use imgbuild_builder::debian::Lockfile;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args(["--batch", "--quiet"]);
    c
}

/// A signed repository at `dir/repo` (suite `stable`, component `main`) holding the
/// package `imgbuild-hello`; returns its keyring.
fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    let pkg = dir.join("pkg");
    fs_err::create_dir_all(pkg.join("DEBIAN")).unwrap();
    fs_err::create_dir_all(pkg.join("usr/share/imgbuild-hello")).unwrap();
    fs_err::write(
        pkg.join("usr/share/imgbuild-hello/hello"),
        "hello from apt\n",
    )
    .unwrap();
    fs_err::write(
        pkg.join("DEBIAN/control"),
        "Package: imgbuild-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: imgbuild <t@imgbuild.invalid>\nDepends: libc6\nDescription: test package\n fixture for imgbuild\n",
    )
    .unwrap();
    let pool = repo.join("pool/main");
    fs_err::create_dir_all(&pool).unwrap();
    run_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(pool.join("imgbuild-hello_1.0_all.deb")),
    );
    let packages = run_ok(
        Command::new("dpkg-scanpackages")
            .current_dir(&repo)
            .arg("pool")
            .stderr(Stdio::null()),
    )
    .stdout;
    let dists = repo.join("dists/stable");
    fs_err::create_dir_all(dists.join("main/binary-amd64")).unwrap();
    fs_err::write(dists.join("main/binary-amd64/Packages"), &packages).unwrap();
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&packages))
    };
    fs_err::write(
        dists.join("Release"),
        format!(
            "Origin: imgbuild-test\nSuite: stable\nCodename: stable\nDate: Sun, 01 Nov 2026 00:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {sha} {} main/binary-amd64/Packages\n",
            packages.len()
        ),
    )
    .unwrap();
    let home = dir.join("gnupg");
    fs_err::create_dir_all(&home).unwrap();
    run_ok(gpg(&home).args([
        "--passphrase",
        "",
        "--quick-gen-key",
        "imgbuild apt test <apt@imgbuild.invalid>",
        "ed25519",
        "sign",
        "never",
    ]));
    run_ok(
        gpg(&home)
            .args(["--yes", "--clearsign", "-o"])
            .arg(dists.join("InRelease"))
            .arg(dists.join("Release")),
    );
    let keyring = dir.join("keys/local.gpg");
    fs_err::create_dir_all(keyring.parent().unwrap()).unwrap();
    fs_err::write(&keyring, run_ok(gpg(&home).arg("--export")).stdout).unwrap();
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(&home)
        .args(["--kill", "gpg-agent"])
        .status();
    keyring
}

#[test]
fn updates_security_and_a_local_source_are_locked_installed_and_usable_by_apt() {
    for (tool, package) in [
        ("dpkg-deb", "dpkg-dev"),
        ("dpkg-scanpackages", "dpkg-dev"),
        ("gpg", "gpg"),
        ("python3", "python3"),
    ] {
        require_tool(tool, package);
    }
    let tmp = tempfile::tempdir().unwrap();
    let keyring = make_repo(tmp.path());
    let server = serve_dir(&tmp.path().join("repo"));
    let port = server.port;
    let recipe = tmp.path().join("apt.toml");
    fs_err::write(
        &recipe,
        format!(
            r#"[image]
name = "apt"

[from.debian]
suite = "bookworm"
variant = "minbase"
updates = true
security = true

[[from.debian.source]]
uri = "http://127.0.0.1:{port}/"
suite = "stable"
components = ["main"]
keyring = "keys/local.gpg"

[[step]]
packages = ["imgbuild-hello"]

[[step]]
run = "apt-get update > /apt-update.log 2>&1 && apt-cache policy imgbuild-hello > /policy.txt"
network = true
"#
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    build_json(&recipe, shared_store(), &out, &["-f", "tar"]);

    // The lock: the main source, then updates, security and the local one.
    let lock = Lockfile::read(&tmp.path().join("apt.lock")).unwrap();
    let extra: Vec<(&str, &str, &str)> = lock
        .extra_sources
        .iter()
        .map(|s| {
            (
                s.request.name.as_str(),
                s.request.uri.as_str(),
                s.request.suite.as_str(),
            )
        })
        .collect();
    let local = format!("http://127.0.0.1:{port}/");
    assert_eq!(
        extra,
        [
            (
                "updates",
                "http://deb.debian.org/debian",
                "bookworm-updates"
            ),
            (
                "security",
                "http://deb.debian.org/debian-security",
                "bookworm-security"
            ),
            ("127.0.0.1", local.as_str(), "stable"),
        ]
    );
    for s in &lock.extra_sources {
        assert_eq!(s.inrelease_sha256.len(), 64, "{s:?}");
        assert!(!s.release_date.is_empty(), "{s:?}");
    }
    let keyring_bytes = fs_err::read(&keyring).unwrap();
    let keyring_sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&keyring_bytes))
    };
    assert_eq!(lock.extra_sources[2].keyring_sha256, keyring_sha);
    let hello = lock
        .packages
        .iter()
        .find(|p| p.name == "imgbuild-hello")
        .expect("imgbuild-hello locked");
    assert_eq!(hello.source.as_deref(), Some("127.0.0.1"));
    assert!(
        lock.packages
            .iter()
            .all(|p| p.source.as_deref() != Some("127.0.0.1") || p.name == "imgbuild-hello"),
        "only imgbuild-hello comes from the local repository"
    );

    // The image: the package, the deb822 files, the keyring, and apt's view.
    let rootfs = tmp.path().join("rootfs");
    fs_err::create_dir_all(&rootfs).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(out.join("apt.rootfs.tar"))
            .arg("-C")
            .arg(&rootfs),
    );
    let read = |p: &str| fs_err::read_to_string(rootfs.join(p)).unwrap();
    assert_eq!(read("usr/share/imgbuild-hello/hello"), "hello from apt\n");
    assert_eq!(
        read("etc/apt/sources.list.d/debian.sources"),
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
         Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    );
    assert_eq!(
        read("etc/apt/sources.list.d/127.0.0.1.sources"),
        format!("Types: deb\nURIs: {local}\nSuites: stable\nComponents: main\nSigned-By: /etc/apt/keyrings/127.0.0.1.gpg\n")
    );
    assert_eq!(
        fs_err::read(rootfs.join("etc/apt/keyrings/127.0.0.1.gpg")).unwrap(),
        keyring_bytes
    );
    assert!(rootfs
        .join("usr/share/keyrings/debian-archive-keyring.gpg")
        .is_file());
    let log = read("apt-update.log");
    assert!(
        log.contains(&format!("127.0.0.1:{port} stable InRelease")),
        "apt-get update did not read the local repository:\n{log}"
    );
    assert!(
        !log.contains("W:") && !log.contains("E:"),
        "apt-get update warned:\n{log}"
    );
    let policy = read("policy.txt");
    assert!(
        policy.contains("Installed: 1.0")
            && policy.contains(&format!(
                "http://127.0.0.1:{port} stable/main amd64 Packages"
            )),
        "apt does not see imgbuild-hello in the local repository:\n{policy}"
    );
}
