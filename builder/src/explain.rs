//! Why a step missed the cache: its key's inputs compared with the last build of the same
//! recipe (BuildKit's most requested missing feature, "why did this rebuild?").
//!
//! Every successful build records its plan's named inputs in the store's `plans/` bucket,
//! one file per recipe path. The next plan of that recipe compares each key that is not
//! cached with the record of the same unit and step: the first of the step's own inputs
//! that differs is the cause; when only the parent differs, the cause is below it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::BufWriter;
use std::path::Path;

use imgbuild_store::{Bucket, Digest, Sha256Writer, Store};

use crate::plan::{InputName, KeyInput, Plan, UnitPlan};
use crate::prepare::Unit;

/// The record's format version.
const RECORD_VERSION: u32 = 1;

/// What a build left for the next one to compare with.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PlanRecord {
    version: u32,
    recipe: String,
    units: Vec<UnitRecord>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct UnitRecord {
    unit: String,
    base_key: Digest,
    base_inputs: Vec<KeyInput>,
    steps: Vec<StepRecord>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StepRecord {
    number: usize,
    key: Digest,
    inputs: Vec<KeyInput>,
}

/// Why a key is not cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// No earlier build of this recipe (and unit, and step) is recorded in this store.
    NoEarlierBuild,
    /// The key is the same as last time, but its layer is gone (`store gc`, or a cache
    /// import whose layer is not downloaded).
    Evicted,
    /// An input of the key changed.
    Changed {
        /// Which input.
        input: InputName,
        /// Its value last time (`None`: it is new).
        was: Option<String>,
        /// Its value now (`None`: it is gone).
        now: Option<String>,
    },
    /// Only the key below changed: the step (or, with `None`, the base) below missed.
    Below(Option<usize>),
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |v: &str| v.split(' ').next().unwrap_or(v).to_owned();
        match self {
            Cause::NoEarlierBuild => f.write_str("no earlier build of this recipe in this store"),
            Cause::Evicted => {
                f.write_str("same key as the last build, but its layer is no longer in the store")
            }
            Cause::Below(Some(n)) => write!(f, "step {n} below it changed"),
            Cause::Below(None) => f.write_str("the base below it changed"),
            Cause::Changed { input, was, now } => {
                let change = match (was, now) {
                    (Some(w), Some(n)) => format!("changed ({} -> {})", short(w), short(n)),
                    (None, Some(_)) => "is new".to_owned(),
                    (Some(_), None) => "is gone".to_owned(),
                    (None, None) => "changed".to_owned(),
                };
                match input {
                    InputName::Platform => write!(f, "the platform {change}"),
                    InputName::Epoch => write!(f, "SOURCE_DATE_EPOCH {change}"),
                    InputName::Base => write!(f, "the base image {change}"),
                    InputName::Package(name) => write!(f, "package {name} in the lock {change}"),
                    InputName::Kind => write!(f, "the step's kind {change}"),
                    InputName::Field(field) => match (was, now) {
                        (Some(_), Some(_)) => write!(f, "the step's `{field}` changed"),
                        _ => write!(f, "the step's `{field}` {change}"),
                    },
                    InputName::File(path) => match (was, now) {
                        (Some(_), Some(_)) => write!(f, "copied file {path} changed"),
                        _ => write!(f, "copied file {path} {change}"),
                    },
                    InputName::Stage(name) => write!(f, "stage `{name}` changed"),
                    InputName::Parent => f.write_str("the step below changed"),
                }
            }
        }
    }
}

