//! `[system]`: hostname, timezone, locale, keymap, users, services and network applied as
//! one cached step on a small scratch image whose earlier steps lay down what a Debian
//! image has (account files, /etc/skel, a zone, units, /etc/sudoers.d, `lib -> usr/lib`).

use crate::common::*;
use std::path::Path;
use std::process::Command;

/// An ed25519 public key (its blob names its type, as the parser checks).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f alice@laptop";

const EPOCH: &str = "1700000000";

/// The image below `[system]`.
const BASE: &str = r##"
[image]
name = "sys"

[[step]]
write = "/etc/passwd"
content = "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n"

[[step]]
write = "/etc/group"
content = "root:x:0:\nshadow:x:42:\nsudo:x:27:\nbob:x:1000:\n"

[[step]]
write = "/etc/shadow"
content = "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\n"
mode = "0640"
owner = "0:42"

[[step]]
write = "/etc/gshadow"
content = "root:*::\nshadow:*::\nsudo:*::\nbob:!::\n"
mode = "0640"
owner = "0:42"

[[step]]
write = "/etc/skel/.profile"
content = "# profile\n"

[[step]]
write = "/usr/share/zoneinfo/Europe/Berlin"
content = "TZif2"

[[step]]
write = "/usr/lib/systemd/system/ssh.service"
content = "[Service]\nExecStart=/usr/sbin/sshd -D\n\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n"

[[step]]
write = "/usr/lib/systemd/system/systemd-networkd.service"
content = "[Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\n"

[[step]]
write = "/usr/lib/systemd/system/systemd-networkd.socket"
content = "[Install]\nWantedBy=sockets.target\n"

[[step]]
symlink = "/etc/systemd/system/multi-user.target.wants/cron.service"
target = "/lib/systemd/system/cron.service"

[[step]]
write = "/usr/lib/systemd/system/cron.service"
content = "[Install]\nWantedBy=multi-user.target\n"

[[step]]
mkdir = "/etc/sudoers.d"

[[step]]
symlink = "/lib"
target = "usr/lib"
"##;

fn system(extra: &str) -> String {
    format!(
        r#"{BASE}
[system]
hostname = "devbox"
timezone = "Europe/Berlin"
locale = "en_US.UTF-8"
keymap = "de"
services = {{ enable = ["ssh"], disable = ["cron"], mask = ["getty@tty1.service"] }}

[[system.user]]
name = "alice"
groups = ["sudo", "wheel"]
create_groups = true
ssh_authorized_keys = ["{KEY}"]
sudo = "nopasswd"

[system.network]
dhcp = true
{extra}"#
    )
}

fn build(recipe: &Path, store: &Path, out: &Path) -> serde_json::Value {
    build_json(
        recipe,
        store,
        out,
        &["-f", "tar", "--source-date-epoch", EPOCH],
    )
}

fn extract(tar: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-xpf")
            .arg(tar)
            .arg("-C")
            .arg(to),
    );
}

