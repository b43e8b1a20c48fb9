//! The plan: every key of every unit, computed from prepared inputs before anything runs.
//!
//! A key is the sha256 of a canonical JSON encoding (sorted keys, no whitespace) of the key
//! format version, the parent's key, the step's definition and the content of everything
//! it reads: for copied files their destination path, type, mode and sha256, never a host
//! path or mtime. The base's key covers the platform and `SOURCE_DATE_EPOCH`, so both reach
//! every step below it. A stage's last key stands for the stage in the steps that copy
//! from it.
//!
//! Planning is pure: it reads the prepared inputs and the copied files, asks the store
//! whether each key is cached (without marking anything used), and writes nothing. Each
//! key also comes with its named [`KeyInput`]s, which `explain` compares with the last
//! build's.

mod canonical;
mod digests;
mod inputs;

pub use canonical::{key_of, key_of_with_array};
pub use digests::{DigestMemo, NoMemo, ReadOnlyMemo};
pub use inputs::{InputName, KeyInput};

use std::collections::BTreeMap;

use imgbuild_store::Digest;
use serde_json::{json, Value};

use crate::debian::LockedPackage;
use crate::prepare::{Prepared, PreparedBase, PreparedUnit, Unit};
use crate::recipe::{Owner, StepOp};
use crate::sources::SourceError;
use crate::steps::copy::{self, CopyItem};

/// Bumped whenever what a key covers changes, so old cache entries stop matching.
pub const KEY_FORMAT_VERSION: u32 = 2;

/// The planned build: every unit, stages first, the image last.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    /// The timestamp every entry carries.
    pub epoch: u64,
    /// The platform the image is for.
    pub platform: String,
    /// The stages, in dependency order.
    pub stages: Vec<UnitPlan>,
    /// The image.
    pub image: UnitPlan,
}

impl Plan {
    /// Every unit: the stages, then the image.
    pub fn units(&self) -> impl Iterator<Item = &UnitPlan> {
        self.stages.iter().chain(std::iter::once(&self.image))
    }

    /// Whether every key, the bases' included, is in the store.
    pub fn all_cached(&self) -> bool {
        self.units()
            .all(|u| u.base_cached && u.steps.iter().all(|s| s.cached))
    }
}

/// The plan of one unit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UnitPlan {
    /// Which unit.
    pub unit: Unit,
    /// The base's key.
    pub base_key: Digest,
    /// What the base's key covers, by name.
    pub base_inputs: Vec<KeyInput>,
    /// Whether the base is a cached entry of its own (a Debian bootstrap or a rootfs
    /// import) that is cached.
    pub base_cached: bool,
    /// One entry per step.
    pub steps: Vec<PlannedStep>,
}

impl UnitPlan {
    /// The unit's last key: the one that stands for it in other units' keys.
    pub fn final_key(&self) -> &Digest {
        self.steps.last().map_or(&self.base_key, |s| &s.key)
    }
}

/// One step with its key.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlannedStep {
    /// 1-based step number.
    #[serde(rename = "index")]
    pub number: usize,
    /// `copy`, `write`, ...
    pub kind: &'static str,
    /// One line for humans and the image history.
    pub description: String,
    /// The cache key.
    pub key: Digest,
    /// Whether the store has the key's layer now.
    pub cached: bool,
    /// What the key covers, by name.
    #[serde(skip)]
    pub inputs: Vec<KeyInput>,
    /// For copy steps: what lands where, with content digests.
    #[serde(skip)]
    pub(crate) items: Vec<CopyItem>,
}

/// Plans every unit of `prepared`; `cached` answers whether a key is in the store, `memo`
/// remembers the digests of copied host files.
pub fn plan(
    prepared: &Prepared<'_>,
    epoch: u64,
    platform: &str,
    cached: &dyn Fn(&Digest) -> bool,
    memo: &dyn DigestMemo,
) -> Result<Plan, SourceError> {
    let mut stage_keys = BTreeMap::new();
    let mut stages = Vec::new();
    for unit in &prepared.stages {
        let planned = plan_unit(unit, epoch, platform, &stage_keys, cached, memo)?;
        if let Unit::Stage(name) = &unit.unit {
            stage_keys.insert(name.clone(), planned.final_key().clone());
        }
        stages.push(planned);
    }
    let image = plan_unit(&prepared.image, epoch, platform, &stage_keys, cached, memo)?;
    Ok(Plan {
        epoch,
        platform: platform.to_owned(),
        stages,
        image,
    })
}

