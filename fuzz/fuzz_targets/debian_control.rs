//! The deb822 parser and what is built on it: `Packages` stanzas (with versions and
//! relations), the Release file and its dates. OpenPGP verification is not fuzzed here.
#![no_main]

use imgbuild_builder::debian::version::{display_alternatives, parse_relations, Version};
use imgbuild_builder::debian::{control, index, release};
use libfuzzer_sys::fuzz_target;
use std::cmp::Ordering;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(paragraphs) = control::parse_all(text) {
        let mut versions = Vec::new();
        for p in &paragraphs {
            let _ = p.to_owned_fields();
            let _ = p.lines("SHA256").count();
            for (name, value) in p.fields() {
                assert_eq!(
                    p.get(name),
                    p.fields()
                        .find(|(n, _)| n.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v)
                );
                if let Ok(v) = Version::parse(value) {
                    // A version prints as something that parses back to an equal version.
                    let again = Version::parse(&v.to_string()).expect("a printed version parses");
                    assert_eq!(v.cmp(&again), Ordering::Equal, "{v} vs {again}");
                    versions.push(v);
                }
                let _ = release::parse_release_date(value);
            }
        }
        // dpkg's order is a total order: antisymmetric and transitive on what we saw.
        versions.truncate(8);
        for a in &versions {
            for b in &versions {
                assert_eq!(a.cmp(b), b.cmp(a).reverse(), "{a} vs {b}");
                for c in &versions {
                    if a <= b && b <= c {
                        assert!(a <= c, "{a} <= {b} <= {c} but not {a} <= {c}");
                    }
                }
            }
        }
    }
    if let Ok(records) = index::parse_packages("fuzz", "main", text) {
        for r in &records {
            let _ = r.version.to_string();
            // Relations print as text that parses back to the same relations.
            for field in [&r.depends, &r.pre_depends, &r.conflicts, &r.breaks] {
                let alts = field.groups();
                let printed = alts
                    .iter()
                    .map(|a| display_alternatives(a))
                    .collect::<Vec<_>>()
                    .join(", ");
                if alts.is_empty() {
                    continue;
                }
                let again = parse_relations(&printed).expect("printed relations parse");
                assert_eq!(again, alts, "{printed}");
            }
        }
    }
    let _ = release::parse_release("http://fuzz/dists/x/InRelease", text);
});
