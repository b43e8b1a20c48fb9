//! SBOMs and provenance: `--sbom spdx|cyclonedx` and `--provenance` write documents beside
//! the outputs that the SPDX project's validator, the CycloneDX 1.6 schema and the in-toto
//! attestation framework accept, whose package set equals the one syft finds in the built
//! OCI image and the one in the lock; pushed with the image, they are attached as OCI
//! referrers (through the `sha256-<digest>` tag on Debian's docker-registry, which has no
//! referrers API).

use crate::common::*;
use crate::registry_support::Registry;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const EPOCH: &str = "1700000000";

/// The two string fields `a` and `b` of `v`.
fn pair(v: &Value, a: &str, b: &str) -> (String, String) {
    let field = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("no string {k} in {v}"))
            .to_owned()
    };
    (field(a), field(b))
}

/// (name, version) of every Debian package an SPDX document lists.
fn spdx_packages(doc: &Value) -> BTreeSet<(String, String)> {
    doc["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:deb/"))
        })
        .map(|p| pair(p, "name", "versionInfo"))
        .collect()
}

/// (name, version) of every Debian package a CycloneDX BOM lists.
fn cyclonedx_packages(bom: &Value) -> BTreeSet<(String, String)> {
    bom["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| pair(c, "name", "version"))
        .collect()
}

/// (name, version) of every `[[package]]` of a lock file.
fn lock_packages(lock: &Path) -> BTreeSet<(String, String)> {
    let text = fs_err::read_to_string(lock).unwrap();
    let doc: Value = serde_json::to_value(toml::from_str::<toml::Value>(&text).unwrap()).unwrap();
    doc["package"]
        .as_array()
        .expect("[[package]]")
        .iter()
        .map(|p| pair(p, "name", "version"))
        .collect()
}

/// (name, version) of every Debian package syft finds in an OCI layout.
fn syft_packages(layout: &Path) -> BTreeSet<(String, String)> {
    require_tool(
        "syft",
        "syft (scripts/install-test-deps.sh installs it from PyPI)",
    );
    let out = run_ok(
        Command::new("syft")
            .arg("scan")
            .arg(format!("oci-dir:{}", layout.display()))
            .args(["-o", "syft-json", "-q"])
            .env("SYFT_CHECK_FOR_APP_UPDATE", "false"),
    );
    let doc: Value = serde_json::from_slice(&out.stdout).expect("syft JSON");
    doc["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .filter(|a| a["type"] == "deb")
        .map(|a| pair(a, "name", "version"))
        .collect()
}

/// `pyspdxtools -i FILE` accepts the document.
fn assert_spdx_valid(path: &Path) {
    require_tool("pyspdxtools", "spdx-tools (scripts/install-test-deps.sh)");
    let out = Command::new("pyspdxtools")
        .arg("-i")
        .arg(path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && !text.to_lowercase().contains("invalid"),
        "pyspdxtools rejected {}:\n{text}",
        path.display()
    );
}

/// The CycloneDX 1.6 JSON schema accepts the BOM (cyclonedx-python-lib's strict
/// validator).
fn assert_cyclonedx_valid(path: &Path) {
    const CHECK: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    print(getattr(error.data, "message", error.data))
    sys.exit(1)
"#;
    require_tool(
        "imgbuild-test-python3",
        "scripts/install-test-deps.sh's virtualenv",
    );
    run_ok(
        Command::new("imgbuild-test-python3")
            .args(["-c", CHECK])
            .arg(path),
    );
}

/// The in-toto attestation framework accepts the provenance
/// (`scripts/validate-provenance.py`).
fn assert_provenance_valid(path: &Path) {
    require_tool(
        "imgbuild-test-python3",
        "scripts/install-test-deps.sh's virtualenv",
    );
    run_ok(
        Command::new("imgbuild-test-python3")
            .arg(repo().join("scripts/validate-provenance.py"))
            .arg(path),
    );
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs_err::read(path).unwrap()).unwrap()
}

/// debian-vm's SBOMs pass both validators and list exactly the packages of its lock and
/// the ones syft finds in its OCI image; `inspect --sbom` lists the same.
#[test]
fn debian_vm_sboms_match_syft_and_the_lock() {
    let out = tempfile::tempdir().unwrap();
    let report = build_json(
        &repo().join("recipes/debian-vm.toml"),
        shared_store(),
        out.path(),
        &[
            "--locked",
            "-f",
            "oci",
            "--sbom",
            "spdx",
            "--sbom",
            "cyclonedx",
            "--provenance",
            "--source-date-epoch",
            EPOCH,
        ],
    );
    let kinds: Vec<&str> = report["documents"]
        .as_array()
        .expect("documents in --json")
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["spdx", "cyclonedx", "provenance"]);
    let spdx_path = out.path().join("debian-vm.spdx.json");
    let cdx_path = out.path().join("debian-vm.cdx.json");
    assert_spdx_valid(&spdx_path);
    assert_cyclonedx_valid(&cdx_path);

    let spdx = read_json(&spdx_path);
    let ours = spdx_packages(&spdx);
    let lock = lock_packages(&repo().join("recipes/debian-vm.lock"));
    let syft = syft_packages(&out.path().join("debian-vm.oci"));
    assert!(ours.len() > 100, "only {} packages", ours.len());
    assert_eq!(ours, lock, "SBOM vs lock");
    assert_eq!(ours, syft, "SBOM vs syft");
    assert_eq!(cyclonedx_packages(&read_json(&cdx_path)), ours);

    // The provenance: valid, about this image, every locked .deb a resolved dependency,
    // no times (SOURCE_DATE_EPOCH is set).
    let prov_path = out.path().join("debian-vm.provenance.json");
    assert_provenance_valid(&prov_path);
    let prov = read_json(&prov_path);
    assert_eq!(
        prov["subject"][0]["digest"]["sha256"].as_str(),
        report["digest"]
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
    );
    let deps: BTreeSet<(String, String)> = prov["predicate"]["buildDefinition"]
        ["resolvedDependencies"]
        .as_array()
        .expect("resolvedDependencies")
        .iter()
        .filter(|d| d["uri"].as_str().is_some_and(|u| u.ends_with(".deb")))
        .map(|d| {
            (
                d["name"].as_str().unwrap().to_owned(),
                d["annotations"]["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(deps, lock, "provenance dependencies vs lock");
    assert_eq!(
        prov["predicate"]["buildDefinition"]["externalParameters"]["lock"]["uri"],
        "debian-vm.lock"
    );
    assert!(prov["predicate"]["runDetails"].get("metadata").is_none());

    // The image digest is the described subject; every package has its .deb's sha256
    // and a purl; most declare a license read from their copyright file.
    let image = &spdx["packages"][0];
    assert_eq!(
        image["checksums"][0]["checksumValue"].as_str(),
        report["digest"]
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
    );
    let debs: Vec<&Value> = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .is_some_and(|l| l.starts_with("pkg:deb/"))
        })
        .collect();
    assert!(debs
        .iter()
        .all(|p| p["checksums"][0]["algorithm"] == "SHA256"));
    let licensed = debs
        .iter()
        .filter(|p| p["licenseDeclared"] != "NOASSERTION")
        .count();
    assert!(
        licensed * 2 > debs.len(),
        "only {licensed} of {} packages declare a license",
        debs.len()
    );
    let bash = debs.iter().find(|p| p["name"] == "bash").expect("bash");
    assert!(
        bash["licenseDeclared"]
            .as_str()
            .unwrap()
            .contains("GPL-3.0-or-later"),
        "bash: {}",
        bash["licenseDeclared"]
    );

    let listed = run_ok(
        imgbuild()
            .args([
                "inspect",
                "debian-vm:bookworm",
                "--sbom",
                "--json",
                "--store",
            ])
            .arg(shared_store()),
    );
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let listed: BTreeSet<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| pair(p, "name", "version"))
        .collect();
    assert_eq!(listed, ours, "inspect --sbom vs the SBOM");
}

/// An image on a registry base with a copied and a written file: the SBOMs name the base
/// by its pushed digest, list both files with their hashes and the base's packages (as
/// syft and the base's lock see them), and a push attaches both SBOMs and the provenance
/// to the pushed manifest through the fallback tag.
#[test]
fn registry_base_sboms_list_base_files_and_are_attached_on_push() {
    require_tool("skopeo", "skopeo");
    let registry = Registry::plain();
    let host = registry.host();
    let tmp = tempfile::tempdir().unwrap();
    let mut base_args = vec![
        "--locked".to_owned(),
        "--push".to_owned(),
        format!("{host}/base:1"),
    ];
    base_args.extend(registry.imgbuild_args());
    let base_args: Vec<&str> = base_args.iter().map(String::as_str).collect();
    let base = build_json(
        &repo().join("recipes/debian-minimal.toml"),
        shared_store(),
        &tmp.path().join("base-out"),
        &base_args,
    );
    let base_digest = base["pushed"][0]["digest"].as_str().unwrap().to_owned();

    let dir = tmp.path().join("app");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
    fs_err::write(
        dir.join("app.toml"),
        format!(
            "[image]\nname = \"app\"\ntags = [\"1\"]\nsbom = [\"spdx\", \"cyclonedx\"]\nprovenance = true\n\
             [from]\nimage = \"{host}/base:1\"\n\
             [[step]]\ncopy = \"hello.sh\"\nto = \"/usr/local/bin/hello\"\nmode = \"0755\"\n\
             [[step]]\nwrite = \"/etc/app.conf\"\ncontent = \"greeting = hello\\n\"\n"
        ),
    )
    .unwrap();
    let mut args = vec![
        "-f".to_owned(),
        "oci".to_owned(),
        "--source-date-epoch".to_owned(),
        EPOCH.to_owned(),
        "--push".to_owned(),
        format!("{host}/app:1"),
    ];
    args.extend(registry.imgbuild_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tmp.path().join("out");
    let report = build_json(&dir.join("app.toml"), shared_store(), &out, &args);
    let pushed = report["pushed"][0]["digest"].as_str().unwrap().to_owned();

    let spdx_path = out.join("app.spdx.json");
    let cdx_path = out.join("app.cdx.json");
    assert_spdx_valid(&spdx_path);
    assert_cyclonedx_valid(&cdx_path);
    assert_provenance_valid(&out.join("app.provenance.json"));
    let spdx = read_json(&spdx_path);
    let base_pkg = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Base")
        .expect("the base is a package");
    assert_eq!(base_pkg["versionInfo"], base_digest.as_str());
    assert!(base_pkg["externalRefs"][0]["referenceLocator"]
        .as_str()
        .unwrap()
        .contains("repository_url="));
    let files: Vec<(String, String)> = spdx["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["fileName"].as_str().unwrap().to_owned(),
                f["checksums"][1]["checksumValue"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let sha = |bytes: &[u8]| {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(bytes))
    };
    assert_eq!(
        files,
        [
            ("./etc/app.conf".to_owned(), sha(b"greeting = hello\n")),
            (
                "./usr/local/bin/hello".to_owned(),
                sha(b"#!/bin/sh\necho hello\n")
            ),
        ]
    );
    let ours = spdx_packages(&spdx);
    assert_eq!(
        ours,
        lock_packages(&repo().join("recipes/debian-minimal.lock"))
    );
    assert_eq!(ours, syft_packages(&out.join("app.oci")));
    assert_eq!(cyclonedx_packages(&read_json(&cdx_path)), ours);

    // Attached: the fallback tag's index lists the three documents, each an artifact
    // manifest whose subject is the pushed image and whose layer is the file's bytes.
    let skopeo_raw = |reference: String| -> Value {
        let out = run_ok(
            Command::new("skopeo")
                .args(["--insecure-policy", "inspect", "--raw"])
                .args(registry.skopeo_args())
                .arg(format!("docker://{reference}")),
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let hex = pushed.strip_prefix("sha256:").unwrap();
    let index = skopeo_raw(format!("{host}/app:sha256-{hex}"));
    let listed = index["manifests"].as_array().expect("an index");
    let mut types: Vec<&str> = listed
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.in-toto+json"
        ]
    );
    for m in listed {
        let manifest = skopeo_raw(format!("{host}/app@{}", m["digest"].as_str().unwrap()));
        assert_eq!(manifest["subject"]["digest"], pushed.as_str());
        let file = match m["artifactType"].as_str().unwrap() {
            "application/spdx+json" => "app.spdx.json",
            "application/vnd.cyclonedx+json" => "app.cdx.json",
            _ => "app.provenance.json",
        };
        assert_eq!(
            manifest["layers"][0]["digest"].as_str().unwrap(),
            format!("sha256:{}", sha(&fs_err::read(out.join(file)).unwrap()))
        );
    }
}

/// An image on an OCI layout base names the base by the manifest digest the layout
/// resolved to, and a scratch image's SBOM lists no packages and its copied files.
#[test]
fn an_oci_layout_base_is_named_by_its_manifest_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let hello = build_json(
        &repo().join("recipes/hello.toml"),
        &store,
        tmp.path(),
        &["--sbom", "spdx", "--sbom", "cyclonedx"],
    );
    assert_spdx_valid(&tmp.path().join("hello.spdx.json"));
    assert_cyclonedx_valid(&tmp.path().join("hello.cdx.json"));
    let scratch = read_json(&tmp.path().join("hello.spdx.json"));
    assert!(spdx_packages(&scratch).is_empty());
    assert!(!scratch["files"].as_array().expect("files").is_empty());

    fs_err::write(
        tmp.path().join("derived.toml"),
        "[image]\nname = \"derived\"\n[from]\noci = \"hello.oci:1.0\"\n\
         [[step]]\nwrite = \"/etc/derived\"\ncontent = \"yes\\n\"\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    build_json(
        &tmp.path().join("derived.toml"),
        &store,
        &out,
        &["--sbom", "spdx"],
    );
    let spdx = read_json(&out.join("derived.spdx.json"));
    let base = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-Base")
        .expect("the base is a package");
    assert_eq!(base["versionInfo"], hello["digest"]);
    assert_eq!(base["name"], "hello.oci:1.0");
    assert_spdx_valid(&out.join("derived.spdx.json"));
}
