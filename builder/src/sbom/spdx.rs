//! SPDX 2.3 JSON (<https://spdx.github.io/spdx-spec/v2.3/>).
//!
//! One package for the image (`SPDXRef-Image`, purpose `CONTAINER`, its manifest digest as
//! a SHA256 checksum and a `pkg:oci` purl) that the document `DESCRIBES`; one per Debian
//! package that the image `CONTAINS`, with its `.deb`'s SHA256, a `pkg:deb` purl and its
//! declared license; one for the base that the image is a `DESCENDANT_OF`; and a file
//! (SHA1 and SHA256) per file of a `copy` or `write` step, each contained in one package
//! of the recipe's files (with `filesAnalyzed` and its verification code) that the image
//! `CONTAINS`.
//! Licenses that are not on the SPDX list are `LicenseRef-`s declared in
//! `hasExtractedLicensingInfos`. The namespace is derived from the image digest.

use serde::Serialize;

use super::{Sbom, TOOL_NAME, TOOL_VERSION};

/// The SPDX id of the image package.
pub const IMAGE_ID: &str = "SPDXRef-Image";
/// The SPDX id of the base's package.
pub const BASE_ID: &str = "SPDXRef-Base";
/// The SPDX id of the package that holds the files of `copy` and `write` steps (a package
/// whose files are listed; the image's are not, so the files cannot be its own).
pub const RECIPE_FILES_ID: &str = "SPDXRef-RecipeFiles";

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
    /// The image, its base, then the Debian packages sorted.
    pub packages: Vec<Package>,
    /// Files of `copy` and `write` steps, sorted by path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<File>,
    /// The licenses that are not on the SPDX list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub has_extracted_licensing_infos: Vec<ExtractedLicense>,
    /// DESCRIBES, DESCENDANT_OF the base, then CONTAINS per package and file.
    pub relationships: Vec<Relationship>,
}

/// One SPDX file.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct File {
    /// `SPDXRef-File-...`.
    #[serde(rename = "SPDXID")]
    pub spdx_id: String,
    /// `./` and the path in the image.
    pub file_name: String,
    /// SHA1 (required) and SHA256.
    pub checksums: Vec<Checksum>,
    /// `NOASSERTION`.
    pub license_concluded: &'static str,
    /// `NOASSERTION`.
    pub copyright_text: &'static str,
}

/// A license that is not on the SPDX list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtractedLicense {
    /// `LicenseRef-...`.
    pub license_id: String,
    /// Its name as Debian's copyright files spell it.
    pub name: String,
    /// Where its text is.
    pub extracted_text: String,
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
    /// `CONTAINER` for the image and a base image, `ARCHIVE` for a base tarball; absent
    /// for the Debian packages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_package_purpose: Option<&'static str>,
    /// SHA256 of the `.deb` (of the manifest for the image); none when unknown.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub checksums: Vec<Checksum>,
    /// `NOASSERTION`: imgbuild does not conclude licenses.
    pub license_concluded: &'static str,
    /// The license the package's copyright file declares, or `NOASSERTION`.
    pub license_declared: String,
    /// `NOASSERTION`.
    pub copyright_text: &'static str,
    /// The purl.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_refs: Vec<ExternalRef>,
    /// For the package of the recipe's files (the one with `filesAnalyzed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_verification_code: Option<VerificationCode>,
    /// `NOASSERTION`, for the package of the recipe's files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub license_info_from_files: Vec<&'static str>,
}

/// `packageVerificationCode`: the SHA1 of the package's files' sorted SHA1s.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationCode {
    /// Lower-case hex.
    pub package_verification_code_value: String,
}

