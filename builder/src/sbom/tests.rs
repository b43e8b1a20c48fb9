use imgbuild_debian::lock::{LockExtraSource, LockSource};
use imgbuild_debian::{DebianRequest, LockedPackage, Lockfile, SourceRequest};
use imgbuild_store::Digest;
use serde_json::Value;

use super::{cyclonedx, spdx, BaseImage, FileEntry, ImageContents, InstalledPackage, Sbom};

const EPOCH: u64 = 1_700_000_000; // 2023-11-14T22:13:20Z

fn pkg(name: &str, version: &str, arch: &str, pool: &str, source: Option<&str>) -> LockedPackage {
    let sha = Digest::of(format!("{name}_{version}_{arch}").as_bytes()).hex();
    LockedPackage {
        name: name.to_owned(),
        version: version.to_owned(),
        architecture: arch.to_owned(),
        sha256: sha,
        size: 1000,
        filename: format!("pool/main/{pool}/{name}_{version}_{arch}.deb"),
        source: source.map(str::to_owned),
    }
}

fn lock() -> Lockfile {
    let mut lock = Lockfile::empty();
    lock.source = Some(LockSource {
        request: DebianRequest {
            mirror: "http://deb.debian.org/debian/".to_owned(),
            suite: "bookworm".to_owned(),
            components: vec!["main".to_owned()],
            architecture: "amd64".to_owned(),
            variant: "minbase".to_owned(),
            requested: vec!["apt".to_owned()],
        },
        release_date: "Sat, 11 Jul 2026 10:16:37 UTC".to_owned(),
        inrelease_sha256: "0".repeat(64),
        keyring_sha256: None,
    });
    lock.extra_sources = vec![LockExtraSource {
        request: SourceRequest {
            name: "security".to_owned(),
            uri: "http://deb.debian.org/debian-security".to_owned(),
            suite: "bookworm-security".to_owned(),
            components: vec!["main".to_owned()],
        },
        release_date: "Sat, 11 Jul 2026 10:16:37 UTC".to_owned(),
        inrelease_sha256: "1".repeat(64),
        keyring_sha256: "2".repeat(64),
    }];
    lock.packages = vec![
        pkg("adduser", "3.134", "all", "a/adduser", None),
        pkg("apt", "2.6.1", "amd64", "a/apt", None),
        pkg(
            "libc6",
            "2.36-9+deb12u13",
            "amd64",
            "g/glibc",
            Some("security"),
        ),
        pkg("libstdc++6", "12.2.0-14+deb12u1", "amd64", "g/gcc-12", None),
    ];
    lock
}

fn digest() -> Digest {
    Digest::of(b"an image manifest")
}

fn sbom() -> Sbom {
    Sbom::from_lock("debian-vm", digest(), &lock(), EPOCH)
}

/// An SBOM from an image's contents: two packages the lock pins (one with a license that
/// is not on the SPDX list), one it does not, a file and a registry base.
fn image_sbom() -> Sbom {
    let installed =
        |name: &str, version: &str, arch: &str, source: Option<&str>| InstalledPackage {
            name: name.to_owned(),
            architecture: arch.to_owned(),
            version: version.to_owned(),
            source: source.map(str::to_owned),
        };
    let mut licenses = std::collections::BTreeMap::new();
    licenses.insert(
        "libc6".to_owned(),
        super::license::declared(
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
             Files: *\nCopyright: x\nLicense: LGPL-2.1+ and public-domain\n",
        )
        .unwrap(),
    );
    let base_digest = Digest::of(b"a base manifest");
    let contents = ImageContents {
        installed: vec![
            installed("libc6", "2.36-9+deb12u13", "amd64", Some("glibc")),
            installed("apt", "2.6.1", "amd64", None),
            installed("from-a-run-step", "1.0", "amd64", None),
        ],
        licenses,
        distro: Some("debian-12".to_owned()),
        files: vec![FileEntry {
            path: "/usr/local/bin/hello".to_owned(),
            sha256: Digest::of(b"hello").hex(),
            sha1: "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d".to_owned(),
            size: 5,
        }],
        base: Some(BaseImage {
            name: "registry.example/library/debian:bookworm".to_owned(),
            purl: Some(super::registry_purl(
                "registry.example/library/debian",
                &base_digest,
            )),
            digest: base_digest,
            is_image: true,
        }),
    };
    Sbom::from_image("app", digest(), contents, Some(&lock()), EPOCH)
}

