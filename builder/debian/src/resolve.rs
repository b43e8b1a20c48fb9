//! Dependency resolution: requested names + variant base set -> closed package set.
//!
//! Semantics follow Debian Policy §7.1–§7.5 and §7.4 (Conflicts/Breaks) as dpkg
//! applies them:
//!
//! * closure under `Pre-Depends` and `Depends`; `Recommends`/`Suggests` are ignored
//!   (like `apt --no-install-recommends`, debootstrap and mmdebstrap);
//! * one version per package name: the highest version in the index for the native
//!   architecture or `all`; packages of other architectures are ignored;
//! * an alternatives group `a | b` is satisfied by an already-selected package if any
//!   alternative is; otherwise the **first** alternative that has an installable
//!   candidate wins (Policy §7.1, apt's behaviour);
//! * for one alternative, a real package named so that satisfies the version
//!   constraint is preferred over providers. Virtual packages (§7.5): an unversioned
//!   dependency is satisfied by any `Provides`, a versioned one only by a `Provides`
//!   with `(= version)` that satisfies it. Among several providers the choice is
//!   deterministic: an already-selected provider, else the one with the highest
//!   `Priority` (required > important > standard > optional > extra), then the
//!   alphabetically first name;
//! * architecture qualifiers are matched like dpkg's `archsatisfied()`: `pkg` matches
//!   native and `all` packages, `pkg:any` only `Multi-Arch: allowed` packages,
//!   `pkg:native`/`pkg:<native arch>` native or `all` ones. With a single architecture
//!   `Multi-Arch: same`/`foreign` change nothing (they matter across architectures);
//! * `Conflicts` and `Breaks` (§7.3, §7.4) between selected packages, including via
//!   `Provides`, are errors; a package never conflicts with itself. A candidate that
//!   conflicts with the selection is skipped in favour of the next alternative.
//!
//! Base sets ([`Variant`]), computed over the candidates described above:
//! * `minbase`: every `Essential: yes` package, every `Priority: required` package,
//!   and `apt` (debootstrap's and mmdebstrap's `minbase`);
//! * `essential`: every `Essential: yes` package (mmdebstrap's `essential`);
//! * `custom`: nothing; only the requested packages and their dependencies.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;

use super::index::{MultiArch, PackageRecord};
use super::version::{display_alternatives, parse_relations, Alternatives, Relation, VersionError};

/// Which base set to start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    /// `Essential: yes` + `Priority: required` + `apt`.
    #[default]
    Minbase,
    /// `Essential: yes` only.
    Essential,
    /// Nothing but what is requested.
    Custom,
}

impl Variant {
    /// The recipe spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Minbase => "minbase",
            Variant::Essential => "essential",
            Variant::Custom => "custom",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Variant {
    type Err = ResolveError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "minbase" => Ok(Variant::Minbase),
            "essential" => Ok(Variant::Essential),
            "custom" => Ok(Variant::Custom),
            other => Err(ResolveError::UnknownVariant(other.to_owned())),
        }
    }
}

/// Resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The recipe names an unknown variant.
    #[error("unknown Debian variant {0:?}: use \"minbase\", \"essential\" or \"custom\"")]
    UnknownVariant(String),
    /// A requested package string does not parse as a relation.
    #[error("requested package {request:?} is not a valid package relation")]
    BadRequest {
        /// The request string.
        request: String,
        /// Parse error.
        #[source]
        source: VersionError,
    },
    /// No candidate satisfies a dependency.
    #[error("unsatisfiable dependency: {chain} -> {relation}: {detail}")]
    Unsatisfiable {
        /// `recipe -> a -> b`: who needed it.
        chain: String,
        /// The dependency (alternatives group) that failed.
        relation: String,
        /// What is available instead, and where.
        detail: String,
    },
    /// Two selected packages conflict.
    #[error("{}", .0)]
    Conflict(Box<Conflict>),
}

impl ResolveError {
    /// Always true: an unknown variant or package, or packages that cannot be installed
    /// together, are the recipe's to fix.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::UnknownVariant(_)
            | Self::BadRequest { .. }
            | Self::Unsatisfiable { .. }
            | Self::Conflict(_) => true,
        }
    }
}

