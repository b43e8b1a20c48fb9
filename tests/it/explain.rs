//! `build --explain` and `--json`'s `why`: each miss names the first input of its key that
//! differs from the last build of the recipe (a copied file, a step's field, the epoch, a
//! stage's step, the base below).

use crate::common::{imgbuild, run_ok};
use serde_json::Value;

const RECIPE: &str = r#"
[image]
name = "explained"

[from]
scratch = true

[stage.tool]
from = { scratch = true }
step = [
  { write = "/tool", content = "tool v1\n" },
]

[[step]]
copy = "files/a.txt"
to = "/a.txt"

[[step]]
write = "/etc/b"
content = "b v1\n"

[[step]]
copy = "/tool"
from_stage = "tool"
to = "/usr/bin/tool"
"#;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("files")).unwrap();
        fs_err::write(dir.path().join("files/a.txt"), "a v1\n").unwrap();
        fs_err::write(dir.path().join("recipe.toml"), RECIPE).unwrap();
        Self { dir }
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }

    fn edit(&self, from: &str, to: &str) {
        let text = fs_err::read_to_string(self.path("recipe.toml")).unwrap();
        assert!(text.contains(from), "{from}");
        fs_err::write(self.path("recipe.toml"), text.replace(from, to)).unwrap();
    }

    /// Builds with `--json --explain` (and `SOURCE_DATE_EPOCH=epoch`); returns the report
    /// and stderr.
    fn build(&self, epoch: u64) -> (Value, String) {
        let out = run_ok(
            imgbuild()
                .arg("build")
                .arg(self.path("recipe.toml"))
                .args(["--json", "--explain", "-o"])
                .arg(self.path("out"))
                .arg("--store")
                .arg(self.path("store"))
                .env("SOURCE_DATE_EPOCH", epoch.to_string()),
        );
        (
            serde_json::from_slice(&out.stdout).unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn dry_run(&self, epoch: u64) -> Value {
        let out = run_ok(
            imgbuild()
                .arg("build")
                .arg(self.path("recipe.toml"))
                .args(["--dry-run", "--json", "--store"])
                .arg(self.path("store"))
                .env("SOURCE_DATE_EPOCH", epoch.to_string()),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

/// The `why` of every step of the image, by step number (None for a hit).
fn whys(report: &Value, key: &str) -> Vec<Option<String>> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["why"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_first_build_has_no_earlier_build_to_compare_with() {
    let p = Project::new();
    let (report, _) = p.build(0);
    let first = whys(&report, "steps");
    assert!(
        first
            .iter()
            .all(|w| w.as_deref() == Some("no earlier build of this recipe in this store")),
        "{first:?}"
    );
    let (again, _) = p.build(0);
    assert_eq!(whys(&again, "steps"), vec![None, None, None]);
}

#[test]
fn a_changed_copied_file_is_named_by_its_path() {
    let p = Project::new();
    p.build(0);
    fs_err::write(p.path("files/a.txt"), "a v2\n").unwrap();
    let planned = p.dry_run(0);
    assert_eq!(
        planned["steps"][0]["why"], "copied file /a.txt changed",
        "{planned}"
    );
    let (report, stderr) = p.build(0);
    let why = whys(&report, "steps");
    assert_eq!(why[0].as_deref(), Some("copied file /a.txt changed"));
    assert_eq!(why[1].as_deref(), Some("step 1 below it changed"));
    assert!(stderr.contains("(copied file /a.txt changed)"), "{stderr}");
}

#[test]
fn a_changed_step_names_the_field() {
    let p = Project::new();
    p.build(0);
    p.edit("b v1", "b v2");
    let (report, _) = p.build(0);
    assert_eq!(
        whys(&report, "steps"),
        vec![
            None,
            Some("the step's `content` changed".into()),
            Some("step 2 below it changed".into())
        ]
    );
}

#[test]
fn a_changed_epoch_is_named_with_both_values() {
    let p = Project::new();
    p.build(0);
    let (report, _) = p.build(1_700_000_000);
    let why = whys(&report, "steps");
    assert_eq!(
        why[0].as_deref(),
        Some("SOURCE_DATE_EPOCH changed (0 -> 1700000000)")
    );
    // The stage's base is below the epoch too.
    assert_eq!(
        whys(&report, "stage_steps")[0].as_deref(),
        Some("SOURCE_DATE_EPOCH changed (0 -> 1700000000)")
    );
}

#[test]
fn a_changed_stage_step_is_named_in_the_stage_and_where_it_is_copied() {
    let p = Project::new();
    p.build(0);
    p.edit("tool v1", "tool v2");
    let (report, _) = p.build(0);
    assert_eq!(
        whys(&report, "stage_steps"),
        vec![Some("the step's `content` changed".into())]
    );
    assert_eq!(report["stage_steps"][0]["unit"], "stage tool");
    assert_eq!(
        whys(&report, "steps"),
        vec![None, None, Some("stage `tool` changed".into())]
    );
    // The plan shows the same, unit by unit, before anything is built.
    p.edit("tool v2", "tool v3");
    let planned = p.dry_run(0);
    let units = planned["units"].as_array().unwrap();
    assert_eq!(units[0]["unit"], "stage tool");
    assert_eq!(units[0]["steps"][0]["why"], "the step's `content` changed");
    assert_eq!(units[1]["unit"], "image");
    assert_eq!(units[1]["steps"][2]["why"], "stage `tool` changed");
    assert_eq!(units[1]["steps"][0]["cached"], true);
}

#[test]
fn a_layer_removed_from_the_store_is_explained_as_evicted() {
    let p = Project::new();
    p.build(0);
    let store = p.path("store");
    // Drop everything but what the cache needs nothing of: only tags keep layers.
    run_ok(
        imgbuild()
            .args(["store", "rm", "explained:latest", "--store"])
            .arg(&store),
    );
    run_ok(
        imgbuild()
            .args(["store", "gc", "--keep-recent", "0s", "--store"])
            .arg(&store),
    );
    let (report, _) = p.build(0);
    let why = whys(&report, "steps");
    assert!(
        why.iter().all(|w| w.as_deref()
            == Some("same key as the last build, but its layer is no longer in the store")),
        "{why:?}"
    );
}
