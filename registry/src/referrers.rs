//! Documents attached to a pushed image as OCI 1.1 *referrers* (SBOMs, provenance), and
//! listing them back.
//!
//! Each document becomes an artifact manifest (image-spec 1.1): `artifactType` the
//! document's type, the empty config (`{}`), one layer holding the document, and `subject`
//! the image manifest. It is put by digest. A registry with the referrers API answers the
//! put with an `OCI-Subject` header and indexes it itself; for one without (Debian's
//! `docker-registry`), the client keeps the list in an image index tagged
//! `sha256-<hex of the subject>` (distribution-spec 1.1, "referrers tag schema").

use crate::client::{header, read_small, unexpected, ReqBody};
use crate::source::BlobSource;
use crate::{Client, PullError, PushError, Reference, RegistryError};
use imgbuild_store::oci::{OciDescriptor, MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};
use imgbuild_store::{Digest, Store};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use ureq::http::Method;

/// The media type of the empty config blob of artifacts.
pub const MEDIA_TYPE_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The empty config blob's bytes.
pub const EMPTY_BLOB: &[u8] = b"{}";

/// One document to attach, e.g. an SPDX SBOM: `artifact_type` and `media_type`
/// `application/spdx+json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The artifact manifest's `artifactType`.
    pub artifact_type: String,
    /// The media type of the document's layer.
    pub media_type: String,
    /// The document.
    pub bytes: Vec<u8>,
    /// The artifact manifest's annotations (e.g. `org.opencontainers.image.created`, from
    /// `SOURCE_DATE_EPOCH` to keep the digest reproducible); empty for none.
    pub annotations: BTreeMap<String, String>,
}

/// What attaching one document did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttachReport {
    /// The document's artifact type.
    pub artifact_type: String,
    /// The digest of its artifact manifest.
    pub digest: Digest,
    /// The tag of the index listing it (`sha256-HEX`) when the registry has no referrers
    /// API and the tag schema was used; `None` when the registry indexes it itself.
    pub fallback_tag: Option<String>,
}

/// A manifest that refers to a subject, as the referrers API and the fallback index list
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Referrer {
    /// Its media type (an image manifest).
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its `artifactType` (or its config's media type).
    #[serde(
        rename = "artifactType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub artifact_type: Option<String>,
    /// Its annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// A descriptor as it appears in an artifact manifest (fields in the spec's order).
#[derive(Debug, Serialize)]
struct Desc<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a Digest,
    size: u64,
}

/// An artifact manifest; fields serialize in this fixed order.
#[derive(Debug, Serialize)]
struct ArtifactManifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    #[serde(rename = "artifactType")]
    artifact_type: &'a str,
    config: Desc<'a>,
    layers: [Desc<'a>; 1],
    subject: Desc<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: &'a BTreeMap<String, String>,
}

/// The bytes of the artifact manifest carrying `document` for `subject`: the same inputs
/// always give the same bytes.
pub fn artifact_manifest(subject: &OciDescriptor, document: &Attachment) -> Vec<u8> {
    let empty = Digest::of(EMPTY_BLOB);
    let layer = Digest::of(&document.bytes);
    let manifest = ArtifactManifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        artifact_type: &document.artifact_type,
        config: Desc {
            media_type: MEDIA_TYPE_EMPTY,
            digest: &empty,
            size: EMPTY_BLOB.len() as u64,
        },
        layers: [Desc {
            media_type: &document.media_type,
            digest: &layer,
            size: document.bytes.len() as u64,
        }],
        subject: Desc {
            media_type: &subject.media_type,
            digest: &subject.digest,
            size: subject.size,
        },
        annotations: &document.annotations,
    };
    serde_json::to_vec(&manifest).expect("an artifact manifest serializes")
}

/// The fallback tag of `subject`: `ALG-HEX` (distribution-spec 1.1, referrers tag schema).
pub fn fallback_tag(subject: &Digest) -> String {
    let text = subject.to_string();
    let (alg, hex) = text.split_once(':').unwrap_or(("sha256", &text));
    let alg: String = alg.chars().take(32).collect();
    let hex: String = hex.chars().take(64).collect();
    format!("{alg}-{hex}")
}

