//! The same recipe gives the same digests from another store, another checkout path and
//! another time of day; `SOURCE_DATE_EPOCH` is the only clock that counts.

use crate::common::*;

#[test]
fn two_checkouts_and_two_stores_give_identical_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    let mut archives = Vec::new();
    for name in ["checkout-a", "somewhere/else/checkout-b"] {
        let checkout = tmp.path().join(name);
        fs_err::create_dir_all(checkout.parent().unwrap()).unwrap();
        copy_tree(&repo().join("recipes"), &checkout);
        // A different mtime and umask-ish mode on the copy must not matter.
        std::process::Command::new("touch")
            .arg("-d")
            .arg("2001-01-01")
            .arg(checkout.join("hello/motd"))
            .status()
            .unwrap();
        let out = tmp.path().join(format!("out-{}", digests.len()));
        let report = build_json(
            &checkout.join("hello.toml"),
            &tmp.path().join(format!("store-{}", digests.len())),
            &out,
            &["-f", "oci-archive", "-f", "docker-archive", "-f", "tar"],
        );
        digests.push(report["digest"].as_str().unwrap().to_owned());
        archives.push(
            ["hello.oci.tar", "hello.docker.tar", "hello.rootfs.tar"]
                .map(|f| fs_err::read(out.join(f)).unwrap()),
        );
    }
    assert_eq!(digests[0], digests[1]);
    assert!(
        archives[0] == archives[1],
        "the archives differ byte for byte"
    );
}

#[test]
fn source_date_epoch_reaches_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/hello.toml");
    let store = tmp.path().join("store");
    let a = build_json(&recipe, &store, &tmp.path().join("a"), &[]);
    let b = build_json(
        &recipe,
        &store,
        &tmp.path().join("b"),
        &["--source-date-epoch", "1700000000"],
    );
    assert_ne!(a["digest"], b["digest"]);
    assert!(cache_outcomes(&b).iter().all(|c| c == "miss"));
}
