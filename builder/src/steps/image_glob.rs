//! Paths and globs matched against an image's merged tree, for `remove` and
//! `copy ... from_stage`.
//!
//! A path without `*`, `?` or `[` matches itself when the tree has it. A glob matches as
//! a `copy` glob does on the host: `*` and `?` do not cross `/`, `**` does. A match below
//! another match is left out: the outer one already stands for it.
//!
//! The directories before the first glob character resolve inside the image first, as
//! every file step's paths do: on a usrmerged image `/bin/rbash` names `usr/bin/rbash`
//! and `/bin/*sh` the shells in `usr/bin`.

use imgbuild_store::tarball::{MergedTree, PathResolver};
use std::collections::HashSet;

/// True when `pattern` is a glob rather than a plain path.
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Compiles an absolute image glob (the leading and trailing `/` are ignored).
pub(crate) fn matcher(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern.trim_matches('/'))
        .literal_separator(true)
        .build()?
        .compile_matcher())
}

/// The paths of `tree` (relative, no leading `/`) that `pattern` (an absolute image path
/// or glob) names, sorted, without those below another match.
pub(crate) fn matches(tree: &MergedTree, pattern: &str) -> Vec<String> {
    let Some(resolved) = resolve_literal_prefix(tree, pattern.trim_matches('/')) else {
        return Vec::new();
    };
    let rel = resolved.as_str();
    if !is_glob(rel) {
        return tree
            .get(rel)
            .map(|m| vec![m.path.clone()])
            .unwrap_or_default();
    }
    // Checked when the recipe was read.
    let Ok(glob) = matcher(rel) else {
        return Vec::new();
    };
    let mut taken: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for meta in tree.iter() {
        let path = meta.path.as_str();
        if !glob.is_match(path) {
            continue;
        }
        let below_a_match = path
            .match_indices('/')
            .any(|(at, _)| taken.contains(&path[..at]));
        if !below_a_match {
            taken.insert(path);
            out.push(path.to_owned());
        }
    }
    out
}

/// `rel` with the directories before its first glob character (or, for a plain path,
/// before its last component) resolved inside the image; `None` when they cannot be (a
/// file in the way, a loop), so nothing matches.
fn resolve_literal_prefix(tree: &MergedTree, rel: &str) -> Option<String> {
    let literal_end = rel.find(['*', '?', '[']).unwrap_or(rel.len());
    let Some(split) = rel[..literal_end].rfind('/') else {
        return Some(rel.to_owned());
    };
    let (dir, rest) = (&rel[..split], &rel[split..]);
    let resolved = PathResolver::new(tree).resolve_dir(dir).ok()?;
    Some(format!("{resolved}{rest}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use imgbuild_store::tarball::{EntryKind, EntryMeta, TarWriter};

    fn tree(paths: &[&str]) -> MergedTree {
        let mut bytes = Vec::new();
        {
            let mut tar = TarWriter::new(&mut bytes);
            for p in paths {
                let meta = match (p.split_once(" -> "), p.strip_suffix('/')) {
                    (Some((link, target)), _) => EntryMeta::new(
                        link.to_owned(),
                        EntryKind::Symlink(target.to_owned()),
                        0o777,
                        0,
                    ),
                    (None, Some(dir)) => EntryMeta::dir(dir, 0),
                    (None, None) => EntryMeta::new((*p).to_owned(), EntryKind::File, 0o644, 0),
                };
                tar.append(&meta, &mut std::io::empty()).unwrap();
            }
            tar.finish().unwrap();
        }
        MergedTree::build([bytes.as_slice()]).unwrap()
    }

    #[test]
    fn globs_match_within_one_component_and_skip_what_is_below_a_match() {
        let t = tree(&[
            "etc/",
            "etc/ssh/",
            "etc/ssh/ssh_host_rsa_key",
            "etc/ssh/ssh_host_rsa_key.pub",
            "etc/ssh/sshd_config",
            "etc/ssh/ssh_host_dir/",
            "etc/ssh/ssh_host_dir/inner",
            "boot/",
            "boot/vmlinuz-6.1.0-13-amd64",
        ]);
        assert_eq!(
            matches(&t, "/etc/ssh/ssh_host_*"),
            [
                "etc/ssh/ssh_host_dir",
                "etc/ssh/ssh_host_rsa_key",
                "etc/ssh/ssh_host_rsa_key.pub"
            ]
        );
        assert_eq!(matches(&t, "/etc/*_config"), Vec::<String>::new());
        assert_eq!(matches(&t, "/etc/**/inner"), ["etc/ssh/ssh_host_dir/inner"]);
        assert_eq!(matches(&t, "/etc/**"), ["etc/ssh"]);
        assert_eq!(
            matches(&t, "/boot/vmlinuz-*"),
            ["boot/vmlinuz-6.1.0-13-amd64"]
        );
        assert_eq!(matches(&t, "/etc/ssh/"), ["etc/ssh"]);
        assert_eq!(matches(&t, "/etc/nothing"), Vec::<String>::new());
    }

    #[test]
    fn paths_and_globs_resolve_through_a_usrmerged_bin() {
        let t = tree(&[
            "bin -> usr/bin",
            "usr/",
            "usr/bin/",
            "usr/bin/bash",
            "usr/bin/rbash",
            "usr/bin/dash",
        ]);
        assert_eq!(matches(&t, "/bin/rbash"), ["usr/bin/rbash"]);
        assert_eq!(
            matches(&t, "/bin/*ash"),
            ["usr/bin/bash", "usr/bin/dash", "usr/bin/rbash"]
        );
        // The link itself, named as the path, is what is removed.
        assert_eq!(matches(&t, "/bin"), ["bin"]);
        assert_eq!(matches(&t, "/bin/nothing"), Vec::<String>::new());
    }
}
