//! Hermetic test of the Debian client against a throwaway signed repository built
//! with dpkg-deb + dpkg-scanpackages, signed by a throwaway gpg key and served on
//! loopback by python3's http.server.
//!
//! Needs the Debian packages dpkg-dev (dpkg-deb, dpkg-scanpackages), gpg and python3.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use imgbuild_debian::{
    self as debian,
    cache::{sha256_file, BlobCache, DirCache},
    fetch::{self, FetchError},
    http::Http,
    index,
    lock::{self, Lockfile},
    release::{self, ReleaseError, ReleaseOptions},
    resolve::{self, ResolveError, Universe, Variant},
    DebianFrom,
};
use sha2::{Digest, Sha256};

const SUITE: &str = "imgtest";

struct Fixture {
    root: PathBuf,
    mirror: String,
    keyring: PathBuf,
    other_keyring: PathBuf,
    _server: Mutex<Child>,
}

/// (name, version, arch, extra control lines)
const PACKAGES: &[(&str, &str, &str, &str)] = &[
    (
        "base-a",
        "1.0",
        "amd64",
        "Essential: yes\nPriority: required\nDepends: libx (>= 1.0)\n",
    ),
    (
        "apt",
        "2.0",
        "amd64",
        "Priority: important\nDepends: libx\n",
    ),
    ("libx", "1.2", "amd64", "Multi-Arch: same\n"),
    (
        "app",
        "2.0",
        "all",
        "Depends: mta-missing | mail-transport-agent, libx (>= 1.1), python3-fake:any\n",
    ),
    (
        "postfix-fake",
        "1.0",
        "amd64",
        "Priority: optional\nProvides: mail-transport-agent\n",
    ),
    (
        "exim-fake",
        "1.0",
        "amd64",
        "Priority: standard\nProvides: mail-transport-agent\n",
    ),
    ("python3-fake", "3.11", "amd64", "Multi-Arch: allowed\n"),
    ("tool-any-bad", "1", "amd64", "Depends: libx:any\n"),
    ("needs-new", "1", "amd64", "Depends: libx (>= 2.0)\n"),
    ("missing-dep", "1", "amd64", "Depends: nonexistent\n"),
    ("conflicter", "1", "amd64", "Conflicts: libx\n"),
    ("breaker", "1", "amd64", "Breaks: app (<< 3)\n"),
    ("versioned-virt", "1", "amd64", "Depends: awk-fake (>= 2)\n"),
    ("gawk-fake", "1", "amd64", "Provides: awk-fake\n"),
    ("mawk-fake", "1", "amd64", "Provides: awk-fake (= 2.5)\n"),
    ("multi", "1.0", "amd64", ""),
    ("multi", "1.5", "amd64", ""),
    ("multi", "1:0.1", "amd64", ""),
    (
        "alt-user",
        "1",
        "amd64",
        "Depends: nonexistent-alt | libx\n",
    ),
    (
        "prefer-selected",
        "1",
        "amd64",
        "Depends: postfix-fake | exim-fake\n",
    ),
    ("tilde", "1.0~rc1", "amd64", ""),
    ("needs-final", "1", "amd64", "Depends: tilde (>= 1.0)\n"),
    ("pre", "1", "amd64", "Pre-Depends: multi (>= 1:0)\n"),
    ("foreign-arch", "1", "i386", ""),
    ("victim", "1.0", "amd64", ""),
];

fn run(cmd: &mut Command, debian_pkg: &str) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e}; install the Debian package {debian_pkg}")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.arg("--homedir").arg(home).args(["--batch", "--quiet"]);
    c
}

fn make_key(home: &Path, uid: &str) -> String {
    fs_err::create_dir_all(home).unwrap();
    run(
        gpg(home).args([
            "--passphrase",
            "",
            "--quick-gen-key",
            uid,
            "ed25519",
            "sign",
            "never",
        ]),
        "gpg",
    );
    let listing = run(gpg(home).args(["--with-colons", "--list-keys"]), "gpg");
    String::from_utf8(listing)
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_owned())
        })
        .expect("gpg listed no fingerprint")
}

