use std::collections::BTreeMap;

use imgbuild_store::Digest;
use serde_json::{json, Value};

use super::*;

const EPOCH: u64 = 1_700_000_000;

fn hex(data: &str) -> String {
    Digest::of(data.as_bytes()).hex()
}

fn dep(uri: &str, name: Option<&str>, content: &str) -> Dependency {
    Dependency {
        uri: uri.to_owned(),
        name: name.map(str::to_owned),
        sha256: hex(content),
        media_type: None,
        annotations: BTreeMap::new(),
    }
}

/// A model with every field set: a lock, includes, parameters, the epoch, times, and
/// dependencies out of order with one duplicate.
fn full() -> Provenance {
    let mut bash = dep(
        "https://deb.debian.org/debian/pool/main/b/bash/bash_5.2.15-2+b7_amd64.deb",
        Some("bash"),
        "bash deb",
    );
    bash.media_type = Some("application/vnd.debian.binary-package".to_owned());
    bash.annotations = BTreeMap::from([
        ("version".to_owned(), "5.2.15-2+b7".to_owned()),
        ("architecture".to_owned(), "amd64".to_owned()),
    ]);
    let mut base = dep(
        "docker.io/library/debian@sha256:0123",
        None,
        "base manifest",
    );
    base.media_type = Some("application/vnd.oci.image.manifest.v1+json".to_owned());
    Provenance {
        subject_name: "debian-vm".to_owned(),
        subject_digest: Digest::of(b"an image manifest"),
        recipe: Artifact {
            uri: "recipes/debian-vm.toml".to_owned(),
            sha256: hex("recipe"),
        },
        lock: Some(Artifact {
            uri: "recipes/debian-vm.lock".to_owned(),
            sha256: hex("lock"),
        }),
        includes: vec![
            Artifact {
                uri: "recipes/common/users.toml".to_owned(),
                sha256: hex("users"),
            },
            Artifact {
                uri: "recipes/common/base.toml".to_owned(),
                sha256: hex("base"),
            },
        ],
        parameters: BTreeMap::from([
            ("formats".to_owned(), json!(["oci", "qcow2"])),
            ("platform".to_owned(), json!("linux/amd64")),
            ("compression".to_owned(), json!("zstd")),
        ]),
        source_date_epoch: Some(EPOCH),
        dependencies: vec![
            dep("files/motd", None, "motd"),
            bash.clone(),
            base,
            dep(
                "https://deb.debian.org/debian/pool/main/a/apt/apt_2.6.1_amd64.deb",
                Some("apt"),
                "apt deb",
            ),
            bash,
        ],
        builder_id: LOCAL_BUILDER_ID.to_owned(),
        started: Some(EPOCH + 60),
        finished: Some(EPOCH + 125),
    }
}