/// Details of [`ResolveError::Conflict`].
#[derive(Debug, thiserror::Error)]
#[error("conflicting packages: {package} {version} {kind}: {relation}, but {other} {other_version} is selected (needed by {other_chain}; {package} needed by {chain})")]
pub struct Conflict {
    /// The declaring package.
    pub package: String,
    /// Its version.
    pub version: String,
    /// `Conflicts` or `Breaks`.
    pub kind: &'static str,
    /// The matching relation.
    pub relation: String,
    /// The package it hits.
    pub other: String,
    /// That package's version.
    pub other_version: String,
    /// Why `package` is selected.
    pub chain: String,
    /// Why `other` is selected.
    pub other_chain: String,
}

/// The packages available for one architecture, indexed for resolution.
pub struct Universe {
    pkgs: Vec<PackageRecord>,
    arch: String,
    origin: String,
    /// name -> candidate index (highest version).
    by_name: HashMap<String, usize>,
    /// virtual name -> candidate indices providing it.
    providers: HashMap<String, Vec<usize>>,
}

fn priority_rank(p: &str) -> u8 {
    match p {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

impl Universe {
    /// Indexes `pkgs` for `arch`; `origin` (e.g. `bookworm main amd64`) is used in
    /// error messages. Only native and `all` packages are kept, and per name only the
    /// highest version.
    pub fn new(pkgs: Vec<PackageRecord>, arch: &str, origin: &str) -> Universe {
        let mut pkgs: Vec<PackageRecord> = pkgs
            .into_iter()
            .filter(|p| p.architecture == arch || p.architecture == "all")
            .collect();
        // Highest version first per name (across sources, as apt), then the main
        // source, then a deterministic order.
        pkgs.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| b.version.cmp(&a.version))
                .then_with(|| a.source.cmp(&b.source))
                .then_with(|| a.component.cmp(&b.component))
        });
        pkgs.dedup_by(|b, a| a.name == b.name);
        let by_name = pkgs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), i))
            .collect();
        let mut providers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            for prov in &p.provides {
                providers.entry(prov.name.clone()).or_default().push(i);
            }
        }
        for v in providers.values_mut() {
            v.sort_by(|&a, &b| {
                priority_rank(&pkgs[a].priority)
                    .cmp(&priority_rank(&pkgs[b].priority))
                    .then_with(|| pkgs[a].name.cmp(&pkgs[b].name))
            });
            v.dedup();
        }
        Universe {
            pkgs,
            arch: arch.to_owned(),
            origin: origin.to_owned(),
            by_name,
            providers,
        }
    }

    /// The candidate packages (one per name), sorted by name.
    pub fn packages(&self) -> &[PackageRecord] {
        &self.pkgs
    }

    /// The candidate for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&PackageRecord> {
        self.by_name.get(name).map(|&i| &self.pkgs[i])
    }

    /// Names in the base set of `variant`, sorted.
    pub fn base_set(&self, variant: Variant) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .pkgs
            .iter()
            .filter(|p| match variant {
                Variant::Minbase => p.essential || p.priority == "required" || p.name == "apt",
                Variant::Essential => p.essential,
                Variant::Custom => false,
            })
            .map(|p| p.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// dpkg's `archsatisfied()` restricted to native + `all` packages.
    fn arch_ok(&self, p: &PackageRecord, r: &Relation, conflict: bool) -> bool {
        match r.arch.as_deref() {
            None => true,
            Some("any") => conflict || p.multi_arch == MultiArch::Allowed,
            Some(a) => a == "native" || a == self.arch,
        }
    }

    /// Whether package `i` satisfies `r`, directly or through `Provides`.
    fn satisfies(&self, i: usize, r: &Relation, conflict: bool) -> bool {
        let p = &self.pkgs[i];
        if !self.arch_ok(p, r, conflict) {
            return false;
        }
        if p.name == r.name && r.version_ok(&p.version) {
            return true;
        }
        p.provides.iter().any(|prov| {
            prov.name == r.name
                && match (&r.constraint, &prov.constraint) {
                    (None, _) => true,
                    (Some(_), Some((_, v))) => r.version_ok(v),
                    (Some(_), None) => false,
                }
        })
    }

    /// Candidates for one relation: the real package first, then providers.
    fn candidates(&self, r: &Relation) -> Vec<usize> {
        let real = self.by_name.get(&r.name).copied();
        let provs = self.providers.get(&r.name).into_iter().flatten().copied();
        real.into_iter()
            .chain(provs)
            .filter(|&i| self.satisfies(i, r, false))
            .fold(Vec::new(), |mut v, i| {
                if !v.contains(&i) {
                    v.push(i);
                }
                v
            })
    }

    fn describe_missing(&self, group: &Alternatives) -> String {
        let parts: Vec<String> = group
            .iter()
            .map(|r| {
                let real = self
                    .get(&r.name)
                    .map(|p| format!("only {} {} available", p.name, p.version));
                let provs: Vec<String> = self
                    .providers
                    .get(&r.name)
                    .into_iter()
                    .flatten()
                    .map(|&i| {
                        let p = &self.pkgs[i];
                        let pv = p.provides.iter().find(|x| x.name == r.name);
                        match pv.and_then(|x| x.constraint.as_ref()) {
                            Some((_, v)) => format!("{} (provides {} {v})", p.name, r.name),
                            None => format!("{} (provides {} unversioned)", p.name, r.name),
                        }
                    })
                    .collect();
                match (real, provs.is_empty()) {
                    (None, true) => format!("no package or provider named {}", r.name),
                    (Some(real), true) => real,
                    (None, false) => format!("{} is virtual: {}", r.name, provs.join(", ")),
                    (Some(real), false) => format!("{real}; providers: {}", provs.join(", ")),
                }
            })
            .collect();
        format!("{} in {}", parts.join("; "), self.origin)
    }
}

