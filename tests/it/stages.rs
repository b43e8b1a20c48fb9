//! Stages without Debian: independent stages, a stage that copies from another, and the
//! cache key of a copy following its stage.

use crate::common::*;
use std::process::Command;

const RECIPE: &str = r#"
[image]
name = "staged"

[stage.a]
step = [{ write = "/out/a.txt", content = "from a\n" }, { mkdir = "/out/dir" }]

[stage.b]
step = [{ write = "/b.txt", content = "from b\n", owner = "7:7" }]

[stage.c]
step = [{ copy = "/out", from_stage = "a", to = "/srv/" }]

[[step]]
copy = "/srv"
from_stage = "c"
to = "/data"

[[step]]
copy = "/b.txt"
from_stage = "b"
to = "/etc/"
mode = "0600"
"#;

#[test]
fn stages_build_in_dependency_order_and_copies_follow_their_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("staged.toml");
    fs_err::write(&recipe, RECIPE).unwrap();
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    let first = build_json(&recipe, &store, &out, &["-f", "tar"]);
    let listing = run_ok(
        Command::new("tar")
            .args(["-tvf"])
            .arg(out.join("staged.rootfs.tar"))
            .arg("--numeric-owner"),
    );
    let text = String::from_utf8_lossy(&listing.stdout);
    assert!(
        text.contains("data/a.txt") && text.contains("data/dir/"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("-rw------- 0/0") && l.ends_with("etc/b.txt")),
        "{text}"
    );
    assert!(
        !text.contains("srv"),
        "only what was copied reaches the image:\n{text}"
    );

    // Changing stage b rebuilds the copy from b, not the copy from c.
    fs_err::write(&recipe, RECIPE.replace("from b", "from b, changed")).unwrap();
    let second = build_json(&recipe, &store, &out, &[]);
    assert_eq!(cache_outcomes(&second), ["hit", "miss"]);
    assert_ne!(first["digest"], second["digest"]);
}

const KERNEL: &str = r#"
[image]
name = "globbed"

[stage.kernel]
step = [
  { write = "/boot/vmlinuz-6.1.0-13-amd64", content = "kernel\n" },
  { write = "/boot/initrd.img-6.1.0-13-amd64", content = "initrd\n" },
  { write = "/boot/config-6.1.0-13-amd64" },
  { mkdir = "/usr/lib/modules/6.1.0-13-amd64/kernel" },
]

[[step]]
copy = "/boot/vmlinuz-*"
from_stage = "kernel"
to = "/boot/vmlinuz"

[[step]]
copy = "/boot/[iv]*-6.1.0-13-amd64"
from_stage = "kernel"
to = "/kernel/"

[[step]]
copy = "/usr/lib/modules/*"
from_stage = "kernel"
to = "/lib/modules/current"
"#;

#[test]
fn from_stage_globs_copy_one_match_to_to_and_several_into_it() {
    // As a host `copy`: one file lands at `to`, one directory's contents in `to`, several
    // matches each inside `to` under its own name.
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("globbed.toml");
    fs_err::write(&recipe, KERNEL).unwrap();
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    build_json(&recipe, &store, &out, &["-f", "tar"]);
    let tar = out.join("globbed.rootfs.tar");
    let paths = tar_paths(&tar);
    assert_eq!(
        paths,
        [
            "boot/",
            "boot/vmlinuz",
            "kernel/",
            "kernel/initrd.img-6.1.0-13-amd64",
            "kernel/vmlinuz-6.1.0-13-amd64",
            "lib/",
            "lib/modules/",
            "lib/modules/current/",
            "lib/modules/current/kernel/",
        ]
    );
    let kernel = run_ok(
        Command::new("tar")
            .arg("-xOf")
            .arg(&tar)
            .arg("boot/vmlinuz"),
    );
    assert_eq!(String::from_utf8_lossy(&kernel.stdout), "kernel\n");

    // Several matches into a `to` that is not a directory: located at `to`, exit 2.
    let text = KERNEL.replace("to = \"/kernel/\"", "to = \"/kernel\"");
    fs_err::write(&recipe, &text).unwrap();
    let (code, stderr) = build_failure(&recipe, &store, &tmp.path().join("out2"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "step 2 copies /boot/[iv]*-6.1.0-13-amd64, which matches 2 paths in stage `kernel`, into a single path"
        ),
        "{stderr}"
    );
    let line = text.lines().position(|l| l == "to = \"/kernel\"").unwrap() + 1;
    assert!(
        stderr.contains(&format!("{}:{line}:6", recipe.display())),
        "{stderr}"
    );
    assert!(stderr.contains("end `to` with `/`"), "{stderr}");

    // A glob that matches nothing in the stage is the located error of a missing path.
    let text = KERNEL.replace("/boot/vmlinuz-*", "/boot/bzImage-*");
    fs_err::write(&recipe, &text).unwrap();
    let (code, stderr) = build_failure(&recipe, &store, &tmp.path().join("out3"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("step 1 copies /boot/bzImage-*, but stage `kernel` has nothing there"),
        "{stderr}"
    );
}