#[test]
fn system_settings_are_one_cached_reproducible_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("sys.toml");
    fs_err::write(&recipe, system("")).unwrap();
    let store = tmp.path().join("store");
    let report = build(&recipe, &store, &tmp.path().join("out"));
    let steps = report["steps"].as_array().unwrap();
    let last = steps.last().unwrap();
    assert_eq!(last["kind"], "system", "{report}");
    assert_eq!(
        last["description"],
        "system (hostname devbox, timezone Europe/Berlin, locale en_US.UTF-8, keymap de, 1 user, 3 services, network dhcp)"
    );
    assert_eq!(last["index"], steps.len(), "{report}");

    let root = tmp.path().join("root");
    extract(&tmp.path().join("out/sys.rootfs.tar"), &root);
    let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("etc/hostname"), "devbox\n");
    assert!(read("etc/hosts").starts_with("127.0.0.1\tlocalhost\n127.0.1.1\tdevbox\n"));
    assert_eq!(read("etc/timezone"), "Europe/Berlin\n");
    assert_eq!(read("etc/default/locale"), "LANG=en_US.UTF-8\n");
    assert_eq!(read("etc/vconsole.conf"), "KEYMAP=de\n");
    assert_eq!(
        read("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\n"
    );
    assert_eq!(
        read("etc/group"),
        "root:x:0:\nshadow:x:42:\nsudo:x:27:alice\nbob:x:1000:\nalice:x:1001:\nwheel:x:1002:alice\n"
    );
    // The last change is the build's day: 1700000000 / 86400.
    assert_eq!(
        read("etc/shadow"),
        "root:*:19000:0:99999:7:::\nbob:!:19000:0:99999:7:::\nalice:!:19675:0:99999:7:::\n"
    );
    assert_eq!(
        read("etc/gshadow"),
        "root:*::\nshadow:*::\nsudo:*::alice\nbob:!::\nalice:!::\nwheel:!::alice\n"
    );
    assert_eq!(read("home/alice/.ssh/authorized_keys"), format!("{KEY}\n"));
    assert_eq!(read("home/alice/.profile"), "# profile\n");
    assert_eq!(
        read("etc/sudoers.d/alice"),
        "alice ALL=(ALL:ALL) NOPASSWD: ALL\n"
    );
    assert_eq!(
        read("etc/systemd/network/80-imgbuild.network"),
        "[Match]\nType=ether\n\n[Network]\nDHCP=yes\n"
    );
    let tree = describe_tree(&root);
    for line in [
        "d 700 1001:1001 home/alice",
        "d 700 1001:1001 home/alice/.ssh",
        "f 600 1001:1001 home/alice/.ssh/authorized_keys",
        "f 644 1001:1001 home/alice/.profile",
        "f 640 0:42 etc/shadow",
        "f 640 0:42 etc/gshadow",
        "f 644 0:0 etc/passwd",
        "f 440 0:0 etc/sudoers.d/alice",
        "l 777 0:0 etc/localtime /usr/share/zoneinfo/Europe/Berlin",
        "l 777 0:0 etc/systemd/system/multi-user.target.wants/ssh.service /lib/systemd/system/ssh.service",
        "l 777 0:0 etc/systemd/system/sshd.service /lib/systemd/system/ssh.service",
        "l 777 0:0 etc/systemd/system/multi-user.target.wants/systemd-networkd.service /lib/systemd/system/systemd-networkd.service",
        "l 777 0:0 etc/systemd/system/sockets.target.wants/systemd-networkd.socket /lib/systemd/system/systemd-networkd.socket",
        "l 777 0:0 etc/systemd/system/getty@tty1.service /dev/null",
    ] {
        assert!(tree.contains(&line.to_owned()), "no `{line}` in:\n{}", tree.join("\n"));
    }
    // `disable` removed the link that enabled cron.
    assert!(
        !tree.iter().any(|l| l.contains("cron.service /lib")),
        "{}",
        tree.join("\n")
    );

    // Cached: a rebuild hits every step; a fresh store gives the same digest.
    let again = build(&recipe, &store, &tmp.path().join("out2"));
    assert!(cache_outcomes(&again).iter().all(|c| c == "hit"), "{again}");
    let fresh = build(
        &recipe,
        &tmp.path().join("store2"),
        &tmp.path().join("out3"),
    );
    assert_eq!(fresh["digest"], report["digest"]);
    assert_eq!(
        fs_err::read(tmp.path().join("out/sys.rootfs.tar")).unwrap(),
        fs_err::read(tmp.path().join("out3/sys.rootfs.tar")).unwrap()
    );

    // `build --check` makes the system layer again, bit for bit.
    let checked = build_json(
        &recipe,
        &store,
        &tmp.path().join("out5"),
        &["-f", "tar", "--source-date-epoch", EPOCH, "--check"],
    );
    let last = checked["steps"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reproducible"], true, "{checked}");

    // Changing one setting misses only the system step.
    fs_err::write(&recipe, system("").replace("devbox", "devbox2")).unwrap();
    let changed = build(&recipe, &store, &tmp.path().join("out4"));
    let outcomes = cache_outcomes(&changed);
    assert_eq!(outcomes.last().unwrap(), "miss", "{changed}");
    assert!(outcomes[..outcomes.len() - 1].iter().all(|c| c == "hit"));
}

/// Builds `text` (after `BASE`) and returns its exit code and stderr.
fn failure(text: &str) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("sys.toml");
    fs_err::write(&recipe, format!("{BASE}\n{text}")).unwrap();
    build_failure(&recipe, &tmp.path().join("store"), &tmp.path().join("out"))
}

