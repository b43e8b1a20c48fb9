//! `Packages` indices and the blob cache.
//!
//! Implements the "Binary package indices" part of the Debian Repository Format
//! (<https://wiki.debian.org/DebianRepository/Format#A.22Packages.22_Indices>):
//! `dists/<suite>/<component>/binary-<arch>/Packages{.xz,.gz,}`, each listed with its
//! size and SHA-256 in the signed Release. The index is fetched through `by-hash`
//! when the Release says `Acquire-By-Hash: yes` (so a mirror update between the two
//! downloads cannot mix generations), checked against the Release, cached by hash,
//! decompressed and parsed into [`PackageRecord`]s (fields per Policy §5.3 and §5.6).
//! Since the archive sets `No-Support-for-Architecture-all: Packages`,
//! `Architecture: all` packages are read from `binary-<arch>` too.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::cache::{fetch_verified, BlobCache, FetchVerifiedError};
use super::control::{self, ControlError, Paragraph};
use super::http::{self, Http, HttpError};
use super::release::Release;
use super::version::{
    parse_provides, parse_relations, Alternatives, Relation, Version, VersionError,
};

/// Fetching or parsing a `Packages` index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The Release lists no Packages index for this component/architecture.
    #[error("the Release of {suite} lists no {component}/binary-{arch}/Packages index; check `components` and the architecture")]
    NotInRelease {
        /// Suite.
        suite: String,
        /// Component.
        component: String,
        /// Architecture.
        arch: String,
    },
    /// Download failed.
    #[error("downloading the Packages index failed")]
    Fetch(#[source] HttpError),
    /// The download does not match the signed Release.
    #[error("{url}: expected {expected_size} bytes sha256 {expected}, got {found_size} bytes sha256 {found}; the mirror is inconsistent or tampered with, retry later or use another mirror")]
    Mismatch {
        /// URL.
        url: String,
        /// Expected digest.
        expected: String,
        /// Found digest.
        found: String,
        /// Expected size.
        expected_size: u64,
        /// Found size.
        found_size: u64,
    },
    /// Cache I/O.
    #[error("blob cache I/O on {path}: {source}")]
    Cache {
        /// Path involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Decompression failed.
    #[error("decompressing {path} failed: {source}")]
    Decompress {
        /// Path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Malformed index.
    #[error("{origin}: malformed Packages index")]
    Control {
        /// Which index.
        origin: String,
        /// Parser error.
        #[source]
        source: ControlError,
    },
    /// A package stanza lacks a field or has a bad value.
    #[error("{origin}: package stanza at line {line}: {reason}")]
    Stanza {
        /// Which index.
        origin: String,
        /// Line of the stanza.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl IndexError {
    /// True when the user has to fix something (`components`, the architecture, the
    /// mirror URL); an unreachable or inconsistent mirror is not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NotInRelease { .. } => true,
            Self::Fetch(source) => source.is_user_error(),
            Self::Mismatch { .. }
            | Self::Cache { .. }
            | Self::Decompress { .. }
            | Self::Control { .. }
            | Self::Stanza { .. } => false,
        }
    }
}

/// `Multi-Arch` (multiarch spec, Policy §5.6.x "Multi-Arch" in dpkg's deb-control(5)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MultiArch {
    /// Field absent or `no`.
    #[default]
    No,
    /// `same`: co-installable across architectures.
    Same,
    /// `foreign`: satisfies dependencies from any architecture.
    Foreign,
    /// `allowed`: satisfies `pkg:any` dependencies.
    Allowed,
}

/// One binary package stanza from a `Packages` index.
#[derive(Debug, Clone)]
pub struct PackageRecord {
    /// `Package`.
    pub name: String,
    /// `Version`.
    pub version: Version,
    /// `Architecture` (`amd64`, `all`, ...).
    pub architecture: String,
    /// `Multi-Arch`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority` (lower-cased; `optional` if absent).
    pub priority: String,
    /// `Pre-Depends`.
    pub pre_depends: Vec<Alternatives>,
    /// `Depends`.
    pub depends: Vec<Alternatives>,
    /// `Provides`.
    pub provides: Vec<Relation>,
    /// `Conflicts`.
    pub conflicts: Vec<Alternatives>,
    /// `Breaks`.
    pub breaks: Vec<Alternatives>,
    /// `Filename`: path of the `.deb` relative to the mirror root.
    pub filename: String,
    /// `Size` in bytes.
    pub size: u64,
    /// `SHA256`, lower-case hex.
    pub sha256: String,
    /// Component the index belongs to (`main`, ...).
    pub component: String,
    /// The source it was read from: `None` for the main one (see [`crate::AptSource`]).
    pub source: Option<String>,
}

