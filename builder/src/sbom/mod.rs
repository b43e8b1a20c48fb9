//! Software bills of materials (issue 12): what went into an image, as SPDX 2.3 JSON and
//! CycloneDX 1.6 JSON.
//!
//! [`Sbom`] is the format-neutral model: the image (its manifest digest is the described
//! subject) and the Debian packages of its lock, each with name, version, architecture,
//! the `.deb`'s sha256, its pool path and a `pkg:deb` purl. [`spdx::render`] and
//! [`cyclonedx::render`] turn it into bytes. Both are deterministic: packages are sorted,
//! every id is derived from content (the image digest, a `.deb`'s sha256) and the one
//! timestamp is the `SOURCE_DATE_EPOCH` the caller passes, so the same lock and image
//! give the same bytes.
//!
//! Not yet here (see issue 12): files of `copy`/`write` steps, the base's digests,
//! licenses from `/usr/share/doc/*/copyright`, wiring into the CLI and pipeline.

use imgbuild_debian::{LockedPackage, Lockfile};
use imgbuild_store::Digest;

pub mod cyclonedx;
pub mod spdx;

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
    /// Debian packages, sorted by name, architecture, version.
    pub packages: Vec<DebPackage>,
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

/// One Debian binary package installed in the image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DebPackage {
    /// Package name.
    pub name: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Exact version.
    pub version: String,
    /// Lower-case hex sha256 of the `.deb`.
    pub sha256: String,
    /// Size of the `.deb` in bytes.
    pub size: u64,
    /// Path relative to the mirror root (`pool/main/a/apt/apt_2.6.1_amd64.deb`).
    pub filename: String,
    /// The source package name (the pool directory the `.deb` is in), when known.
    pub source_package: Option<String>,
    /// Where the `.deb` was fetched from (mirror URL joined with `filename`), when known.
    pub download_location: Option<String>,
    /// The purl `distro` qualifier (`debian-12`), when the suite is known.
    pub distro: Option<String>,
}

impl DebPackage {
    /// The package from a lock entry; `mirror` is its repository's base URL and `suite`
    /// its suite, when the lock records them.
    pub fn from_locked(p: &LockedPackage, mirror: Option<&str>, suite: Option<&str>) -> Self {
        DebPackage {
            name: p.name.clone(),
            architecture: p.architecture.clone(),
            version: p.version.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            filename: p.filename.clone(),
            source_package: source_from_pool_path(&p.filename),
            download_location: mirror
                .map(|m| format!("{}/{}", m.trim_end_matches('/'), p.filename)),
            distro: suite.and_then(distro_of_suite),
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
    /// `.deb`'s sha256, restricted to `[A-Za-z0-9.-]` (SPDX ids; also fine as bom-refs).
    pub fn id(&self) -> String {
        let sha = self.sha256.get(..16).unwrap_or(&self.sha256);
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
            packages,
            created,
        }
    }
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

/// `s` with every character outside `[A-Za-z0-9.-]` replaced by `-`.
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
