//! The plan: every step's cache key, computed before anything runs.
//!
//! A key is the sha256 of a canonical JSON encoding (sorted keys, no whitespace) of the key
//! format version, the parent's key, the step's definition and the content of everything
//! it reads: for copied files their destination path, type, mode and sha256, never a host
//! path or mtime. The base's key covers the platform and `SOURCE_DATE_EPOCH`, so both reach
//! every step below it.

use crate::recipe::{Base, Recipe, StepOp};
use crate::sources::debian::PackageSets;
use crate::sources::{self, SourceError};
use crate::steps::copy::{self, CopyItem};
use imgbuild_store::Digest;
use serde_json::{json, Value};

/// Bumped whenever what a key covers changes, so old cache entries stop matching.
pub const KEY_FORMAT_VERSION: u32 = 1;

/// The planned build.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The base's key.
    pub base_key: Digest,
    /// One entry per recipe step.
    pub steps: Vec<PlannedStep>,
    /// The timestamp every entry carries.
    pub epoch: u64,
}

/// One step with its key.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// 1-based step number.
    pub number: usize,
    /// `copy`, `write`, ...
    pub kind: &'static str,
    /// One line for humans and the image history.
    pub description: String,
    /// The cache key.
    pub key: Digest,
    /// For copy steps: what lands where, with content digests.
    pub(crate) items: Vec<CopyItem>,
}

/// Computes every key of `recipe`'s build with timestamps at `epoch`; `packages` is the
/// resolved Debian package set when the recipe has a Debian base.
pub fn plan(
    recipe: &Recipe,
    epoch: u64,
    packages: Option<&PackageSets>,
) -> Result<Plan, SourceError> {
    let debs = |list: &[crate::debian::LockedPackage]| -> Vec<String> {
        list.iter().map(|p| p.sha256.clone()).collect()
    };
    let platform = recipe.image.platform.to_string();
    let base = match &recipe.base {
        Base::Scratch => json!({"scratch": true}),
        Base::Rootfs(path) => json!({"rootfs": sources::file_digest(path)?.to_string()}),
        Base::OciLayout { dir, tag } => {
            json!({"oci": sources::oci::resolve_layout(dir, tag.as_deref(), &recipe.image.platform)?.to_string()})
        }
        Base::OciArchive(path) => json!({"oci_archive": sources::file_digest(path)?.to_string()}),
        Base::Debian(from) => json!({"debian": {
            "suite": from.suite,
            "variant": from.variant,
            "architecture": from.architecture,
            "debs": packages.map(|p| debs(&p.base)).unwrap_or_default(),
        }}),
    };
    let base_key = key_of(&json!({
        "v": KEY_FORMAT_VERSION,
        "base": base,
        "platform": platform,
        "epoch": epoch,
    }));
    let mut parent = base_key.clone();
    let mut steps = Vec::new();
    for step in &recipe.steps {
        let items = match &step.op {
            StepOp::Copy {
                matches, to, mode, ..
            } => copy::items(matches, to, *mode)?,
            _ => Vec::new(),
        };
        let mut definition = definition(&step.op);
        if let (StepOp::Packages { .. }, Some(sets)) = (&step.op, packages) {
            definition["debs"] = json!(sets
                .steps
                .get(&step.number)
                .map(|l| debs(l))
                .unwrap_or_default());
        }
        let key = key_of(&json!({
            "v": KEY_FORMAT_VERSION,
            "parent": parent.to_string(),
            "step": definition,
            "inputs": items.iter().map(CopyItem::key_value).collect::<Vec<_>>(),
        }));
        parent = key.clone();
        steps.push(PlannedStep {
            number: step.number,
            kind: step.op.kind(),
            description: step.op.describe(),
            key,
            items,
        });
    }
    Ok(Plan {
        base_key,
        steps,
        epoch,
    })
}

/// A step's definition as it enters its key (host paths left out: copy sources enter
/// through their content).
fn definition(op: &StepOp) -> Value {
    let owner = |o: &crate::recipe::Owner| format!("{}:{}", o.uid, o.gid);
    match op {
        StepOp::Copy {
            to, mode, owner: o, ..
        } => json!({"copy": {"to": to, "mode": mode, "owner": owner(o)}}),
        StepOp::Write {
            path,
            content,
            mode,
            owner: o,
        } => {
            json!({"write": {"path": path, "content": content, "mode": mode, "owner": owner(o)}})
        }
        StepOp::Mkdir {
            path,
            mode,
            owner: o,
        } => json!({"mkdir": {"path": path, "mode": mode, "owner": owner(o)}}),
        StepOp::Symlink {
            path,
            target,
            owner: o,
        } => {
            json!({"symlink": {"path": path, "target": target, "owner": owner(o)}})
        }
        StepOp::Remove { paths } => json!({"remove": paths}),
        StepOp::Packages { names } => json!({"packages": names}),
        StepOp::Run(run) => json!({"run": {
            "script": run.script,
            "network": run.network,
            "env": run.env,
            "workdir": run.workdir,
            "user": owner(&run.user),
            // Only the ids: a secret's content never enters a key or a layer.
            "secrets": run.secrets,
        }}),
    }
}

/// sha256 of the canonical encoding of `value`.
pub fn key_of(value: &Value) -> Digest {
    let mut out = String::new();
    canonical(value, &mut out);
    Digest::of(out.as_bytes())
}

/// JSON with object keys sorted and no whitespace, whatever map type serde_json was built with.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_encoding_ignores_key_order() {
        let a = json!({"b": 1, "a": [1, {"y": 2, "x": 1}]});
        let b = json!({"a": [1, {"x": 1, "y": 2}], "b": 1});
        assert_eq!(key_of(&a), key_of(&b));
        assert_ne!(key_of(&a), key_of(&json!({"a": [], "b": 1})));
    }
}
