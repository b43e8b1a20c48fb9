//! Licenses from Debian's machine-readable copyright files
//! (`/usr/share/doc/PACKAGE/copyright`, DEP-5 / copyright-format 1.0), as SPDX license
//! expressions.
//!
//! Each `License:` field's first line is a Debian short name or an expression of them
//! (`GPL-2+ or Artistic`). Names are mapped to SPDX identifiers: the GNU families by
//! their version and `+` (`GPL-2+` is `GPL-2.0-or-later`), `Expat` to `MIT`, and any name
//! that is an SPDX identifier up to case (`BSD-3-clause`). Every other name becomes a
//! `LicenseRef-` of its own, which the documents declare. A package's license is the
//! conjunction of its files' licenses.

use std::collections::BTreeSet;

/// The first line of the machine-readable format (any of its URL spellings).
const FORMAT_MARKER: &str = "copyright-format/1.0";

/// What a package's copyright file declares.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeclaredLicense {
    /// An SPDX license expression (`GPL-2.0-or-later AND (MIT OR LicenseRef-Artistic)`).
    pub expression: String,
    /// The `LicenseRef-` identifiers the expression uses, with the Debian name each
    /// stands for.
    pub refs: BTreeSet<(String, String)>,
}

/// The license a machine-readable copyright file declares; `None` for a file in another
/// format or one without licenses.
pub fn declared(copyright: &str) -> Option<DeclaredLicense> {
    if !copyright
        .lines()
        .next()
        .is_some_and(|l| l.starts_with("Format:") && l.contains(FORMAT_MARKER))
    {
        return None;
    }
    let mut refs = BTreeSet::new();
    let mut terms = BTreeSet::new();
    for paragraph in copyright.split("\n\n") {
        // Only paragraphs that apply to files: a stand-alone License paragraph only
        // gives the text of a license that a Files paragraph names.
        if !paragraph.lines().any(|l| l.starts_with("Files:")) {
            continue;
        }
        let Some(value) = paragraph
            .lines()
            .find_map(|l| l.strip_prefix("License:"))
            .map(str::trim)
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        terms.insert(expression_of(value, &mut refs));
    }
    if terms.is_empty() {
        return None;
    }
    let expression = if terms.len() == 1 {
        terms.into_iter().next().unwrap_or_default()
    } else {
        terms
            .into_iter()
            .map(|t| {
                if t.contains(" OR ") || t.contains(" AND ") {
                    format!("({t})")
                } else {
                    t
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ")
    };
    Some(DeclaredLicense { expression, refs })
}

/// The SPDX expression of one `License:` value: names joined by `or` / `and` (commas
/// read as `and`), `with ... exception` kept with its name as one reference.
fn expression_of(value: &str, refs: &mut BTreeSet<(String, String)>) -> String {
    let value = value.replace(',', " and ");
    let words: Vec<&str> = value.split_whitespace().collect();
    let mut out: Vec<String> = Vec::new();
    let mut name: Vec<&str> = Vec::new();
    let mut flush = |name: &mut Vec<&str>, out: &mut Vec<String>| {
        if !name.is_empty() {
            out.push(spdx_id(&name.join(" "), refs));
            name.clear();
        }
    };
    for w in words {
        match w.to_ascii_lowercase().as_str() {
            "or" => {
                flush(&mut name, &mut out);
                out.push("OR".into());
            }
            "and" => {
                flush(&mut name, &mut out);
                out.push("AND".into());
            }
            _ => name.push(w),
        }
    }
    flush(&mut name, &mut out);
    // Drop dangling operators (`GPL-2+ or`), which an expression cannot hold.
    while out.first().is_some_and(|t| t == "OR" || t == "AND") {
        out.remove(0);
    }
    while out.last().is_some_and(|t| t == "OR" || t == "AND") {
        out.pop();
    }
    out.dedup_by(|a, b| (a == "OR" || a == "AND") && (b == "OR" || b == "AND"));
    if out.is_empty() {
        return spdx_id(value.trim(), refs);
    }
    if out.iter().any(|t| t == "OR") && out.iter().any(|t| t == "AND") {
        // Mixed operators: SPDX binds AND tighter, Debian's format reads the same way.
        return out.join(" ");
    }
    out.join(" ")
}

/// The SPDX identifier of one Debian license name, or a `LicenseRef-` recorded in `refs`.
fn spdx_id(name: &str, refs: &mut BTreeSet<(String, String)>) -> String {
    if let Some(id) = gnu_id(name) {
        return id;
    }
    if name.eq_ignore_ascii_case("Expat") {
        return "MIT".into();
    }
    if let Some((id, _, _)) = spdx::identifiers::LICENSES
        .iter()
        .find(|(id, _, _)| id.eq_ignore_ascii_case(name))
    {
        return (*id).to_owned();
    }
    let id = format!("LicenseRef-{}", super::id_safe(name));
    refs.insert((id.clone(), name.to_owned()));
    id
}

/// `GPL-2`, `LGPL-2.1+`, `AGPL-3`, `GFDL-1.3+` as SPDX's `-only` / `-or-later` ids.
fn gnu_id(name: &str) -> Option<String> {
    let (family, version) = name.split_once('-')?;
    let family = match family.to_ascii_uppercase().as_str() {
        f @ ("GPL" | "LGPL" | "AGPL" | "GFDL") => f.to_owned(),
        _ => return None,
    };
    let (version, later) = match version.strip_suffix('+') {
        Some(v) => (v, true),
        None => (version, false),
    };
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let version = if version.contains('.') {
        version.to_owned()
    } else {
        format!("{version}.0")
    };
    let id = format!(
        "{family}-{version}-{}",
        if later { "or-later" } else { "only" }
    );
    spdx::license_id(&id).map(|_| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: example

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: lib/*
Copyright: 2021 Someone Else
License: BSD-3-clause or Expat

Files: contrib/*
Copyright: 2022 A Third
License: public-domain

License: GPL-2+
 The full text is in /usr/share/common-licenses/GPL-2.
";

    #[test]
    fn debian_names_become_spdx_expressions() {
        let d = declared(COPYRIGHT).unwrap();
        assert_eq!(
            d.expression,
            "(BSD-3-Clause OR MIT) AND GPL-2.0-or-later AND LicenseRef-public-domain"
        );
        assert_eq!(
            d.refs.into_iter().collect::<Vec<_>>(),
            [(
                "LicenseRef-public-domain".to_owned(),
                "public-domain".to_owned()
            )]
        );
    }

    #[test]
    fn gnu_versions_and_exceptions() {
        let mut refs = BTreeSet::new();
        assert_eq!(spdx_id("LGPL-2.1", &mut refs), "LGPL-2.1-only");
        assert_eq!(spdx_id("GPL-3+", &mut refs), "GPL-3.0-or-later");
        assert_eq!(spdx_id("gfdl-1.3+", &mut refs), "GFDL-1.3-or-later");
        assert_eq!(spdx_id("Zlib", &mut refs), "Zlib");
        assert!(refs.is_empty());
        assert_eq!(
            expression_of("GPL-2+ with OpenSSL exception", &mut refs),
            "LicenseRef-GPL-2--with-OpenSSL-exception"
        );
        assert_eq!(expression_of("GPL-2+ or", &mut refs), "GPL-2.0-or-later");
    }

    #[test]
    fn other_formats_declare_nothing() {
        assert_eq!(
            declared("This is Debian's prepackaged version of foo.\n"),
            None
        );
        assert_eq!(
            declared(
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
            ),
            None
        );
    }
}
