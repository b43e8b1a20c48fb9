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