/// Adds `entries` to the fallback index `existing` (or a new empty index), keeping its
/// other entries and fields; an entry whose digest is already listed is not added again.
/// Returns the new bytes, or `None` when nothing had to be added.
pub fn merge_index(
    existing: Option<&[u8]>,
    entries: &[Referrer],
) -> Result<Option<Vec<u8>>, String> {
    let mut index: serde_json::Map<String, serde_json::Value> = match existing {
        Some(bytes) => serde_json::from_slice(bytes).map_err(|e| e.to_string())?,
        None => {
            let mut m = serde_json::Map::new();
            m.insert("schemaVersion".into(), 2.into());
            m.insert("mediaType".into(), MEDIA_TYPE_INDEX.into());
            m.insert("manifests".into(), serde_json::Value::Array(Vec::new()));
            m
        }
    };
    if let Some(t) = index.get("mediaType").and_then(|v| v.as_str()) {
        if t != MEDIA_TYPE_INDEX {
            return Err(format!(
                "it is a {t}, not an image index ({MEDIA_TYPE_INDEX})"
            ));
        }
    }
    let manifests = index
        .entry("manifests")
        .or_insert_with(|| serde_json::Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("its `manifests` is not a list")?;
    let mut added = false;
    for entry in entries {
        let listed = manifests
            .iter()
            .any(|m| m.get("digest").and_then(|d| d.as_str()) == Some(&entry.digest.to_string()));
        if !listed {
            manifests.push(serde_json::to_value(entry).map_err(|e| e.to_string())?);
            added = true;
        }
    }
    if !added {
        return Ok(None);
    }
    serde_json::to_vec(&index)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Attaches each document to `subject` (the image manifest: media type, digest, size) in
/// the repository of `target` (its tag and digest are ignored). Attaching the same
/// documents again changes nothing.
pub fn attach(
    client: &Client,
    store: &Store,
    subject: &OciDescriptor,
    documents: &[Attachment],
    target: &Reference,
) -> Result<Vec<AttachReport>, PushError> {
    let at = PushError::at(target);
    let store_err = |e| at(RegistryError::Store(e));
    let mut blobs = vec![store.put_bytes(EMPTY_BLOB).map_err(store_err)?.digest];
    for d in documents {
        let digest = store.put_bytes(&d.bytes).map_err(store_err)?.digest;
        if !blobs.contains(&digest) {
            blobs.push(digest);
        }
    }
    crate::push::push_blobs(client, store as &dyn BlobSource, &blobs, target).map_err(&at)?;
    let mut reports = Vec::new();
    let mut unindexed = Vec::new();
    for d in documents {
        let bytes = artifact_manifest(subject, d);
        let digest = Digest::of(&bytes);
        let indexed = put_with_subject(client, target, &digest, &bytes).map_err(&at)?;
        if !indexed {
            unindexed.push(Referrer {
                media_type: MEDIA_TYPE_MANIFEST.into(),
                digest: digest.clone(),
                size: bytes.len() as u64,
                artifact_type: Some(d.artifact_type.clone()),
                annotations: d.annotations.clone(),
            });
        }
        reports.push(AttachReport {
            artifact_type: d.artifact_type.clone(),
            digest,
            fallback_tag: (!indexed).then(|| fallback_tag(&subject.digest)),
        });
    }
    if !unindexed.is_empty() {
        let tag = fallback_tag(&subject.digest);
        let existing = match client.get_manifest(target, &tag) {
            Ok(fetched) => Some(fetched.bytes),
            Err(RegistryError::NotFound { .. }) => None,
            Err(e) => return Err(at(e)),
        };
        let merged = merge_index(existing.as_deref(), &unindexed).map_err(|message| {
            at(RegistryError::Malformed {
                host: target.registry.clone(),
                what: format!(
                    "the referrers index tagged {tag} (delete that tag and attach again)"
                ),
                message,
            })
        })?;
        if let Some(bytes) = merged {
            client
                .put_manifest(target, &tag, &bytes, MEDIA_TYPE_INDEX)
                .map_err(&at)?;
        }
    }
    Ok(reports)
}

/// Puts an artifact manifest by digest; true when the registry indexed its subject itself
/// (it answered with an `OCI-Subject` header).
fn put_with_subject(
    client: &Client,
    r: &Reference,
    digest: &Digest,
    bytes: &[u8],
) -> Result<bool, RegistryError> {
    let url = format!("{}manifests/{digest}", client.base_url(r));
    let scope = crate::blobs::push_scope(r);
    client.retry(|| {
        let mut resp = client.call(
            r,
            &scope,
            Method::PUT,
            &url,
            &[("content-type", MEDIA_TYPE_MANIFEST)],
            &ReqBody::Bytes(bytes),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(unexpected("PUT", &url, &mut resp, &r.registry));
        }
        crate::blobs::check_reported(&resp, r, digest)?;
        Ok(header(&resp, "oci-subject").is_some())
    })
}

/// The referrers of `subject` in `target`'s repository: from the referrers API when the
/// registry has it, else from the fallback tag; empty when neither lists any. With
/// `artifact_type`, only those of that type.
pub fn referrers(
    client: &Client,
    target: &Reference,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Vec<Referrer>, PullError> {
    let at = PullError::at(target);
    let listed = match referrers_api(client, target, subject, artifact_type).map_err(&at)? {
        Some(index) => index,
        None => match client.get_manifest(target, &fallback_tag(subject)) {
            Ok(fetched) => fetched.bytes,
            Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(at(e)),
        },
    };
    #[derive(Deserialize)]
    struct Listing {
        #[serde(default)]
        manifests: Vec<Referrer>,
    }
    let listing: Listing = serde_json::from_slice(&listed).map_err(|e| {
        at(RegistryError::Malformed {
            host: target.registry.clone(),
            what: format!("the referrers of {subject}"),
            message: e.to_string(),
        })
    })?;
    Ok(listing
        .manifests
        .into_iter()
        .filter(|m| artifact_type.is_none_or(|t| m.artifact_type.as_deref() == Some(t)))
        .collect())
}

/// `GET /v2/NAME/referrers/DIGEST`: the index, or `None` when the registry has no
/// referrers API (400, 404, 405, 406, or a 200 that is not an image index).
fn referrers_api(
    client: &Client,
    r: &Reference,
    subject: &Digest,
    artifact_type: Option<&str>,
) -> Result<Option<Vec<u8>>, RegistryError> {
    let mut url = format!("{}referrers/{subject}", client.base_url(r));
    if let Some(t) = artifact_type {
        url.push_str("?artifactType=");
        url.push_str(&t.replace('+', "%2B").replace('/', "%2F"));
    }
    let scope = crate::blobs::pull_scope(r);
    client.retry(|| {
        let mut resp = client.call(
            r,
            &scope,
            Method::GET,
            &url,
            &[("accept", MEDIA_TYPE_INDEX)],
            &ReqBody::Empty,
        )?;
        match resp.status().as_u16() {
            200 => {
                let is_index =
                    header(&resp, "content-type").is_some_and(|t| t.starts_with(MEDIA_TYPE_INDEX));
                let body = read_small(&mut resp, &r.registry)?;
                Ok(is_index.then_some(body))
            }
            400 | 404 | 405 | 406 => Ok(None),
            _ => Err(unexpected("GET", &url, &mut resp, &r.registry)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> OciDescriptor {
        OciDescriptor {
            media_type: MEDIA_TYPE_MANIFEST.into(),
            digest: Digest::of(b"the image manifest"),
            size: 18,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }

    fn sbom() -> Attachment {
        Attachment {
            artifact_type: "application/spdx+json".into(),
            media_type: "application/spdx+json".into(),
            bytes: br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec(),
            annotations: BTreeMap::from([(
                "org.opencontainers.image.created".into(),
                "1970-01-01T00:00:00Z".into(),
            )]),
        }
    }

    #[test]
    fn the_empty_blob_has_the_specs_digest() {
        assert_eq!(
            Digest::of(EMPTY_BLOB).to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn an_artifact_manifest_has_the_spec_shape_and_stable_bytes() {
        let s = subject();
        let bytes = artifact_manifest(&s, &sbom());
        assert_eq!(bytes, artifact_manifest(&s, &sbom()), "deterministic");
        let text = String::from_utf8(bytes.clone()).expect("utf-8");
        let expected = format!(
            concat!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
                r#""artifactType":"application/spdx+json","#,
                r#""config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"#,
                r#""layers":[{{"mediaType":"application/spdx+json","digest":"{layer}","size":26}}],"#,
                r#""subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{subject}","size":18}},"#,
                r#""annotations":{{"org.opencontainers.image.created":"1970-01-01T00:00:00Z"}}}}"#
            ),
            layer = Digest::of(br#"{"spdxVersion":"SPDX-2.3"}"#),
            subject = s.digest,
        );
        assert_eq!(text, expected);

        let mut bare = sbom();
        bare.annotations.clear();
        let v: serde_json::Value =
            serde_json::from_slice(&artifact_manifest(&s, &bare)).expect("json");
        assert!(v.get("annotations").is_none(), "no empty annotations: {v}");
        assert_ne!(
            Digest::of(&artifact_manifest(&s, &bare)),
            Digest::of(&bytes)
        );
    }

    #[test]
    fn the_fallback_tag_is_alg_dash_hex() {
        let d = subject().digest;
        assert_eq!(fallback_tag(&d), format!("sha256-{}", d.hex()));
    }

    #[test]
    fn merging_into_the_fallback_index_keeps_entries_and_adds_each_digest_once() {
        let entry = |name: &[u8], t: &str| Referrer {
            media_type: MEDIA_TYPE_MANIFEST.into(),
            digest: Digest::of(name),
            size: 100,
            artifact_type: Some(t.into()),
            annotations: BTreeMap::new(),
        };
        let spdx = entry(b"spdx", "application/spdx+json");
        let prov = entry(b"prov", "application/vnd.in-toto+json");
        let first = merge_index(None, std::slice::from_ref(&spdx))
            .expect("merge")
            .expect("added");
        let v: serde_json::Value = serde_json::from_slice(&first).expect("json");
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], MEDIA_TYPE_INDEX);
        assert_eq!(v["manifests"][0]["artifactType"], "application/spdx+json");
        assert_eq!(v["manifests"][0]["digest"], spdx.digest.to_string());
        assert_eq!(v["manifests"][0]["size"], 100);

        // A foreign entry with fields of its own survives; known digests are not re-added.
        let mut foreign: serde_json::Value = v.clone();
        foreign["manifests"]
            .as_array_mut()
            .expect("list")
            .push(serde_json::json!({
                "mediaType": MEDIA_TYPE_MANIFEST,
                "digest": Digest::of(b"sig").to_string(),
                "size": 5,
                "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                "data": "e30="
            }));
        let foreign = serde_json::to_vec(&foreign).expect("json");
        assert_eq!(
            merge_index(Some(&foreign), std::slice::from_ref(&spdx)).expect("merge"),
            None
        );
        let second = merge_index(Some(&foreign), &[spdx.clone(), prov.clone()])
            .expect("merge")
            .expect("added");
        let v: serde_json::Value = serde_json::from_slice(&second).expect("json");
        let list = v["manifests"].as_array().expect("list");
        assert_eq!(list.len(), 3);
        assert_eq!(list[1]["data"], "e30=");
        assert_eq!(list[2]["digest"], prov.digest.to_string());
        assert_eq!(
            second,
            merge_index(Some(&foreign), &[spdx, prov])
                .expect("merge")
                .expect("added"),
            "deterministic"
        );

        let err = merge_index(
            Some(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
            ),
            &[entry(b"x", "t")],
        )
        .expect_err("a manifest is not an index");
        assert!(err.contains("not an image index"), "{err}");
    }
}
