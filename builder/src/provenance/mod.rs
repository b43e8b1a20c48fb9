//! SLSA provenance v1 (<https://slsa.dev/spec/v1.0/provenance>) in an in-toto Statement v1
//! (<https://github.com/in-toto/attestation/blob/main/spec/v1/statement.md>).
//!
//! [`Provenance`] is plain data the pipeline fills; [`render`] turns it into the
//! statement's JSON, a pure function: the same model gives the same bytes, whatever the
//! order of its dependencies. Empty and absent fields are left out; times appear only when
//! the caller gives them (it passes `None` when `SOURCE_DATE_EPOCH` is set, so a
//! reproducible build gives byte-identical provenance).

use std::collections::BTreeMap;

use imgbuild_store::Digest;
use serde::Serialize;
use serde_json::Value;

#[cfg(test)]
mod tests;

/// The in-toto Statement v1 `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The SLSA provenance v1 `predicateType`.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";

/// imgbuild's `buildType`: a build of a recipe, its external parameters are `recipe`,
/// `lock` and `includes` (resource descriptors of the files) plus the build options
/// (formats, platform, compression, ...), its internal parameter `sourceDateEpoch`.
/// Under `imgbuild.invalid`, as the SPDX namespace: the project has no domain of its own.
pub const BUILD_TYPE: &str = "https://imgbuild.invalid/buildtypes/recipe/v1";

/// The `builder.id` of a build run by the imgbuild CLI on the caller's machine: the
/// machine and the user running it are the trusted build platform.
pub const LOCAL_BUILDER_ID: &str = "https://imgbuild.invalid/builders/local/v1";

/// The key of imgbuild's version in `builder.version`.
pub const TOOL_NAME: &str = "imgbuild";

/// The version written in `builder.version`.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What went into one image, as the pipeline resolved it.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The image name (e.g. `debian-vm`), the statement's subject.
    pub subject_name: String,
    /// The image manifest's digest.
    pub subject_digest: Digest,
    /// The recipe file.
    pub recipe: Artifact,
    /// The recipe's lock, when there is one.
    pub lock: Option<Artifact>,
    /// The recipe files it includes, in include order.
    pub includes: Vec<Artifact>,
    /// Further external parameters (formats, platform, compression, ...). The keys
    /// `recipe`, `lock` and `includes` are taken by the fields above, which win.
    pub parameters: BTreeMap<String, Value>,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub source_date_epoch: Option<u64>,
    /// Every resolved input: packages, bases, copied files. Rendered sorted by URI then
    /// digest, one per (URI, digest).
    pub dependencies: Vec<Dependency>,
    /// `builder.id`, usually [`LOCAL_BUILDER_ID`].
    pub builder_id: String,
    /// When the build started, seconds since the epoch (`None` under `SOURCE_DATE_EPOCH`).
    pub started: Option<u64>,
    /// When the build finished, seconds since the epoch (`None` under `SOURCE_DATE_EPOCH`).
    pub finished: Option<u64>,
}

/// A file the build read, by its path (as given) and content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// The path or URI.
    pub uri: String,
    /// The sha256 of its bytes, lower-case hex.
    pub sha256: String,
}

/// A resolved input of the build.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    /// Where it came from (a URL, a `pkg:` purl, a path).
    pub uri: String,
    /// Its name (e.g. a Debian package's), when it has one.
    pub name: Option<String>,
    /// The sha256 of its content, lower-case hex.
    pub sha256: String,
    /// Its media type, when known.
    pub media_type: Option<String>,
    /// Further facts (e.g. a package's version), as strings.
    pub annotations: BTreeMap<String, String>,
}

/// The in-toto Statement v1.
#[derive(Debug, Serialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub type_: &'static str,
    /// The image.
    pub subject: Vec<ResourceDescriptor>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: &'static str,
    /// The SLSA provenance.
    pub predicate: Predicate,
}

/// An in-toto ResourceDescriptor (the fields imgbuild writes).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    /// URI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `{"sha256": HEX}`.
    pub digest: BTreeMap<&'static str, String>,
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Media type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Annotations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The SLSA provenance v1 predicate.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    /// What was built, from what.
    pub build_definition: BuildDefinition,
    /// Who built it, when.
    pub run_details: RunDetails,
}