/// The closed set of packages to install.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// Selected packages, sorted by name.
    pub packages: Vec<PackageRecord>,
    /// For each selected name, the chain that pulled it in (`recipe -> a -> b`).
    pub reasons: BTreeMap<String, String>,
}

struct State<'u> {
    u: &'u Universe,
    /// name -> selected index.
    selected: BTreeMap<String, usize>,
    /// virtual name -> selected providers.
    provided: HashMap<String, Vec<usize>>,
    /// index -> parent index (None = root) and the root label.
    parent: HashMap<usize, Option<usize>>,
    root_label: HashMap<usize, String>,
    queue: VecDeque<usize>,
}

impl<'u> State<'u> {
    fn chain(&self, mut i: usize) -> String {
        let mut names = vec![self.u.pkgs[i].name.clone()];
        let mut guard = 0;
        while let Some(Some(p)) = self.parent.get(&i) {
            names.push(self.u.pkgs[*p].name.clone());
            i = *p;
            guard += 1;
            if guard > 10_000 {
                break;
            }
        }
        if let Some(label) = self.root_label.get(&i) {
            names.push(label.clone());
        }
        names.reverse();
        names.join(" -> ")
    }

    fn is_satisfied(&self, r: &Relation) -> bool {
        let direct = self.selected.get(&r.name).copied();
        let provs = self.provided.get(&r.name).into_iter().flatten().copied();
        direct
            .into_iter()
            .chain(provs)
            .any(|i| self.u.satisfies(i, r, false))
    }

