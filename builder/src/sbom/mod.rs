//! Software bills of materials (issue 12): what went into an image, as SPDX 2.3 JSON and
//! CycloneDX 1.6 JSON.
//!
//! [`Sbom`] is the format-neutral model: the image (its manifest digest is the described
//! subject), its base, the Debian packages its dpkg database lists as installed ([`dpkg`])
//! with what the lock knows of each (the `.deb`'s sha256, pool path, mirror) and the
//! license its copyright file declares ([`license`]), and the files the recipe's `copy`
//! and `write` steps put there. [`spdx::render`] and [`cyclonedx::render`] turn it into
//! bytes. Both are deterministic: packages and files are sorted, every id is derived from
//! content (the image digest, a `.deb`'s sha256, a file's path) and the one timestamp is
//! the `SOURCE_DATE_EPOCH` the caller passes, so the same image gives the same bytes.

use std::collections::BTreeMap;

use imgbuild_debian::{LockedPackage, Lockfile};
use imgbuild_store::Digest;

pub mod cyclonedx;
pub mod dpkg;
pub mod license;
pub mod spdx;

pub use dpkg::InstalledPackage;
pub use license::DeclaredLicense;

#[cfg(test)]
mod tests;

/// The name and version of the tool written into every document.
pub const TOOL_NAME: &str = "imgbuild";
/// This imgbuild's version.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What an SBOM describes: an image and what is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sbom {
    /// The image (the described subject).
    pub image: Image,
    /// What the image was built on, when it is another image or a tarball.
    pub base: Option<BaseImage>,
    /// Debian packages, sorted by name, architecture, version.
    pub packages: Vec<DebPackage>,
    /// Files the recipe's `copy` and `write` steps added, sorted by path.
    pub files: Vec<FileEntry>,
    /// Creation time, seconds since the epoch (`SOURCE_DATE_EPOCH`).
    pub created: u64,
}

/// The image an SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The recipe's image name.
    pub name: String,
    /// Digest of the image manifest.
    pub digest: Digest,
}

impl Image {
    /// `pkg:oci/NAME@sha256%3AHEX` (the purl-spec `oci` type).
    pub fn purl(&self) -> String {
        format!(
            "pkg:oci/{}@{}",
            purl_encode(&self.name.to_ascii_lowercase()),
            purl_encode(&self.digest.to_string())
        )
    }
}

/// The image or tarball an image was built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// How the recipe names it: a registry reference, a tarball or layout path.
    pub name: String,
    /// The registry manifest's digest, or the tarball's sha256.
    pub digest: Digest,
    /// True for an image (registry, OCI layout or archive), false for a rootfs tarball.
    pub is_image: bool,
    /// Its purl, for an image in a registry.
    pub purl: Option<String>,
}

/// The `pkg:oci` purl of an image in a registry: `repository` is `HOST/PATH` without tag
/// (`pkg:oci/debian@sha256%3A...?repository_url=docker.io%2Flibrary%2Fdebian`).
pub fn registry_purl(repository: &str, digest: &Digest) -> String {
    let last = repository.rsplit('/').next().unwrap_or(repository);
    format!(
        "pkg:oci/{}@{}?repository_url={}",
        purl_encode(&last.to_ascii_lowercase()),
        purl_encode(&digest.to_string()),
        purl_encode(repository)
    )
}

/// A file a `copy` or `write` step put in the image, as the image holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// Absolute path in the image.
    pub path: String,
    /// Lower-case hex sha256 of its bytes.
    pub sha256: String,
    /// Lower-case hex SHA-1 of its bytes (SPDX 2.3 requires it for files).
    pub sha1: String,
    /// Size in bytes.
    pub size: u64,
}

/// The `.deb` a package was installed from, as the lock pins it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebFile {
    /// Lower-case hex sha256 of the `.deb`.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// Path relative to the mirror root (`pool/main/a/apt/apt_2.6.1_amd64.deb`).
    pub filename: String,
}

