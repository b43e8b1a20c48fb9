//! The OCI JSON documents imgbuild writes and reads: image manifest, image config, index.
//!
//! Field names and media types follow the
//! [OCI image spec](https://github.com/opencontainers/image-spec/blob/main/manifest.md).
//! Maps are `BTreeMap`s, so serialising the same value always gives the same bytes.

use crate::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Media type of an OCI image manifest.
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of an OCI image index.
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Media type of an OCI image config.
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker's manifest media type (schema 2), accepted in base images.
pub const DOCKER_MEDIA_TYPE_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list media type, accepted in base images.
pub const DOCKER_MEDIA_TYPE_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// A reference to a blob: what it is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciDescriptor {
    /// The blob's media type.
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// The platform, in an index.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub platform: Option<Platform>,
    /// Free-form annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// An OS and CPU architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// e.g. `amd64`.
    pub architecture: String,
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `v8` for arm64.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The manifest media type.
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    /// The image config.
    pub config: OciDescriptor,
    /// The layers, lowest first.
    pub layers: Vec<OciDescriptor>,
    /// Free-form annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (also the `index.json` of an OCI layout).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Always 2.
    #[serde(rename = "schemaVersion")]
    pub schema_version: u32,
    /// The index media type.
    #[serde(rename = "mediaType", skip_serializing_if = "Option::is_none", default)]
    pub media_type: Option<String>,
    /// The manifests it lists.
    pub manifests: Vec<OciDescriptor>,
}

/// An image config: what runs and the layer chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ImageConfig {
    /// When the image was created (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    /// CPU architecture.
    pub architecture: String,
    /// Operating system.
    pub os: String,
    /// Architecture variant.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    /// The runtime config.
    #[serde(default)]
    pub config: RuntimeConfig,
    /// The layers' diff_ids.
    pub rootfs: RootFs,
    /// One entry per step.
    #[serde(default)]
    pub history: Vec<History>,
}

/// The part of the config a runtime reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RuntimeConfig {
    /// The user (`uid:gid` or a name).
    #[serde(rename = "User", skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    /// Ports to expose, `8080/tcp` style.
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `KEY=value` pairs.
    #[serde(rename = "Env", skip_serializing_if = "Option::is_none", default)]
    pub env: Option<Vec<String>>,
    /// What runs.
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub entrypoint: Option<Vec<String>>,
    /// Its default arguments.
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    /// Volumes.
    #[serde(rename = "Volumes", skip_serializing_if = "Option::is_none", default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// The working directory.
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(rename = "Labels", skip_serializing_if = "Option::is_none", default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The stop signal.
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub stop_signal: Option<String>,
}

/// The layer chain of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// sha256 of each uncompressed layer, lowest first.
    pub diff_ids: Vec<Digest>,
}

/// How one layer came to be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// When (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    /// What made it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
    /// A note.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
    /// True when the step made no layer.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub empty_layer: Option<bool>,
}

/// Formats seconds since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
pub fn rfc3339(epoch: u64) -> String {
    let days = i64::try_from(epoch / 86_400).unwrap_or(0);
    let secs = epoch % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01
/// (Howard Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn formats_epochs() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_764_064_800), "2025-11-25T10:00:00Z");
    }
}