/// Plans one unit; `stages` holds the final key of every stage its steps copy from.
pub fn plan_unit(
    unit: &PreparedUnit<'_>,
    epoch: u64,
    platform: &str,
    stages: &BTreeMap<String, Digest>,
    cached: &dyn Fn(&Digest) -> bool,
    memo: &dyn DigestMemo,
) -> Result<UnitPlan, SourceError> {
    let debs =
        |list: &[LockedPackage]| -> Vec<String> { list.iter().map(|p| p.sha256.clone()).collect() };
    let (base, mut base_inputs) = match &unit.base {
        PreparedBase::Scratch => (json!({"scratch": true}), vec![]),
        PreparedBase::Rootfs { path, digest } => (
            json!({"rootfs": digest.to_string()}),
            vec![KeyInput::new(
                InputName::Base,
                format!("rootfs {} {digest}", path.display()),
            )],
        ),
        PreparedBase::OciLayout { dir, manifest } => (
            json!({"oci": manifest.to_string()}),
            vec![KeyInput::new(
                InputName::Base,
                format!("OCI layout {} {manifest}", dir.display()),
            )],
        ),
        PreparedBase::OciArchive { path, digest } => (
            json!({"oci_archive": digest.to_string()}),
            vec![KeyInput::new(
                InputName::Base,
                format!("OCI archive {} {digest}", path.display()),
            )],
        ),
        PreparedBase::Registry(resolved) => (
            json!({"registry": resolved.digest.to_string()}),
            vec![KeyInput::new(
                InputName::Base,
                format!("{} {}", resolved.reference, resolved.digest),
            )],
        ),
        PreparedBase::Debian { from, packages } => {
            let mut named = vec![KeyInput::new(
                InputName::Base,
                format!(
                    "Debian {} {} {}",
                    from.suite, from.variant, from.architecture
                ),
            )];
            named.extend(inputs::packages(&packages.base));
            named.extend(packages.apt_files.iter().map(inputs::apt_file));
            let mut debian = json!({
                "suite": from.suite,
                "variant": from.variant,
                "architecture": from.architecture,
                "debs": debs(&packages.base),
            });
            // Only when there is one, so that `apt = false` keeps the keys it had.
            if !packages.apt_files.is_empty() {
                debian["apt"] = packages
                    .apt_files
                    .iter()
                    .map(|f| json!([f.path, Digest::of(&f.content).to_string()]))
                    .collect();
            }
            (json!({ "debian": debian }), named)
        }
    };
    base_inputs.insert(0, KeyInput::new(InputName::Epoch, epoch.to_string()));
    base_inputs.insert(0, KeyInput::new(InputName::Platform, platform.to_owned()));
    let base_key = key_of(&json!({
        "v": KEY_FORMAT_VERSION,
        "base": base,
        "platform": platform,
        "epoch": epoch,
    }));
    let base_cached = match &unit.base {
        PreparedBase::Debian { packages, .. } if !packages.base.is_empty() => cached(&base_key),
        PreparedBase::Rootfs { .. } => cached(&base_key),
        _ => true,
    };
    let mut parent = base_key.clone();
    let mut steps = Vec::new();
    for step in unit.steps {
        let items = match &step.op {
            StepOp::Copy {
                matches, to, mode, ..
            } => copy::items(matches, to, *mode, memo)?,
            _ => Vec::new(),
        };
        let mut definition = definition(&step.op);
        let mut named = inputs::definition_fields(&definition);
        if let StepOp::Remove {
            missing_ok: true, ..
        } = &step.op
        {
            // Only when set, so that the key of every step without it stays as it was.
            definition["missing_ok"] = json!(true);
            named.push(KeyInput::new(
                InputName::Field("missing_ok".into()),
                "true".into(),
            ));
        }
        if let StepOp::Copy {
            source,
            from_stage: Some(stage),
            ..
        } = &step.op
        {
            // The stage's final key stands for everything in it.
            let key = stages.get(stage).map(ToString::to_string);
            named.push(KeyInput::new(
                InputName::Stage(stage.clone()),
                key.clone().unwrap_or_default(),
            ));
            definition["from_stage"] = json!({"path": source, "key": key});
        }
        if let (StepOp::Packages { .. }, Some(sets)) = (&step.op, unit.base.packages()) {
            let list = sets
                .steps
                .get(&step.number)
                .map(Vec::as_slice)
                .unwrap_or_default();
            named.extend(inputs::packages(list));
            definition["debs"] = json!(debs(list));
        }
        named.extend(items.iter().map(inputs::copied));
        named.push(KeyInput::new(InputName::Parent, parent.to_string()));
        let fields = serde_json::Map::from_iter([
            ("v".to_owned(), json!(KEY_FORMAT_VERSION)),
            ("parent".to_owned(), json!(parent.to_string())),
            ("step".to_owned(), definition),
        ]);
        let key = key_of_with_array(&fields, "inputs", items.iter().map(CopyItem::key_value));
        parent = key.clone();
        steps.push(PlannedStep {
            number: step.number,
            kind: step.op.kind(),
            description: step.op.describe(),
            cached: cached(&key),
            key,
            inputs: named,
            items,
        });
    }
    Ok(UnitPlan {
        unit: unit.unit.clone(),
        base_key,
        base_inputs,
        base_cached,
        steps,
    })
}

/// A step's definition as it enters its key (host paths left out: copy sources enter
/// through their content).
fn definition(op: &StepOp) -> Value {
    let owner = |o: &Owner| format!("{}:{}", o.uid, o.gid);
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
        StepOp::Remove { paths, .. } => json!({"remove": paths}),
        StepOp::Packages { names } => json!({"packages": names}),
        // The whole spec, with the lines of every `ssh_authorized_keys_file` (read when
        // the recipe was parsed) among the user's keys.
        StepOp::System(spec) => json!({ "system": spec }),
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