/// A checksum.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checksum {
    /// `SHA256`, `SHA1`.
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
        license_declared: NOASSERTION.to_owned(),
        copyright_text: NOASSERTION,
        external_refs: vec![purl_ref(sbom.image.purl())],
        package_verification_code: None,
        license_info_from_files: Vec::new(),
    }];
    let mut relationships = vec![Relationship {
        spdx_element_id: "SPDXRef-DOCUMENT".to_owned(),
        relationship_type: "DESCRIBES",
        related_spdx_element: IMAGE_ID.to_owned(),
    }];
    if let Some(base) = &sbom.base {
        packages.push(Package {
            spdx_id: BASE_ID.to_owned(),
            name: base.name.clone(),
            version_info: base.digest.to_string(),
            download_location: NOASSERTION.to_owned(),
            files_analyzed: false,
            package_file_name: None,
            supplier: None,
            source_info: None,
            primary_package_purpose: Some(if base.is_image {
                "CONTAINER"
            } else {
                "ARCHIVE"
            }),
            checksums: vec![Checksum {
                algorithm: "SHA256",
                checksum_value: base.digest.hex(),
            }],
            license_concluded: NOASSERTION,
            license_declared: NOASSERTION.to_owned(),
            copyright_text: NOASSERTION,
            external_refs: base.purl.clone().map(purl_ref).into_iter().collect(),
            package_verification_code: None,
            license_info_from_files: Vec::new(),
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.to_owned(),
            relationship_type: "DESCENDANT_OF",
            related_spdx_element: BASE_ID.to_owned(),
        });
    }
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
            package_file_name: p.deb.as_ref().map(|d| d.filename.clone()),
            supplier: Some("Organization: Debian".to_owned()),
            source_info: p
                .source_package
                .as_ref()
                .map(|s| format!("built package from: {s}")),
            primary_package_purpose: None,
            checksums: p
                .deb
                .iter()
                .map(|d| Checksum {
                    algorithm: "SHA256",
                    checksum_value: d.sha256.clone(),
                })
                .collect(),
            license_concluded: NOASSERTION,
            license_declared: p
                .license
                .as_ref()
                .map_or_else(|| NOASSERTION.to_owned(), |l| l.expression.clone()),
            copyright_text: NOASSERTION,
            external_refs: vec![purl_ref(p.purl())],
            package_verification_code: None,
            license_info_from_files: Vec::new(),
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.to_owned(),
            relationship_type: "CONTAINS",
            related_spdx_element: id,
        });
    }
    let mut files = Vec::new();
    if !sbom.files.is_empty() {
        packages.push(Package {
            spdx_id: RECIPE_FILES_ID.to_owned(),
            name: format!("{}-recipe-files", sbom.image.name),
            version_info: sbom.image.digest.to_string(),
            download_location: NOASSERTION.to_owned(),
            files_analyzed: true,
            package_file_name: None,
            supplier: None,
            source_info: Some("the files the recipe's copy and write steps added".to_owned()),
            primary_package_purpose: None,
            checksums: Vec::new(),
            license_concluded: NOASSERTION,
            license_declared: NOASSERTION.to_owned(),
            copyright_text: NOASSERTION,
            external_refs: Vec::new(),
            package_verification_code: Some(VerificationCode {
                package_verification_code_value: verification_code(
                    sbom.files.iter().map(|f| f.sha1.as_str()),
                ),
            }),
            license_info_from_files: vec![NOASSERTION],
        });
        relationships.push(Relationship {
            spdx_element_id: IMAGE_ID.to_owned(),
            relationship_type: "CONTAINS",
            related_spdx_element: RECIPE_FILES_ID.to_owned(),
        });
    }
    for f in &sbom.files {
        let id = format!(
            "SPDXRef-File-{}-{}",
            super::id_safe(f.path.trim_start_matches('/')),
            &f.sha256[..f.sha256.len().min(12)]
        );
        files.push(File {
            spdx_id: id.clone(),
            file_name: format!(".{}", f.path),
            checksums: vec![
                Checksum {
                    algorithm: "SHA1",
                    checksum_value: f.sha1.clone(),
                },
                Checksum {
                    algorithm: "SHA256",
                    checksum_value: f.sha256.clone(),
                },
            ],
            license_concluded: NOASSERTION,
            copyright_text: NOASSERTION,
        });
        relationships.push(Relationship {
            spdx_element_id: RECIPE_FILES_ID.to_owned(),
            relationship_type: "CONTAINS",
            related_spdx_element: id,
        });
    }
    let has_extracted_licensing_infos = sbom
        .license_refs()
        .into_iter()
        .map(|(license_id, name)| ExtractedLicense {
            extracted_text: format!(
                "The license Debian's machine-readable copyright files call `{name}`; its \
                 text is in /usr/share/doc/PACKAGE/copyright of each package that declares it."
            ),
            license_id,
            name,
        })
        .collect();
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
        files,
        has_extracted_licensing_infos,
        relationships,
    }
}

/// SPDX 2.3's package verification code: the SHA1 of the files' lower-case hex SHA1s,
/// sorted and concatenated.
fn verification_code<'a>(sha1s: impl Iterator<Item = &'a str>) -> String {
    use sha1::Digest as _;
    let mut sorted: Vec<&str> = sha1s.collect();
    sorted.sort_unstable();
    hex::encode(sha1::Sha1::digest(sorted.concat().as_bytes()))
}

/// `sbom` as SPDX 2.3 JSON (pretty, with a final newline).
pub fn render(sbom: &Sbom) -> Vec<u8> {
    let mut out =
        serde_json::to_vec_pretty(&document(sbom)).expect("an SPDX document always serializes");
    out.push(b'\n');
    out
}