/// `buildDefinition`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`BUILD_TYPE`].
    pub build_type: &'static str,
    /// `recipe`, `lock`, `includes`, then the other parameters (sorted keys).
    pub external_parameters: BTreeMap<String, Value>,
    /// `sourceDateEpoch`, when set.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub internal_parameters: BTreeMap<&'static str, Value>,
    /// Sorted by URI then digest, one per (URI, digest).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// `runDetails`.
#[derive(Debug, Serialize)]
pub struct RunDetails {
    /// The builder.
    pub builder: Builder,
    /// Start and end times, when given.
    #[serde(skip_serializing_if = "Metadata::is_empty")]
    pub metadata: Metadata,
}

/// `runDetails.builder`.
#[derive(Debug, Serialize)]
pub struct Builder {
    /// The builder id.
    pub id: String,
    /// `{"imgbuild": VERSION}`.
    pub version: BTreeMap<&'static str, &'static str>,
}

/// `runDetails.metadata`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    /// RFC 3339 UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

impl Metadata {
    fn is_empty(&self) -> bool {
        self.started_on.is_none() && self.finished_on.is_none()
    }
}

fn sha256(hex: &str) -> BTreeMap<&'static str, String> {
    BTreeMap::from([("sha256", hex.to_owned())])
}

impl Artifact {
    fn descriptor(&self) -> ResourceDescriptor {
        ResourceDescriptor {
            uri: Some(self.uri.clone()),
            digest: sha256(&self.sha256),
            name: None,
            media_type: None,
            annotations: BTreeMap::new(),
        }
    }

    fn value(&self) -> Value {
        serde_json::to_value(self.descriptor()).expect("a descriptor always serializes")
    }
}

impl Dependency {
    fn descriptor(&self) -> ResourceDescriptor {
        ResourceDescriptor {
            uri: Some(self.uri.clone()),
            digest: sha256(&self.sha256),
            name: self.name.clone(),
            media_type: self.media_type.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// The dependencies sorted by URI, then digest, then the other fields (so the choice
/// below does not depend on input order), keeping the first of each (URI, digest).
fn resolved_dependencies(deps: &[Dependency]) -> Vec<ResourceDescriptor> {
    let mut sorted: Vec<&Dependency> = deps.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.uri, &a.sha256)
            .cmp(&(&b.uri, &b.sha256))
            .then_with(|| a.cmp(b))
    });
    sorted.dedup_by(|later, kept| later.uri == kept.uri && later.sha256 == kept.sha256);
    sorted.into_iter().map(Dependency::descriptor).collect()
}

/// The statement for `p`.
pub fn statement(p: &Provenance) -> Statement {
    let mut external = p.parameters.clone();
    external.insert("recipe".to_owned(), p.recipe.value());
    match &p.lock {
        Some(lock) => {
            external.insert("lock".to_owned(), lock.value());
        }
        None => {
            external.remove("lock");
        }
    }
    if p.includes.is_empty() {
        external.remove("includes");
    } else {
        external.insert(
            "includes".to_owned(),
            Value::Array(p.includes.iter().map(Artifact::value).collect()),
        );
    }
    let mut internal = BTreeMap::new();
    if let Some(epoch) = p.source_date_epoch {
        internal.insert("sourceDateEpoch", Value::from(epoch));
    }
    Statement {
        type_: STATEMENT_TYPE,
        subject: vec![ResourceDescriptor {
            uri: None,
            digest: sha256(&p.subject_digest.hex()),
            name: Some(p.subject_name.clone()),
            media_type: None,
            annotations: BTreeMap::new(),
        }],
        predicate_type: PREDICATE_TYPE,
        predicate: Predicate {
            build_definition: BuildDefinition {
                build_type: BUILD_TYPE,
                external_parameters: external,
                internal_parameters: internal,
                resolved_dependencies: resolved_dependencies(&p.dependencies),
            },
            run_details: RunDetails {
                builder: Builder {
                    id: p.builder_id.clone(),
                    version: BTreeMap::from([(TOOL_NAME, TOOL_VERSION)]),
                },
                metadata: Metadata {
                    started_on: p.started.map(imgbuild_store::oci::rfc3339),
                    finished_on: p.finished.map(imgbuild_store::oci::rfc3339),
                },
            },
        },
    }
}

/// `p` as in-toto Statement JSON (pretty, with a final newline), deterministic.
pub fn render(p: &Provenance) -> Vec<u8> {
    let mut out =
        serde_json::to_vec_pretty(&statement(p)).expect("a provenance statement always serializes");
    out.push(b'\n');
    out
}
