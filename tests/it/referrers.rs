//! Referrers: documents attached to a pushed image through the `sha256-HEX` tag fallback
//! (Debian's `docker-registry` has no referrers API), read back with skopeo and curl.

use crate::common::{build_json, repo, require_tool, run_ok};
use crate::registry_support::Registry;
use imgbuild_registry::{
    attach, referrers, Attachment, Client, Reference, Referrer, RegistryOptions,
};
use imgbuild_store::oci::OciDescriptor;
use imgbuild_store::{Digest, Store};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::Command;

const SPDX: &str = "application/spdx+json";
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// `skopeo inspect --raw` of a reference: the manifest bytes.
fn raw(registry: &Registry, reference: &str) -> Vec<u8> {
    require_tool("skopeo", "skopeo");
    run_ok(
        Command::new("skopeo")
            .arg("--insecure-policy")
            .arg("inspect")
            .arg("--raw")
            .args(registry.skopeo_args())
            .arg(format!("docker://{reference}")),
    )
    .stdout
}

/// A blob's bytes, with curl.
fn blob(registry: &Registry, repository: &str, digest: &str) -> Vec<u8> {
    require_tool("curl", "curl");
    run_ok(Command::new("curl").arg("-fsS").arg(format!(
        "http://{}/v2/{repository}/blobs/{digest}",
        registry.host()
    )))
    .stdout
}

fn documents() -> Vec<Attachment> {
    let created = BTreeMap::from([(
        "org.opencontainers.image.created".to_owned(),
        "2024-01-01T00:00:00Z".to_owned(),
    )]);
    vec![
        Attachment {
            artifact_type: SPDX.into(),
            media_type: SPDX.into(),
            bytes: br#"{"spdxVersion":"SPDX-2.3","name":"hello","packages":[]}"#.to_vec(),
            annotations: created.clone(),
        },
        Attachment {
            artifact_type: IN_TOTO.into(),
            media_type: IN_TOTO.into(),
            bytes: br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1"}"#.to_vec(),
            annotations: created,
        },
    ]
}

#[test]
fn attached_documents_are_listed_under_the_fallback_tag_once_each_and_read_back() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store_dir = tmp.path().join("store");
    let target = format!("{}/team/hello:1.0", registry.host());
    let mut extra = vec!["--push".to_owned(), target.clone()];
    extra.extend(registry.imgbuild_args());
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let report = build_json(
        &repo().join("recipes/hello.toml"),
        &store_dir,
        &tmp.path().join("out"),
        &extra,
    );
    let image = report["pushed"][0]["digest"]
        .as_str()
        .expect("pushed digest")
        .to_owned();
    let manifest = raw(&registry, &target);
    let subject_digest: Digest = image.parse().expect("digest");
    assert_eq!(Digest::of(&manifest), subject_digest);
    let media_type = serde_json::from_slice::<Value>(&manifest).expect("json")["mediaType"]
        .as_str()
        .expect("mediaType")
        .to_owned();
    let subject = OciDescriptor {
        media_type,
        digest: subject_digest.clone(),
        size: manifest.len() as u64,
        platform: None,
        annotations: BTreeMap::new(),
    };

    let client = Client::new(RegistryOptions {
        insecure: vec![registry.host()],
        ..RegistryOptions::default()
    })
    .expect("client");
    let store = Store::open(&store_dir).expect("store");
    let reference = Reference::parse(&target).expect("reference");
    let docs = documents();

    assert!(
        referrers(&client, &reference, &subject_digest, None)
            .expect("referrers")
            .is_empty(),
        "nothing attached yet"
    );
    let first = attach(&client, &store, &subject, &docs, &reference).expect("attach");
    let tag = format!("sha256-{}", subject_digest.hex());
    assert_eq!(first.len(), 2);
    for (r, d) in first.iter().zip(&docs) {
        assert_eq!(r.artifact_type, d.artifact_type);
        assert_eq!(r.fallback_tag.as_deref(), Some(tag.as_str()));
    }
    assert_ne!(first[0].digest, first[1].digest);

    let index_ref = format!("{}/team/hello:{tag}", registry.host());
    let check_index = || {
        let index: Value = serde_json::from_slice(&raw(&registry, &index_ref)).expect("json");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(
            index["mediaType"],
            "application/vnd.oci.image.index.v1+json"
        );
        let entries = index["manifests"].as_array().expect("manifests").clone();
        assert_eq!(entries.len(), 2, "one entry per document: {index}");
        entries
    };
    let entries = check_index();
    for ((entry, report), doc) in entries.iter().zip(&first).zip(&docs) {
        assert_eq!(entry["artifactType"], doc.artifact_type.as_str());
        assert_eq!(entry["digest"], report.digest.to_string());
        assert_eq!(
            entry["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            entry["annotations"]["org.opencontainers.image.created"],
            "2024-01-01T00:00:00Z"
        );
        let artifact_ref = format!("{}/team/hello@{}", registry.host(), report.digest);
        let artifact_bytes = raw(&registry, &artifact_ref);
        assert_eq!(Digest::of(&artifact_bytes), report.digest);
        assert_eq!(entry["size"], artifact_bytes.len() as u64);
        let artifact: Value = serde_json::from_slice(&artifact_bytes).expect("json");
        assert_eq!(artifact["artifactType"], doc.artifact_type.as_str());
        assert_eq!(artifact["subject"]["digest"], image.as_str());
        assert_eq!(artifact["subject"]["size"], manifest.len() as u64);
        assert_eq!(
            artifact["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(
            blob(
                &registry,
                "team/hello",
                artifact["config"]["digest"].as_str().expect("digest")
            ),
            b"{}"
        );
        let layers = artifact["layers"].as_array().expect("layers");
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], doc.media_type.as_str());
        let layer = blob(
            &registry,
            "team/hello",
            layers[0]["digest"].as_str().expect("digest"),
        );
        assert_eq!(layer, doc.bytes, "the layer is the document");
    }

    // Attaching again changes nothing: same manifests, still one entry each.
    let again = attach(&client, &store, &subject, &docs, &reference).expect("attach again");
    assert_eq!(again, first);
    assert_eq!(check_index(), entries);

    let all = referrers(&client, &reference, &subject_digest, None).expect("referrers");
    let digests =
        |list: &[Referrer]| -> Vec<Digest> { list.iter().map(|r| r.digest.clone()).collect() };
    assert_eq!(
        digests(&all),
        [first[0].digest.clone(), first[1].digest.clone()]
    );
    let sboms = referrers(&client, &reference, &subject_digest, Some(SPDX)).expect("referrers");
    assert_eq!(digests(&sboms), [first[0].digest.clone()]);
    assert_eq!(sboms[0].artifact_type.as_deref(), Some(SPDX));
    assert!(referrers(
        &client,
        &reference,
        &subject_digest,
        Some("application/x-none")
    )
    .expect("referrers")
    .is_empty());
}
