//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>).
//!
//! One package for the image (`SPDXRef-Image`, purpose `CONTAINER`, its manifest digest as
//! a SHA256 checksum and a `pkg:oci` purl) that the document `DESCRIBES`, and one per
//! Debian package that the image `CONTAINS`, with its `.deb`'s SHA256 and a `pkg:deb`
//! purl. The namespace is derived from the image digest.

use serde::Serialize;

use super::{Sbom, TOOL_NAME, TOOL_VERSION};

/// The SPDX id of the image package.
pub const IMAGE_ID: &str = "SPDXRef-Image";

/// An SPDX 2.3 document (the fields imgbuild writes).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// `SPDX-2.3`.
    pub spdx_version: &'static str,
    /// `CC0-1.0`, as the spec requires.
    pub data_license: &'static str,
    /// `SPDXRef-DOCUMENT`.
    #[serde(rename = "SPDXID")]
    pub spdx_id: &'static str,
    /// The image name.
    pub name: String,
    /// A unique URI, derived from the image digest.
    pub document_namespace: String,
    /// Creators and creation time.
    pub creation_info: CreationInfo,
    /// The image, then the Debian packages sorted.
    pub packages: Vec<Package>,
    /// DESCRIBES, then CONTAINS per package.
    pub relationships: Vec<Relationship>,
}

/// `creationInfo`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreationInfo {
    /// `Tool: imgbuild-VERSION`.
    pub creators: Vec<String>,
    /// RFC 3339 UTC, from `SOURCE_DATE_EPOCH`.
    pub created: String,
}

/// One SPDX package.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Package {
    /// `SPDXRef-...`.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// Name.
    pub name: String,
    /// Version.
    pub version_info: String,
    /// URL or `NOASSERTION`.
    pub download_location: String,
    /// `false`: imgbuild does not list a package's files.
    pub files_analyzed: bool,
    /// Package file name (the `.deb`'s pool path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_file_name: Option<String>,
    /// `Organization: Debian` for Debian packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
    /// Where it was built from (the source package).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_info: Option<String>,
    /// `CONTAINER` for the image; absent for the Debian packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<&'static str>,
    /// SHA256 of the `.deb` (of the manifest for the image).
    pub checksums: Vec<Checksum>,
    /// `NOASSERTION` until licenses are read from the packages.
    pub license_concluded: &'static str,
    /// `NOASSERTION` until licenses are read from the packages.
    pub license_declared: &'static str,
    /// `NOASSERTION`.
    pub copyright_text: &'static str,
    /// The purl.
    pub external_refs: Vec<ExternalRef>,
}

/// A checksum.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    /// `SHA256`.
    pub algorithm: &'static str,
    /// Lower-case hex.
    pub checksum_value: String,
}

/// An external reference.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRef {
    /// `PACKAGE-MANAGER`.
    pub reference_category: &'static str,
    /// `purl`.
    pub reference_type: &'static str,
    /// The purl.
    pub reference_locator: String,
}

/// A relationship.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Relationship {
    /// From.
    pub spdx_element_id: String,
    /// `DESCRIBES`, `CONTAINS`.
    pub relationship_type: &'static str,
    /// To.
    pub related_spdx_element: String,
}

const NOASSERTION: &str = "NOASSERTION";

/// The SPDX document of `sbom`.
pub fn document(sbom: &Sbom) -> Document {
    let purl_ref = |locator: String| ExternalRef {
        reference_category: "PACKAGE-MANAGER",
        reference_type: "purl",
        reference_locator: locator,
    };
    let mut packages = vec![Package {
        spdx_id: IMAGE_ID.to_owned(),
        name: sbom.image.name.clone(),
        version_info: sbom.image.digest.to_string(),
        download_location: NOASSERTION.to_owned(),
        files_analyzed: false,
        package_file_name: None,
        supplier: None,
        source_info: None,
        primary_package_purpose: Some("CONTAINER"),
        checksums: vec![Checksum {
            algorithm: "SHA256",
            checksum_value: sbom.image.digest.hex(),
        }],
        license_concluded: NOASSERTION,
        license_declared: NOASSERTION,
        copyright_text: NOASSERTION,
        external_refs: vec![purl_ref(sbom.image.purl())],
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".to_owned(),
        relationship_type: "DESCRIBES",
        related_spdx_element: IMAGE_ID.to_owned(),
    }];
    for p in &sbom.packages {
        let id = format!("SPDXRef-Package-deb-{}", p.id());
        packages.push(Package {
            spdx_id: id.clone(),
            name: p.name.clone(),
            version_info: p.version.clone(),
            download_location: p
                .download_location
                .clone()
                .unwrap_or_else(|| NOASSERTION.to_owned()),
            files_analyzed: false,
            package_file_name: Some(p.filename.clone()),
            supplier: Some("Organization: Debian".to_owned()),
            source_info: p
                .source_package
                .as_ref()
                .map(|s| format!("built package from: {s}")),
            primary_package_purpose: None,
            checksums: vec![Checksum {
                algorithm: "SHA256",
                checksum_value: p.sha256.clone(),
            }],
            license_concluded: NOASSERTION,
            license_declared: NOASSERTION,
            copyright_text: NOASSERTION,
            external_refs: vec![purl_ref(p.purl())],
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.to_owned(),
            relationship_type: "CONTAINS",
            related_spdx_element: id,
        });
    }
    Document {
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        spdx_id: "SPDXRef-DOCUMENT",
        name: sbom.image.name.clone(),
        document_namespace: format!(
            "https://imgbuild.invalid/spdx/{}/sha256-{}",
            super::purl_encode(&sbom.image.name),
            sbom.image.digest.hex()
        ),
        creation_info: CreationInfo {
            creators: vec![format!("Tool: {TOOL_NAME}-{TOOL_VERSION}")],
            created: imgbuild_store::oci::rfc3339(sbom.created),
        },
        packages,
        relationships,
    }
}

/// `sbom` as SPDX 2.3 JSON (pretty, with a final newline).
pub fn render(sbom: &Sbom) -> Vec<u8> {
    let mut out =
        serde_json::to_vec_pretty(&document(sbom)).expect("an SPDX document always serializes");
    out.push(b'\n');
    out
}