    /// The first selected package that `i` conflicts with or breaks, or that
    /// conflicts with or breaks `i`: (declarer, kind, relation, victim).
    fn conflict_with_selection(&self, i: usize) -> Option<(usize, &'static str, String, usize)> {
        // i against the selection (i not yet selected: check its relations by hand).
        let p = &self.u.pkgs[i];
        for (kind, groups) in [
            ("Conflicts", p.conflicts.groups()),
            ("Breaks", p.breaks.groups()),
        ] {
            for r in groups.iter().flatten() {
                for &v in self.selected.values() {
                    if v != i && self.u.pkgs[v].name != p.name && self.u.satisfies(v, r, true) {
                        return Some((i, kind, r.to_string(), v));
                    }
                }
            }
        }
        // Selection against i.
        for &s in self.selected.values() {
            let pk = &self.u.pkgs[s];
            for (kind, groups) in [
                ("Conflicts", pk.conflicts.groups()),
                ("Breaks", pk.breaks.groups()),
            ] {
                for r in groups.iter().flatten() {
                    if s != i && pk.name != p.name && self.u.satisfies(i, r, true) {
                        return Some((s, kind, r.to_string(), i));
                    }
                }
            }
        }
        None
    }

    fn add(&mut self, i: usize, parent: Option<usize>, root: Option<&str>) {
        let p = &self.u.pkgs[i];
        self.selected.insert(p.name.clone(), i);
        for prov in &p.provides {
            self.provided.entry(prov.name.clone()).or_default().push(i);
        }
        self.parent.insert(i, parent);
        if let Some(label) = root {
            self.root_label.insert(i, label.to_owned());
        }
        self.queue.push_back(i);
    }

    /// Satisfies one alternatives group needed by `parent` (or the recipe).
    fn require(
        &mut self,
        group: &Alternatives,
        parent: Option<usize>,
        root: &str,
    ) -> Result<(), ResolveError> {
        if group.iter().any(|r| self.is_satisfied(r)) {
            return Ok(());
        }
        let mut rejected = Vec::new();
        for r in group {
            for c in self.u.candidates(r) {
                let cp = &self.u.pkgs[c];
                if let Some(&s) = self.selected.get(&cp.name) {
                    rejected.push(format!(
                        "{} {} is already selected (needed by {})",
                        cp.name,
                        self.u.pkgs[s].version,
                        self.chain(s)
                    ));
                    continue;
                }
                if let Some((decl, kind, rel, victim)) = self.conflict_with_selection(c) {
                    let (d, v) = (&self.u.pkgs[decl], &self.u.pkgs[victim]);
                    rejected.push(format!(
                        "{} {} would conflict ({} {kind}: {rel}, hits {} {})",
                        cp.name, cp.version, d.name, v.name, v.version
                    ));
                    continue;
                }
                self.add(c, parent, parent.is_none().then_some(root));
                return Ok(());
            }
        }
        let chain = match parent {
            Some(p) => self.chain(p),
            None => root.to_owned(),
        };
        let mut detail = self.u.describe_missing(group);
        if !rejected.is_empty() {
            detail = format!("{}; {detail}", rejected.join("; "));
        }
        Err(ResolveError::Unsatisfiable {
            chain,
            relation: display_alternatives(group),
            detail,
        })
    }