fn build_deb(
    work: &Path,
    pool: &Path,
    z: &str,
    (name, version, arch, extra): (&str, &str, &str, &str),
) {
    let dir = work.join(format!("{name}-{}", version.replace(':', "_")));
    fs_err::create_dir_all(dir.join("DEBIAN")).unwrap();
    fs_err::create_dir_all(dir.join(format!("usr/share/doc/{name}"))).unwrap();
    fs_err::write(
        dir.join(format!("usr/share/doc/{name}/hello")),
        format!("{name} {version}\n"),
    )
    .unwrap();
    fs_err::write(
        dir.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: imgbuild <t@imgbuild.invalid>\n{extra}Description: test package {name}\n fixture for imgbuild\n"
        ),
    )
    .unwrap();
    let out = pool.join(format!("{name}_{}_{arch}.deb", version.replace(':', "%3a")));
    run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", z, "--build"])
            .arg(&dir)
            .arg(&out),
        "dpkg-dev",
    );
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // One repository per test process: nextest runs each test in a process of its own,
        // so a shared path would be rebuilt under another test's feet.
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("debian_repo-{}", std::process::id()));
        if root.exists() {
            fs_err::remove_dir_all(&root).unwrap();
        }
        let repo = root.join("repo");
        let pool = repo.join("pool/main");
        fs_err::create_dir_all(&pool).unwrap();
        let work = root.join("work");
        // Rotate compressions so the .deb reader sees all of them (base-a: xz,
        // apt: gzip, libx: zstd, ...).
        for (i, p) in PACKAGES.iter().enumerate() {
            build_deb(&work, &pool, ["-Zxz", "-Zgzip", "-Zzstd"][i % 3], *p);
        }
        let packages = run(
            Command::new("dpkg-scanpackages")
                .current_dir(&repo)
                .args(["--multiversion", "pool"])
                .stderr(Stdio::null()),
            "dpkg-dev",
        );
        // Tamper with `victim` after indexing: the index keeps the original hash.
        let victim = pool.join("victim_1.0_amd64.deb");
        let mut bytes = fs_err::read(&victim).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs_err::write(&victim, bytes).unwrap();

        let dists = repo.join(format!("dists/{SUITE}"));
        let bin = dists.join("main/binary-amd64");
        fs_err::create_dir_all(&bin).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&packages).unwrap();
        let gz = gz.finish().unwrap();
        fs_err::write(bin.join("Packages"), &packages).unwrap();
        fs_err::write(bin.join("Packages.gz"), &gz).unwrap();
        let release = format!(
            "Origin: imgbuild-test\nSuite: testing-{SUITE}\nCodename: {SUITE}\nDate: Wed, 25 Nov 2026 10:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n {} {} main/binary-amd64/Packages.gz\n",
            sha256(&packages),
            packages.len(),
            sha256(&gz),
            gz.len()
        );
        fs_err::write(dists.join("Release"), &release).unwrap();

        // A second suite whose Release has expired (Valid-Until in the past).
        let expired = repo.join("dists/expired");
        fs_err::create_dir_all(&expired).unwrap();
        fs_err::write(
            expired.join("Release"),
            release
                .replace(&format!("Codename: {SUITE}"), "Codename: expired")
                .replace("Date:", "Valid-Until: Sat, 01 Jan 2000 00:00:00 UTC\nDate:"),
        )
        .unwrap();

        let home = root.join("gnupg");
        let fpr = make_key(&home, "imgbuild test archive <archive@imgbuild.invalid>");
        for d in [&dists, &expired] {
            run(
                gpg(&home)
                    .args(["--yes", "--local-user", &fpr, "--clearsign", "-o"])
                    .arg(d.join("InRelease"))
                    .arg(d.join("Release")),
                "gpg",
            );
        }
        let keyring = root.join("archive.gpg");
        fs_err::write(&keyring, run(gpg(&home).args(["--export", &fpr]), "gpg")).unwrap();
        let other_home = root.join("gnupg-other");
        let other = make_key(&other_home, "someone else <other@imgbuild.invalid>");
        let other_keyring = root.join("other.gpg");
        fs_err::write(&other_keyring, run(gpg(&other_home).args(["--export", &other]), "gpg"))
            .unwrap();
        // Two more repositories on the same server: `imgtest-updates` on the main mirror
        // (signed by the archive key), and a third-party one under `extra/` signed by
        // the other key.
        let updates = [("libx", "1.3", "amd64", "Multi-Arch: same\n")];
        let extra = [
            ("python3-fake", "3.10", "amd64", ""),
            ("libx", "1.1", "amd64", "Multi-Arch: same\n"),
            ("only-extra", "1", "all", "Depends: libx (>= 1.3)\n"),
        ];
        for (repo_dir, pool, suite, pkgs, home, fpr) in [
            (&repo, "pool/updates", format!("{SUITE}-updates"), &updates[..], &home, &fpr),
            (&repo.join("extra"), "pool/main", "stable".to_owned(), &extra[..], &other_home, &other),
        ] {
            fs_err::create_dir_all(repo_dir.join(pool)).unwrap();
            for p in pkgs {
                build_deb(&work.join(&suite), &repo_dir.join(pool), "-Zxz", *p);
            }
            let packages = run(
                Command::new("dpkg-scanpackages")
                    .current_dir(repo_dir)
                    .args(["--multiversion", pool])
                    .stderr(Stdio::null()),
                "dpkg-dev",
            );
            let dists = repo_dir.join(format!("dists/{suite}"));
            fs_err::create_dir_all(dists.join("main/binary-amd64")).unwrap();
            fs_err::write(dists.join("main/binary-amd64/Packages"), &packages).unwrap();
            fs_err::write(
                dists.join("Release"),
                format!(
                    "Suite: {suite}\nCodename: {suite}\nDate: Thu, 26 Nov 2026 10:00:00 UTC\nArchitectures: amd64\nComponents: main\nSHA256:\n {} {} main/binary-amd64/Packages\n",
                    sha256(&packages),
                    packages.len()
                ),
            )
            .unwrap();
            run(
                gpg(home)
                    .args(["--yes", "--local-user", fpr, "--clearsign", "-o"])
                    .arg(dists.join("InRelease"))
                    .arg(dists.join("Release")),
                "gpg",
            );
        }
        for h in [&home, &other_home] {
            let _ = Command::new("gpgconf").arg("--homedir").arg(h).args(["--kill", "gpg-agent"]).status();
        }

        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/serve.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&repo)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3: {e}; install the Debian package python3"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("serve.py printed no port");
        Fixture {
            root,
            mirror: format!("http://127.0.0.1:{port}/"),
            keyring,
            other_keyring,
            _server: Mutex::new(child),
        }
    })
}

