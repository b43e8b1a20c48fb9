//! Untrusted base layers: a crafted layer pulled from a registry as a base, exported as a
//! rootfs tar and unpacked, never writes outside the unpack root.
//!
//! What imgbuild does with each hostile entry (see `store/src/tarball/merge.rs`):
//! - a path with `..` components: the whole layer is refused (the build fails and says so);
//! - an absolute path (`/abs/file`): made relative to the image root (`abs/file`);
//! - an entry below a symlink (`a -> /`, then `a/tmp/.../x`): dropped; the symlink is kept;
//! - a hard link to a file the image does not have (`/etc/passwd`): dropped.

use crate::common::{imgbuild, run_ok};
use crate::registry_support::Registry;
use std::path::Path;
use std::process::Command;

/// One ustar header block (plus the data, padded) with any name, unchecked.
fn tar_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, body: &[u8]) {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let mode = if kind == b'5' { "0000755" } else { "0000644" };
    h[100..107].copy_from_slice(mode.as_bytes());
    h[108..115].copy_from_slice(b"0000000");
    h[116..123].copy_from_slice(b"0000000");
    h[124..135].copy_from_slice(format!("{:011o}", body.len()).as_bytes());
    h[136..147].copy_from_slice(b"00000000000");
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes a one-layer OCI layout holding `layer` (an uncompressed tar) to `dir`.
fn layout_with_layer(dir: &Path, layer: &[u8]) {
    let blobs = dir.join("blobs/sha256");
    fs_err::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| {
        let hex = sha256_hex(bytes);
        fs_err::write(blobs.join(&hex), bytes).expect("blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_digest, layer_size) = put(layer);
    let config = format!(
        "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"{layer_digest}\"]}}}}"
    );
    let (config_digest, config_size) = put(config.as_bytes());
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\
         \"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{config_size}}},\
         \"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{layer_digest}\",\"size\":{layer_size}}}]}}"
    );
    let (manifest_digest, manifest_size) = put(manifest.as_bytes());
    fs_err::write(dir.join("oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}").expect("layout");
    fs_err::write(
        dir.join("index.json"),
        format!(
            "{{\"schemaVersion\":2,\"manifests\":[{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{manifest_digest}\",\"size\":{manifest_size}}}]}}"
        ),
    )
    .expect("index");
}

/// Pushes a crafted layer as `name:1` and returns a recipe building on it.
fn crafted_base(registry: &Registry, tmp: &Path, name: &str, layer: &[u8]) -> std::path::PathBuf {
    let layout = tmp.join(format!("{name}.oci"));
    layout_with_layer(&layout, layer);
    let target = format!("{}/{name}:1", registry.host());
    run_ok(
        imgbuild()
            .arg("push")
            .arg(&layout)
            .arg(&target)
            .arg("--store")
            .arg(tmp.join("store"))
            .args(registry.imgbuild_args()),
    );
    let recipe = tmp.join(format!("{name}.toml"));
    fs_err::write(
        &recipe,
        format!(
            "[image]\nname = \"{name}-derived\"\ntags = [\"1\"]\n[from]\nimage = \"{target}\"\n\
             [[step]]\nwrite = \"/etc/derived\"\ncontent = \"ok\\n\"\n"
        ),
    )
    .expect("recipe");
    recipe
}

#[test]
fn hostile_entries_in_a_pulled_base_never_land_outside_the_root() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = format!("imgbuild-escape-{}", std::process::id());
    let host_target = Path::new("/tmp").join(&marker);
    assert!(!host_target.exists());

    let mut layer = Vec::new();
    tar_entry(&mut layer, "abs/", b'5', "", b"");
    tar_entry(&mut layer, "/abs/file", b'0', "", b"absolute\n");
    tar_entry(&mut layer, "a", b'2', "/", b"");
    tar_entry(
        &mut layer,
        &format!("a/tmp/{marker}/x"),
        b'0',
        "",
        b"through the link\n",
    );
    tar_entry(&mut layer, "passwd-link", b'1', "/etc/passwd", b"");
    tar_entry(&mut layer, "plain", b'0', "", b"plain\n");
    layer.extend_from_slice(&[0u8; 1024]);
    let recipe = crafted_base(&registry, tmp.path(), "hostile", &layer);

    let out = tmp.path().join("out");
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(tmp.path().join("store"))
            .arg("-o")
            .arg(&out)
            .args(["--format", "tar"])
            .args(registry.imgbuild_args()),
    );
    let root = tmp.path().join("unpack/root");
    fs_err::create_dir_all(&root).expect("mkdir");
    run_ok(
        Command::new("tar")
            .arg("-xpf")
            .arg(out.join("hostile-derived.rootfs.tar"))
            .arg("-C")
            .arg(&root),
    );
    let listing = run_ok(
        Command::new("tar")
            .arg("-tvf")
            .arg(out.join("hostile-derived.rootfs.tar")),
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        !host_target.exists(),
        "an entry escaped through the symlink:\n{listing}"
    );
    assert!(
        !listing.contains(&marker),
        "the entry below the symlink is dropped:\n{listing}"
    );
    assert!(
        !listing.contains("passwd-link"),
        "the dangling hard link is dropped:\n{listing}"
    );
    assert_eq!(
        fs_err::read_to_string(root.join("abs/file")).expect("absolute path made relative"),
        "absolute\n"
    );
    assert_eq!(
        fs_err::read_link(root.join("a")).expect("symlink kept"),
        Path::new("/")
    );
    assert_eq!(
        fs_err::read_to_string(root.join("plain")).expect("plain"),
        "plain\n"
    );
    assert_eq!(
        fs_err::read_to_string(root.join("etc/derived")).expect("step"),
        "ok\n"
    );
    let outside: Vec<_> = fs_err::read_dir(tmp.path().join("unpack"))
        .expect("unpack dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(outside, ["root"], "nothing lands beside the root");
}

#[test]
fn a_pulled_base_with_dot_dot_entries_is_refused() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut layer = Vec::new();
    tar_entry(&mut layer, "../escape", b'0', "", b"out\n");
    layer.extend_from_slice(&[0u8; 1024]);
    let recipe = crafted_base(&registry, tmp.path(), "dotdot", &layer);
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(tmp.path().join("store"))
        .arg("-o")
        .arg(tmp.path().join("out"))
        .args(["--format", "tar"])
        .args(registry.imgbuild_args())
        .output()
        .expect("imgbuild runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("tar entry `../escape` climbs out of the image root; refusing the layer"),
        "{stderr}"
    );
    assert!(!tmp.path().join("escape").exists());
    assert!(!tmp.path().join("out/dotdot-derived.rootfs.tar").exists());
}