/// One Debian binary package installed in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPackage {
    /// Package name.
    pub name: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Exact version.
    pub version: String,
    /// The `.deb`, when the lock pins it (not for packages of a registry base).
    pub deb: Option<DebFile>,
    /// The source package name, when known.
    pub source_package: Option<String>,
    /// Where the `.deb` was fetched from (mirror URL joined with its pool path), when known.
    pub download_location: Option<String>,
    /// The purl `distro` qualifier (`debian-12`), when the suite is known.
    pub distro: Option<String>,
    /// The license its machine-readable copyright file declares.
    pub license: Option<DeclaredLicense>,
}

/// What an image holds, read from its merged tree, for [`Sbom::from_image`].
#[derive(Debug, Clone, Default)]
pub struct ImageContents {
    /// The packages of `/var/lib/dpkg/status`.
    pub installed: Vec<InstalledPackage>,
    /// Declared licenses by package name (`/usr/share/doc/NAME/copyright`).
    pub licenses: BTreeMap<String, DeclaredLicense>,
    /// The purl `distro` from `/etc/os-release` (`ID-VERSION_ID`, `debian-12`).
    pub distro: Option<String>,
    /// Files of `copy` and `write` steps.
    pub files: Vec<FileEntry>,
    /// The base.
    pub base: Option<BaseImage>,
}

impl DebPackage {
    /// The package from a lock entry; `mirror` is its repository's base URL and `suite`
    /// its suite, when the lock records them.
    pub fn from_locked(p: &LockedPackage, mirror: Option<&str>, suite: Option<&str>) -> Self {
        DebPackage {
            name: p.name.clone(),
            architecture: p.architecture.clone(),
            version: p.version.clone(),
            deb: Some(DebFile {
                sha256: p.sha256.clone(),
                size: p.size,
                filename: p.filename.clone(),
            }),
            source_package: source_from_pool_path(&p.filename),
            download_location: mirror
                .map(|m| format!("{}/{}", m.trim_end_matches('/'), p.filename)),
            distro: suite.and_then(distro_of_suite),
            license: None,
        }
    }

    /// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12` (qualifiers sorted, as
    /// the purl spec asks; version percent-encoded, so `+` is `%2B`).
    pub fn purl(&self) -> String {
        let mut purl = format!(
            "pkg:deb/debian/{}@{}?arch={}",
            purl_encode(&self.name),
            purl_encode(&self.version),
            purl_encode(&self.architecture)
        );
        if let Some(d) = &self.distro {
            purl.push_str("&distro=");
            purl.push_str(&purl_encode(d));
        }
        purl
    }

    /// A short id unique within a document: name, architecture and the start of the
    /// sha256 of the `.deb` (or of name, architecture and version when there is none),
    /// restricted to `[A-Za-z0-9.-]` (SPDX ids; also fine as bom-refs).
    pub fn id(&self) -> String {
        let sha = match &self.deb {
            Some(deb) => deb.sha256.clone(),
            None => Digest::of(
                format!("{}\0{}\0{}", self.name, self.architecture, self.version).as_bytes(),
            )
            .hex(),
        };
        let sha = sha.get(..16).unwrap_or(&sha);
        id_safe(&format!("{}-{}-{}", self.name, self.architecture, sha))
    }
}

impl Sbom {
    /// The SBOM of image `name` with manifest `digest`, built from `lock`, created at
    /// `created` (seconds since the epoch, `SOURCE_DATE_EPOCH`).
    ///
    /// A package with a `source` is fetched from that `[[extra_source]]`; the others from
    /// the main `[source]`. The lock's bootloader packages are not in the image and are
    /// left out.
    pub fn from_lock(name: &str, digest: Digest, lock: &Lockfile, created: u64) -> Self {
        let main = lock.source.as_ref();
        let suite = main.map(|s| s.request.suite.as_str());
        let mut packages: Vec<DebPackage> = lock
            .packages
            .iter()
            .map(|p| DebPackage::from_locked(p, lock.uri_of(p), suite))
            .collect();
        packages.sort();
        packages.dedup();
        Sbom {
            image: Image {
                name: name.to_owned(),
                digest,
            },
            base: None,
            packages,
            files: Vec::new(),
            created,
        }
    }

