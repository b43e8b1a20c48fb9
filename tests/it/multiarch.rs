//! Foreign architectures: a build whose `run` or `packages` steps (or Debian bootstrap)
//! would run another architecture's code stops before building when no binfmt_misc
//! handler with the fix-binary flag can run it, and says what to install; file steps need
//! no emulation.

use crate::common::*;
use std::path::Path;
use std::process::Command;

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

/// A blob of an OCI layout.
fn layout_blob(layout: &Path, digest: &serde_json::Value) -> Vec<u8> {
    let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
    fs_err::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

fn layout_json(layout: &Path, digest: &serde_json::Value) -> serde_json::Value {
    serde_json::from_slice(&layout_blob(layout, digest)).unwrap()
}

/// The ELF machine (`e_machine`) of `path` in the image whose manifest is `manifest`:
/// the uppermost layer that has the file wins.
fn elf_machine(layout: &Path, manifest: &serde_json::Value, path: &str) -> u16 {
    let manifest = layout_json(layout, manifest);
    for layer in manifest["layers"].as_array().unwrap().iter().rev() {
        let bytes = layout_blob(layout, &layer["digest"]);
        let plain = match bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            true => zstd::decode_all(&bytes[..]).unwrap(),
            false => bytes,
        };
        let mut archive = tar::Archive::new(&plain[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            if name.trim_start_matches("./") == path {
                let mut head = [0u8; 20];
                std::io::Read::read_exact(&mut entry, &mut head).unwrap();
                assert_eq!(&head[..4], b"\x7fELF", "{path} is not ELF");
                return u16::from_le_bytes([head[18], head[19]]);
            }
        }
    }
    panic!("{path} is in no layer");
}

const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// The index of a multi-platform layout (through `index.json`), with its digest.
fn layout_index(layout: &Path, tag: &str) -> (String, serde_json::Value) {
    let top: serde_json::Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {top}"))
        .clone();
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let digest = entry["digest"].as_str().unwrap().to_owned();
    (digest, layout_json(layout, &entry["digest"]))
}

#[test]
fn the_multiarch_recipe_builds_one_index_for_amd64_and_arm64() {
    require_tool("skopeo", "skopeo");
    let recipe = repo().join("recipes/multiarch.toml");
    let tmp = tempfile::tempdir().unwrap();
    let registry = crate::registry_support::Registry::plain();
    let target = format!("{}/team/multiarch:bookworm", registry.host());
    let out = tmp.path().join("out");
    let mut extra = vec![
        "--locked",
        "-f",
        "oci",
        "-f",
        "oci-archive",
        "--push",
        &target,
    ];
    let registry_args = registry.imgbuild_args();
    extra.extend(registry_args.iter().map(String::as_str));
    let report = build_json(&recipe, shared_store(), &out, &extra);
    let layout = out.join("multiarch.oci");
    let (digest, index) = layout_index(&layout, "bookworm");
    assert_eq!(report["index"], digest.as_str());
    let manifests = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = manifests
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap(),
                p["variant"]
                    .as_str()
                    .map(|v| format!("/{v}"))
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    // Each platform's report is its manifest.
    for (i, m) in manifests.iter().enumerate() {
        assert_eq!(report["platforms"][i]["digest"], m["digest"]);
    }
    assert_eq!(
        elf_machine(&layout, &manifests[0]["digest"], "usr/bin/bash"),
        EM_X86_64
    );
    assert_eq!(
        elf_machine(&layout, &manifests[1]["digest"], "usr/bin/bash"),
        EM_AARCH64
    );
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let config = layout_json(
            &layout,
            &layout_json(&layout, &manifests[i]["digest"])["config"]["digest"],
        );
        assert_eq!(config["architecture"], *arch);
    }

    // skopeo reads the index from the layout, the archive and the registry, and picks
    // each platform's image from it.
    let skopeo = |args: &[&str], reference: &str| -> serde_json::Value {
        let out = run_ok(
            Command::new("skopeo")
                .arg("--insecure-policy")
                .args(args)
                .arg("inspect")
                .args(registry.skopeo_args())
                .arg(reference),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let archive = out.join("multiarch.oci.tar");
    for reference in [
        format!("oci:{}:bookworm", layout.display()),
        format!("oci-archive:{}:bookworm", archive.display()),
        format!("docker://{target}"),
    ] {
        for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
            // skopeo names the index by its digest and describes the platform's image.
            let inspected = skopeo(&["--override-arch", arch], &reference);
            assert_eq!(inspected["Digest"], digest.as_str(), "{reference}");
            assert_eq!(inspected["Architecture"], *arch, "{reference}");
            let layers = layout_json(&layout, &manifests[i]["digest"])["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].clone())
                .collect::<Vec<_>>();
            assert_eq!(
                inspected["Layers"].as_array().unwrap(),
                &layers,
                "{reference} {arch}"
            );
        }
    }
    let raw = run_ok(
        Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(registry.skopeo_args())
            .arg(format!("docker://{target}")),
    );
    assert_eq!(
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&raw.stdout))
        ),
        digest,
        "the registry holds the index under the tag"
    );
    // `imgbuild push` of the layout sends the same index, every platform with it.
    let copy = format!("{}/team/copy:bookworm", registry.host());
    run_ok(
        imgbuild()
            .arg("push")
            .arg(format!("{}:bookworm", layout.display()))
            .arg(&copy)
            .args(&registry_args),
    );
    for (i, arch) in ["amd64", "arm64"].iter().enumerate() {
        let inspected = skopeo(&["--override-arch", arch], &format!("docker://{copy}"));
        assert_eq!(inspected["Digest"], digest.as_str());
        assert_eq!(inspected["Architecture"], *arch);
        assert_eq!(
            inspected["Layers"].as_array().unwrap().len(),
            layout_json(&layout, &manifests[i]["digest"])["layers"]
                .as_array()
                .unwrap()
                .len()
        );
    }

    // Pulled back per platform: the arm64 image copied out of the registry has an AArch64 bash.
    let pulled = tmp.path().join("pulled");
    run_ok(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "--override-arch",
                "arm64",
                "copy",
                "--src-tls-verify=false",
            ])
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:arm", pulled.display())),
    );
    let top: serde_json::Value =
        serde_json::from_slice(&fs_err::read(pulled.join("index.json")).unwrap()).unwrap();
    assert_eq!(top["manifests"][0]["digest"], manifests[1]["digest"]);
    assert_eq!(
        elf_machine(&pulled, &top["manifests"][0]["digest"], "usr/bin/bash"),
        EM_AARCH64
    );

    // Formats that hold one platform are refused with the recipe's `platforms` line...
    let refused = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(shared_store())
        .args(["-f", "tar", "-o"])
        .arg(tmp.path().join("x"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("multiarch.toml:11"), "{stderr}");
    assert!(
        stderr.contains("--format tar takes one platform"),
        "{stderr}"
    );
    assert!(stderr.contains("--platform linux/amd64"), "{stderr}");
    // ... and `--platform` picks one, from the store: the same manifest as in the index.
    let one = build_json(
        &recipe,
        shared_store(),
        &tmp.path().join("one"),
        &["--locked", "--platform", "linux/arm64", "-f", "tar"],
    );
    assert_eq!(one["digest"], manifests[1]["digest"]);
    assert!(cache_outcomes(&one).iter().all(|c| c == "hit"), "{one}");

    // A fresh store builds the same index, byte for byte.
    let fresh = tmp.path().join("fresh-store");
    let again = build_json(
        &recipe,
        &fresh,
        &tmp.path().join("again"),
        &["--locked", "-f", "oci"],
    );
    // Built, not cached, the arm64 `packages` and `run` steps ran under qemu-user.
    let emulated = |platform: usize| -> Vec<bool> {
        again["platforms"][platform]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["emulated"].as_bool().unwrap_or(false))
            .collect()
    };
    assert_eq!(emulated(0), [false, false, false]);
    assert_eq!(
        emulated(1),
        [true, true, false],
        "{}",
        again["platforms"][1]
    );
    assert_eq!(
        again["index"],
        digest.as_str(),
        "the index differs between two stores"
    );
}