#[test]
fn what_the_image_lacks_is_a_step_error_naming_the_key() {
    for (text, expect) in [
        (
            "[system]\ntimezone = \"Mars/Olympus\"\n",
            "system.timezone: the image has no zone /usr/share/zoneinfo/Mars/Olympus; install the `tzdata` package",
        ),
        (
            "[[system.user]]\nname = \"bob\"\nuid = 1005\n",
            "system.user[0].uid: user `bob` already exists in the image with uid 1000, not 1005",
        ),
        (
            "[[system.user]]\nname = \"alice\"\ngroups = [\"docker\"]\n",
            "system.user[0].groups: group `docker` does not exist in the image",
        ),
        (
            "[system]\nservices = { enable = [\"nginx\"] }\n",
            "system.services.enable: unit nginx.service is not in the image",
        ),
        (
            "[[step]]\nsymlink = \"/etc/systemd/system/ssh.service\"\ntarget = \"/dev/null\"\n[system]\nservices = { enable = [\"ssh\"] }\n",
            "system.services.enable: unit ssh.service is masked in the image",
        ),
        (
            "[[system.user]]\nname = \"alice\"\nsudo = \"password\"\n[[step]]\nremove = \"/etc/sudoers.d\"\n",
            "system.user[0].sudo: the image has no /etc/sudoers.d; install the `sudo` package",
        ),
        (
            "[system.network]\ndhcp = true\n[[step]]\nremove = \"/usr/lib/systemd/system/systemd-networkd.service\"\n",
            "system.network: the image has no systemd-networkd.service unit",
        ),
    ] {
        let (code, stderr) = failure(text);
        assert_eq!(code, Some(2), "{text}: {stderr}");
        assert!(stderr.contains(expect), "{text}: {stderr}");
    }
}

#[test]
fn a_bad_key_line_in_the_keys_file_is_located() {
    let tmp = tempfile::tempdir().unwrap();
    fs_err::create_dir_all(tmp.path().join("keys")).unwrap();
    fs_err::write(
        tmp.path().join("keys/alice.pub"),
        format!("# alice\n{KEY}\nssh-ed25519 AAAA\n"),
    )
    .unwrap();
    let recipe = tmp.path().join("sys.toml");
    let text = "[image]\nname = \"x\"\n\n[[system.user]]\nname = \"alice\"\nssh_authorized_keys_file = \"keys/alice.pub\"\n";
    fs_err::write(&recipe, text).unwrap();
    let (code, stderr) = build_failure(&recipe, &tmp.path().join("store"), &tmp.path().join("out"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("keys/alice.pub line 3: not an authorized_keys line"),
        "{stderr}"
    );
    assert!(stderr.contains("sys.toml:6:"), "{stderr}");
}

/// On the real Debian bookworm base (the shared store's cached bootstrap): the account
/// files keep every line, sudo's group gains the user, a missing group is created, the
/// home comes from /etc/skel and the zone from tzdata.
#[test]
fn a_user_on_debian_bookworm() {
    let store = shared_store();
    let tmp = tempfile::tempdir().unwrap();
    copy_tree(&repo().join("recipes/common"), &tmp.path().join("common"));
    fs_err::copy(
        repo().join("recipes/debian-minimal.lock"),
        tmp.path().join("devuser.lock"),
    )
    .unwrap();
    let recipe = tmp.path().join("devuser.toml");
    fs_err::write(
        &recipe,
        format!(
            r#"include = ["common/debian-bookworm.toml"]

[image]
name = "devuser"

[system]
hostname = "devbox"
timezone = "Europe/Berlin"

[[system.user]]
name = "alice"
groups = ["sudo", "devs"]
create_groups = true
ssh_authorized_keys = ["{KEY}"]
"#
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    build_json(&recipe, store, &out, &["-f", "tar", "--locked"]);
    let root = tmp.path().join("root");
    extract(&out.join("devuser.rootfs.tar"), &root);
    let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap();
    let passwd = read("etc/passwd");
    assert!(
        passwd.starts_with("root:x:0:0:root:/root:/bin/bash\n"),
        "{passwd}"
    );
    assert!(passwd.contains("\nnobody:x:65534:65534:"), "{passwd}");
    assert!(
        passwd.ends_with("\nalice:x:1000:1000::/home/alice:/bin/bash\n"),
        "{passwd}"
    );
    let group = read("etc/group");
    assert!(group.contains("\nsudo:x:27:alice\n"), "{group}");
    assert!(
        group.ends_with("\nalice:x:1000:\ndevs:x:1001:alice\n"),
        "{group}"
    );
    assert!(read("etc/shadow").contains("\nalice:!:"));
    assert!(read("etc/gshadow").contains("\nsudo:*::alice\n"));
    assert!(root.join("usr/share/zoneinfo/Europe/Berlin").is_file());
    let tree = describe_tree(&root);
    for line in [
        "f 640 0:42 etc/shadow",
        "f 640 0:42 etc/gshadow",
        "d 700 1000:1000 home/alice",
        "f 644 1000:1000 home/alice/.bashrc",
        "f 600 1000:1000 home/alice/.ssh/authorized_keys",
        "l 777 0:0 etc/localtime /usr/share/zoneinfo/Europe/Berlin",
    ] {
        assert!(tree.contains(&line.to_owned()), "no `{line}`");
    }
}