fn from(f: &Fixture, variant: &str) -> DebianFrom {
    DebianFrom {
        suite: SUITE.into(),
        variant: variant.into(),
        mirror: f.mirror.clone(),
        components: vec!["main".into()],
        keyring: Some(f.keyring.clone()),
        architecture: "amd64".into(),
        snapshot: None,
        updates: false,
        security: false,
        apt: true,
        sources: Vec::new(),
    }
}

fn cache(name: &str) -> DirCache {
    let dir = fixture().root.join("caches").join(name);
    if dir.exists() {
        fs_err::remove_dir_all(&dir).unwrap();
    }
    DirCache::new(dir).unwrap()
}

fn universe() -> Universe {
    let f = fixture();
    let http = Http::new();
    let rel = release::fetch_release(
        &http,
        &f.mirror,
        SUITE,
        &f.keyring,
        &ReleaseOptions::default(),
    )
    .unwrap();
    let pkgs = index::fetch_packages(
        &http,
        &f.mirror,
        SUITE,
        &rel,
        "main",
        "amd64",
        &cache("universe"),
    )
    .unwrap();
    Universe::new(pkgs, "amd64", "imgtest main amd64")
}

fn names(r: &resolve::Resolution) -> Vec<String> {
    r.packages.iter().map(|p| p.name.clone()).collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn resolve_fetch_lock_round_trip() {
    let f = fixture();
    let http = Http::new();
    let c = cache("round-trip");
    let from = from(f, "minbase");
    let requested = strs(&["app"]);
    let r = debian::resolve_from_mirror(&http, &from, &requested, &c, &ReleaseOptions::default())
        .unwrap();
    assert_eq!(
        names(&r.resolution),
        ["app", "apt", "base-a", "exim-fake", "libx", "python3-fake"]
    );
    assert_eq!(
        r.resolution.reasons["exim-fake"],
        "recipe -> app -> exim-fake"
    );
    assert_eq!(r.release.codename.as_deref(), Some(SUITE));

    let paths = fetch::fetch_debs(&http, &f.mirror, &r.lock.packages, &c, 4).unwrap();
    let mut members = BTreeSet::new();
    for (p, path) in r.lock.packages.iter().zip(&paths) {
        assert_eq!(sha256_file(path).unwrap(), p.sha256);
        let deb = debian::deb::Deb::open(path).unwrap();
        assert_eq!(deb.control().get("package"), Some(p.name.as_str()));
        assert_eq!(deb.control().get("Version"), Some(p.version.as_str()));
        members.insert(deb.data_member().to_owned());
        let mut data = deb.data().unwrap();
        let files: Vec<String> = data
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert!(
            files
                .iter()
                .any(|x| x.ends_with(&format!("doc/{}/hello", p.name))),
            "{}: {files:?}",
            deb.data_member()
        );
    }

    assert_eq!(
        members.into_iter().collect::<Vec<_>>(),
        ["data.tar.gz", "data.tar.xz", "data.tar.zst"]
    );

    // Lock round trip, then fetch by lock alone into an empty cache.
    let lock_path = f.root.join("recipe.lock");
    r.lock.write(&lock_path).unwrap();
    let back = Lockfile::read(&lock_path).unwrap();
    assert_eq!(back, r.lock);
    back.check_matches(&from.request(&requested)).unwrap();
    let err = back
        .check_matches(&from.request(&strs(&["app", "multi"])))
        .unwrap_err();
    assert!(
        matches!(
            err,
            lock::LockError::Mismatch {
                field: "packages",
                ..
            }
        ),
        "{err}"
    );
    let c2 = cache("by-lock");
    let again = fetch::fetch_debs(&http, &f.mirror, &back.packages, &c2, 8).unwrap();
    assert_eq!(again.len(), back.packages.len());
    assert!(c2.get(&back.packages[0].sha256).is_some());
    // Deterministic: a second resolution yields a byte-identical lock.
    let r2 = debian::resolve_from_mirror(&http, &from, &requested, &c, &ReleaseOptions::default())
        .unwrap();
    assert_eq!(r2.lock.to_toml().unwrap(), r.lock.to_toml().unwrap());
}

#[test]
fn several_sources_resolve_together_and_lock_each() {
    let f = fixture();
    let http = Http::new();
    let c = cache("sources");
    let mut from = from(f, "custom");
    from.updates = true;
    from.sources.push(debian::ExtraSource {
        uri: format!("{}extra", f.mirror),
        suite: "stable".into(),
        components: vec!["main".into()],
        keyring: f.other_keyring.clone(),
    });
    let requested = strs(&["only-extra", "python3-fake"]);
    let r = debian::resolve_from_mirror(&http, &from, &requested, &c, &ReleaseOptions::default())
        .unwrap();
    let got: Vec<(String, String, Option<String>)> = r
        .lock
        .packages
        .iter()
        .map(|p| (p.name.clone(), p.version.clone(), p.source.clone()))
        .collect();
    // The highest version wins across sources: libx 1.3 from updates beats 1.2 (main) and
    // 1.1 (extra); python3-fake 3.11 (main) beats 3.10 (extra).
    assert_eq!(
        got,
        [
            ("libx".into(), "1.3".into(), Some("updates".into())),
            ("only-extra".into(), "1".into(), Some("127.0.0.1".into())),
            ("python3-fake".into(), "3.11".into(), None),
        ]
    );
    let names: Vec<&str> = r
        .lock
        .extra_sources
        .iter()
        .map(|s| s.request.name.as_str())
        .collect();
    assert_eq!(names, ["updates", "127.0.0.1"]);
    assert_eq!(
        r.lock.extra_sources[0].request.suite,
        format!("{SUITE}-updates")
    );
    assert_eq!(
        r.lock.extra_sources[1].keyring_sha256,
        sha256_file(&f.other_keyring).unwrap()
    );
    assert_eq!(
        r.lock
            .source
            .as_ref()
            .and_then(|s| s.keyring_sha256.as_deref()),
        Some(sha256_file(&f.keyring).unwrap().as_str())
    );
    let text = r.lock.to_toml().unwrap();
    let back = Lockfile::from_toml(Path::new("x"), &text).unwrap();
    assert_eq!(back, r.lock);
    back.check_sources(&from.extra_requests()).unwrap();
    assert!(back.check_sources(&[]).is_err());
    // By lock alone, each .deb comes from its own repository.
    let c2 = cache("sources-by-lock");
    let paths = fetch::fetch_locked(&http, &back, None, &c2, 4).unwrap();
    for (p, path) in back.packages.iter().zip(&paths) {
        assert_eq!(sha256_file(path).unwrap(), p.sha256, "{}", p.name);
    }
    // Without the extra source, `only-extra` is nowhere.
    from.sources.clear();
    let e = debian::resolve_from_mirror(&http, &from, &requested, &c, &ReleaseOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("only-extra"), "{e}");
    // The extra source verified with the archive key (not its own) is refused.
    from.sources.push(debian::ExtraSource {
        uri: format!("{}extra", f.mirror),
        suite: "stable".into(),
        components: vec!["main".into()],
        keyring: f.keyring.clone(),
    });
    let e = debian::resolve_from_mirror(&http, &from, &requested, &c, &ReleaseOptions::default())
        .unwrap_err();
    assert!(
        matches!(
            e,
            debian::DebianError::Release(ReleaseError::BadSignature { .. })
        ),
        "{e}"
    );
}

#[test]
fn variants() {
    let u = universe();
    let minbase = resolve::resolve(&u, Variant::Minbase, &[]).unwrap();
    assert_eq!(names(&minbase), ["apt", "base-a", "libx"]);
    let essential = resolve::resolve(&u, Variant::Essential, &[]).unwrap();
    assert_eq!(names(&essential), ["base-a", "libx"]);
    assert!(resolve::resolve(&u, Variant::Custom, &[])
        .unwrap()
        .packages
        .is_empty());
    assert!(matches!(
        "bogus".parse::<Variant>(),
        Err(ResolveError::UnknownVariant(_))
    ));
}

fn unsat(u: &Universe, req: &[&str]) -> String {
    match resolve::resolve(u, Variant::Custom, &strs(req)) {
        Err(e @ ResolveError::Unsatisfiable { .. }) => {
            assert!(e.is_user_error(), "{e}");
            e.to_string()
        }
        other => panic!("expected unsatisfiable for {req:?}, got {other:?}"),
    }
}

#[test]
fn resolver_cases() {
    let u = universe();
    let ok = |req: &[&str]| names(&resolve::resolve(&u, Variant::Custom, &strs(req)).unwrap());

    // Highest version wins (epoch 1:0.1 > 1.5), foreign architectures ignored.
    let r = resolve::resolve(&u, Variant::Custom, &strs(&["multi"])).unwrap();
    assert_eq!(r.packages[0].version.to_string(), "1:0.1");
    assert!(u.get("foreign-arch").is_none());
    // Pre-Depends are followed.
    assert_eq!(ok(&["pre"]), ["multi", "pre"]);
    // First satisfiable alternative.
    assert_eq!(ok(&["alt-user"]), ["alt-user", "libx"]);
    // Already-selected alternative preferred over the first one.
    assert_eq!(
        ok(&["app", "prefer-selected"]),
        [
            "app",
            "exim-fake",
            "libx",
            "prefer-selected",
            "python3-fake"
        ]
    );
    assert_eq!(
        ok(&["prefer-selected"]),
        ["postfix-fake", "prefer-selected"]
    );
    // Versioned dependency on a virtual: only the versioned Provides counts.
    assert_eq!(ok(&["versioned-virt"]), ["mawk-fake", "versioned-virt"]);
    // Unversioned virtual with several providers: highest Priority (exim-fake: standard).
    assert_eq!(ok(&["mail-transport-agent"]), ["exim-fake"]);
    // Version constraints on requests.
    assert_eq!(ok(&["multi (>= 1:0)"]), ["multi"]);

    let e = unsat(&u, &["needs-new"]);
    assert_eq!(
        e,
        "unsatisfiable dependency: recipe -> needs-new -> libx (>= 2.0): only libx 1.2 available in imgtest main amd64"
    );
    let e = unsat(&u, &["missing-dep"]);
    assert!(
        e.contains(
            "recipe -> missing-dep -> nonexistent: no package or provider named nonexistent"
        ),
        "{e}"
    );
    let e = unsat(&u, &["needs-final"]);
    assert!(
        e.contains("tilde (>= 1.0): only tilde 1.0~rc1 available"),
        "{e}"
    );
    // `:any` needs Multi-Arch: allowed; libx is Multi-Arch: same.
    let e = unsat(&u, &["tool-any-bad"]);
    assert!(e.contains("tool-any-bad -> libx:any"), "{e}");
    let e = unsat(&u, &["no-such-package"]);
    assert!(
        e.starts_with("unsatisfiable dependency: recipe -> no-such-package"),
        "{e}"
    );
    assert!(matches!(
        resolve::resolve(&u, Variant::Custom, &strs(&["bad (>>"])),
        Err(ResolveError::BadRequest { .. })
    ));

    // Conflicts / Breaks.
    let e = unsat(&u, &["libx", "conflicter"]);
    assert!(e.contains("recipe -> conflicter: conflicter 1 would conflict (conflicter Conflicts: libx, hits libx 1.2)"), "{e}");
    let e = unsat(&u, &["app", "breaker"]);
    assert!(
        e.contains("breaker 1 would conflict (breaker Breaks: app (<< 3), hits app 2.0)"),
        "{e}"
    );
    // libx is pulled in (as a dependency) after conflicter was chosen.
    let e = unsat(&u, &["base-a", "conflicter"]);
    assert!(
        e.contains("recipe -> base-a -> libx (>= 1.0)") && e.contains("would conflict"),
        "{e}"
    );
}

#[test]
fn tampered_deb_is_rejected() {
    let f = fixture();
    let u = universe();
    let r = resolve::resolve(&u, Variant::Custom, &strs(&["victim"])).unwrap();
    let req = from(f, "custom").request(&strs(&["victim"]));
    let rel = release::fetch_release(
        &Http::new(),
        &f.mirror,
        SUITE,
        &f.keyring,
        &ReleaseOptions::default(),
    )
    .unwrap();
    let lock = lock::lock_from_resolution(&req, &rel, &r);
    let c = cache("tampered");
    let err = fetch::fetch_debs(&Http::new(), &f.mirror, &lock.packages, &c, 2).unwrap_err();
    let FetchError::HashMismatch(m) = &err else {
        panic!("expected hash mismatch, got {err:?}")
    };
    assert_eq!(m.package, "victim");
    assert_eq!(m.expected, lock.packages[0].sha256);
    assert_ne!(m.found, m.expected);
    assert!(
        err.to_string().contains("victim 1.0: hash mismatch"),
        "{err}"
    );
    assert!(
        !err.is_user_error(),
        "a tampered mirror is not the user's mistake"
    );
    assert!(
        c.get(&m.expected).is_none(),
        "a bad blob must not enter the cache"
    );
    // A lock whose digest is not a digest never becomes a path.
    let mut bad = lock.packages.clone();
    bad[0].sha256 = "../../escape".into();
    let err = fetch::fetch_debs(&Http::new(), &f.mirror, &bad, &c, 2).unwrap_err();
    assert!(matches!(err, FetchError::BadDigest { .. }), "{err}");
    assert!(err.is_user_error(), "a corrupt lock is the user's to fix");
    assert!(
        fs_err::read_dir(c.staging_dir()).unwrap().next().is_none(),
        "staging not cleaned"
    );
}

#[test]
fn signatures() {
    let f = fixture();
    let http = Http::new();
    let opts = ReleaseOptions::default();
    // Unknown key.
    let err = release::fetch_release(&http, &f.mirror, SUITE, &f.other_keyring, &opts).unwrap_err();
    assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err}");
    assert!(err.is_user_error(), "{err}");
    // Tampered signed text.
    let text =
        fs_err::read_to_string(f.root.join(format!("repo/dists/{SUITE}/InRelease"))).unwrap();
    let tampered = text.replace("Origin: imgbuild-test", "Origin: imgbuild-evil");
    assert_ne!(text, tampered);
    let err = release::verify_and_parse("x", SUITE, &tampered, &f.keyring, &opts).unwrap_err();
    assert!(matches!(err, ReleaseError::BadSignature { .. }), "{err}");
    // Unsigned.
    let err = release::verify_and_parse("x", SUITE, "Origin: x\n", &f.keyring, &opts).unwrap_err();
    assert!(matches!(err, ReleaseError::NotSigned { .. }), "{err}");
    assert!(err.is_user_error(), "{err}");
    // Good signature, but another suite was requested.
    let err = release::verify_and_parse("x", "bookworm", &text, &f.keyring, &opts).unwrap_err();
    assert!(matches!(err, ReleaseError::WrongSuite { .. }), "{err}");
    // Suite name (not only codename) is accepted.
    release::verify_and_parse("x", &format!("testing-{SUITE}"), &text, &f.keyring, &opts).unwrap();
    // Missing keyring names the package to install.
    let err = release::fetch_release(
        &http,
        &f.mirror,
        SUITE,
        Path::new("/nonexistent.gpg"),
        &opts,
    )
    .unwrap_err();
    assert!(err.to_string().contains("debian-archive-keyring"), "{err}");
    assert!(err.is_user_error(), "{err}");
    // Valid-Until in the past: refused unless allowed (snapshots).
    let err = release::fetch_release(&http, &f.mirror, "expired", &f.keyring, &opts).unwrap_err();
    assert!(matches!(err, ReleaseError::Expired { .. }), "{err}");
    let snapshot = ReleaseOptions {
        allow_expired: true,
    };
    let rel = release::fetch_release(&http, &f.mirror, "expired", &f.keyring, &snapshot).unwrap();
    assert_eq!(
        rel.valid_until.as_deref(),
        Some("Sat, 01 Jan 2000 00:00:00 UTC")
    );
    // Unknown suite on the mirror.
    let err = release::fetch_release(&http, &f.mirror, "nosuch", &f.keyring, &opts).unwrap_err();
    assert!(
        err.to_string().contains("fetching the signed Release"),
        "{err}"
    );
    assert!(
        err.is_user_error(),
        "a 404 means a wrong suite or mirror URL: {err}"
    );
}

