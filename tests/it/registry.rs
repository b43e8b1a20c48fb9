//! Registries: pushing (checked with skopeo), credentials, incremental pushes, the registry
//! build cache, interrupted pushes, corrupted blobs, and untrusted base layers.

use crate::common::{build_json, cache_outcomes, imgbuild, repo, require_tool, run_ok};
use crate::registry_support::{Mischief, Proxy, Registry, PASSWORD, USER};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn skopeo(registry: &Registry) -> Command {
    require_tool("skopeo", "skopeo");
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy");
    let _ = registry;
    cmd
}

/// `skopeo inspect --raw` of a reference: the manifest bytes.
fn remote_manifest(registry: &Registry, reference: &str) -> Vec<u8> {
    run_ok(
        skopeo(registry)
            .arg("inspect")
            .arg("--raw")
            .args(registry.skopeo_args())
            .arg(format!("docker://{reference}")),
    )
    .stdout
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A recipe of three `write` steps in its own directory; `last` is the third file's content.
fn three_layer_recipe(dir: &Path, last: &str) -> PathBuf {
    let path = dir.join("app.toml");
    fs_err::write(
        &path,
        format!(
            "[image]\nname = \"app\"\ntags = [\"1\"]\n[from]\nscratch = true\n\
             [[step]]\nwrite = \"/a\"\ncontent = \"a\\n\"\n\
             [[step]]\nwrite = \"/b\"\ncontent = \"b\\n\"\n\
             [[step]]\nwrite = \"/c\"\ncontent = \"{last}\\n\"\n"
        ),
    )
    .expect("recipe");
    path
}

#[test]
fn pushed_image_reads_back_identically_with_skopeo() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = format!("{}/team/hello:1.0", registry.host());
    let mut extra = vec!["--push".to_owned(), target.clone()];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let report = build_json(
        &repo().join("recipes/hello.toml"),
        &tmp.path().join("store"),
        &tmp.path().join("out"),
        &extra,
    );
    let digest = report["digest"].as_str().expect("digest");
    let pushed = &report["pushed"][0];
    assert_eq!(pushed["ref"], target);
    assert_eq!(pushed["digest"], digest);
    assert!(strings(&pushed["skipped"]).is_empty());

    let manifest = remote_manifest(&registry, &target);
    assert_eq!(
        sha256(&manifest),
        digest,
        "the registry serves our manifest"
    );
    let local: Value = serde_json::from_slice(
        &fs_err::read(
            tmp.path()
                .join("out/hello.oci/blobs/sha256")
                .join(&digest[7..]),
        )
        .expect("local manifest"),
    )
    .expect("json");
    let remote: Value = serde_json::from_slice(&manifest).expect("json");
    assert_eq!(local["layers"], remote["layers"]);

    // Copy it back with skopeo: same manifest digest, same layer blobs.
    let back = tmp.path().join("back");
    run_ok(
        skopeo(&registry)
            .arg("copy")
            .args(
                registry
                    .skopeo_args()
                    .iter()
                    .map(|a| a.replace("--tls-verify", "--src-tls-verify")),
            )
            .arg(format!("docker://{target}"))
            .arg(format!("oci:{}:1.0", back.display())),
    );
    let index: Value =
        serde_json::from_slice(&fs_err::read(back.join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"][0]["digest"], digest);
    for layer in local["layers"].as_array().expect("layers") {
        let d = layer["digest"].as_str().expect("digest");
        let bytes = fs_err::read(back.join("blobs/sha256").join(&d[7..])).expect("layer copied");
        assert_eq!(sha256(&bytes), d);
    }
}

#[test]
fn tls_registry_with_basic_auth_accepts_the_right_password_and_explains_a_wrong_one() {
    let registry = Registry::tls_with_auth();
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = three_layer_recipe(tmp.path(), "c");
    let target = format!("{}/app:1", registry.host());
    let push = |password: &str| {
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(tmp.path().join("store"))
            .arg("-o")
            .arg(tmp.path().join("out"))
            .args(["--push", &target])
            .args(registry.imgbuild_args())
            .env("IMGBUILD_REGISTRY_USER", USER)
            .env("IMGBUILD_REGISTRY_PASSWORD", password)
            .env("DOCKER_CONFIG", tmp.path().join("no-docker-config"))
            .output()
            .expect("imgbuild runs")
    };
    let wrong = push("not-the-password");
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "authentication to {} failed (401): check IMGBUILD_REGISTRY_USER/PASSWORD or `docker login {}`",
            registry.host(),
            registry.host()
        )),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-password"),
        "the password is never printed"
    );

    let right = push(PASSWORD);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert!(!String::from_utf8_lossy(&right.stderr).contains(PASSWORD));
    let manifest = remote_manifest(&registry, &target);
    assert!(!manifest.is_empty());

    // Credentials from a Docker config work too.
    let docker = tmp.path().join("docker");
    fs_err::create_dir_all(&docker).expect("mkdir");
    let auth = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s '{USER}:{PASSWORD}' | base64 -w0")),
    );
    fs_err::write(
        docker.join("config.json"),
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{}\"}}}}}}",
            registry.host(),
            String::from_utf8_lossy(&auth.stdout)
        ),
    )
    .expect("config.json");
    let out = run_ok(
        imgbuild()
            .arg("push")
            .arg("app:1")
            .arg(format!("{}/app:copy", registry.host()))
            .arg("--store")
            .arg(tmp.path().join("store"))
            .arg("--json")
            .args(registry.imgbuild_args())
            .env_remove("IMGBUILD_REGISTRY_USER")
            .env_remove("IMGBUILD_REGISTRY_PASSWORD")
            .env("DOCKER_CONFIG", &docker),
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        strings(&report["uploaded"]).len(),
        1,
        "only the manifest: {report}"
    );

    // And from a credential helper named in `credHelpers`.
    let bin = tmp.path().join("bin");
    fs_err::create_dir_all(&bin).expect("mkdir");
    let helper = bin.join("docker-credential-imgtest");
    fs_err::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\n[ \"$host\" = \"{}\" ] || exit 1\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$host\"\n",
            registry.host()
        ),
    )
    .expect("helper");
    run_ok(Command::new("chmod").arg("+x").arg(&helper));
    fs_err::write(
        docker.join("config.json"),
        format!(
            "{{\"credHelpers\":{{\"{}\":\"imgtest\"}}}}",
            registry.host()
        ),
    )
    .expect("config.json");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run_ok(
        imgbuild()
            .arg("push")
            .arg("app:1")
            .arg(format!("{}/app:helper", registry.host()))
            .arg("--store")
            .arg(tmp.path().join("store"))
            .args(registry.imgbuild_args())
            .env_remove("IMGBUILD_REGISTRY_USER")
            .env_remove("IMGBUILD_REGISTRY_PASSWORD")
            .env("DOCKER_CONFIG", &docker)
            .env("PATH", path),
    );
}

