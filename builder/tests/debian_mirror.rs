//! Against the real Debian mirror: bookworm main amd64, Debian's own keyring.

use std::time::Instant;

use imgbuild_builder::debian::{
    self, fetch, http::Http, release::ReleaseOptions, DebianFrom, DirCache,
};

#[test]
fn bookworm_minbase_from_deb_debian_org() {
    let keyring = std::path::Path::new(debian::release::DEFAULT_KEYRING);
    assert!(
        keyring.exists(),
        "{} missing: apt-get install debian-archive-keyring",
        keyring.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = DirCache::new(dir.path()).unwrap();
    let http = Http::new();
    let from: DebianFrom = toml::from_str("suite = \"bookworm\"\nvariant = \"minbase\"").unwrap();

    let t = Instant::now();
    let resolved =
        debian::resolve_from_mirror(&http, &from, &[], &cache, &ReleaseOptions::default()).unwrap();
    eprintln!(
        "release+index+resolve: {:.2?} (signed by {})",
        t.elapsed(),
        resolved.release.signed_by
    );
    let names: Vec<&str> = resolved
        .resolution
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

    let t = Instant::now();
    let paths = fetch::fetch_debs(
        &http,
        &from.mirror,
        &resolved.lock.packages,
        &cache,
        fetch::DEFAULT_JOBS,
    )
    .unwrap();
    let bytes: u64 = resolved.lock.packages.iter().map(|p| p.size).sum();
    eprintln!(
        "fetched {} debs, {} MB in {:.2?}",
        paths.len(),
        bytes / 1_000_000,
        t.elapsed()
    );
    let deb = debian::deb::Deb::open(&paths[0]).unwrap();
    assert_eq!(
        deb.control().get("Package"),
        Some(resolved.lock.packages[0].name.as_str())
    );
}