#[test]
fn packages_index_checked_against_release() {
    let f = fixture();
    let http = Http::new();
    let mut rel = release::fetch_release(
        &http,
        &f.mirror,
        SUITE,
        &f.keyring,
        &ReleaseOptions::default(),
    )
    .unwrap();
    // Pretend the signed Release listed another digest for the index.
    let e = rel.files.get_mut("main/binary-amd64/Packages.gz").unwrap();
    e.sha256 = "0".repeat(64);
    let err = index::fetch_packages(
        &http,
        &f.mirror,
        SUITE,
        &rel,
        "main",
        "amd64",
        &cache("idx"),
    )
    .unwrap_err();
    assert!(matches!(err, index::IndexError::Mismatch { .. }), "{err}");
    assert!(
        !err.is_user_error(),
        "an inconsistent mirror is not the user's mistake"
    );
    let err = index::fetch_packages(
        &http,
        &f.mirror,
        SUITE,
        &rel,
        "contrib",
        "amd64",
        &cache("idx2"),
    )
    .unwrap_err();
    assert!(
        matches!(err, index::IndexError::NotInRelease { .. }),
        "{err}"
    );
}

#[test]
fn an_unreachable_mirror_is_not_the_users_mistake() {
    // Nothing listens on the discard port: the connection is refused (after the retries).
    let err = release::fetch_release(
        &Http::new(),
        "http://127.0.0.1:9/debian",
        SUITE,
        Path::new(release::DEFAULT_KEYRING),
        &ReleaseOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ReleaseError::Fetch(_)), "{err}");
    assert!(!err.is_user_error(), "{err}");
    let err = imgbuild_debian::DebianError::from(err);
    assert!(!err.is_user_error(), "{err}");
}

