//! The step cache: a rebuild runs nothing; a changed input rebuilds its step and the ones
//! after it, never the ones before.

use crate::common::*;

#[test]
fn a_rebuild_is_all_hits_and_a_change_rebuilds_from_that_step_on() {
    let tmp = tempfile::tempdir().unwrap();
    let checkout = tmp.path().join("recipes");
    copy_tree(&repo().join("recipes"), &checkout);
    let recipe = checkout.join("hello.toml");
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");

    let first = build_json(&recipe, &store, &out, &[]);
    assert!(cache_outcomes(&first).iter().all(|c| c == "miss"));
    let second = build_json(&recipe, &store, &out, &[]);
    assert!(
        cache_outcomes(&second).iter().all(|c| c == "hit"),
        "{second}"
    );
    assert_eq!(first["digest"], second["digest"]);

    // Step 2 copies hello/motd: change it, and steps 2.. rebuild while step 1 stays cached.
    fs_err::write(checkout.join("hello/motd"), "changed\n").unwrap();
    let third = build_json(&recipe, &store, &out, &[]);
    let outcomes = cache_outcomes(&third);
    assert_eq!(outcomes[0], "hit");
    assert!(outcomes[1..].iter().all(|c| c == "miss"), "{outcomes:?}");
    assert_ne!(third["digest"], first["digest"]);
    // Later steps produce the same layers as before: only their keys changed.
    assert_eq!(third["steps"][2]["diff_id"], first["steps"][2]["diff_id"]);
    assert_ne!(third["steps"][1]["diff_id"], first["steps"][1]["diff_id"]);
}

#[test]
fn inspect_shows_the_plan_and_what_is_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/hello.toml");
    let store = tmp.path().join("store");
    let plan = |_: ()| -> serde_json::Value {
        let out = run_ok(
            imgbuild()
                .arg("inspect")
                .arg(&recipe)
                .arg("--json")
                .arg("--store")
                .arg(&store),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = plan(());
    assert!(before["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["cached"] == false));
    let built = build_json(&recipe, &store, &tmp.path().join("out"), &[]);
    let after = plan(());
    assert!(after["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["cached"] == true));
    assert_eq!(after["steps"][0]["key"], built["steps"][0]["key"]);
}
