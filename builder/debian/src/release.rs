//! Signed `InRelease` files: fetch, OpenPGP verification, parsing.
//!
//! Implements the "Release files" section of the Debian Repository Format
//! (<https://wiki.debian.org/DebianRepository/Format#A.22Release.22_files>):
//! `dists/<suite>/InRelease` is a Release file wrapped in an OpenPGP cleartext
//! signature (RFC 9580 §7). Only the *signed* text is ever parsed.
//!
//! Verification policy:
//! * the signature is checked with rPGP against every key (primary keys and subkeys
//!   with a valid binding signature) of a keyring, binary (`.gpg`) or armored (`.asc`);
//!   Debian signs with several keys, so it succeeds if **any** signature verifies
//!   with **any** keyring key. Key expiry and revocation are not evaluated: like apt's
//!   `Signed-By`, the keyring itself is the trust decision;
//! * the Release must name the requested suite as its `Suite` or `Codename`, so a
//!   mirror cannot substitute another (older) signed suite;
//! * `Valid-Until` is enforced when present (as apt does; Debian's main archive does
//!   not set it, the security archive does). Snapshot users can opt out with
//!   [`ReleaseOptions::allow_expired`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use pgp::composed::{CleartextSignedMessage, Deserializable, SignedPublicKey};
use pgp::packet::Signature;
use pgp::types::{KeyDetails, VerifyingKey};
use sha2::{Digest, Sha256};

use super::control::{self, ControlError};
use super::http::{self, Http, HttpError};

/// Debian's archive keyring as installed by the `debian-archive-keyring` package.
pub const DEFAULT_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Fetching, verifying or parsing a Release file failed.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Downloading `InRelease` failed.
    #[error("fetching the signed Release file failed")]
    Fetch(#[source] HttpError),
    /// The keyring could not be read.
    #[error("cannot read keyring {path}: {source}; install debian-archive-keyring or set `keyring` in the recipe")]
    KeyringRead {
        /// Keyring path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The keyring is not OpenPGP data or holds no usable key.
    #[error("keyring {path} holds no usable OpenPGP public key: {reason}")]
    KeyringInvalid {
        /// Keyring path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `InRelease` is not an OpenPGP cleartext-signed message.
    #[error("{url} is not an OpenPGP cleartext-signed message: {reason}")]
    NotSigned {
        /// Where it came from.
        url: String,
        /// Parser message.
        reason: String,
    },
    /// No signature verified with any key in the keyring.
    #[error("{url}: no valid signature from a key in {keyring} (signed by {issuers}); the mirror may be tampered with, or the keyring is wrong for this suite")]
    BadSignature {
        /// Where it came from.
        url: String,
        /// Keyring used.
        keyring: PathBuf,
        /// Issuer key ids/fingerprints named by the signatures.
        issuers: String,
    },
    /// The signed text is not a valid control file.
    #[error("{url}: malformed Release file")]
    Parse {
        /// Where it came from.
        url: String,
        /// The parse error.
        #[source]
        source: ControlError,
    },
    /// A required field is missing or malformed.
    #[error("{url}: Release field {field}: {reason}")]
    Field {
        /// Where it came from.
        url: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The Release is for another suite than requested.
    #[error("{url}: Release is for suite {found:?} (codename {codename:?}), not {requested:?}")]
    WrongSuite {
        /// Where it came from.
        url: String,
        /// Requested suite.
        requested: String,
        /// The `Suite` field.
        found: String,
        /// The `Codename` field.
        codename: String,
    },
    /// `Valid-Until` lies in the past.
    #[error("{url}: Release expired at {valid_until}; the mirror is stale (or set allow_expired for snapshots)")]
    Expired {
        /// Where it came from.
        url: String,
        /// The `Valid-Until` value.
        valid_until: String,
    },
}

impl ReleaseError {
    /// True when the user has to fix something: the keyring, the suite, or a mirror
    /// whose Release does not verify. An unreachable mirror or a malformed Release is not.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Fetch(source) => source.is_user_error(),
            Self::KeyringRead { .. }
            | Self::KeyringInvalid { .. }
            | Self::NotSigned { .. }
            | Self::BadSignature { .. }
            | Self::WrongSuite { .. }
            | Self::Expired { .. } => true,
            Self::Parse { .. } | Self::Field { .. } => false,
        }
    }
}

/// One file listed in the Release's `SHA256` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// A parsed, verified Release file.
#[derive(Debug, Clone)]
pub struct Release {
    /// `Origin`, if any.
    pub origin: Option<String>,
    /// `Suite` (e.g. `oldstable`), if any.
    pub suite: Option<String>,
    /// `Codename` (e.g. `bookworm`), if any.
    pub codename: Option<String>,
    /// `Date`, verbatim.
    pub date: String,
    /// `Valid-Until`, verbatim, if any.
    pub valid_until: Option<String>,
    /// `Architectures`.
    pub architectures: Vec<String>,
    /// `Components`.
    pub components: Vec<String>,
    /// `Acquire-By-Hash: yes`: indices can be fetched under `by-hash/SHA256/<hash>`.
    pub acquire_by_hash: bool,
    /// The `SHA256` field, keyed by path relative to `dists/<suite>/`.
    pub files: BTreeMap<String, FileEntry>,
    /// SHA-256 of the whole `InRelease` as downloaded.
    pub inrelease_sha256: String,
    /// Fingerprint (hex) of the key that made the first valid signature.
    pub signed_by: String,
}

/// Knobs for [`fetch_release`].
#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// Accept a Release whose `Valid-Until` has passed (for snapshot mirrors).
    pub allow_expired: bool,
}