/// Serves `dir` on loopback until dropped.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Served {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/serve.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}; install the Debian package python3"));
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().parse().expect("serve.py printed no port");
    Served {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

#[test]
fn a_deb_gone_from_the_mirror_is_fetched_from_the_snapshot_at_the_release_date() {
    let f = fixture();
    let http = Http::new();
    let from = from(f, "minbase");
    let r = debian::resolve_from_mirror(
        &http,
        &from,
        &strs(&["app"]),
        &cache("snapshot-resolve"),
        &ReleaseOptions::default(),
    )
    .unwrap();
    let lock = r.lock;
    let source = lock.source.as_ref().unwrap();
    assert_eq!(source.release_date, "Wed, 25 Nov 2026 10:00:00 UTC");
    let pkg = |name: &str| {
        lock.packages
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .clone()
    };
    let (libx, apt) = (pkg("libx"), pkg("apt"));

    // A mirror that lost libx and apt since the lock was made ...
    let work = f.root.join("snapshot-test");
    let _ = fs_err::remove_dir_all(&work);
    let mirror_dir = work.join("mirror");
    for p in &lock.packages {
        if p.name != "libx" && p.name != "apt" {
            let to = mirror_dir.join(&p.filename);
            fs_err::create_dir_all(to.parent().unwrap()).unwrap();
            fs_err::copy(f.root.join("repo").join(&p.filename), to).unwrap();
        }
    }
    // ... and a snapshot server with libx as locked and apt with other bytes, at the
    // Release date.
    let at = work.join("snapshot/archive/debian/20261125T100000Z");
    for (p, tamper) in [(&libx, false), (&apt, true)] {
        let mut bytes = fs_err::read(f.root.join("repo").join(&p.filename)).unwrap();
        if tamper {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
        }
        let to = at.join(&p.filename);
        fs_err::create_dir_all(to.parent().unwrap()).unwrap();
        fs_err::write(to, bytes).unwrap();
    }
    let mirror = serve(&mirror_dir);
    let snapshot_server = serve(&work.join("snapshot"));
    let snapshot = fetch::Snapshot {
        url: snapshot_server.url.clone(),
        release_date: source.release_date.clone(),
    };

    // Without the snapshot server the lock is dead.
    let c = cache("snapshot-fetch");
    let without_apt: Vec<_> = lock
        .packages
        .iter()
        .filter(|p| p.name != "apt")
        .cloned()
        .collect();
    let err = fetch::fetch_debs(&http, &mirror.url, &without_apt, &c, 2).unwrap_err();
    assert!(
        matches!(&err, FetchError::Download { package, source, .. } if package == "libx" && source.is_not_found()),
        "{err}"
    );
    // With it, libx comes from the snapshot, checked against the locked hash.
    let paths =
        fetch::fetch_debs_or_snapshot(&http, &mirror.url, Some(&snapshot), &without_apt, &c, 2)
            .unwrap();
    for (p, path) in without_apt.iter().zip(&paths) {
        assert_eq!(sha256_file(path).unwrap(), p.sha256, "{}", p.name);
    }
    assert!(c.get(&libx.sha256).is_some());
    // A snapshot file with other bytes is refused and never enters the cache.
    let err = fetch::fetch_debs_or_snapshot(
        &http,
        &mirror.url,
        Some(&snapshot),
        std::slice::from_ref(&apt),
        &c,
        1,
    )
    .unwrap_err();
    let FetchError::HashMismatch(m) = &err else {
        panic!("expected a hash mismatch, got {err:?}")
    };
    assert!(
        m.url.starts_with(&format!(
            "{}/archive/debian/20261125T100000Z/pool/",
            snapshot_server.url
        )),
        "{err}"
    );
    assert!(c.get(&apt.sha256).is_none());
    // A snapshot server that lacks the file too: the error names both.
    let elsewhere = fetch::Snapshot {
        release_date: "Thu, 26 Nov 2026 10:00:00 UTC".into(),
        ..snapshot
    };
    let mut gone = pkg("python3-fake");
    gone.filename = "pool/main/gone_1_amd64.deb".into();
    let empty = cache("snapshot-empty");
    let err =
        fetch::fetch_debs_or_snapshot(&http, &mirror.url, Some(&elsewhere), &[gone], &empty, 1)
            .unwrap_err();
    assert!(matches!(err, FetchError::Snapshot { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("is gone from the mirror") && text.contains("20261126T100000Z"),
        "{text}"
    );
}