#[test]
fn model_from_image_contents() {
    let s = image_sbom();
    let names: Vec<&str> = s.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["apt", "from-a-run-step", "libc6"]);
    let libc = &s.packages[2];
    assert!(libc.deb.is_some());
    assert_eq!(libc.source_package.as_deref(), Some("glibc"));
    assert_eq!(
        libc.license.as_ref().unwrap().expression,
        "LGPL-2.1-or-later AND LicenseRef-public-domain"
    );
    let unlocked = &s.packages[1];
    assert!(unlocked.deb.is_none() && unlocked.download_location.is_none());
    assert_eq!(
        unlocked.purl(),
        "pkg:deb/debian/from-a-run-step@1.0?arch=amd64&distro=debian-12"
    );
    let doc = json(&spdx::render(&s));
    assert_eq!(doc["files"][0]["fileName"], "./usr/local/bin/hello");
    assert_eq!(doc["files"][0]["checksums"][0]["algorithm"], "SHA1");
    assert_eq!(
        doc["hasExtractedLicensingInfos"][0]["licenseId"],
        "LicenseRef-public-domain"
    );
    let base = doc["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == spdx::BASE_ID)
        .unwrap();
    assert_eq!(base["primaryPackagePurpose"], "CONTAINER");
    let rels = doc["relationships"].as_array().unwrap();
    assert!(rels
        .iter()
        .any(|r| r["relationshipType"] == "DESCENDANT_OF"
            && r["relatedSpdxElement"] == spdx::BASE_ID));
    let bom = json(&cyclonedx::render(&s));
    let ancestors = &bom["metadata"]["component"]["pedigree"]["ancestors"];
    assert!(ancestors[0]["purl"]
        .as_str()
        .unwrap()
        .contains("repository_url=registry.example%2Flibrary%2Fdebian"));
    let file = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "file")
        .unwrap();
    assert_eq!(file["name"], "/usr/local/bin/hello");
}

#[test]
fn image_sbom_passes_pyspdxtools() {
    assert_pyspdxtools_accepts("app", &spdx::render(&image_sbom()));
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("valid JSON")
}

