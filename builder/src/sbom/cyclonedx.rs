//! CycloneDX 1.6 JSON (<https://cyclonedx.org/docs/1.6/json/>).
//!
//! The image is `metadata.component` (type `container`, bom-ref its `pkg:oci` purl), its
//! base that component's `pedigree.ancestors`; each Debian package is a `library`
//! component whose bom-ref is its purl, with the `.deb`'s SHA-256 and its declared license
//! as an SPDX expression; each file of a `copy` or `write` step a `file` component with
//! its SHA-1 and SHA-256; one dependency entry says the image depends on all of them.
//! The serial number is a UUID derived from the image digest.

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
    /// Version (none for files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 (and SHA-1 for files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    /// The declared license, as one SPDX expression.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<License>,
    /// The purl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// Architecture, source package, pool path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
    /// The base, for the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pedigree: Option<Pedigree>,
}

impl Component {
    fn new(kind: &'static str, name: String) -> Self {
        Component {
            kind,
            bom_ref: None,
            name,
            version: None,
            hashes: Vec::new(),
            licenses: Vec::new(),
            purl: None,
            properties: Vec::new(),
            pedigree: None,
        }
    }
}

/// A license choice in its expression form.
#[derive(Debug, Serialize)]
pub struct License {
    /// An SPDX license expression.
    pub expression: String,
}

/// `pedigree`: what the component descends from.
#[derive(Debug, Serialize)]
pub struct Pedigree {
    /// The base image or tarball.
    pub ancestors: Vec<Component>,
}

/// A hash.
#[derive(Debug, Serialize)]
pub struct Hash {
    /// `SHA-256`, `SHA-1`.
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
    let sha256 = |content: &str| Hash {
        alg: "SHA-256",
        content: content.to_owned(),
    };
    let mut components: Vec<Component> = sbom
        .packages
        .iter()
        .map(|p| {
            let mut properties = vec![Property {
                name: "imgbuild:deb:architecture",
                value: p.architecture.clone(),
            }];
            if let Some(deb) = &p.deb {
                properties.push(Property {
                    name: "imgbuild:deb:filename",
                    value: deb.filename.clone(),
                });
            }
            if let Some(s) = &p.source_package {
                properties.push(Property {
                    name: "imgbuild:deb:source",
                    value: s.clone(),
                });
            }
            let mut c = Component::new("library", p.name.clone());
            c.bom_ref = Some(p.purl());
            c.version = Some(p.version.clone());
            c.hashes = p.deb.iter().map(|d| sha256(&d.sha256)).collect();
            c.licenses = p
                .license
                .iter()
                .map(|l| License {
                    expression: l.expression.clone(),
                })
                .collect();
            c.purl = Some(p.purl());
            c.properties = properties;
            c
        })
        .collect();
    for f in &sbom.files {
        let mut c = Component::new("file", f.path.clone());
        c.bom_ref = Some(format!("file:{}", f.path));
        c.hashes = vec![
            Hash {
                alg: "SHA-1",
                content: f.sha1.clone(),
            },
            sha256(&f.sha256),
        ];
        components.push(c);
    }
    let dependencies = vec![Dependency {
        reference: image_ref.clone(),
        depends_on: components
            .iter()
            .filter_map(|c| c.bom_ref.clone())
            .collect(),
    }];
    let mut tool = Component::new("application", TOOL_NAME.to_owned());
    tool.version = Some(TOOL_VERSION.to_owned());
    let mut image = Component::new("container", sbom.image.name.clone());
    image.bom_ref = Some(image_ref.clone());
    image.version = Some(sbom.image.digest.to_string());
    image.hashes = vec![sha256(&sbom.image.digest.hex())];
    image.purl = Some(image_ref);
    image.pedigree = sbom.base.as_ref().map(|base| {
        let kind = if base.is_image { "container" } else { "file" };
        let mut c = Component::new(kind, base.name.clone());
        c.bom_ref = Some(format!("base:{}", base.digest));
        c.version = Some(base.digest.to_string());
        c.hashes = vec![sha256(&base.digest.hex())];
        c.purl.clone_from(&base.purl);
        Pedigree { ancestors: vec![c] }
    });
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
                components: vec![tool],
            },
            component: image,
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