#[test]
fn a_second_version_uploads_only_the_changed_layer_config_and_manifest() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let target = format!("{}/app:1", registry.host());
    let mut extra = vec!["--push".to_owned(), target];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let first = build_json(
        &three_layer_recipe(tmp.path(), "c1"),
        &store,
        &tmp.path().join("out"),
        &extra,
    );
    assert_eq!(strings(&first["pushed"][0]["uploaded"]).len(), 5);
    let second = build_json(
        &three_layer_recipe(tmp.path(), "c2"),
        &store,
        &tmp.path().join("out"),
        &extra,
    );
    let steps = second["steps"].as_array().expect("steps");
    let layer = |i: usize| steps[i]["layer"].as_str().expect("layer").to_owned();
    let manifest: Value = serde_json::from_slice(
        &fs_err::read(
            tmp.path()
                .join("out/app.oci/blobs/sha256")
                .join(&second["digest"].as_str().expect("digest")[7..]),
        )
        .expect("manifest"),
    )
    .expect("json");
    let config = manifest["config"]["digest"]
        .as_str()
        .expect("config")
        .to_owned();
    let pushed = &second["pushed"][0];
    assert_eq!(
        strings(&pushed["uploaded"]),
        [
            layer(2),
            config,
            second["digest"].as_str().expect("digest").to_owned()
        ]
    );
    assert_eq!(strings(&pushed["skipped"]), [layer(0), layer(1)]);
}

