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

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    pub pre_depends: RelationField,
    /// `Depends`.
    pub depends: RelationField,
    /// `Provides`.
    pub provides: Vec<Relation>,
    /// `Conflicts`.
    pub conflicts: RelationField,
    /// `Breaks`.
    pub breaks: RelationField,
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

/// A relation field (`Depends`, `Breaks`, ...) of a package: checked when the index is
/// read, but kept as its text and parsed again only when the resolver asks for it. A
/// resolution touches a few hundred of the 60,000 packages of a suite, and parsed
/// relations take several times the memory of their text.
#[derive(Debug, Clone, Default)]
pub struct RelationField {
    text: Box<str>,
    parsed: OnceLock<Vec<Alternatives>>,
}

impl RelationField {
    /// Checks `text` and keeps it.
    fn read(text: &str) -> Result<Self, VersionError> {
        parse_relations(text)?;
        Ok(Self {
            text: text.into(),
            parsed: OnceLock::new(),
        })
    }

    /// The alternatives groups, parsed on first use.
    pub fn groups(&self) -> &[Alternatives] {
        // `read` parsed the same text successfully, so this cannot fall back.
        self.parsed
            .get_or_init(|| parse_relations(&self.text).unwrap_or_default())
    }
}

fn stanza(origin: &str, component: &str, p: &Paragraph<'_>) -> Result<PackageRecord, IndexError> {
    let err = |reason: String| IndexError::Stanza {
        origin: origin.to_owned(),
        line: p.line(),
        reason,
    };
    let name = p
        .get("Package")
        .ok_or_else(|| err("missing Package".to_owned()))?;
    let req = |f: &str| p.get(f).ok_or_else(|| err(format!("{name}: missing {f}")));
    let rel = |f: &str| -> Result<RelationField, IndexError> {
        p.get(f)
            .map(RelationField::read)
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
    read_packages(origin, component, text.as_bytes()).map_err(|e| match e {
        ReadError::Index(e) => e,
        ReadError::Io(_) => unreachable!("reading from memory cannot fail"),
    })
}

/// Reading an index from a stream failed: the stream itself, or its content.
enum ReadError {
    Io(std::io::Error),
    Index(IndexError),
}

/// Parses a `Packages` index from `reader` one stanza at a time, so that only the
/// records are kept in memory, never the whole (about 45 MB for bookworm main) text.
fn read_packages(
    origin: &str,
    component: &str,
    mut reader: impl BufRead,
) -> Result<Vec<PackageRecord>, ReadError> {
    let mut records = Vec::new();
    let mut chunk = String::new();
    let mut chunk_line = 1;
    let mut line_no = 0;
    loop {
        let len_before = chunk.len();
        let read = reader.read_line(&mut chunk).map_err(ReadError::Io)?;
        line_no += 1;
        let at_end = read == 0;
        let blank = !at_end && chunk[len_before..].trim().is_empty();
        if at_end || blank {
            for p in control::parse_from_line(&chunk, chunk_line) {
                let p = p.map_err(|source| {
                    ReadError::Index(IndexError::Control {
                        origin: origin.to_owned(),
                        source,
                    })
                })?;
                records.push(stanza(origin, component, &p).map_err(ReadError::Index)?);
            }
            if at_end {
                return Ok(records);
            }
            chunk.clear();
            chunk_line = line_no + 1;
        }
    }
}

/// Which index file to use and how to decompress it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Xz,
    Gz,
    None,
}

/// Decompresses and parses the index file at `path` as it streams.
fn read_index_file(
    path: &Path,
    c: Compression,
    origin: &str,
    component: &str,
) -> Result<Vec<PackageRecord>, IndexError> {
    let de = |source| IndexError::Decompress {
        path: path.to_owned(),
        source,
    };
    let file = fs_err::File::open(path).map_err(de)?;
    let reader: Box<dyn Read> = match c {
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new(BufReader::new(file))),
        Compression::Gz => Box::new(flate2::read::GzDecoder::new(BufReader::new(file))),
        Compression::None => Box::new(file),
    };
    read_packages(origin, component, BufReader::with_capacity(1 << 16, reader)).map_err(|e| match e
    {
        ReadError::Io(source) => de(source),
        ReadError::Index(e) => e,
    })
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
    read_index_file(
        &file,
        comp,
        &format!("{suite} {component} {arch}"),
        component,
    )
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
        assert_eq!(a.depends.groups().len(), 2);
        assert_eq!(a.provides.len(), 2);
        assert_eq!(a.breaks.groups()[0][0].name, "z");
        assert!(ps[1].depends.groups().is_empty());
        assert_eq!(ps[1].priority, "optional");
        assert_eq!(ps[1].architecture, "all");
    }

    #[test]
    fn missing_field() {
        let e = parse_packages("t", "main", "Package: a\nVersion: 1\n").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn errors_count_lines_of_the_whole_index() {
        let text = IDX.replace("Size: 1\n", "");
        let e = parse_packages("t", "main", &text).unwrap_err();
        assert!(e.to_string().contains("at line 15: b: missing Size"), "{e}");
        let bad = format!("{IDX}\n\nPackage c\n");
        let e = parse_packages("t", "main", &bad).unwrap_err();
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("line 23"), "{source}");
    }

    #[test]
    fn a_compressed_index_is_read_as_it_streams() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Packages.xz");
        let mut xz = liblzma::write::XzEncoder::new(fs_err::File::create(&path).unwrap(), 1);
        std::io::Write::write_all(&mut xz, IDX.as_bytes()).unwrap();
        xz.finish().unwrap();
        let ps = read_index_file(&path, Compression::Xz, "t", "main").unwrap();
        assert_eq!(
            ps.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
    }
}