#[test]
fn model_from_lock() {
    let s = sbom();
    assert_eq!(s.packages.len(), 4);
    let libc = s.packages.iter().find(|p| p.name == "libc6").unwrap();
    assert_eq!(libc.source_package.as_deref(), Some("glibc"));
    assert_eq!(
        libc.download_location.as_deref(),
        Some(
            "http://deb.debian.org/debian-security/pool/main/g/glibc/libc6_2.36-9+deb12u13_amd64.deb"
        )
    );
    assert_eq!(
        libc.purl(),
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u13?arch=amd64&distro=debian-12"
    );
    let apt = s.packages.iter().find(|p| p.name == "apt").unwrap();
    assert_eq!(
        apt.download_location.as_deref(),
        Some("http://deb.debian.org/debian/pool/main/a/apt/apt_2.6.1_amd64.deb")
    );
    assert_eq!(
        apt.purl(),
        "pkg:deb/debian/apt@2.6.1?arch=amd64&distro=debian-12"
    );
    let stdcxx = s.packages.iter().find(|p| p.name == "libstdc++6").unwrap();
    assert_eq!(
        stdcxx.purl(),
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
    );
    assert!(stdcxx
        .id()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    assert_eq!(
        s.image.purl(),
        format!("pkg:oci/debian-vm@sha256%3A{}", digest().hex())
    );
}

#[test]
fn spdx_has_the_required_fields() {
    let doc = json(&spdx::render(&sbom()));
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
    assert_eq!(doc["name"], "debian-vm");
    let ns = doc["documentNamespace"].as_str().unwrap();
    assert!(ns.starts_with("https://"), "{ns}");
    assert!(ns.contains(&digest().hex()), "{ns}");
    assert!(!ns.contains('#'), "{ns}");
    assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        doc["creationInfo"]["creators"][0],
        format!("Tool: imgbuild-{}", super::TOOL_VERSION)
    );

    let packages = doc["packages"].as_array().unwrap();
    assert_eq!(packages.len(), 5);
    let image = &packages[0];
    assert_eq!(image["SPDXID"], spdx::IMAGE_ID);
    assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
    assert_eq!(image["checksums"][0]["checksumValue"], digest().hex());
    let mut ids = std::collections::BTreeSet::new();
    for p in packages {
        let id = p["SPDXID"].as_str().unwrap();
        assert!(id.starts_with("SPDXRef-"), "{id}");
        assert!(ids.insert(id.to_owned()), "duplicate SPDXID {id}");
        for field in ["name", "versionInfo", "downloadLocation"] {
            assert!(p[field].is_string(), "{id} lacks {field}");
        }
        assert_eq!(p["filesAnalyzed"], false);
        assert_eq!(p["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(
            p["checksums"][0]["checksumValue"].as_str().unwrap().len(),
            64
        );
        let r = &p["externalRefs"][0];
        assert_eq!(r["referenceCategory"], "PACKAGE-MANAGER");
        assert_eq!(r["referenceType"], "purl");
        assert!(r["referenceLocator"].as_str().unwrap().starts_with("pkg:"));
    }
    let names: Vec<&str> = packages[1..]
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["adduser", "apt", "libc6", "libstdc++6"]);
    let apt = &packages[2];
    assert_eq!(apt["versionInfo"], "2.6.1");
    assert_eq!(
        apt["downloadLocation"],
        "http://deb.debian.org/debian/pool/main/a/apt/apt_2.6.1_amd64.deb"
    );
    assert_eq!(apt["sourceInfo"], "built package from: apt");

    let rels = doc["relationships"].as_array().unwrap();
    assert_eq!(rels.len(), 5);
    assert_eq!(rels[0]["spdxElementId"], "SPDXRef-DOCUMENT");
    assert_eq!(rels[0]["relationshipType"], "DESCRIBES");
    assert_eq!(rels[0]["relatedSpdxElement"], spdx::IMAGE_ID);
    for (r, p) in rels[1..].iter().zip(&packages[1..]) {
        assert_eq!(r["spdxElementId"], spdx::IMAGE_ID);
        assert_eq!(r["relationshipType"], "CONTAINS");
        assert_eq!(r["relatedSpdxElement"], p["SPDXID"]);
    }
}