#[test]
fn a_fresh_store_with_cache_from_runs_no_step_and_builds_the_same_digest() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = repo().join("recipes/hello.toml");
    let cache = format!("{}/cache/hello:buildcache", registry.host());
    let mut to = vec!["--cache-to".to_owned(), cache.clone()];
    to.extend(registry.imgbuild_args());
    to.extend(["--format", "oci", "--format", "tar"].map(str::to_owned));
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    let first = build_json(
        &recipe,
        &tmp.path().join("ci-1"),
        &tmp.path().join("out1"),
        &to,
    );
    assert!(first["cache_to"]["digest"].is_string());

    let mut from = vec!["--cache-from".to_owned(), cache];
    from.extend(registry.imgbuild_args());
    from.extend(["--format", "oci", "--format", "tar"].map(str::to_owned));
    let from: Vec<&str> = from.iter().map(String::as_str).collect();
    let fresh = tmp.path().join("ci-2");
    let second = build_json(&recipe, &fresh, &tmp.path().join("out2"), &from);
    assert!(
        cache_outcomes(&second).iter().all(|c| c == "hit"),
        "{second}"
    );
    assert_eq!(second["digest"], first["digest"]);
    assert_eq!(second["cache_from"][0]["entries"], 6);
    // The outputs needed the layers' bytes: they were fetched and verified, and the two
    // rootfs tars are identical.
    assert_eq!(
        fs_err::read(tmp.path().join("out2/hello.rootfs.tar")).expect("tar from the cache"),
        fs_err::read(tmp.path().join("out1/hello.rootfs.tar")).expect("tar from the build"),
    );
    let verify = run_ok(
        imgbuild()
            .arg("store")
            .arg("verify")
            .arg("--store")
            .arg(&fresh),
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("0 missing, 0 corrupt"));

    // A cache that does not exist yet (the first CI run) is a warning, not a failure.
    let mut missing = vec![
        "--cache-from".to_owned(),
        format!("{}/cache/none:x", registry.host()),
    ];
    missing.extend(registry.imgbuild_args());
    let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
    build_json(
        &recipe,
        &tmp.path().join("ci-3"),
        &tmp.path().join("out3"),
        &missing,
    );
}

#[test]
fn a_registry_killed_mid_push_fails_clearly_and_the_rerun_completes() {
    let mut registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("ctx");
    fs_err::create_dir_all(&ctx).expect("mkdir");
    // 80 MiB of incompressible bytes: long enough to kill the registry mid-upload.
    run_ok(
        Command::new("head")
            .args(["-c", "83886080", "/dev/urandom"])
            .stdout(
                fs_err::File::create(ctx.join("blob.bin"))
                    .expect("file")
                    .into_parts()
                    .0,
            ),
    );
    let recipe = ctx.join("big.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"big\"\ntags = [\"1\"]\n[from]\nscratch = true\n[[step]]\ncopy = \"blob.bin\"\nto = \"/blob.bin\"\n",
    )
    .expect("recipe");
    let store = tmp.path().join("store");
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(tmp.path().join("out")),
    );
    let target = format!("{}/big:1", registry.host());
    let reg_args = registry.imgbuild_args();
    let push = || {
        imgbuild()
            .arg("push")
            .arg("big:1")
            .arg(&target)
            .arg("--store")
            .arg(&store)
            .arg("--json")
            .args(&reg_args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("imgbuild push")
    };
    let child = push();
    crate::registry_support::wait_for_upload_bytes(&registry.data_dir(), Duration::from_secs(60));
    registry.kill();
    let out = child.wait_with_output().expect("push finishes");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("pushing to {target}"))
            && stderr.contains(&format!("cannot talk to registry {}", registry.host())),
        "{stderr}"
    );

    registry.restart();
    let out = push().wait_with_output().expect("push finishes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        sha256(&remote_manifest(&registry, &target)),
        report["digest"].as_str().expect("digest")
    );
    let verify = run_ok(
        imgbuild()
            .arg("store")
            .arg("verify")
            .arg("--store")
            .arg(&store),
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("0 missing, 0 corrupt"));
}