    /// The SBOM of image `name` with manifest `digest` from what the image holds: each
    /// installed package, with its `.deb` when `lock` pins that exact package (name,
    /// architecture, version), and its declared license.
    pub fn from_image(
        name: &str,
        digest: Digest,
        contents: ImageContents,
        lock: Option<&Lockfile>,
        created: u64,
    ) -> Self {
        let suite = lock
            .and_then(|l| l.source.as_ref())
            .map(|s| s.request.suite.as_str());
        let distro = contents
            .distro
            .clone()
            .or_else(|| suite.and_then(distro_of_suite));
        let mut packages: Vec<DebPackage> = contents
            .installed
            .iter()
            .map(|i| {
                let locked = lock.and_then(|l| {
                    l.packages
                        .iter()
                        .find(|p| {
                            p.name == i.name
                                && p.architecture == i.architecture
                                && p.version == i.version
                        })
                        .map(|p| (l, p))
                });
                let mut p = match locked {
                    Some((l, p)) => DebPackage::from_locked(p, l.uri_of(p), suite),
                    None => DebPackage {
                        name: i.name.clone(),
                        architecture: i.architecture.clone(),
                        version: i.version.clone(),
                        deb: None,
                        source_package: None,
                        download_location: None,
                        distro: None,
                        license: None,
                    },
                };
                p.source_package = Some(i.source.clone().unwrap_or_else(|| i.name.clone()));
                p.distro.clone_from(&distro);
                p.license = contents.licenses.get(&i.name).cloned();
                p
            })
            .collect();
        packages.sort();
        packages.dedup();
        let mut files = contents.files;
        files.sort();
        files.dedup();
        Sbom {
            image: Image {
                name: name.to_owned(),
                digest,
            },
            base: contents.base,
            packages,
            files,
            created,
        }
    }

    /// Every `LicenseRef-` the packages' licenses use, with the Debian name each stands
    /// for, sorted and once each.
    pub fn license_refs(&self) -> Vec<(String, String)> {
        let mut refs: Vec<(String, String)> = self
            .packages
            .iter()
            .filter_map(|p| p.license.as_ref())
            .flat_map(|l| l.refs.iter().cloned())
            .collect();
        refs.sort();
        refs.dedup_by(|a, b| a.0 == b.0);
        refs
    }
}

/// The purl `distro` of an `/etc/os-release`: `ID-VERSION_ID` (`debian-12`).
pub fn distro_of_os_release(os_release: &str) -> Option<String> {
    let value = |key: &str| {
        os_release.lines().find_map(|l| {
            let v = l.strip_prefix(key)?.strip_prefix('=')?;
            Some(v.trim().trim_matches('"').to_owned())
        })
    };
    Some(format!("{}-{}", value("ID")?, value("VERSION_ID")?))
}

/// The source package of a `.deb` from its pool path: Debian's pool layout is
/// `pool/COMPONENT/PREFIX/SOURCE/FILE.deb`.
fn source_from_pool_path(filename: &str) -> Option<String> {
    let parts: Vec<&str> = filename.split('/').collect();
    match parts.as_slice() {
        ["pool", _component, _prefix, source, _file] if !source.is_empty() => {
            Some((*source).to_owned())
        }
        _ => None,
    }
}

/// The purl `distro` of a Debian suite or codename (`bookworm` -> `debian-12`).
fn distro_of_suite(suite: &str) -> Option<String> {
    let codename = suite.split(['-', '/']).next().unwrap_or(suite);
    let version = match codename {
        "buster" => "10",
        "bullseye" => "11",
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        _ => return None,
    };
    Some(format!("debian-{version}"))
}

/// Percent-encodes everything but ASCII letters, digits and `.-_~` (purl components).
fn purl_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `s` with every character outside `[A-Za-z0-9.-]` replaced by `-` (an SPDX id or
/// `LicenseRef-` idstring).
fn id_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A UUID (version 5 layout, RFC 9562 variant) from the first 16 bytes of the sha256 of
/// `content`: the same content always gives the same UUID.
fn uuid_from(content: &str) -> String {
    let hex = Digest::of(content.as_bytes()).hex();
    let mut b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
        .collect();
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h =
        |r: std::ops::Range<usize>| -> String { b[r].iter().map(|x| format!("{x:02x}")).collect() };
    format!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}