impl serde::Serialize for Cause {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why each key of `plan` that is not cached missed, by unit and step number (0 for the
/// base).
pub fn explain(plan: &Plan, previous: Option<&PlanRecord>) -> BTreeMap<(Unit, usize), Cause> {
    plan.units()
        .flat_map(|unit| {
            explain_unit(unit, previous)
                .into_iter()
                .map(|(number, cause)| ((unit.unit.clone(), number), cause))
        })
        .collect()
}

/// Why each key of one unit that is not cached missed, by step number (0 for the base).
pub fn explain_unit(unit: &UnitPlan, previous: Option<&PlanRecord>) -> BTreeMap<usize, Cause> {
    let mut causes = BTreeMap::new();
    let name = unit.unit.to_string();
    let before = previous.and_then(|p| p.units.iter().find(|u| u.unit == name));
    // What changed in the base, if its key did: also the cause of the first step's miss.
    let base_change = before
        .filter(|b| b.base_key != unit.base_key)
        .map(|b| first_change(&b.base_inputs, &unit.base_inputs, None));
    if !unit.base_cached {
        let cause = match (before, &base_change) {
            (None, _) => Cause::NoEarlierBuild,
            (Some(_), None) => Cause::Evicted,
            (Some(_), Some(change)) => change.clone(),
        };
        causes.insert(0, cause);
    }
    let last_steps: BTreeMap<usize, &StepRecord> = before
        .map(|b| b.steps.iter().map(|s| (s.number, s)).collect())
        .unwrap_or_default();
    for (i, step) in unit.steps.iter().enumerate().filter(|(_, s)| !s.cached) {
        let below = i.checked_sub(1).map(|j| unit.steps[j].number);
        let last = last_steps.get(&step.number);
        let cause = match last {
            None => Cause::NoEarlierBuild,
            Some(l) if l.key == step.key => Cause::Evicted,
            Some(l) => match first_change(&l.inputs, &step.inputs, Some(below)) {
                Cause::Below(None) => base_change.clone().unwrap_or(Cause::Below(None)),
                cause => cause,
            },
        };
        causes.insert(step.number, cause);
    }
    causes
}

/// The first input of `now` that differs from `was` (inputs gone from `now` after those
/// that are new or changed); the parent last, as the step below is then the cause.
fn first_change(was: &[KeyInput], now: &[KeyInput], below: Option<Option<usize>>) -> Cause {
    let value_in = |list: &[KeyInput], name: &InputName| {
        list.iter()
            .find(|i| &i.name == name)
            .map(|i| i.value.clone())
    };
    let own = |i: &&KeyInput| i.name != InputName::Parent;
    for input in now.iter().filter(own) {
        let old = value_in(was, &input.name);
        if old.as_deref() != Some(input.value.as_str()) {
            return Cause::Changed {
                input: input.name.clone(),
                was: old,
                now: Some(input.value.clone()),
            };
        }
    }
    if let Some(gone) = was
        .iter()
        .filter(own)
        .find(|i| value_in(now, &i.name).is_none())
    {
        return Cause::Changed {
            input: gone.name.clone(),
            was: Some(gone.value.clone()),
            now: None,
        };
    }
    match below {
        Some(step) => Cause::Below(step),
        None => Cause::Changed {
            input: InputName::Base,
            was: None,
            now: None,
        },
    }
}

/// Where the record of `recipe` lives.
fn record_path(store: &Store, recipe: &Path) -> std::path::PathBuf {
    let absolute = absolute(recipe);
    let id = Digest::of(absolute.as_os_str().as_encoded_bytes());
    store
        .bucket(Bucket::Plans)
        .join(format!("{}.json", id.hex()))
}

fn absolute(recipe: &Path) -> std::path::PathBuf {
    std::path::absolute(recipe).unwrap_or_else(|_| recipe.to_owned())
}

/// The record of `recipe`'s last build in `store`, if one is there and readable.
pub fn load(store: &Store, recipe: &Path) -> Option<PlanRecord> {
    let bytes = std::fs::read(record_path(store, recipe)).ok()?;
    serde_json::from_slice::<PlanRecord>(&bytes)
        .ok()
        .filter(|r| r.version == RECORD_VERSION)
}

/// Records `plan` as `recipe`'s last build (replacing the file atomically).
///
/// With one input per copied file the record of a big tree runs to tens of megabytes, so
/// it is never held in memory: it is serialised into a hash to compare with the file
/// there, and only when that differs serialised again, into the new file.
pub fn save(store: &Store, recipe: &Path, plan: &Plan) -> std::io::Result<()> {
    let units: Vec<UnitRecordRef<'_>> = plan.units().map(unit_record).collect();
    let record = PlanRecordRef {
        version: RECORD_VERSION,
        recipe: absolute(recipe).display().to_string(),
        units,
    };
    let path = record_path(store, recipe);
    let mut hasher = Sha256Writer::new(std::io::sink());
    serde_json::to_writer(BufWriter::with_capacity(1 << 16, &mut hasher), &record)?;
    // A rebuild with nothing changed leaves the record as it is.
    if file_digest(&path).is_ok_and(|old| old == hasher.finish().0) {
        return Ok(());
    }
    let dir = store.bucket(Bucket::Plans);
    fs_err::create_dir_all(&dir)?;
    // Recipes are named by their absolute path: `gc` drops the records of deleted ones.
    let tmp = tempfile::NamedTempFile::new_in(&dir)?;
    let mut out = BufWriter::with_capacity(1 << 16, tmp);
    serde_json::to_writer(&mut out, &record)?;
    out.into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .persist(&path)
        .map_err(|e| e.error)?;
    Ok(())
}

/// The sha256 of the file at `path`, read in pieces.
fn file_digest(path: &Path) -> std::io::Result<Digest> {
    let mut hasher = Sha256Writer::new(std::io::sink());
    std::io::copy(&mut std::fs::File::open(path)?, &mut hasher)?;
    Ok(hasher.finish().0)
}

/// [`PlanRecord`] borrowing the plan's inputs, for [`save`]: the same JSON.
#[derive(serde::Serialize)]
struct PlanRecordRef<'a> {
    version: u32,
    recipe: String,
    units: Vec<UnitRecordRef<'a>>,
}

/// [`UnitRecord`], borrowed.
#[derive(serde::Serialize)]
struct UnitRecordRef<'a> {
    unit: String,
    base_key: &'a Digest,
    base_inputs: &'a [KeyInput],
    steps: Vec<StepRecordRef<'a>>,
}