    fn final_conflict_check(&self) -> Result<(), ResolveError> {
        for &i in self.selected.values() {
            let p = &self.u.pkgs[i];
            for (kind, groups) in [
                ("Conflicts", p.conflicts.groups()),
                ("Breaks", p.breaks.groups()),
            ] {
                for r in groups.iter().flatten() {
                    let direct = self.selected.get(&r.name).copied();
                    let provs = self.provided.get(&r.name).into_iter().flatten().copied();
                    for v in direct.into_iter().chain(provs) {
                        let vp = &self.u.pkgs[v];
                        if v != i && vp.name != p.name && self.u.satisfies(v, r, true) {
                            return Err(ResolveError::Conflict(Box::new(Conflict {
                                package: p.name.clone(),
                                version: p.version.to_string(),
                                kind,
                                relation: r.to_string(),
                                other: vp.name.clone(),
                                other_version: vp.version.to_string(),
                                chain: self.chain(i),
                                other_chain: self.chain(v),
                            })));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Resolves `variant`'s base set plus `requested` (each an apt-style relation such as
/// `openssh-server`, `libfoo (>= 1.2)` or `a | b`) into a closed, conflict-free set.
pub fn resolve(
    universe: &Universe,
    variant: Variant,
    requested: &[String],
) -> Result<Resolution, ResolveError> {
    let mut st = State {
        u: universe,
        selected: BTreeMap::new(),
        provided: HashMap::new(),
        parent: HashMap::new(),
        root_label: HashMap::new(),
        queue: VecDeque::new(),
    };
    let label = format!("{variant} base set");
    for name in universe.base_set(variant) {
        if let Some(&i) = universe.by_name.get(name) {
            st.add(i, None, Some(&label));
        }
    }
    for req in requested {
        let groups = parse_relations(req).map_err(|source| ResolveError::BadRequest {
            request: req.clone(),
            source,
        })?;
        for g in &groups {
            st.require(g, None, "recipe")?;
        }
    }
    while let Some(i) = st.queue.pop_front() {
        let p = &universe.pkgs[i];
        for g in p.pre_depends.groups().iter().chain(p.depends.groups()) {
            st.require(g, Some(i), "recipe")?;
        }
    }
    st.final_conflict_check()?;
    let reasons = st
        .selected
        .iter()
        .map(|(n, &i)| (n.clone(), st.chain(i)))
        .collect();
    let packages = st
        .selected
        .values()
        .map(|&i| universe.pkgs[i].clone())
        .collect();
    Ok(Resolution { packages, reasons })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::parse_packages;

    fn universe(stanzas: &[&str]) -> Universe {
        let text: String = stanzas
            .iter()
            .enumerate()
            .map(|(i, s)| {
                format!(
                    "{s}\nArchitecture: amd64\nFilename: pool/{i}.deb\nSize: 1\nSHA256: {:064x}\n\n",
                    i
                )
            })
            .collect();
        Universe::new(
            parse_packages("t", "main", &text).unwrap(),
            "amd64",
            "t main amd64",
        )
    }

    fn names(r: &Resolution) -> Vec<&str> {
        r.packages.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn base_set_conflict_is_reported_with_chains() {
        let u = universe(&[
            "Package: a\nVersion: 1\nEssential: yes",
            "Package: b\nVersion: 1\nPriority: required\nBreaks: a (<< 2)",
        ]);
        let e = resolve(&u, Variant::Minbase, &[]).unwrap_err();
        let ResolveError::Conflict(c) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (c.package.as_str(), c.kind, c.other.as_str()),
            ("b", "Breaks", "a")
        );
        assert!(
            e.to_string().contains("needed by minbase base set -> a"),
            "{e}"
        );
        assert_eq!(names(&resolve(&u, Variant::Essential, &[]).unwrap()), ["a"]);
    }

    #[test]
    fn conflict_via_provides_and_self_conflict() {
        // The usual "Provides + Conflicts" pattern: c conflicts with the virtual it
        // provides; it must not conflict with itself, but does with another provider.
        let u = universe(&[
            "Package: c\nVersion: 1\nProvides: mta\nConflicts: mta",
            "Package: d\nVersion: 1\nProvides: mta",
        ]);
        assert_eq!(
            names(&resolve(&u, Variant::Custom, &["c".into()]).unwrap()),
            ["c"]
        );
        let e = resolve(&u, Variant::Custom, &["d".into(), "c".into()]).unwrap_err();
        assert!(e.to_string().contains("c 1 would conflict"), "{e}");
    }

    #[test]
    fn dependency_cycles_terminate() {
        let u = universe(&[
            "Package: x\nVersion: 1\nDepends: y",
            "Package: y\nVersion: 1\nPre-Depends: x (= 1)",
        ]);
        assert_eq!(
            names(&resolve(&u, Variant::Custom, &["x".into()]).unwrap()),
            ["x", "y"]
        );
    }

    #[test]
    fn arch_qualifiers() {
        let u = universe(&[
            "Package: p\nVersion: 1\nDepends: q:native, r:amd64",
            "Package: q\nVersion: 1",
            "Package: r\nVersion: 1",
            "Package: s\nVersion: 1\nDepends: q:i386",
        ]);
        assert_eq!(
            names(&resolve(&u, Variant::Custom, &["p".into()]).unwrap()),
            ["p", "q", "r"]
        );
        assert!(resolve(&u, Variant::Custom, &["s".into()]).is_err());
    }
}
