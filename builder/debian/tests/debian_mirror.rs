//! Against the real Debian mirror: bookworm main amd64, verified with Debian's own
//! keyring, resolved as `minbase` and compared with what mmdebstrap installs.
//!
//! Needs network access to deb.debian.org and the Debian packages
//! debian-archive-keyring and mmdebstrap.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use imgbuild_debian::{
    self as debian, fetch,
    http::Http,
    index, lock,
    release::{self, ReleaseOptions},
    resolve::{self, Universe, Variant},
    DebianFrom, DirCache,
};

const MIRROR: &str = "http://deb.debian.org/debian";

/// `(name, version)` of every package `mmdebstrap --variant=minbase` would install.
fn mmdebstrap_minbase(out_dir: &Path) -> BTreeSet<(String, String)> {
    let out = Command::new("mmdebstrap")
        .args(["--simulate", "--verbose", "--variant=minbase", "bookworm"])
        .arg(out_dir.join("sim.tar"))
        .arg(MIRROR)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run mmdebstrap: {e}; install the Debian package mmdebstrap")
        });
    assert!(
        out.status.success(),
        "mmdebstrap --simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // Lines look like `Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64]) []`.
    text.lines()
        .filter_map(|l| l.strip_prefix("Inst "))
        .filter_map(|l| {
            let (name, rest) = l.split_once(" (")?;
            Some((name.to_owned(), rest.split_whitespace().next()?.to_owned()))
        })
        .collect()
}

#[test]
fn bookworm_minbase_from_deb_debian_org() {
    let keyring = Path::new(release::DEFAULT_KEYRING);
    assert!(
        keyring.exists(),
        "{} missing: apt-get install debian-archive-keyring",
        keyring.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = DirCache::new(dir.path().join("cache")).unwrap();
    let http = Http::new();
    let from: DebianFrom = toml::from_str("suite = \"bookworm\"\nvariant = \"minbase\"").unwrap();
    assert_eq!(from.mirror, MIRROR);

    let t = Instant::now();
    let rel = release::fetch_release(
        &http,
        MIRROR,
        "bookworm",
        keyring,
        &ReleaseOptions::default(),
    )
    .unwrap();
    let t_release = t.elapsed();
    let t = Instant::now();
    let pkgs =
        index::fetch_packages(&http, MIRROR, "bookworm", &rel, "main", "amd64", &cache).unwrap();
    let t_index = t.elapsed();
    let n_index = pkgs.len();
    let t = Instant::now();
    let universe = Universe::new(pkgs, "amd64", "bookworm main amd64");
    let resolution = resolve::resolve(&universe, Variant::Minbase, &[]).unwrap();
    let t_resolve = t.elapsed();
    let lock = lock::lock_from_resolution(&from.request(&[]), &rel, &resolution);
    eprintln!(
        "InRelease fetch+verify: {t_release:.2?} (signed by {}); Packages.xz fetch+check+parse: {t_index:.2?} ({n_index} stanzas); index+resolve minbase: {t_resolve:.2?}",
        rel.signed_by
    );

    let names: Vec<&str> = resolution
        .packages
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    eprintln!("minbase ({}): {}", names.len(), names.join(" "));
    for must in [
        "base-files",
        "dpkg",
        "apt",
        "libc6",
        "bash",
        "coreutils",
        "debianutils",
        "mawk",
    ] {
        assert!(names.contains(&must), "{must} missing from minbase");
    }
    assert!(
        (80..=110).contains(&names.len()),
        "minbase has {} packages",
        names.len()
    );

    // Same set, same versions as mmdebstrap's minbase.
    let ours: BTreeSet<(String, String)> = resolution
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.to_string()))
        .collect();
    let theirs = mmdebstrap_minbase(dir.path());
    assert!(
        !theirs.is_empty(),
        "could not read mmdebstrap's package list"
    );
    assert_eq!(
        ours.symmetric_difference(&theirs).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "minbase differs from mmdebstrap's"
    );

    let t = Instant::now();
    let paths =
        fetch::fetch_debs(&http, MIRROR, &lock.packages, &cache, fetch::DEFAULT_JOBS).unwrap();
    let bytes: u64 = lock.packages.iter().map(|p| p.size).sum();
    eprintln!(
        "fetched {} debs, {} MB in {:.2?}",
        paths.len(),
        bytes / 1_000_000,
        t.elapsed()
    );
    let t = Instant::now();
    for (p, path) in lock.packages.iter().zip(&paths) {
        let deb = debian::deb::Deb::open(path).unwrap();
        assert_eq!(deb.control().get("Package"), Some(p.name.as_str()));
        let n = deb.data().unwrap().entries().unwrap().count();
        assert!(
            n > 0 || p.name == "usr-is-merged",
            "{} has an empty data.tar",
            p.name
        );
    }
    eprintln!(
        "read control + listed data.tar of every deb in {:.2?}",
        t.elapsed()
    );
}