/// Reads every public key in a binary or armored keyring.
pub fn load_keyring(path: &Path) -> Result<Vec<SignedPublicKey>, ReleaseError> {
    let bytes = fs_err::read(path).map_err(|source| ReleaseError::KeyringRead {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| ReleaseError::KeyringInvalid {
        path: path.to_owned(),
        reason,
    };
    let (keys, _) =
        SignedPublicKey::from_reader_many(&bytes[..]).map_err(|e| invalid(e.to_string()))?;
    // Skip keys rPGP cannot parse (e.g. unsupported algorithms) rather than failing
    // the whole keyring; fail only when nothing usable remains.
    let keys: Vec<_> = keys.filter_map(Result::ok).collect();
    if keys.is_empty() {
        return Err(invalid("no key could be parsed".to_owned()));
    }
    Ok(keys)
}

fn issued_by(sig: &Signature, key: &impl KeyDetails) -> bool {
    let ids = sig.issuer_key_id();
    let fps = sig.issuer_fingerprint();
    if ids.is_empty() && fps.is_empty() {
        return true;
    }
    ids.iter().any(|id| **id == key.legacy_key_id())
        || fps.iter().any(|fp| **fp == key.fingerprint())
}

fn try_key(sig: &Signature, key: &impl VerifyingKey, text: &[u8]) -> bool {
    issued_by(sig, key) && sig.verify(key, text).is_ok()
}

/// Verifies an OpenPGP cleartext-signed message against `keys` and returns the signed
/// text (with `\n` line endings) and the hex fingerprint of the verifying key.
pub fn verify_cleartext(
    url: &str,
    armored: &str,
    keys: &[SignedPublicKey],
    keyring: &Path,
) -> Result<(String, String), ReleaseError> {
    let (msg, _) =
        CleartextSignedMessage::from_string(armored).map_err(|e| ReleaseError::NotSigned {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
    let signed = msg.signed_text();
    for sig in msg.signatures() {
        for key in keys {
            if try_key(sig, &key.primary_key, signed.as_bytes()) {
                return Ok((signed.replace("\r\n", "\n"), key.fingerprint().to_string()));
            }
            for sub in &key.public_subkeys {
                if sub.verify_bindings(&key.primary_key).is_ok()
                    && try_key(sig, &sub.key, signed.as_bytes())
                {
                    return Ok((
                        signed.replace("\r\n", "\n"),
                        sub.key.fingerprint().to_string(),
                    ));
                }
            }
        }
    }
    let issuers = msg
        .signatures()
        .iter()
        .flat_map(|s| {
            s.issuer_fingerprint()
                .iter()
                .map(|f| f.to_string())
                .chain(s.issuer_key_id().iter().map(|k| format!("{k:?}")))
                .collect::<Vec<_>>()
        })
        .collect::<Vec<_>>()
        .join(", ");
    Err(ReleaseError::BadSignature {
        url: url.to_owned(),
        keyring: keyring.to_owned(),
        issuers: if issuers.is_empty() {
            "no issuer".to_owned()
        } else {
            issuers
        },
    })
}

/// Parses the (already verified) text of a Release file.
pub fn parse_release(url: &str, text: &str) -> Result<Release, ReleaseError> {
    let field_err = |field, reason: String| ReleaseError::Field {
        url: url.to_owned(),
        field,
        reason,
    };
    let mut paras = control::parse(text);
    let para = match paras.next() {
        Some(Ok(p)) => p,
        Some(Err(source)) => {
            return Err(ReleaseError::Parse {
                url: url.to_owned(),
                source,
            })
        }
        None => return Err(field_err("Date", "empty Release file".to_owned())),
    };
    let words = |f: &str| -> Vec<String> {
        para.get(f)
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    let mut files = BTreeMap::new();
    for line in para.lines("SHA256") {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [sha, size, path] = parts[..] else {
            return Err(field_err("SHA256", format!("bad line {line:?}")));
        };
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(field_err("SHA256", format!("bad digest in {line:?}")));
        }
        let size = size
            .parse()
            .map_err(|_| field_err("SHA256", format!("bad size in {line:?}")))?;
        files.insert(
            path.to_owned(),
            FileEntry {
                sha256: sha.to_ascii_lowercase(),
                size,
            },
        );
    }
    if files.is_empty() {
        return Err(field_err(
            "SHA256",
            "missing or empty; imgbuild requires SHA-256 checksums".to_owned(),
        ));
    }
    Ok(Release {
        origin: para.get("Origin").map(str::to_owned),
        suite: para.get("Suite").map(str::to_owned),
        codename: para.get("Codename").map(str::to_owned),
        date: para
            .get("Date")
            .ok_or_else(|| field_err("Date", "missing".to_owned()))?
            .to_owned(),
        valid_until: para.get("Valid-Until").map(str::to_owned),
        architectures: words("Architectures"),
        components: words("Components"),
        acquire_by_hash: para
            .get("Acquire-By-Hash")
            .is_some_and(|v| v.eq_ignore_ascii_case("yes")),
        files,
        inrelease_sha256: String::new(),
        signed_by: String::new(),
    })
}

/// Parses an RFC 2822 date as used in Release files (`Sat, 11 Jul 2026 10:16:37 UTC`)
/// into seconds since the Unix epoch. Numeric zones (`+0100`) are honoured.
pub fn parse_release_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.split_once(',').map_or(s, |(_, rest)| rest).trim();
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [day, mon, year, time, ref rest @ ..] = parts[..] else {
        return None;
    };
    let day: i64 = day.parse().ok()?;
    let months = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let mon = months.iter().position(|m| mon.eq_ignore_ascii_case(m))? as i64 + 1;
    let year: i64 = year.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let (h, mi, se) = match hms[..] {
        [h, m] => (h, m, 0),
        [h, m, s] => (h, m, s),
        _ => return None,
    };
    // Out-of-range fields are refused, not wrapped (or overflowed) into some other date.
    let in_range = (1..=31).contains(&day)
        && (0..=9999).contains(&year)
        && (0..=24).contains(&h)
        && (0..=59).contains(&mi)
        && (0..=60).contains(&se);
    if !in_range {
        return None;
    }
    let offset = match rest.first() {
        Some(z) if z.starts_with(['+', '-']) && z.len() == 5 => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hh: i64 = z.get(1..3)?.parse().ok()?;
            let mm: i64 = z.get(3..5)?.parse().ok()?;
            sign * (hh * 3600 + mm * 60)
        }
        _ => 0,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mon <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mon + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se - offset)
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Verifies and parses an `InRelease` document fetched from `url` for `suite`.
pub fn verify_and_parse(
    url: &str,
    suite: &str,
    armored: &str,
    keyring: &Path,
    opts: &ReleaseOptions,
) -> Result<Release, ReleaseError> {
    let keys = load_keyring(keyring)?;
    let (text, signer) = verify_cleartext(url, armored, &keys, keyring)?;
    let mut release = parse_release(url, &text)?;
    release.signed_by = signer;
    release.inrelease_sha256 = hex::encode(Sha256::digest(armored.as_bytes()));
    let matches = |f: &Option<String>| f.as_deref() == Some(suite);
    if !matches(&release.suite) && !matches(&release.codename) {
        return Err(ReleaseError::WrongSuite {
            url: url.to_owned(),
            requested: suite.to_owned(),
            found: release.suite.clone().unwrap_or_default(),
            codename: release.codename.clone().unwrap_or_default(),
        });
    }
    if let Some(vu) = &release.valid_until {
        let t = parse_release_date(vu).ok_or_else(|| ReleaseError::Field {
            url: url.to_owned(),
            field: "Valid-Until",
            reason: format!("unparsable date {vu:?}"),
        })?;
        if t < now_unix() && !opts.allow_expired {
            return Err(ReleaseError::Expired {
                url: url.to_owned(),
                valid_until: vu.clone(),
            });
        }
    }
    Ok(release)
}

/// Fetches `<mirror>/dists/<suite>/InRelease`, verifies it with `keyring` and parses it.
pub fn fetch_release(
    http: &Http,
    mirror: &str,
    suite: &str,
    keyring: &Path,
    opts: &ReleaseOptions,
) -> Result<Release, ReleaseError> {
    let url = http::join(mirror, &format!("dists/{suite}/InRelease"));
    let bytes = http
        .get_bytes(&url, 64 * 1024 * 1024)
        .map_err(ReleaseError::Fetch)?;
    let armored = String::from_utf8(bytes).map_err(|_| ReleaseError::NotSigned {
        url: url.clone(),
        reason: "not UTF-8 text".to_owned(),
    })?;
    verify_and_parse(&url, suite, &armored, keyring, opts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_release_date("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(
            parse_release_date("Sat, 11 Jul 2026 10:16:37 UTC"),
            Some(1_783_764_997)
        );
        assert_eq!(
            parse_release_date("11 Jul 2026 10:16:37"),
            Some(1_783_764_997)
        );
        assert_eq!(
            parse_release_date("Sun, 29 Feb 2004 00:00:00 +0100"),
            Some(1_078_009_200)
        );
        assert_eq!(parse_release_date("garbage"), None);
        // These panicked (overflow, a slice inside a multi-byte character); reproduced
        // with the `debian_control` fuzz target, inputs in fuzz/corpus/debian_control/.
        assert_eq!(parse_release_date("1 Jan 9999999999999999 0:0"), None);
        assert_eq!(parse_release_date("99999999999999 Jan 1970 0:0"), None);
        assert_eq!(parse_release_date("1 Jan 1970 9999999999999999:0"), None);
        assert_eq!(parse_release_date("1 Jan 1970 0:0 +a\u{e9}b"), None);
    }

    #[test]
    fn parse_fields() {
        let text = "Origin: Debian\nSuite: stable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\nAcquire-By-Hash: yes\nComponents: main contrib\nSHA256:\n 9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5  8790396 main/binary-amd64/Packages.xz\n";
        let r = parse_release("u", text).unwrap();
        assert_eq!(r.codename.as_deref(), Some("bookworm"));
        assert!(r.acquire_by_hash);
        assert_eq!(r.components, ["main", "contrib"]);
        assert_eq!(r.files["main/binary-amd64/Packages.xz"].size, 8_790_396);
        assert!(parse_release("u", "Date: x\n").is_err());
        assert!(parse_release("u", "Date: x\nSHA256:\n zz 1 a\n").is_err());
    }
}
