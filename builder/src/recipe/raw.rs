//! The recipe exactly as TOML gives it, with every value's position kept for error messages.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub(crate) type S<T> = Spanned<T>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRecipe {
    /// Other recipe files merged before this one (`recipe/include.rs`).
    pub include: Option<S<Vec<S<String>>>>,
    /// Required once the files are merged.
    pub image: Option<S<RawImage>>,
    #[serde(default, deserialize_with = "spanned_from")]
    pub from: Option<S<RawFrom>>,
    #[serde(default)]
    pub step: Vec<S<RawStep>>,
    pub config: Option<S<RawConfig>>,
    pub disk: Option<S<RawDisk>>,
    pub initramfs: Option<S<RawInitramfs>>,
    pub stage: Option<BTreeMap<String, S<RawStage>>>,
    #[serde(default, deserialize_with = "spanned_system")]
    pub system: Option<S<RawSystem>>,
}

/// `[system]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSystem {
    pub hostname: Option<S<String>>,
    pub timezone: Option<S<String>>,
    pub locale: Option<S<String>>,
    pub keymap: Option<S<String>>,
    pub services: Option<S<RawServices>>,
    pub user: Option<Vec<S<RawUser>>>,
    #[serde(default, deserialize_with = "spanned_network")]
    pub network: Option<S<RawNetwork>>,
}

/// `services = { enable, disable, mask }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServices {
    pub enable: Option<Vec<S<String>>>,
    pub disable: Option<Vec<S<String>>>,
    pub mask: Option<Vec<S<String>>>,
}

/// One `[[system.user]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: Option<S<String>>,
    pub uid: Option<S<i64>>,
    pub groups: Option<Vec<S<String>>>,
    pub create_groups: Option<S<bool>>,
    pub shell: Option<S<String>>,
    pub home: Option<S<String>>,
    pub ssh_authorized_keys: Option<Vec<S<String>>>,
    pub ssh_authorized_keys_file: Option<S<String>>,
    pub password_hash: Option<S<String>>,
    pub sudo: Option<S<String>>,
}

/// `[system.network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub dhcp: Option<S<bool>>,
    #[serde(rename = "static")]
    pub fixed: Option<S<RawStatic>>,
}

/// `static = { interface, address, gateway, dns }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStatic {
    pub interface: Option<S<String>>,
    pub address: Option<S<String>>,
    pub gateway: Option<S<String>>,
    pub dns: Option<Vec<S<String>>>,
}

/// The smallest range that holds every span given (`0..0` for none).
fn union(spans: impl IntoIterator<Item = std::ops::Range<usize>>) -> std::ops::Range<usize> {
    let spans: Vec<_> = spans.into_iter().collect();
    let start = spans.iter().map(|r| r.start).min().unwrap_or(0);
    let end = spans.iter().map(|r| r.end).max().unwrap_or(0);
    start..end
}

/// `[system]`, spanned from its keys (a table that only `[[system.user]]` or
/// `[system.network]` headers make has no span of its own).
fn spanned_system<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<S<RawSystem>>, D::Error> {
    let Some(sys) = Option::<RawSystem>::deserialize(d)? else {
        return Ok(None);
    };
    let mut spans = vec![];
    for s in [&sys.hostname, &sys.timezone, &sys.locale, &sys.keymap] {
        spans.extend(s.as_ref().map(S::span));
    }
    spans.extend(sys.services.as_ref().map(S::span));
    spans.extend(sys.user.iter().flatten().map(S::span));
    spans.extend(sys.network.as_ref().map(S::span));
    Ok(Some(S::new(union(spans), sys)))
}

