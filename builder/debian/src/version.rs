//! Debian version numbers and package relationships.
//!
//! * [`Version`] parses and orders versions exactly as Debian Policy §5.6.12
//!   ("Version") and dpkg's `verrevcmp` do: `[epoch:]upstream_version[-debian_revision]`,
//!   epochs compared numerically, then upstream and revision compared by alternating
//!   non-digit runs (letters sort before non-letters, `~` before everything, even the
//!   end of the string) and digit runs (compared numerically).
//! * [`parse_relations`] parses relationship fields (`Depends`, `Pre-Depends`,
//!   `Conflicts`, `Breaks`, ...) per Policy §7.1 ("Syntax of relationship fields"):
//!   comma-separated groups of `|`-separated alternatives, each `name[:archqual]
//!   [(op version)]`, with the operators `<< <= = >= >>` (and the obsolete `<`/`>`,
//!   read as `<=`/`>=` like dpkg does). Architecture restrictions `[...]` and build
//!   profiles `<...>` (source-package only, §7.1/§7.7) are accepted and ignored.
//! * [`parse_provides`] parses `Provides` (§7.5), where only `=` is allowed.

use std::cmp::Ordering;
use std::fmt;

/// A malformed version or relationship field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The version string violates Policy §5.6.12.
    #[error("invalid Debian version {version:?}: {reason}")]
    BadVersion {
        /// The offending version string.
        version: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A relationship does not follow Policy §7.1.
    #[error("invalid package relationship {text:?}: {reason}")]
    BadRelation {
        /// The offending relationship.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A parsed Debian version. Equality and ordering follow dpkg (`1.0` == `0:1.00`).
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u64,
    upstream: String,
    revision: String,
}

impl Version {
    /// Parses `[epoch:]upstream[-revision]` (Policy §5.6.12).
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let bad = |reason| VersionError::BadVersion {
            version: s.to_owned(),
            reason,
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty version"));
        }
        if s.contains(char::is_whitespace) {
            return Err(bad("contains whitespace"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("epoch is not a number"));
                }
                let epoch = e.parse().map_err(|_| bad("epoch is too large"))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => {
                if r.is_empty() {
                    return Err(bad("empty revision after `-`"));
                }
                (u, r)
            }
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(bad("empty upstream version"));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || ".+~-:".contains(c);
        if !upstream.chars().all(ok) || !revision.chars().all(|c| ok(c) && c != '-' && c != ':') {
            return Err(bad("contains a character Policy §5.6.12 does not allow"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The upstream part.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision ("" when absent).
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An upstream version with a colon needs its epoch, even 0, to read back the same.
        if self.epoch != 0 || self.upstream.contains(':') {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

/// dpkg's `order()`: digits and end of string 0, letters their ASCII value, `~` -1,
/// anything else its value + 256.
fn order(c: u8) -> i32 {
    match c {
        0 => 0,
        b'~' => -1,
        c if c.is_ascii_digit() => 0,
        c if c.is_ascii_alphabetic() => i32::from(c),
        c => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp` (lib/dpkg/version.c), used for both upstream and revision.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let at = |i: usize| a.get(i).copied().unwrap_or(0);
    let bt = |i: usize| b.get(i).copied().unwrap_or(0);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !at(i).is_ascii_digit()) || (j < b.len() && !bt(j).is_ascii_digit()) {
            let (ac, bc) = (order(at(i)), order(bt(j)));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while at(i) == b'0' {
            i += 1;
        }
        while bt(j) == b'0' {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while at(i).is_ascii_digit() && bt(j).is_ascii_digit() {
            if first_diff == Ordering::Equal {
                first_diff = at(i).cmp(&bt(j));
            }
            i += 1;
            j += 1;
        }
        if at(i).is_ascii_digit() {
            return Ordering::Greater;
        }
        if bt(j).is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

/// A version relation operator (Policy §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<<` strictly earlier.
    Lt,
    /// `<=` earlier or equal (also the obsolete `<`).
    Le,
    /// `=` exactly equal.
    Eq,
    /// `>=` later or equal (also the obsolete `>`).
    Ge,
    /// `>>` strictly later.
    Gt,
}

impl Op {
    /// Whether `have <op> want` holds.
    pub fn holds(self, have: &Version, want: &Version) -> bool {
        let o = have.cmp(want);
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One possibility in a relationship: `name[:arch] [(op version)]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// Package (or virtual package) name.
    pub name: String,
    /// Architecture qualifier after `:` (`any`, `native` or an architecture name).
    pub arch: Option<String>,
    /// Version constraint.
    pub constraint: Option<(Op, Version)>,
}

impl Relation {
    /// Whether `version` satisfies this relation's version constraint.
    pub fn version_ok(&self, version: &Version) -> bool {
        self.constraint
            .as_ref()
            .is_none_or(|(op, want)| op.holds(version, want))
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({op} {v})")?;
        }
        Ok(())
    }
}

/// A group of alternatives (`a | b | c`); satisfied when any one is.
pub type Alternatives = Vec<Relation>;

/// Formats a group of alternatives back as `a | b (>= 1)`.
pub fn display_alternatives(alts: &[Relation]) -> String {
    alts.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" | ")
}

fn parse_one(text: &str) -> Result<Relation, VersionError> {
    let bad = |reason| VersionError::BadRelation {
        text: text.trim().to_owned(),
        reason,
    };
    let mut s = text.trim();
    // Strip build profiles `<...>` and architecture restrictions `[...]` (source only).
    for (open, close) in [('<', '>'), ('[', ']')] {
        while let Some(end) = s.strip_suffix(close) {
            let Some(start) = end.rfind(open) else {
                return Err(bad("unbalanced restriction list"));
            };
            // `(<< 1)` also ends with `)`, never `>`, so this cannot eat an operator.
            s = end[..start].trim_end();
        }
    }
    let (head, constraint) = match s.find('(') {
        Some(open) => {
            let inner = s[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| bad("missing `)` after version constraint"))?
                .trim();
            let (op, rest) = [
                ("<<", Op::Lt),
                ("<=", Op::Le),
                (">>", Op::Gt),
                (">=", Op::Ge),
                ("=", Op::Eq),
                ("<", Op::Le),
                (">", Op::Ge),
            ]
            .iter()
            .find_map(|(p, op)| inner.strip_prefix(p).map(|r| (*op, r)))
            .ok_or_else(|| bad("unknown version operator"))?;
            let v = Version::parse(rest.trim()).map_err(|_| bad("invalid version"))?;
            (s[..open].trim(), Some((op, v)))
        }
        None => (s, None),
    };
    let (name, arch) = match head.split_once(':') {
        Some((n, a)) => (n, Some(a.to_owned())),
        None => (head, None),
    };
    if name.is_empty() {
        return Err(bad("empty package name"));
    }
    let name_ok = |c: char| c.is_ascii_alphanumeric() || "+-.".contains(c);
    if !name.chars().all(name_ok) || arch.as_deref().is_some_and(str::is_empty) {
        return Err(bad("invalid package name (Policy §5.6.1)"));
    }
    Ok(Relation {
        name: name.to_owned(),
        arch,
        constraint,
    })
}

/// Parses a relationship field such as `Depends` into groups of alternatives.
/// Empty entries (e.g. a trailing comma) are skipped.
pub fn parse_relations(field: &str) -> Result<Vec<Alternatives>, VersionError> {
    field
        .split(',')
        .filter(|g| !g.trim().is_empty())
        .map(|g| g.split('|').map(parse_one).collect())
        .collect()
}

/// Parses a `Provides` field (Policy §7.5): no alternatives, only `=` constraints.
pub fn parse_provides(field: &str) -> Result<Vec<Relation>, VersionError> {
    field
        .split(',')
        .filter(|g| !g.trim().is_empty())
        .map(|g| {
            let r = parse_one(g)?;
            if g.contains('|') {
                return Err(VersionError::BadRelation {
                    text: g.trim().to_owned(),
                    reason: "alternatives are not allowed in Provides",
                });
            }
            match &r.constraint {
                Some((op, _)) if *op != Op::Eq => Err(VersionError::BadRelation {
                    text: g.trim().to_owned(),
                    reason: "Provides allows only `=` version constraints",
                }),
                _ => Ok(r),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn lt(a: &str, b: &str) {
        assert!(v(a) < v(b), "{a} < {b}");
        assert!(v(b) > v(a), "{b} > {a}");
    }

    #[test]
    fn prints_what_parses_back() {
        // Found by the `debian_control` fuzz target: `0::.10` printed as `:.10`, which
        // does not parse (and `0:1:2` as `1:2`, another version).
        for text in ["0::.10-3~bpo12+1", "0:1:2", "1:2.0-1", "2.0"] {
            let printed = v(text).to_string();
            let again = v(&printed);
            assert_eq!(again, v(text), "{text} printed as {printed}");
            assert_eq!(
                again.upstream(),
                v(text).upstream(),
                "{text} printed as {printed}"
            );
        }
        assert_eq!(v("0:1:2").to_string(), "0:1:2");
        assert_eq!(v("0:1.0").to_string(), "1.0");
    }

    #[test]
    fn policy_ordering() {
        lt("1.0~rc1", "1.0");
        lt("1.0~~", "1.0~");
        lt("1.0~", "1.0");
        lt("1.0", "1.0a");
        lt("1.0a", "1.0+");
        lt("1.0", "1.0.1");
        lt("2.0", "1:0.1");
        lt("1.0-1", "1.0-1+b1");
        lt("1.0-1", "1.0-2");
        lt("1.0-9", "1.0-10");
        lt("1.2", "1.10");
        lt("1.0-1", "1.0.1-1");
        lt("0.9", "1.0");
        lt("1.0", "1.0-0.1");
        lt("3.0.8-1", "3.0.9");
        lt("2.36-9+deb12u3", "2.36-9+deb12u10");
        lt("1:1.2.13.dfsg-1", "1:1.3");
        lt("7.88.1-10+deb12u5", "7.88.1-10+deb12u12");
        lt("1.0~beta1~svn1245", "1.0~beta1");
        lt("a", "b");
    }

    #[test]
    fn equality() {
        assert_eq!(v("1.0"), v("0:1.0"));
        assert_eq!(v("1.0"), v("1.00"));
        assert_eq!(v("1.0-1"), v("1.0-01"));
        // Policy §5.6.12: an absent revision is equivalent to `0`.
        assert_eq!(v("1.0"), v("1.0-0"));
        assert_eq!(v("1:2.3-4").to_string(), "1:2.3-4");
        assert_eq!(v("0:2.3").to_string(), "2.3");
    }

    #[test]
    fn parts() {
        let x = v("2:1.2-3-4");
        assert_eq!((x.epoch(), x.upstream(), x.revision()), (2, "1.2-3", "4"));
        let y = v("1:2.3:4");
        assert_eq!(y.upstream(), "2.3:4");
    }

    #[test]
    fn invalid_versions() {
        for s in ["", "a:1", "1.0-", ":1", "1 0", "-1", "1.0_1"] {
            assert!(Version::parse(s).is_err(), "{s:?} should be invalid");
        }
    }

    #[test]
    fn ops() {
        let (a, b) = (v("1.0"), v("1.1"));
        assert!(Op::Lt.holds(&a, &b));
        assert!(Op::Le.holds(&a, &a));
        assert!(Op::Eq.holds(&a, &a));
        assert!(Op::Ge.holds(&b, &a));
        assert!(Op::Gt.holds(&b, &a));
        assert!(!Op::Gt.holds(&a, &a));
    }

    #[test]
    fn relations() {
        let r = parse_relations(
            "libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0,\n perl:any, python3:native (<< 3.12~), ",
        )
        .unwrap();
        assert_eq!(r.len(), 3 + 1);
        assert_eq!(r[0][0].name, "libc6");
        assert_eq!(r[0][0].constraint, Some((Op::Ge, v("2.34"))));
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].name, "debconf-2.0");
        assert_eq!(r[2][0].arch.as_deref(), Some("any"));
        assert_eq!(r[3][0].to_string(), "python3:native (<< 3.12~)");
        assert_eq!(
            display_alternatives(&r[1]),
            "debconf (>= 0.5) | debconf-2.0"
        );
    }

    #[test]
    fn relation_ops_and_restrictions() {
        let r = parse_relations("a (<< 1), b (<=1), c(= 1), d (>> 1), e (< 1), f (> 1)").unwrap();
        let ops: Vec<_> = r
            .iter()
            .map(|g| g[0].constraint.as_ref().unwrap().0)
            .collect();
        assert_eq!(ops, [Op::Lt, Op::Le, Op::Eq, Op::Gt, Op::Le, Op::Ge]);
        let r = parse_relations("foo [amd64 !i386] <!nocheck>, bar (>= 1) [linux-any]").unwrap();
        assert_eq!(r[0][0].name, "foo");
        assert_eq!(r[1][0].constraint, Some((Op::Ge, v("1"))));
    }

    #[test]
    fn bad_relations() {
        for s in ["a (>= )", "a (~ 1)", "a (>= 1", "a b", "(>= 1)", "a:"] {
            assert!(parse_relations(s).is_err(), "{s:?} should be invalid");
        }
    }

    #[test]
    fn provides() {
        let p = parse_provides("mail-transport-agent, libfoo-abi (= 1.2), awk").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].constraint, Some((Op::Eq, v("1.2"))));
        assert!(parse_provides("x (>= 1)").is_err());
        assert!(parse_provides("x | y").is_err());
    }
}