#[test]
fn a_blob_whose_bytes_do_not_match_its_digest_is_refused() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut extra = vec!["--push".to_owned(), format!("{}/app:1", registry.host())];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    build_json(
        &three_layer_recipe(tmp.path(), "c"),
        &tmp.path().join("store1"),
        &tmp.path().join("out1"),
        &extra,
    );
    let proxy = Proxy::start(registry.port(), Mischief::CorruptBlobs);
    let recipe = tmp.path().join("derived.toml");
    fs_err::write(
        &recipe,
        format!(
            "[image]\nname = \"derived\"\ntags = [\"1\"]\n[from]\nimage = \"{}/app:1\"\n",
            proxy.host()
        ),
    )
    .expect("recipe");
    let store = tmp.path().join("store2");
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(&store)
        .arg("-o")
        .arg(tmp.path().join("out2"))
        .args(["--insecure-registry", &proxy.host()])
        .output()
        .expect("imgbuild runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("pulling {}/app:1", proxy.host()))
            && stderr.contains("that hash to")
            && stderr.contains("refusing them"),
        "{stderr}"
    );
    let verify = run_ok(
        imgbuild()
            .arg("store")
            .arg("verify")
            .arg("--store")
            .arg(&store),
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("0 missing, 0 corrupt"));
}

#[test]
fn a_digest_pinned_base_builds_offline_and_its_layers_are_mounted_into_another_repo() {
    let mut registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut extra = vec!["--push".to_owned(), format!("{}/base:1", registry.host())];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let base = build_json(
        &three_layer_recipe(tmp.path(), "c"),
        &tmp.path().join("store-base"),
        &tmp.path().join("out-base"),
        &extra,
    );
    let base_digest = base["digest"].as_str().expect("digest").to_owned();
    let reference = format!("{}/base@{base_digest}", registry.host());
    let recipe = tmp.path().join("derived.toml");
    fs_err::write(
        &recipe,
        format!(
            "[image]\nname = \"derived\"\ntags = [\"1\"]\n[from]\nimage = \"{reference}\"\n\
             [[step]]\nwrite = \"/d\"\ncontent = \"d\\n\"\n"
        ),
    )
    .expect("recipe");
    let store = tmp.path().join("store");
    let target = format!("{}/derived:1", registry.host());
    let mut extra = vec!["--push".to_owned(), target];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let derived = build_json(&recipe, &store, &tmp.path().join("out"), &extra);
    assert_eq!(derived["base"]["digest"], base_digest.as_str());
    assert_eq!(derived["base"]["ref"], reference.as_str());
    let pushed = &derived["pushed"][0];
    let base_layers: Vec<String> = base["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| s["layer"].as_str().expect("layer").to_owned())
        .collect();
    assert_eq!(
        strings(&pushed["skipped"]),
        base_layers,
        "the base layers are mounted from base, not uploaded: {pushed}"
    );
    assert_eq!(strings(&pushed["uploaded"]).len(), 3, "{pushed}");

    // `imgbuild inspect` shows the resolved base.
    let inspect = run_ok(
        imgbuild()
            .args(["inspect", "derived:1", "--json", "--store"])
            .arg(&store),
    );
    let inspect: Value = serde_json::from_slice(&inspect.stdout).expect("json");
    assert_eq!(inspect["base"]["digest"], base_digest.as_str());

    // Pinned by digest with every blob in the store: no registry needed.
    registry.kill();
    let again = build_json(
        &recipe,
        &store,
        &tmp.path().join("out"),
        &["--insecure-registry", &registry.host()],
    );
    assert_eq!(again["digest"], derived["digest"]);
    assert!(cache_outcomes(&again).iter().all(|c| c == "hit"));
}

#[test]
fn a_malformed_image_reference_is_a_located_recipe_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipe = tmp.path().join("bad.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"x\"\ntags = [\"1\"]\n[from]\nimage = \"host.example/Not Valid:tag\"\n",
    )
    .expect("recipe");
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .output()
        .expect("imgbuild runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bad.toml:5"), "{stderr}");
    assert!(stderr.contains("is not an image reference"), "{stderr}");
}

