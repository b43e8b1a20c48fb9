//! Every shipped recipe builds, and its OCI outputs pass skopeo and umoci; the hello
//! recipe's unpacked tree is exactly what the recipe says.

use crate::common::*;
use std::process::Command;

/// Unpacks an OCI layout with umoci and returns the rootfs path.
fn umoci_unpack(layout_ref: &str, bundle: &std::path::Path) -> std::path::PathBuf {
    run_ok(
        Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(layout_ref)
            .arg(bundle),
    );
    bundle.join("rootfs")
}

#[test]
fn every_recipe_builds_and_passes_skopeo_and_umoci() {
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    for recipe in shipped_recipes() {
        let tmp = tempfile::tempdir().unwrap();
        // Debian bases are bootstrapped once for the whole suite.
        let (store, out) = (shared_store().to_owned(), tmp.path().join("out"));
        let report = build_json(
            &recipe,
            &store,
            &out,
            &[
                // A multi-platform recipe's amd64 image (docker-archive and tar hold one).
                "--platform",
                "linux/amd64",
                "-f",
                "oci",
                "-f",
                "oci-archive",
                "-f",
                "docker-archive",
                "-f",
                "tar",
            ],
        );
        let digest = report["digest"].as_str().unwrap().to_owned();
        let name = report["image"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let tag = report["tags"][0].as_str().unwrap().to_owned();
        let layout = out.join(format!("{name}.oci"));

        let inspect = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:{tag}", layout.display())),
        );
        let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(inspected["Digest"], digest, "{}", recipe.display());
        let layer_count = inspected["Layers"].as_array().unwrap().len();

        let archive = out.join(format!("{name}.oci.tar"));
        let inspect = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}:{tag}", archive.display())),
        );
        let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(inspected["Digest"], digest);

        let docker = out.join(format!("{name}.docker.tar"));
        let inspect = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("docker-archive:{}", docker.display())),
        );
        let inspected: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(inspected["Layers"].as_array().unwrap().len(), layer_count);

        // umoci 0.4 reads gzip layers only: skopeo decompresses our zstd layers (checking
        // every digest) and recompresses them, then umoci unpacks the result.
        let gz = tmp.path().join("gz");
        run_ok(
            Command::new("skopeo")
                .args(["copy", "--dest-compress-format", "gzip"])
                .arg(format!("oci:{}:{tag}", layout.display()))
                .arg(format!("oci:{}:{tag}", gz.display())),
        );
        let via_skopeo = describe_tree(&umoci_unpack(
            &format!("{}:{tag}", gz.display()),
            &tmp.path().join("b1"),
        ));

        // The same recipe built with gzip layers unpacks to the same tree.
        let gzip_out = tmp.path().join("gzip-out");
        build_json(
            &recipe,
            &store,
            &gzip_out,
            &["--platform", "linux/amd64", "--compression", "gzip"],
        );
        let gzip_layout = gzip_out.join(format!("{name}.oci"));
        let direct = describe_tree(&umoci_unpack(
            &format!("{}:{tag}", gzip_layout.display()),
            &tmp.path().join("b2"),
        ));
        assert_eq!(via_skopeo, direct);

        // The flattened tar holds the same tree.
        let flat = tmp.path().join("flat");
        fs_err::create_dir_all(&flat).unwrap();
        run_ok(
            Command::new("tar")
                .arg("-xpf")
                .arg(out.join(format!("{name}.rootfs.tar")))
                .arg("-C")
                .arg(&flat)
                .arg("--numeric-owner"),
        );
        assert_eq!(
            describe_tree(&flat),
            direct,
            "{}: flattened tar differs from umoci's unpack",
            recipe.display()
        );
    }
}

#[test]
fn hello_unpacks_to_exactly_what_the_recipe_says() {
    require_tool("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let recipe = repo().join("recipes/hello.toml");
    build_json(
        &recipe,
        &tmp.path().join("store"),
        &tmp.path().join("out"),
        &["--compression", "gzip"],
    );
    let rootfs = umoci_unpack(
        &format!("{}:1.0", tmp.path().join("out/hello.oci").display()),
        &tmp.path().join("bundle"),
    );
    let expected = [
        "d 755 0:0 etc",
        "d 755 0:0 etc/app",
        "d 755 0:0 opt",
        "d 755 0:0 opt/app",
        "d 755 0:0 opt/app/bin",
        "d 755 0:0 usr",
        "d 755 0:0 usr/bin",
        "d 755 0:0 var",
        "d 755 0:0 var/lib",
        "d 750 1000:1000 var/lib/app",
        "f 640 1000:1000 etc/app/config.toml",
        "f 644 0:0 etc/motd",
        "f 755 0:0 opt/app/bin/hello",
        "l 777 0:0 usr/bin/hello /opt/app/bin/hello",
    ];
    let mut expected: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(describe_tree(&rootfs), expected);
    assert_eq!(
        fs_err::read(rootfs.join("opt/app/bin/hello")).unwrap(),
        fs_err::read(repo().join("recipes/hello/app/bin/hello")).unwrap()
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("etc/app/config.toml")).unwrap(),
        "greeting = \"hello\"\n"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs_err::read(tmp.path().join("bundle/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["process"]["args"][0], "/usr/bin/hello");
    assert_eq!(config["process"]["cwd"], "/var/lib/app");
    assert_eq!(config["process"]["user"]["uid"], 1000);
}
