//! Tar correctness against two other implementations: every tar imgbuild writes (the
//! imported base layer, a `copy` layer, the rootfs export) is extracted with GNU tar and
//! with bsdtar and the trees compared. Covers long paths whose ustar split lands on `/`, a
//! deep `node_modules`-like tree, hard links whose target a later layer replaces, and GNU
//! and PAX sparse files in a rootfs tarball (expanded; a malformed sparse map is refused).

use crate::common::{build_json, imgbuild, require_tool, run_ok};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn require_tars() {
    require_tool("tar", "tar");
    require_tool("bsdtar", "libarchive-tools");
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// `type mode nlink path [-> target] [sha256]` for every entry, sorted.
fn snapshot(root: &Path) -> Vec<String> {
    let out = run_ok(
        Command::new("find")
            .arg(".")
            .arg("-mindepth")
            .arg("1")
            .arg("-printf")
            .arg("%y %m %n %P\t%l\n")
            .current_dir(root),
    );
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (head, link) = l.split_once('\t').unwrap_or((l, ""));
            let path = head.splitn(4, ' ').nth(3).unwrap_or("");
            let mut line = format!("{head} -> {link}");
            if head.starts_with("f ") {
                let bytes = fs_err::read(root.join(path)).expect("file");
                line.push(' ');
                line.push_str(&sha256(&bytes));
            }
            line
        })
        .collect();
    lines.sort();
    lines
}

/// Extracts `archive` with GNU tar and with bsdtar under `dir`; asserts both give the same
/// tree and returns the GNU one.
fn extract_with_both(archive: &Path, dir: &Path) -> PathBuf {
    let gnu = dir.join("gnu");
    let bsd = dir.join("bsd");
    fs_err::create_dir_all(&gnu).expect("mkdir");
    fs_err::create_dir_all(&bsd).expect("mkdir");
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&gnu),
    );
    run_ok(
        Command::new("bsdtar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&bsd),
    );
    assert_eq!(
        snapshot(&gnu),
        snapshot(&bsd),
        "GNU tar and bsdtar extract {} differently",
        archive.display()
    );
    gnu
}

/// A path of `len` bytes under `top` whose byte `len - 99` (where a ustar name field of
/// 99 bytes would start) is `/`.
fn path_with_slash_at_split(top: &str, len: usize) -> String {
    let last = "f".repeat(98);
    let mut dir = top.to_owned();
    let mut i = 0;
    while dir.len() + 1 + last.len() < len {
        let room = len - dir.len() - 1 - last.len();
        let part = (room - 1).min(40);
        if part == 0 {
            dir.push('x');
            continue;
        }
        dir.push('/');
        dir.push_str(&format!("{}", (b'a' + (i % 26) as u8) as char).repeat(part));
        i += 1;
    }
    let path = format!("{dir}/{last}");
    assert_eq!(path.len(), len);
    assert_eq!(path.as_bytes()[len - 99], b'/');
    path
}

fn write_file(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(path, content).expect("write");
}

#[test]
fn exports_with_long_paths_deep_trees_and_replaced_link_targets_extract_alike_everywhere() {
    require_tars();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = tmp.path().join("base");
    let long200 = path_with_slash_at_split("long", 200);
    let long300 = path_with_slash_at_split("longer", 300);
    write_file(&base, &long200, "two hundred\n");
    write_file(&base, &long300, "three hundred\n");
    // Hard links: `hl/a/target` is replaced by a later layer, so its other name must keep
    // the old bytes; `hl/c/one` and `hl/d/two` stay one inode.
    write_file(&base, "hl/a/target", "old\n");
    write_file(&base, "hl/c/one", "pair\n");
    fs_err::create_dir_all(base.join("hl/b")).expect("mkdir");
    fs_err::create_dir_all(base.join("hl/d")).expect("mkdir");
    fs_err::hard_link(base.join("hl/a/target"), base.join("hl/b/link")).expect("link");
    fs_err::hard_link(base.join("hl/c/one"), base.join("hl/d/two")).expect("link");
    let base_tar = tmp.path().join("base.tar");
    run_ok(
        Command::new("tar")
            .args(["--sort=name", "--format=gnu", "-cf"])
            .arg(&base_tar)
            .arg("-C")
            .arg(&base)
            .arg("."),
    );

    // A node_modules-like tree, copied from the build context.
    let ctx = tmp.path().join("ctx");
    let mut deep = String::from("node_modules");
    let mut expected_modules = 0;
    for level in 0..7 {
        deep.push_str(&format!(
            "/@scope-number-{level}/package-with-a-rather-long-name-{level}"
        ));
        for file in ["package.json", "lib/index.js", "lib/util/helpers.js"] {
            write_file(&ctx, &format!("{deep}/{file}"), &format!("{deep} {file}\n"));
            expected_modules += 1;
        }
        deep.push_str("/node_modules");
    }
    assert!(deep.len() > 300, "the tree reaches past ustar's 255 bytes");

    let recipe = ctx.join("app.toml");
    fs_err::copy(&base_tar, ctx.join("base.tar")).expect("copy");
    fs_err::write(
        &recipe,
        "[image]\nname = \"app\"\ntags = [\"1\"]\n[from]\nrootfs = \"base.tar\"\n\
         [[step]]\ncopy = \"node_modules\"\nto = \"/app/node_modules\"\n\
         [[step]]\nwrite = \"/hl/a/target\"\ncontent = \"new\\n\"\n",
    )
    .expect("recipe");
    let out = tmp.path().join("out");
    let report = build_json(
        &recipe,
        &tmp.path().join("store"),
        &out,
        &[
            "--format",
            "tar",
            "--format",
            "oci",
            "--format",
            "oci-archive",
            "--format",
            "docker-archive",
        ],
    );

    // The rootfs export.
    let root = extract_with_both(&out.join("app.rootfs.tar"), &tmp.path().join("rootfs"));
    let read = |rel: &str| fs_err::read_to_string(root.join(rel)).expect("file");
    assert_eq!(read(&long200), "two hundred\n");
    assert_eq!(read(&long300), "three hundred\n");
    assert_eq!(read("hl/a/target"), "new\n");
    assert_eq!(
        read("hl/b/link"),
        "old\n",
        "the link keeps the replaced inode"
    );
    assert_eq!(read("hl/d/two"), "pair\n");
    let nlink = |rel: &str| {
        use std::os::unix::fs::MetadataExt;
        fs_err::metadata(root.join(rel)).expect("stat").nlink()
    };
    assert_eq!((nlink("hl/c/one"), nlink("hl/d/two")), (2, 2));
    assert_eq!((nlink("hl/a/target"), nlink("hl/b/link")), (1, 1));
    let modules = snapshot(&root.join("app"))
        .iter()
        .filter(|l| l.starts_with("f "))
        .count();
    assert_eq!(modules, expected_modules);

    // Every layer of the OCI layout.
    let manifest: Value = serde_json::from_slice(
        &fs_err::read(
            out.join("app.oci/blobs/sha256")
                .join(&report["digest"].as_str().expect("digest")[7..]),
        )
        .expect("manifest"),
    )
    .expect("json");
    for (i, layer) in manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .enumerate()
    {
        let blob = out
            .join("app.oci/blobs/sha256")
            .join(&layer["digest"].as_str().expect("digest")[7..]);
        extract_with_both(&blob, &tmp.path().join(format!("layer-{i}")));
    }

    // The archives, and the layer tars inside the docker-archive.
    extract_with_both(&out.join("app.oci.tar"), &tmp.path().join("oci-archive"));
    let docker = extract_with_both(&out.join("app.docker.tar"), &tmp.path().join("docker"));
    let listing: Value =
        serde_json::from_slice(&fs_err::read(docker.join("manifest.json")).expect("manifest.json"))
            .expect("json");
    let layers = listing[0]["Layers"].as_array().expect("Layers");
    assert_eq!(layers.len(), 3);
    for (i, layer) in layers.iter().enumerate() {
        let tar = docker.join(layer.as_str().expect("layer path"));
        extract_with_both(&tar, &tmp.path().join(format!("docker-layer-{i}")));
    }
}

