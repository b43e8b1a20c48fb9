//! `build --dry-run` and `inspect RECIPE`: the plan of every shipped recipe, computed
//! without the network and without writing to the store, the lock or the output.

use crate::common::{build_json, copy_tree, imgbuild, repo, require_tool, run_ok, shipped_recipes};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every regular file below `root` with the sha256 of its bytes, and every directory.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("find . -type d -printf 'dir %p\\n' && find . -type f -exec sha256sum {} +")
            .current_dir(root),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap_or((l, ""));
            (b.trim().to_owned(), a.to_owned())
        })
        .collect()
}

fn dry_run(recipe: &Path, store: &Path) -> Value {
    // In a network namespace of its own: a plan that reached for the network would fail.
    let out = run_ok(
        Command::new("unshare")
            .arg("--net")
            .arg(env!("CARGO_BIN_EXE_imgbuild"))
            .arg("build")
            .arg(recipe)
            .args(["--dry-run", "--json", "--store"])
            .arg(store),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn dry_run_of_every_shipped_recipe_fetches_and_writes_nothing() {
    require_tool("unshare", "util-linux");
    let tmp = tempfile::tempdir().unwrap();
    let recipes = tmp.path().join("recipes");
    copy_tree(&repo().join("recipes"), &recipes);
    let store = tmp.path().join("store");
    // A store with an image, a recorded plan, and the locked packages of debian-minimal
    // (`lock` fetches them; the lock itself matches and stays as it is).
    let hello = build_json(
        &recipes.join("hello.toml"),
        &store,
        &tmp.path().join("out"),
        &[],
    );
    run_ok(
        imgbuild()
            .arg("lock")
            .arg(recipes.join("debian-minimal.toml"))
            .arg("--store")
            .arg(&store),
    );
    // Opening the store may checkpoint SQLite's write-ahead log into the index; settle it.
    run_ok(imgbuild().args(["store", "ls", "--store"]).arg(&store));
    let (store_before, recipes_before) = (snapshot(&store), snapshot(&recipes));

    let mut plans = BTreeMap::new();
    for recipe in shipped_recipes() {
        let copy = recipes.join(recipe.file_name().unwrap());
        let plan = dry_run(&copy, &store);
        let inspected = run_ok(
            imgbuild()
                .arg("inspect")
                .arg(&copy)
                .args(["--json", "--store"])
                .arg(&store),
        );
        let inspected: Value = serde_json::from_slice(&inspected.stdout).unwrap();
        assert_eq!(plan, inspected, "inspect RECIPE is the dry-run's plan");
        plans.insert(
            recipe.file_stem().unwrap().to_string_lossy().into_owned(),
            plan,
        );
    }
    assert_eq!(snapshot(&store), store_before, "the store changed");
    assert_eq!(
        snapshot(&recipes),
        recipes_before,
        "a recipe or lock changed"
    );
    assert!(!tmp.path().join("recipes/out").exists());

    // hello: built, so every key is the build's and cached.
    let plan = &plans["hello"];
    for (planned, built) in plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .zip(hello["steps"].as_array().unwrap())
    {
        assert_eq!(planned["key"], built["key"]);
        assert_eq!(planned["cached"], true);
    }
    // debian-minimal: its packages are in the store, so it is planned in full offline,
    // and nothing is cached yet, with the reason.
    let minimal = &plans["debian-minimal"]["units"][0];
    assert!(minimal["unresolved"].is_null(), "{minimal}");
    assert!(minimal["base_key"].is_string());
    assert_eq!(minimal["base_cached"], false);
    assert_eq!(
        minimal["base_why"],
        "no earlier build of this recipe in this store"
    );
    // debian-vm: its packages are not, so it says what is missing instead of fetching.
    let vm = &plans["debian-vm"]["units"][0];
    let reason = vm["unresolved"].as_str().unwrap_or_default();
    assert!(reason.contains("not in the store yet"), "{vm}");
    assert!(vm["steps"][0]["key"].is_null());
    // multistage: both units, the stage first.
    let units = plans["multistage"]["units"].as_array().unwrap();
    assert_eq!(units[0]["unit"], "stage build");
    assert_eq!(units[1]["unit"], "image");
}