fn stanza(origin: &str, component: &str, p: &Paragraph<'_>) -> Result<PackageRecord, IndexError> {
    let err = |reason: String| IndexError::Stanza {
        origin: origin.to_owned(),
        line: p.line(),
        reason,
    };
    let req = |f: &str| p.get(f).ok_or_else(|| err(format!("missing {f}")));
    let name = req("Package")?;
    let rel = |f: &str| -> Result<Vec<Alternatives>, IndexError> {
        p.get(f)
            .map(parse_relations)
            .transpose()
            .map(Option::unwrap_or_default)
            .map_err(|e: VersionError| err(format!("{name}: {f}: {e}")))
    };
    let sha256 = req("SHA256")?.to_ascii_lowercase();
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(format!("{name}: bad SHA256 {sha256:?}")));
    }
    Ok(PackageRecord {
        name: name.to_owned(),
        version: Version::parse(req("Version")?).map_err(|e| err(format!("{name}: {e}")))?,
        architecture: req("Architecture")?.to_owned(),
        multi_arch: match p.get("Multi-Arch").map(str::to_ascii_lowercase).as_deref() {
            Some("same") => MultiArch::Same,
            Some("foreign") => MultiArch::Foreign,
            Some("allowed") => MultiArch::Allowed,
            _ => MultiArch::No,
        },
        essential: p
            .get("Essential")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        priority: p.get("Priority").unwrap_or("optional").to_ascii_lowercase(),
        pre_depends: rel("Pre-Depends")?,
        depends: rel("Depends")?,
        provides: p
            .get("Provides")
            .map(parse_provides)
            .transpose()
            .map_err(|e| err(format!("{name}: Provides: {e}")))?
            .unwrap_or_default(),
        conflicts: rel("Conflicts")?,
        breaks: rel("Breaks")?,
        filename: req("Filename")?.to_owned(),
        size: req("Size")?
            .parse()
            .map_err(|_| err(format!("{name}: bad Size")))?,
        sha256,
        component: component.to_owned(),
        source: None,
    })
}

/// Parses the text of a `Packages` index; `origin` names it in errors.
pub fn parse_packages(
    origin: &str,
    component: &str,
    text: &str,
) -> Result<Vec<PackageRecord>, IndexError> {
    control::parse(text)
        .map(|p| {
            let p = p.map_err(|source| IndexError::Control {
                origin: origin.to_owned(),
                source,
            })?;
            stanza(origin, component, &p)
        })
        .collect()
}

/// Which index file to use and how to decompress it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Xz,
    Gz,
    None,
}

fn decompress(path: &Path, c: Compression) -> Result<String, IndexError> {
    let de = |source| IndexError::Decompress {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path).map_err(de)?;
    let mut reader: Box<dyn Read> = match c {
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(std::io::BufReader::new(file))),
        Compression::Gz => Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file))),
        Compression::None => Box::new(file),
    };
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(de)?;
    Ok(text)
}

/// Fetches, verifies and parses `<component>/binary-<arch>/Packages` of `release`.
pub fn fetch_packages(
    http: &Http,
    mirror: &str,
    suite: &str,
    release: &Release,
    component: &str,
    arch: &str,
    cache: &dyn BlobCache,
) -> Result<Vec<PackageRecord>, IndexError> {
    let base = format!("{component}/binary-{arch}/Packages");
    let (path, entry, comp) = [
        (".xz", Compression::Xz),
        (".gz", Compression::Gz),
        ("", Compression::None),
    ]
    .iter()
    .find_map(|(ext, c)| {
        let p = format!("{base}{ext}");
        release.files.get(&p).map(|e| (p, e.clone(), *c))
    })
    .ok_or_else(|| IndexError::NotInRelease {
        suite: suite.to_owned(),
        component: component.to_owned(),
        arch: arch.to_owned(),
    })?;
    let url = if release.acquire_by_hash {
        http::join(
            mirror,
            &format!(
                "dists/{suite}/{component}/binary-{arch}/by-hash/SHA256/{}",
                entry.sha256
            ),
        )
    } else {
        http::join(mirror, &format!("dists/{suite}/{path}"))
    };
    let file = match fetch_verified(http, &url, &entry.sha256, entry.size, cache) {
        Ok(p) => p,
        Err(FetchVerifiedError::Http(e)) => return Err(IndexError::Fetch(e)),
        // Unreachable: `parse_release` validated every digest.
        Err(FetchVerifiedError::BadDigest) => {
            return Err(IndexError::NotInRelease {
                suite: suite.to_owned(),
                component: component.to_owned(),
                arch: arch.to_owned(),
            })
        }
        Err(FetchVerifiedError::Mismatch { found, found_size }) => {
            return Err(IndexError::Mismatch {
                url,
                expected: entry.sha256,
                found,
                expected_size: entry.size,
                found_size,
            })
        }
        Err(FetchVerifiedError::Cache { path, source }) => {
            return Err(IndexError::Cache { path, source })
        }
    };
    let text = decompress(&file, comp)?;
    parse_packages(&format!("{suite} {component} {arch}"), component, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDX: &str = "Package: a\nVersion: 1:2.0-1\nArchitecture: amd64\nMulti-Arch: foreign\nEssential: yes\nPriority: required\nPre-Depends: libc6 (>= 2.34)\nDepends: b | c, d:any\nProvides: x (= 1), y\nBreaks: z (<< 1)\nFilename: pool/main/a/a_2.0-1_amd64.deb\nSize: 123\nSHA256: 0000000000000000000000000000000000000000000000000000000000000001\n\nPackage: b\nVersion: 1\nArchitecture: all\nFilename: pool/main/b/b_1_all.deb\nSize: 1\nSHA256: 0000000000000000000000000000000000000000000000000000000000000002\n";

    #[test]
    fn parse() {
        let ps = parse_packages("t", "main", IDX).unwrap();
        assert_eq!(ps.len(), 2);
        let a = &ps[0];
        assert_eq!(a.version.to_string(), "1:2.0-1");
        assert_eq!(a.multi_arch, MultiArch::Foreign);
        assert!(a.essential);
        assert_eq!(a.depends.len(), 2);
        assert_eq!(a.provides.len(), 2);
        assert_eq!(a.breaks[0][0].name, "z");
        assert_eq!(ps[1].priority, "optional");
        assert_eq!(ps[1].architecture, "all");
    }

    #[test]
    fn missing_field() {
        let e = parse_packages("t", "main", "Package: a\nVersion: 1\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