#[test]
fn transient_registry_failures_are_retried_with_backoff() {
    let registry = Registry::plain();
    let proxy = Proxy::start(registry.port(), Mischief::FailEachOnce);
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = format!("{}/app:1", proxy.host());
    let report = build_json(
        &three_layer_recipe(tmp.path(), "c"),
        &tmp.path().join("store"),
        &tmp.path().join("out"),
        &["--push", &target, "--insecure-registry", &proxy.host()],
    );
    assert!(
        proxy.failed() >= 5,
        "the proxy failed {} requests",
        proxy.failed()
    );
    let pushed = &report["pushed"][0];
    assert_eq!(strings(&pushed["uploaded"]).len(), 5, "{pushed}");
    let direct = format!("{}/app:1", registry.host());
    assert_eq!(
        sha256(&remote_manifest(&registry, &direct)),
        report["digest"].as_str().expect("digest")
    );
}

#[test]
fn a_registry_that_lies_about_sizes_or_streams_forever_is_cut_off_at_the_declared_size() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut extra = vec!["--push".to_owned(), format!("{}/app:1", registry.host())];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    build_json(
        &three_layer_recipe(tmp.path(), "c"),
        &tmp.path().join("store1"),
        &tmp.path().join("out1"),
        &extra,
    );
    let cases = [
        (
            Mischief::EndlessBlobs,
            "bytes the descriptor of sha256:",
        ),
        (
            Mischief::HugeBlobLength,
            "bytes the descriptor of sha256:",
        ),
        (Mischief::ShortBlobs, "bytes for sha256:"),
        (
            Mischief::LayerSizes(1 << 50),
            "its descriptor declares 1125899906842624 bytes, more than the 1099511627776 (1 TiB) imgbuild accepts",
        ),
        // Three layers of 1 TiB each: under the cap, over any test machine's free space.
        (
            Mischief::LayerSizes(1 << 40),
            "bytes are free under",
        ),
        (
            Mischief::HugeManifests,
            "more than the 4194304 (4 MiB) imgbuild reads for a manifest or index",
        ),
    ];
    for (i, (mischief, expected)) in cases.into_iter().enumerate() {
        let proxy = Proxy::start(registry.port(), mischief);
        let recipe = tmp.path().join(format!("derived{i}.toml"));
        fs_err::write(
            &recipe,
            format!(
                "[image]\nname = \"derived\"\ntags = [\"1\"]\n[from]\nimage = \"{}/app:1\"\n",
                proxy.host()
            ),
        )
        .expect("recipe");
        let store = tmp.path().join(format!("store-{i}"));
        let started = std::time::Instant::now();
        let out = imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(tmp.path().join(format!("out-{i}")))
            .args(["--insecure-registry", &proxy.host()])
            .output()
            .expect("imgbuild runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{mischief:?}: {stderr}");
        assert!(
            stderr.contains(&format!("pulling {}/app:1", proxy.host()))
                && stderr.contains(&proxy.host())
                && stderr.contains(expected),
            "{mischief:?}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{mischief:?} took {:?}",
            started.elapsed()
        );
        // Cut off at the declared size: what the proxy could push into socket buffers
        // before imgbuild hung up, nowhere near the gigabytes it offered.
        assert!(
            proxy.sent() < 64 << 20,
            "{mischief:?}: the proxy sent {} bytes",
            proxy.sent()
        );
        let leftovers: Vec<_> = fs_err::read_dir(store.join("v1/tmp"))
            .expect("store tmp")
            .map(|e| e.expect("entry").path())
            .collect();
        assert!(leftovers.is_empty(), "{mischief:?}: {leftovers:?}");
        let verify = run_ok(
            imgbuild()
                .arg("store")
                .arg("verify")
                .arg("--store")
                .arg(&store),
        );
        assert!(String::from_utf8_lossy(&verify.stdout).contains("0 missing, 0 corrupt"));
    }
}