/// A 3 MiB file with data at 1 MiB and at its end, holes elsewhere.
fn sparse_tree(dir: &Path) -> Vec<u8> {
    fs_err::create_dir_all(dir).expect("mkdir");
    let path = dir.join("sparse.img");
    let file = fs_err::File::create(&path).expect("create");
    file.set_len(3 << 20).expect("truncate");
    drop(file);
    for (offset, data) in [
        (1u64 << 20, b"middle".as_slice()),
        ((3 << 20) - 4, b"end\n"),
    ] {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs_err::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        f.seek(SeekFrom::Start(offset)).expect("seek");
        f.write_all(data).expect("write");
    }
    fs_err::read(&path).expect("read")
}

fn sparse_recipe(dir: &Path, format: &str) -> PathBuf {
    let content = sparse_tree(&dir.join("tree"));
    assert_eq!(content.len(), 3 << 20);
    run_ok(
        Command::new("tar")
            .arg("--sparse")
            .arg(format!("--format={format}"))
            .arg("-cf")
            .arg(dir.join("base.tar"))
            .arg("-C")
            .arg(dir.join("tree"))
            .arg("."),
    );
    let recipe = dir.join("sparse.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"sparse\"\ntags = [\"1\"]\n[from]\nrootfs = \"base.tar\"\n",
    )
    .expect("recipe");
    recipe
}

#[test]
fn gnu_and_pax_sparse_files_in_a_rootfs_tarball_are_imported_with_their_holes_filled() {
    require_tars();
    let tmp = tempfile::tempdir().expect("tempdir");
    for format in ["gnu", "pax"] {
        let dir = tmp.path().join(format);
        let recipe = sparse_recipe(&dir, format);
        let out = tmp.path().join(format!("out-{format}"));
        build_json(
            &recipe,
            &tmp.path().join("store"),
            &out,
            &["--format", "tar"],
        );
        let root = extract_with_both(
            &out.join("sparse.rootfs.tar"),
            &tmp.path().join(format!("x-{format}")),
        );
        let paths = snapshot(&root);
        assert_eq!(
            paths.len(),
            1,
            "{format}: only the file, by its real name: {paths:?}"
        );
        assert_eq!(
            fs_err::read(root.join("sparse.img")).expect("file"),
            fs_err::read(dir.join("tree/sparse.img")).expect("file"),
            "{format}"
        );
    }
}

#[test]
fn a_malformed_pax_sparse_map_is_refused_naming_the_tarball_and_the_entry() {
    require_tars();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("pax");
    let recipe = sparse_recipe(&dir, "pax");
    // The map starts the data block after the header named `GNUSparseFile.N/...`: its
    // chunk count becomes a letter.
    let tar = dir.join("base.tar");
    let mut bytes = fs_err::read(&tar).expect("tar");
    let name = bytes
        .windows(13)
        .position(|w| w == b"GNUSparseFile")
        .expect("a PAX sparse 1.0 header");
    let at = name / 512 * 512 + 512;
    assert!(bytes[at].is_ascii_digit(), "the map starts a block");
    bytes[at] = b'x';
    fs_err::write(&tar, bytes).expect("write");
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .expect("imgbuild runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&tar.display().to_string())
            && stderr.contains("sparse.img")
            && stderr.contains("malformed sparse map"),
        "{stderr}"
    );
    assert!(!tmp.path().join("out/sparse.oci").exists());
}
