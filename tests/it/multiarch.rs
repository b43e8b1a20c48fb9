//! Foreign architectures: a build whose `run` or `packages` steps (or Debian bootstrap)
//! would run another architecture's code stops before building when no binfmt_misc
//! handler with the fix-binary flag can run it, and says what to install; file steps need
//! no emulation.

use crate::common::*;
use std::path::Path;

/// qemu-user-static's aarch64 handler, as the kernel lists it, with `flags`.
fn aarch64_handler(flags: &str) -> String {
    format!(
        "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n\
         magic 7f454c460201010000000000000000000200b700\n\
         mask ffffffffffffff00fffffffffffffffffeffffff\n"
    )
}

fn arm64_recipe(dir: &Path, run_step: bool) -> std::path::PathBuf {
    let path = dir.join("arm.toml");
    let mut text = "[image]\nname = \"arm\"\nplatform = \"linux/arm64\"\n[from]\nscratch = true\n\
                    [[step]]\nwrite = \"/etc/hello\"\ncontent = \"hi\\n\"\n"
        .to_owned();
    if run_step {
        text.push_str("\n[[step]]\nrun = \"echo built > /etc/built\"\n");
    }
    fs_err::write(&path, text).unwrap();
    path
}

/// Builds with the binfmt_misc directory `binfmt`; the exit code and stderr.
fn build_with_binfmt(
    recipe: &Path,
    binfmt: &Path,
    store: &Path,
    out: &Path,
) -> (Option<i32>, String) {
    build_outcome(recipe, store, out, &[("IMGBUILD_BINFMT_DIR", binfmt)])
}

#[test]
fn a_foreign_run_step_without_a_binfmt_handler_stops_before_building() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = arm64_recipe(tmp.path(), true);
    let binfmt = tmp.path().join("binfmt");
    fs_err::create_dir(&binfmt).unwrap();
    let (store, out) = (tmp.path().join("store"), tmp.path().join("out"));
    let (code, stderr) = build_with_binfmt(&recipe, &binfmt, &store, &out);
    assert_eq!(code, Some(2), "{stderr}");
    for needle in [
        "arm.toml:11",
        "step 2 runs arm64 code",
        "no binfmt_misc handler for arm64",
        "apt-get install qemu-user-static binfmt-support",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in:\n{stderr}");
    }
    // Nothing was built: the write step before it did not run either.
    assert!(!stderr.contains("[1]"), "{stderr}");
    assert!(!out.exists());

    // A handler without the fix-binary flag cannot be reached from the sandbox.
    fs_err::write(binfmt.join("qemu-aarch64"), aarch64_handler("POC")).unwrap();
    let (code, stderr) = build_with_binfmt(&recipe, &binfmt, &store, &out);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("without the fix-binary flag (F)"),
        "{stderr}"
    );
}

#[test]
fn foreign_file_steps_need_no_emulation() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = arm64_recipe(tmp.path(), false);
    let binfmt = tmp.path().join("binfmt");
    fs_err::create_dir(&binfmt).unwrap();
    let out = tmp.path().join("out");
    let (code, stderr) = build_with_binfmt(&recipe, &binfmt, &tmp.path().join("store"), &out);
    assert_eq!(code, Some(0), "{stderr}");
    let layout = out.join("arm.oci");
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        let hex = digest
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap()
            .to_owned();
        read(&layout.join("blobs/sha256").join(hex))
    };
    let manifest = blob(&read(&layout.join("index.json"))["manifests"][0]["digest"]);
    let config = blob(&manifest["config"]["digest"]);
    assert_eq!(config["architecture"], "arm64");
}