#[test]
fn cyclonedx_has_the_required_fields() {
    let bom = json(&cyclonedx::render(&sbom()));
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["version"], 1);
    // The schema's pattern for serialNumber.
    let serial = bom["serialNumber"].as_str().unwrap();
    let uuid = serial.strip_prefix("urn:uuid:").unwrap();
    let groups: Vec<&str> = uuid.split('-').collect();
    assert_eq!(
        groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12]
    );
    assert!(uuid
        .chars()
        .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert!(('1'..='5').contains(&groups[2].chars().next().unwrap()));
    assert!("89ab".contains(groups[3].chars().next().unwrap()));

    assert_eq!(bom["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(
        bom["metadata"]["tools"]["components"][0]["name"],
        "imgbuild"
    );
    let image = &bom["metadata"]["component"];
    assert_eq!(image["type"], "container");
    assert_eq!(image["version"], digest().to_string());
    let components = bom["components"].as_array().unwrap();
    assert_eq!(components.len(), 4);
    for c in components {
        assert_eq!(c["type"], "library");
        assert_eq!(c["bom-ref"], c["purl"]);
        assert_eq!(c["hashes"][0]["alg"], "SHA-256");
    }
    assert_eq!(
        components[2]["purl"],
        "pkg:deb/debian/libc6@2.36-9%2Bdeb12u13?arch=amd64&distro=debian-12"
    );
    let deps = bom["dependencies"].as_array().unwrap();
    assert_eq!(deps.len(), 1);
    assert_eq!(deps[0]["ref"], image["bom-ref"]);
    assert_eq!(deps[0]["dependsOn"].as_array().unwrap().len(), 4);
}

#[test]
fn same_input_same_bytes_in_any_lock_order() {
    let a = sbom();
    let mut shuffled = lock();
    shuffled.packages.reverse();
    let b = Sbom::from_lock("debian-vm", digest(), &shuffled, EPOCH);
    assert_eq!(spdx::render(&a), spdx::render(&b));
    assert_eq!(cyclonedx::render(&a), cyclonedx::render(&b));
    assert_eq!(spdx::render(&a), spdx::render(&sbom()));

    // Another image or another time gives another document.
    let other = Sbom::from_lock("debian-vm", Digest::of(b"other"), &lock(), EPOCH);
    assert_ne!(spdx::render(&a), spdx::render(&other));
    assert_ne!(cyclonedx::render(&a), cyclonedx::render(&other));
    let later = Sbom::from_lock("debian-vm", digest(), &lock(), EPOCH + 1);
    assert_ne!(spdx::render(&a), spdx::render(&later));
}

#[test]
fn lock_without_debian_source() {
    let s = Sbom::from_lock("scratch", digest(), &Lockfile::empty(), 0);
    assert!(s.packages.is_empty());
    let doc = json(&spdx::render(&s));
    assert_eq!(doc["packages"].as_array().unwrap().len(), 1);
    assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:00Z");
    let bom = json(&cyclonedx::render(&s));
    assert!(bom["components"].as_array().unwrap().is_empty());
}

/// The SPDX project's own validator accepts the document. Needs `pyspdxtools`
/// (`pip install spdx-tools`); fails when it is missing.
#[test]
fn spdx_passes_pyspdxtools() {
    assert_pyspdxtools_accepts("debian-vm", &spdx::render(&sbom()));
}

/// Runs `pyspdxtools -i` on `doc`; panics with its output unless it accepts it.
fn assert_pyspdxtools_accepts(name: &str, doc: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{name}.spdx.json"));
    fs_err::write(&path, doc).unwrap();
    let out = match std::process::Command::new("pyspdxtools")
        .arg("-i")
        .arg(&path)
        .output()
    {
        Ok(out) => out,
        Err(e) => panic!(
            "cannot run pyspdxtools ({e}): install the SPDX validator with scripts/install-test-deps.sh"
        ),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pyspdxtools rejected {name} ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stdout.to_lowercase().contains("invalid") && !stderr.to_lowercase().contains("invalid"),
        "pyspdxtools on {name}:\n{stdout}\n{stderr}"
    );
}

/// Every shipped recipe's lock gives a document with one package per locked `.deb`, that
/// the SPDX validator accepts (real names like `libstdc++6` and versions with `+`, `~`
/// and epochs).
#[test]
fn shipped_locks_pass_pyspdxtools() {
    let recipes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../recipes");
    let mut seen = 0;
    for entry in fs_err::read_dir(&recipes).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("lock") {
            continue;
        }
        let lock = Lockfile::read(&path).unwrap();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        let s = Sbom::from_lock(&name, digest(), &lock, EPOCH);
        assert_eq!(s.packages.len(), lock.packages.len(), "{name}");
        assert!(s.packages.iter().all(|p| p.source_package.is_some()));
        assert_pyspdxtools_accepts(&name, &spdx::render(&s));
        seen += 1;
    }
    assert!(
        seen >= 3,
        "found only {seen} locks in {}",
        recipes.display()
    );
}

/// The CycloneDX document validates against the CycloneDX 1.6 JSON schema, with
/// `cyclonedx-python-lib`'s strict validator (installed by `scripts/install-test-deps.sh`
/// into the interpreter `imgbuild-test-python3`); fails when it is missing.
#[test]
fn cyclonedx_passes_the_1_6_schema() {
    const CHECK: &str = r#"
import sys
try:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
except ImportError as e:
    print(f"cannot import cyclonedx-python-lib ({e}): pip install 'cyclonedx-python-lib[json-validation]'")
    sys.exit(2)
error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read())
if error is not None:
    data = error.data
    print(getattr(data, "message", data), "at", getattr(data, "json_path", "?"))
    sys.exit(1)
"#;
    let dir = tempfile::tempdir().unwrap();
    for (name, s) in [
        ("debian-vm", sbom()),
        ("app", image_sbom()),
        (
            "scratch",
            Sbom::from_lock("scratch", digest(), &Lockfile::empty(), 0),
        ),
    ] {
        let path = dir.path().join(format!("{name}.cdx.json"));
        fs_err::write(&path, cyclonedx::render(&s)).unwrap();
        let out = std::process::Command::new("imgbuild-test-python3")
            .arg("-c")
            .arg(CHECK)
            .arg(&path)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run imgbuild-test-python3 ({e}): run scripts/install-test-deps.sh")
            });
        assert!(
            out.status.success(),
            "CycloneDX 1.6 schema check of {name} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