/// `[system.network]`, spanned from its keys.
fn spanned_network<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<S<RawNetwork>>, D::Error> {
    let Some(net) = Option::<RawNetwork>::deserialize(d)? else {
        return Ok(None);
    };
    let spans = [
        net.dhcp.as_ref().map(S::span),
        net.fixed.as_ref().map(S::span),
    ];
    Ok(Some(S::new(union(spans.into_iter().flatten()), net)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStage {
    #[serde(default, deserialize_with = "spanned_from")]
    pub from: Option<S<RawFrom>>,
    #[serde(default)]
    pub step: Vec<S<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDisk {
    pub size: Option<S<String>>,
    pub boot: Option<S<String>>,
    pub filesystem: Option<S<String>>,
    pub cmdline: Option<S<String>>,
    pub compress: Option<S<bool>>,
    pub grow: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawInitramfs {
    pub compression: Option<S<String>>,
    pub init: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawImage {
    pub name: Option<S<String>>,
    pub tags: Option<S<Vec<S<String>>>>,
    pub platform: Option<S<String>>,
    pub platforms: Option<S<Vec<S<String>>>>,
    pub sbom: Option<S<Vec<S<String>>>>,
    pub provenance: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFrom {
    pub scratch: Option<S<bool>>,
    pub rootfs: Option<S<String>>,
    pub oci: Option<S<String>>,
    pub oci_archive: Option<S<String>>,
    pub image: Option<S<toml::Value>>,
    /// Not spanned: toml cannot span a table made by a `[from.debian]` header.
    pub debian: Option<RawDebian>,
}

/// `[from]`, spanned from its keys: toml cannot span a table that only a dotted header
/// such as `[from.debian]` makes.
fn spanned_from<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<S<RawFrom>>, D::Error> {
    let Some(from) = Option::<RawFrom>::deserialize(d)? else {
        return Ok(None);
    };
    let spans = [
        from.scratch.as_ref().map(S::span),
        from.rootfs.as_ref().map(S::span),
        from.oci.as_ref().map(S::span),
        from.oci_archive.as_ref().map(S::span),
        from.image.as_ref().map(S::span),
        from.debian.as_ref().map(|d| d.suite.span()),
    ];
    let start = spans.iter().flatten().map(|r| r.start).min().unwrap_or(0);
    let end = spans.iter().flatten().map(|r| r.end).max().unwrap_or(0);
    Ok(Some(S::new(start..end, from)))
}

/// `[from] debian = { ... }` or `[from.debian]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDebian {
    pub suite: S<String>,
    pub variant: Option<S<String>>,
    pub mirror: Option<S<String>>,
    pub components: Option<S<Vec<String>>>,
    pub keyring: Option<S<String>>,
    pub architecture: Option<S<String>>,
    pub updates: Option<S<bool>>,
    pub security: Option<S<bool>>,
    pub apt: Option<S<bool>>,
    pub source: Option<Vec<RawAptSource>>,
    pub snapshot: Option<S<String>>,
}

/// One `[[from.debian.source]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAptSource {
    pub uri: S<String>,
    pub suite: S<String>,
    pub components: Option<S<Vec<String>>>,
    pub keyring: Option<S<String>>,
}

/// A table of strings (environment, labels) with the position of every key and value.
pub(crate) type Env = BTreeMap<S<String>, S<String>>;

/// A string or a list of strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStep {
    // Kinds.
    pub copy: Option<S<String>>,
    pub write: Option<S<String>>,
    pub mkdir: Option<S<String>>,
    pub symlink: Option<S<String>>,
    pub remove: Option<S<OneOrMany>>,
    pub packages: Option<S<Vec<String>>>,
    pub run: Option<S<String>>,
    // Options.
    pub to: Option<S<String>>,
    pub from_stage: Option<S<String>>,
    pub content: Option<S<String>>,
    pub target: Option<S<String>>,
    pub mode: Option<S<String>>,
    pub owner: Option<S<String>>,
    pub network: Option<S<bool>>,
    pub env: Option<S<Env>>,
    pub workdir: Option<S<String>>,
    pub user: Option<S<String>>,
    pub secrets: Option<S<Vec<S<String>>>>,
    pub missing_ok: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    /// A list of strings; any other value gets a located error with an example.
    pub entrypoint: Option<S<toml::Value>>,
    /// As `entrypoint`.
    pub cmd: Option<S<toml::Value>>,
    pub env: Option<Env>,
    pub workdir: Option<S<String>>,
    pub user: Option<S<String>>,
    pub labels: Option<Env>,
    pub ports: Option<Vec<S<String>>>,
    pub volumes: Option<Vec<S<String>>>,
    pub stop_signal: Option<S<String>>,
}
