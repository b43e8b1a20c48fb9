//! A build killed with SIGKILL at any moment leaves the store consistent, and two builds
//! can share one store at the same time.

use crate::common::*;
use std::io::Write;
use std::time::Duration;

/// A recipe that copies a large file, so that a build takes long enough to be killed.
pub(crate) fn big_recipe(dir: &std::path::Path, megabytes: usize) -> std::path::PathBuf {
    fs_err::create_dir_all(dir.join("data")).unwrap();
    let mut f = std::io::BufWriter::new(fs_err::File::create(dir.join("data/big.bin")).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..megabytes {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&block).unwrap();
    }
    drop(f);
    let recipe = dir.join("big.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"big\"\n[[step]]\ncopy = \"data\"\nto = \"/data\"\n[[step]]\nwrite = \"/etc/x\"\ncontent = \"x\"\n",
    )
    .unwrap();
    recipe
}

pub(crate) fn verify_clean(store: &std::path::Path) {
    let out = run_ok(
        imgbuild()
            .args(["store", "verify", "--json", "--store"])
            .arg(store),
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["missing"].as_array().unwrap().is_empty(), "{report}");
    assert!(report["corrupt"].as_array().unwrap().is_empty(), "{report}");
}

#[test]
fn kill_9_mid_build_leaves_the_store_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = big_recipe(&tmp.path().join("src"), 300);
    let store = tmp.path().join("store");
    let out = tmp.path().join("out");
    for delay_ms in [150, 400, 800, 1300] {
        let mut child = imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(&out)
            .args(["-f", "oci", "-f", "oci-archive"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        verify_clean(&store);
        // Whatever was killed half-way is not at the output path.
        for stray in fs_err::read_dir(&out).into_iter().flatten() {
            let name = stray.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                name == "big.oci" || name == "big.oci.tar" || name.starts_with(".imgbuild-"),
                "{name}"
            );
        }
    }
    let report = build_json(&recipe, &store, &out, &["-f", "oci"]);
    verify_clean(&store);
    run_ok(imgbuild().args(["store", "gc", "--store"]).arg(&store));
    verify_clean(&store);
    let again = build_json(&recipe, &store, &out, &["-f", "oci"]);
    assert_eq!(report["digest"], again["digest"]);
}

#[test]
fn two_builds_at_once_on_one_store_both_succeed() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = big_recipe(&tmp.path().join("src"), 64);
    let store = tmp.path().join("store");
    let spawn = |i: usize| {
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(tmp.path().join(format!("out{i}")))
            .arg("--json")
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children = [spawn(0), spawn(1), spawn(2)];
    let mut digests = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        digests.push(report["digest"].clone());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
    verify_clean(&store);
}