/// The least a model can have: no lock, includes, parameters, epoch, times or inputs.
fn minimal() -> Provenance {
    Provenance {
        subject_name: "scratch".to_owned(),
        subject_digest: Digest::of(b"scratch"),
        recipe: Artifact {
            uri: "scratch.toml".to_owned(),
            sha256: hex("scratch recipe"),
        },
        lock: None,
        includes: Vec::new(),
        parameters: BTreeMap::new(),
        source_date_epoch: None,
        dependencies: Vec::new(),
        builder_id: LOCAL_BUILDER_ID.to_owned(),
        started: None,
        finished: None,
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

#[test]
fn same_model_same_bytes_in_any_dependency_order() {
    let p = full();
    let bytes = render(&p);
    assert_eq!(bytes, render(&p));
    assert_eq!(bytes.last(), Some(&b'\n'));
    let mut reversed = p.clone();
    reversed.dependencies.reverse();
    assert_eq!(bytes, render(&reversed));
    let mut rotated = p.clone();
    rotated.dependencies.rotate_left(2);
    assert_eq!(bytes, render(&rotated));
    // A change of an input changes the bytes.
    let mut other = p;
    other.dependencies[0].sha256 = hex("another motd");
    assert_ne!(bytes, render(&other));
}

#[test]
fn statement_has_the_slsa_shape() {
    let p = full();
    let doc = json(&render(&p));
    assert_eq!(doc["_type"], STATEMENT_TYPE);
    assert_eq!(doc["predicateType"], PREDICATE_TYPE);
    assert_eq!(
        doc["subject"],
        json!([{"name": "debian-vm", "digest": {"sha256": p.subject_digest.hex()}}])
    );

    let def = &doc["predicate"]["buildDefinition"];
    assert_eq!(def["buildType"], BUILD_TYPE);
    let ext = &def["externalParameters"];
    assert_eq!(
        ext["recipe"],
        json!({"uri": "recipes/debian-vm.toml", "digest": {"sha256": hex("recipe")}})
    );
    assert_eq!(
        ext["lock"],
        json!({"uri": "recipes/debian-vm.lock", "digest": {"sha256": hex("lock")}})
    );
    // Includes keep their order.
    assert_eq!(ext["includes"][0]["uri"], "recipes/common/users.toml");
    assert_eq!(ext["includes"][1]["uri"], "recipes/common/base.toml");
    assert_eq!(ext["formats"], json!(["oci", "qcow2"]));
    assert_eq!(ext["platform"], "linux/amd64");
    assert_eq!(ext["compression"], "zstd");
    assert_eq!(def["internalParameters"], json!({"sourceDateEpoch": EPOCH}));

    let deps = def["resolvedDependencies"].as_array().unwrap();
    let keys: Vec<(&str, &str)> = deps
        .iter()
        .map(|d| {
            (
                d["uri"].as_str().unwrap(),
                d["digest"]["sha256"].as_str().unwrap(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(keys, sorted, "sorted by uri then digest, unique");
    assert_eq!(keys.len(), 4, "the duplicate bash is written once");
    let bash = deps.iter().find(|d| d["name"] == "bash").unwrap();
    assert_eq!(bash["mediaType"], "application/vnd.debian.binary-package");
    assert_eq!(
        bash["annotations"],
        json!({"architecture": "amd64", "version": "5.2.15-2+b7"})
    );
    let motd = deps.iter().find(|d| d["uri"] == "files/motd").unwrap();
    assert_eq!(
        motd.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["digest", "uri"],
        "absent name, media type and annotations are left out"
    );

    let run = &doc["predicate"]["runDetails"];
    assert_eq!(
        run["builder"],
        json!({"id": LOCAL_BUILDER_ID, "version": {"imgbuild": TOOL_VERSION}})
    );
    assert_eq!(
        run["metadata"],
        json!({"startedOn": "2023-11-14T22:14:20Z", "finishedOn": "2023-11-14T22:15:25Z"})
    );
}

#[test]
fn absent_fields_are_left_out() {
    let doc = json(&render(&minimal()));
    let def = doc["predicate"]["buildDefinition"].as_object().unwrap();
    assert_eq!(
        def.keys().collect::<Vec<_>>(),
        ["buildType", "externalParameters"]
    );
    assert_eq!(
        def["externalParameters"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["recipe"]
    );
    let run = doc["predicate"]["runDetails"].as_object().unwrap();
    assert_eq!(run.keys().collect::<Vec<_>>(), ["builder"], "no times");

    // Only one time given: only that one is written.
    let mut p = minimal();
    p.finished = Some(EPOCH);
    let doc = json(&render(&p));
    assert_eq!(
        doc["predicate"]["runDetails"]["metadata"],
        json!({"finishedOn": "2023-11-14T22:13:20Z"})
    );
}

#[test]
fn recipe_lock_and_includes_win_over_parameters() {
    let mut p = minimal();
    p.parameters = BTreeMap::from([
        ("recipe".to_owned(), json!("not the recipe")),
        ("lock".to_owned(), json!("no lock")),
        ("includes".to_owned(), json!(["none"])),
        ("platform".to_owned(), json!("linux/arm64")),
    ]);
    let doc = json(&render(&p));
    let ext = &doc["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(
        ext,
        &json!({
            "platform": "linux/arm64",
            "recipe": {"uri": "scratch.toml", "digest": {"sha256": hex("scratch recipe")}},
        })
    );
}

/// Parses the statement into the in-toto attestation framework's protobuf messages
/// (strictly: an unknown field or a wrong type fails) and runs its validators, then the
/// checks of the framework's Go `Provenance.Validate` and `ResourceDescriptor.Validate`,
/// which the Python package does not have: `scripts/validate-provenance.py`, run with
/// `imgbuild-test-python3 -c`.
const VALIDATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../scripts/validate-provenance.py"
));

/// Runs [`VALIDATE`] on `doc` with `imgbuild-test-python3`.
fn validate(name: &str, doc: &[u8]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.provenance.json"));
    fs_err::write(&path, doc).unwrap();
    let out = std::process::Command::new("imgbuild-test-python3")
        .arg("-c")
        .arg(VALIDATE)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run imgbuild-test-python3 ({e}): install the in-toto validator with \
                 scripts/install-test-deps.sh"
            )
        });
    assert_ne!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// The in-toto attestation framework (`in-toto-attestation` on PyPI) accepts the
/// statements. Needs `imgbuild-test-python3` from `scripts/install-test-deps.sh`; fails
/// when it is missing.
#[test]
fn in_toto_attestation_accepts_the_statements() {
    for (name, p) in [("debian-vm", full()), ("scratch", minimal())] {
        let out = validate(name, &render(&p));
        assert!(
            out.status.success(),
            "in-toto-attestation rejected {name} ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The validator is not vacuous: it rejects an unknown field, a bad digest, a missing
/// builder id.
#[test]
fn in_toto_attestation_rejects_broken_statements() {
    let good = json(&render(&full()));
    let mut unknown = good.clone();
    unknown["predicate"]["buildDefinition"]["recipe"] = json!("x");
    let mut digest = good.clone();
    digest["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] =
        json!("not hex");
    let mut builder = good;
    builder["predicate"]["runDetails"]["builder"]["id"] = json!("");
    for (name, doc) in [
        ("unknown-field", unknown),
        ("bad-digest", digest),
        ("no-builder-id", builder),
    ] {
        let out = validate(name, &serde_json::to_vec(&doc).unwrap());
        assert!(
            !out.status.success(),
            "in-toto-attestation accepted the {name} statement"
        );
    }
}
