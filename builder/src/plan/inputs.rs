//! A key's inputs by name: what `explain` compares between two plans to say why a key
//! changed. Each value is a short text (long ones are replaced by their sha256).

use serde_json::Value;

use super::canonical::encode;
use crate::debian::LockedPackage;
use crate::steps::copy::{CopyItem, CopyKind};

/// Values longer than this are recorded as their sha256.
const MAX_VALUE: usize = 200;

/// What one input of a key is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "input", content = "name")]
pub enum InputName {
    /// The image's platform.
    Platform,
    /// `SOURCE_DATE_EPOCH`.
    Epoch,
    /// The base image or tarball, resolved.
    Base,
    /// One Debian package from the lock, by name.
    Package(String),
    /// The kind of step.
    Kind,
    /// One field of the step's definition.
    Field(String),
    /// One copied file, by its path in the image.
    File(String),
    /// A stage the step copies from, by name.
    Stage(String),
    /// The key of the step (or base) below.
    Parent,
}

/// One named input of a key and its value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyInput {
    /// Which input.
    pub name: InputName,
    /// Its value, as text.
    pub value: String,
}

impl KeyInput {
    /// An input, its value shortened to a digest when long.
    pub fn new(name: InputName, value: String) -> Self {
        let value = if value.len() > MAX_VALUE {
            imgbuild_store::Digest::of(value.as_bytes()).to_string()
        } else {
            value
        };
        Self { name, value }
    }
}

/// One input per locked package: its version and sha256.
pub(super) fn packages(list: &[LockedPackage]) -> impl Iterator<Item = KeyInput> + '_ {
    list.iter().map(|p| {
        KeyInput::new(
            InputName::Package(p.name.clone()),
            format!("{} {}", p.version, p.sha256),
        )
    })
}

/// One file of a Debian base's apt configuration: its content digest.
pub(super) fn apt_file(file: &crate::sources::debian::AptFile) -> KeyInput {
    KeyInput::new(
        InputName::File(format!("/{}", file.path)),
        format!("file 644 {}", imgbuild_store::Digest::of(&file.content)),
    )
}

/// The step's kind, then one input per field of its definition (`{"KIND": {fields}}`).
pub(super) fn definition_fields(definition: &Value) -> Vec<KeyInput> {
    let Some((kind, fields)) = definition.as_object().and_then(|m| m.iter().next()) else {
        return Vec::new();
    };
    let mut out = vec![KeyInput::new(InputName::Kind, kind.clone())];
    match fields {
        Value::Object(map) => out.extend(
            map.iter()
                .map(|(k, v)| KeyInput::new(InputName::Field(k.clone()), encode(v))),
        ),
        other => out.push(KeyInput::new(InputName::Field(kind.clone()), encode(other))),
    }
    out
}

/// One copied entry: its type, mode and content.
pub(super) fn copied(item: &CopyItem) -> KeyInput {
    let value = match &item.kind {
        CopyKind::File { digest, mode, .. } => format!("file {mode:o} {digest}"),
        CopyKind::Dir => "dir".to_owned(),
        CopyKind::Symlink(target) => format!("symlink {target}"),
    };
    KeyInput::new(InputName::File(format!("/{}", item.dest)), value)
}
