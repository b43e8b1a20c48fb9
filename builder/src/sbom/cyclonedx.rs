//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>).
//!
//! The image is `metadata.component` (type `container`, bom-ref its `pkg:oci` purl);
//! each Debian package is a `library` component whose bom-ref is its purl, with the
//! `.deb`'s SHA-256; one dependency entry says the image depends on all of them. The
//! serial number is a UUID derived from the image digest.

use serde::Serialize;

use super::{Sbom, TOOL_NAME, TOOL_VERSION};

/// A CycloneDX 1.6 BOM (the fields imgbuild writes).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bom {
    /// `CycloneDX`.
    pub bom_format: &'static str,
    /// `1.6`.
    pub spec_version: &'static str,
    /// `urn:uuid:...`, derived from the image digest.
    pub serial_number: String,
    /// `1`.
    pub version: u32,
    /// Time, tool, the image.
    pub metadata: Metadata,
    /// The Debian packages, sorted.
    pub components: Vec<Component>,
    /// The image depends on every package.
    pub dependencies: Vec<Dependency>,
}

/// `metadata`.
#[derive(Debug, Serialize)]
pub struct Metadata {
    /// RFC 3339 UTC, from `SOURCE_DATE_EPOCH`.
    pub timestamp: String,
    /// imgbuild.
    pub tools: Tools,
    /// The image.
    pub component: Component,
}

/// `metadata.tools` (the 1.5+ object form).
#[derive(Debug, Serialize)]
pub struct Tools {
    /// imgbuild, as an application component.
    pub components: Vec<Component>,
}

/// A component.
#[derive(Debug, Serialize)]
pub struct Component {
    /// `container`, `library`, `application`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unique within the BOM.
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    /// The purl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Architecture, source package, pool path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// A hash.
#[derive(Debug, Serialize)]
pub struct Hash {
    /// `SHA-256`.
    pub alg: &'static str,
    /// Lower-case hex.
    pub content: String,
}

/// A name/value property.
#[derive(Debug, Serialize)]
pub struct Property {
    /// `imgbuild:deb:...`.
    pub name: &'static str,
    /// The value.
    pub value: String,
}

/// A dependency entry.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The bom-ref that depends.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The bom-refs it depends on.
    pub depends_on: Vec<String>,
}

/// The CycloneDX BOM of `sbom`.
pub fn bom(sbom: &Sbom) -> Bom {
    let image_ref = sbom.image.purl();
    let components: Vec<Component> = sbom
        .packages
        .iter()
        .map(|p| {
            let mut properties = vec![
                Property {
                    name: "imgbuild:deb:architecture",
                    value: p.architecture.clone(),
                },
                Property {
                    name: "imgbuild:deb:filename",
                    value: p.filename.clone(),
                },
            ];
            if let Some(s) = &p.source_package {
                properties.push(Property {
                    name: "imgbuild:deb:source",
                    value: s.clone(),
                });
            }
            Component {
                kind: "library",
                bom_ref: Some(p.purl()),
                name: p.name.clone(),
                version: p.version.clone(),
                hashes: vec![Hash {
                    alg: "SHA-256",
                    content: p.sha256.clone(),
                }],
                purl: Some(p.purl()),
                properties,
            }
        })
        .collect();
    let dependencies = vec![Dependency {
        reference: image_ref.clone(),
        depends_on: sbom.packages.iter().map(|p| p.purl()).collect(),
    }];
    Bom {
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: format!(
            "urn:uuid:{}",
            super::uuid_from(&format!("cyclonedx:{}", sbom.image.digest))
        ),
        version: 1,
        metadata: Metadata {
            timestamp: imgbuild_store::oci::rfc3339(sbom.created),
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    bom_ref: None,
                    name: TOOL_NAME.to_owned(),
                    version: TOOL_VERSION.to_owned(),
                    hashes: Vec::new(),
                    purl: None,
                    properties: Vec::new(),
                }],
            },
            component: Component {
                kind: "container",
                bom_ref: Some(image_ref.clone()),
                name: sbom.image.name.clone(),
                version: sbom.image.digest.to_string(),
                hashes: vec![Hash {
                    alg: "SHA-256",
                    content: sbom.image.digest.hex(),
                }],
                purl: Some(image_ref),
                properties: Vec::new(),
            },
        },
        components,
        dependencies,
    }
}

/// `sbom` as CycloneDX 1.6 JSON (pretty, with a final newline).
pub fn render(sbom: &Sbom) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&bom(sbom)).expect("a CycloneDX BOM always serializes");
    out.push(b'\n');
    out
}