/// [`StepRecord`], borrowed.
#[derive(serde::Serialize)]
struct StepRecordRef<'a> {
    number: usize,
    key: &'a Digest,
    inputs: &'a [KeyInput],
}

fn unit_record(unit: &UnitPlan) -> UnitRecordRef<'_> {
    UnitRecordRef {
        unit: unit.unit.to_string(),
        base_key: &unit.base_key,
        base_inputs: &unit.base_inputs,
        steps: unit
            .steps
            .iter()
            .map(|s| StepRecordRef {
                number: s.number,
                key: &s.key,
                inputs: &s.inputs,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: InputName, value: &str) -> KeyInput {
        KeyInput::new(name, value.to_owned())
    }

    #[test]
    fn a_changed_package_is_named_with_both_versions() {
        let was = [
            input(InputName::Platform, "linux/amd64"),
            input(InputName::Package("libc6".into()), "2.36-9 aaa"),
        ];
        let now = [
            input(InputName::Platform, "linux/amd64"),
            input(InputName::Package("libc6".into()), "2.36-10 bbb"),
        ];
        let cause = first_change(&was, &now, None);
        assert_eq!(
            cause.to_string(),
            "package libc6 in the lock changed (2.36-9 -> 2.36-10)"
        );
    }

    #[test]
    fn a_new_and_a_removed_package_are_causes() {
        let base = input(InputName::Epoch, "0");
        let pkg = input(InputName::Package("curl".into()), "7.88 ccc");
        let added = first_change(
            std::slice::from_ref(&base),
            &[base.clone(), pkg.clone()],
            None,
        );
        assert_eq!(added.to_string(), "package curl in the lock is new");
        let removed = first_change(&[base.clone(), pkg], &[base], None);
        assert_eq!(removed.to_string(), "package curl in the lock is gone");
    }

    #[test]
    fn only_a_changed_parent_points_below() {
        let was = [
            input(InputName::Kind, "write"),
            input(InputName::Parent, "a"),
        ];
        let now = [
            input(InputName::Kind, "write"),
            input(InputName::Parent, "b"),
        ];
        assert_eq!(
            first_change(&was, &now, Some(Some(2))),
            Cause::Below(Some(2))
        );
        assert_eq!(first_change(&was, &now, Some(None)), Cause::Below(None));
    }
}
