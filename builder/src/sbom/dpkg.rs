//! The packages an image's dpkg database says are installed (`/var/lib/dpkg/status`).

/// One installed binary package, as its dpkg status paragraph names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct InstalledPackage {
    /// Package name.
    pub name: String,
    /// Architecture (`amd64`, `all`, ...).
    pub architecture: String,
    /// Exact version.
    pub version: String,
    /// The source package's name, when it differs from the binary's.
    pub source: Option<String>,
}

/// The packages of a dpkg status file whose state is `installed`, sorted by name,
/// architecture and version. Paragraphs without a name or version are skipped, as dpkg
/// itself would not list them.
pub fn installed(status: &str) -> Vec<InstalledPackage> {
    let mut found: Vec<InstalledPackage> = status
        .split("\n\n")
        .filter_map(|paragraph| {
            let field = |name: &str| field(paragraph, name);
            let state = field("Status")?;
            if state.split_whitespace().last() != Some("installed") {
                return None;
            }
            let name = field("Package")?;
            Some(InstalledPackage {
                architecture: field("Architecture").unwrap_or("all").to_owned(),
                version: field("Version")?.to_owned(),
                // `Source: glibc (2.36-9)`: the name, without the version.
                source: field("Source")
                    .and_then(|s| s.split_whitespace().next())
                    .map(str::to_owned),
                name: name.to_owned(),
            })
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The value of a single-line field of a paragraph (`Name: value`), trimmed.
fn field<'a>(paragraph: &'a str, name: &str) -> Option<&'a str> {
    paragraph.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name)
            .then(|| value.trim())
            .filter(|v| !v.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "\
Package: libc6
Status: install ok installed
Priority: optional
Architecture: amd64
Multi-Arch: same
Source: glibc (2.36-9+deb12u13)
Version: 2.36-9+deb12u13
Description: GNU C Library: Shared libraries
 Contains the standard libraries. Version: not a field

Package: adduser
Status: install ok installed
Architecture: all
Version: 3.134

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
";

    #[test]
    fn installed_packages_only_sorted_with_their_source() {
        let found = installed(STATUS);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "adduser");
        assert_eq!(found[0].source, None);
        assert_eq!(found[1].name, "libc6");
        assert_eq!(found[1].version, "2.36-9+deb12u13");
        assert_eq!(found[1].architecture, "amd64");
        assert_eq!(found[1].source.as_deref(), Some("glibc"));
    }

    #[test]
    fn continuation_lines_are_not_fields() {
        let found = installed(STATUS);
        assert!(found.iter().all(|p| p.version != "not a field"));
    }
}
