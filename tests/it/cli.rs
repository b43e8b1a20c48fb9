//! The command line itself: completions and the man page, `inspect` of a store image by
//! name alone and of an OCI layout, and step errors that name their step once.

use crate::common::*;

#[test]
fn completions_and_the_man_page_come_from_the_command_line() {
    let bash = run_ok(imgbuild().args(["completions", "bash"]));
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        script.contains("complete -F _imgbuild") && script.contains("inspect"),
        "{script}"
    );
    let zsh = run_ok(imgbuild().args(["completions", "zsh"]));
    assert!(String::from_utf8_lossy(&zsh.stdout).starts_with("#compdef imgbuild"));

    let man = run_ok(imgbuild().arg("man"));
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
    assert!(page.contains("\n.TH imgbuild 1"), "{page}");
    assert!(page.contains("completions"), "{page}");
    let tmp = tempfile::tempdir().unwrap();
    run_ok(imgbuild().arg("man").arg("--dir").arg(tmp.path()));
    let build = fs_err::read_to_string(tmp.path().join("imgbuild-build.1")).unwrap();
    assert!(build.contains(".TH imgbuild-build 1"), "{build}");
}

#[test]
fn inspect_finds_name_latest_and_reads_an_oci_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = tmp.path().join("tiny.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"tiny\"\n\n[[step]]\nwrite = \"/etc/tiny\"\ncontent = \"x\\n\"\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    let report = build_json(&recipe, &store, &out, &[]);
    let digest = report["digest"].as_str().unwrap();

    let by_name = run_ok(
        imgbuild()
            .arg("inspect")
            .arg("tiny")
            .arg("--store")
            .arg(&store),
    );
    let text = String::from_utf8_lossy(&by_name.stdout);
    assert!(text.starts_with(&format!("tiny:latest {digest}")), "{text}");
    assert!(text.contains("write /etc/tiny"), "{text}");

    let layout = out.join("tiny.oci");
    for target in [
        layout.display().to_string(),
        format!("{}:latest", layout.display()),
    ] {
        let inspected = run_ok(
            imgbuild()
                .args(["inspect", &target, "--json"])
                .arg("--store")
                .arg(&store),
        );
        let json: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
        assert_eq!(json["digest"], digest, "{json}");
        assert_eq!(
            json["config"]["history"][0]["created_by"],
            "imgbuild: write /etc/tiny"
        );
    }

    let unknown = imgbuild()
        .args(["inspect", "nosuch", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("`nosuch`"));
}

#[test]
fn a_sandbox_failure_names_its_step_once() {
    require_tool("busybox", "busybox-static");
    let tmp = tempfile::tempdir().unwrap();
    let busybox = std::process::Command::new("sh")
        .args(["-c", "command -v busybox"])
        .output()
        .unwrap();
    let busybox = String::from_utf8_lossy(&busybox.stdout).trim().to_owned();
    fs_err::copy(&busybox, tmp.path().join("busybox")).unwrap();
    let recipe = tmp.path().join("workdir.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"workdir\"\n\n[[step]]\ncopy = \"busybox\"\nto = \"/bin/busybox\"\n\n\
         [[step]]\nsymlink = \"/bin/sh\"\ntarget = \"busybox\"\n\n\
         [[step]]\nrun = \"true\"\nworkdir = \"/no/such/dir\"\n",
    )
    .unwrap();
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("step 3: sandbox setup failed at \"change to the step's workdir\""),
        "{stderr}"
    );
    assert!(!stderr.contains("step step"), "{stderr}");
    assert_eq!(stderr.matches("step 3:").count(), 1, "{stderr}");
}

/// `build --locked` with `files` copied from `recipes/` into a fresh directory (some lock
/// left out or changed by `edit`): it must fail before any network access; returns stderr.
fn locked_failure(files: &[&str], recipe: &str, edit: impl FnOnce(&std::path::Path)) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("recipes");
    fs_err::create_dir_all(&dir).unwrap();
    for f in files {
        copy_tree(&repo().join("recipes").join(f), &dir.join(f));
    }
    edit(&dir);
    let out = imgbuild()
        .arg("build")
        .arg(dir.join(recipe))
        .arg("--locked")
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", dir.display()), "");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn locked_errors_name_the_lock_file_and_a_command_that_updates_it() {
    let missing = locked_failure(
        &["debian-minimal.toml", "common"],
        "debian-minimal.toml",
        |_| {},
    );
    assert!(
        missing.contains("--locked: debian-minimal.lock: the lock file does not exist"),
        "{missing}"
    );
    assert!(
        missing.contains("run `imgbuild lock debian-minimal.toml`"),
        "{missing}"
    );

    let stale = locked_failure(
        &["debian-minimal.toml", "debian-minimal.lock", "common"],
        "debian-minimal.toml",
        |dir| {
            let recipe = dir.join("debian-minimal.toml");
            let text = fs_err::read_to_string(&recipe).unwrap();
            fs_err::write(
                &recipe,
                format!("{text}\n[[step]]\npackages = [\"curl\"]\n"),
            )
            .unwrap();
        },
    );
    assert!(
        stale.contains("--locked: debian-minimal.lock: the lock is out of date: it was resolved with packages = "),
        "{stale}"
    );
    assert!(!stale.contains("recipe.lock"), "{stale}");

    // A stage's lock is written by `imgbuild lock` of its recipe too.
    let stage = locked_failure(&["multistage.toml", "hello-c"], "multistage.toml", |_| {});
    assert!(
        stage.contains("--locked: multistage.build.lock: the lock file does not exist"),
        "{stage}"
    );
    assert!(
        stage.contains("run `imgbuild lock multistage.toml` (or build without --locked) and commit multistage.build.lock"),
        "{stage}"
    );
    assert!(!stage.contains("multistage.build.toml"), "{stage}");
}
