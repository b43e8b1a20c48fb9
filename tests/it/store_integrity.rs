//! The store against local users, bitrot, concurrency, killed builds and full disks:
//! - unpacked untrusted layers (setuid shells, device nodes) are out of other users' reach;
//! - a flipped byte in a stored blob fails every export and the push, naming the blob;
//! - many builds on a brand-new store, with `gc` beside them, all succeed;
//! - a dead writer's temp blob, and a killed run step's scratch dir, are swept by the next build;
//! - a full store disk says so.

use crate::common::{imgbuild, repo, require_tool, run_ok};
use crate::registry_support::Registry;
use imgbuild_store::tarball::{EntryKind, EntryMeta, TarWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The uid/gid of `nobody` on Debian: a user that owns nothing in the store.
const NOBODY: &str = "65534";

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A rootfs whose busybox shell is setuid root, with a 0666 block device node beside it.
fn hostile_rootfs(path: &Path) {
    require_tool("busybox", "busybox-static");
    let busybox = fs_err::read("/bin/busybox").expect("read /bin/busybox");
    let mut w = TarWriter::new(fs_err::File::create(path).expect("create rootfs tar"));
    let mut add = |path: &str, kind: EntryKind, mode: u32, bytes: &[u8]| {
        let mut m = EntryMeta::new(path, kind, mode, 0);
        m.size = bytes.len() as u64;
        w.append(&m, &mut &bytes[..]).expect("tar entry");
    };
    for d in ["bin", "dev", "tmp", "etc"] {
        add(d, EntryKind::Dir, 0o755, b"");
    }
    add("bin/busybox", EntryKind::File, 0o755, &busybox);
    add("bin/sh", EntryKind::Symlink("busybox".into()), 0o777, b"");
    add("bin/suid-sh", EntryKind::File, 0o4755, &busybox);
    add("dev/hostdisk", EntryKind::BlockDevice(8, 0), 0o666, b"");
    w.finish().expect("finish tar");
}

/// Every path below `root` whose file name is `name` (walked as root).
fn find_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let out = run_ok(Command::new("find").arg(root).arg("-name").arg(name));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(PathBuf::from)
        .collect()
}

/// Runs the shell `script` (with `arg` as `$1`) as `nobody`, without supplementary groups or
/// capabilities. (`setpriv` itself execs its command before it has dropped everything, so
/// the store paths are only touched by the unprivileged shell.)
fn as_nobody(script: &str, arg: &str) -> Output {
    require_tool("setpriv", "util-linux");
    Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
            "/bin/sh",
            "-c",
            script,
            "sh",
            arg,
        ])
        .output()
        .expect("run setpriv")
}

#[test]
fn setuid_files_and_device_nodes_of_unpacked_layers_are_out_of_other_users_reach() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The test tree must be traversable by nobody, so EACCES can only come from the store.
    fs_err::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    hostile_rootfs(&tmp.path().join("rootfs.tar"));
    let recipe = tmp.path().join("hostile.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"hostile\"\n\n[from]\nrootfs = \"rootfs.tar\"\n\n\
         [[step]]\nrun = \"echo unpacked > /marker\"\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(tmp.path().join("out")),
    );
    assert_eq!(mode(&store), 0o700, "store root");
    for dir in ["v1", "v1/tmp", "v1/unpacked"] {
        assert_eq!(mode(&store.join(dir)), 0o700, "{dir}");
    }
    let unpacked = store.join("v1/unpacked");
    let shells = find_named(&unpacked, "suid-sh");
    assert!(
        !shells.is_empty(),
        "the run step unpacked the base layer below {}",
        unpacked.display()
    );
    // Where the device node is (or would be, if unpacking refuses device nodes): opening it
    // must fail on the way there, whatever is at the end.
    let devices: Vec<PathBuf> = shells
        .iter()
        .map(|shell| {
            shell
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .join("dev/hostdisk")
        })
        .collect();
    for shell in &shells {
        let shell = shell.to_str().unwrap();
        let out = as_nobody(r#""$1" -c "id -u""#, shell);
        assert!(!out.status.success(), "nobody ran {shell}: {out:?}");
        assert!(
            stderr(&out).contains("Permission denied"),
            "exec {shell} as nobody: {}",
            stderr(&out)
        );
    }
    for device in &devices {
        let device = device.to_str().unwrap();
        let out = as_nobody(r#"head -c 1 "$1""#, device);
        assert!(!out.status.success(), "nobody opened {device}: {out:?}");
        assert!(
            stderr(&out).contains("Permission denied"),
            "open {device} as nobody: {}",
            stderr(&out)
        );
    }

    // A store root someone opened up is closed again by the next open.
    fs_err::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    fs_err::set_permissions(&unpacked, std::fs::Permissions::from_mode(0o755)).unwrap();
    run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&unpacked), 0o700);
}

/// Builds `recipe` with `format` (and extra args); returns the output.
fn build(recipe: &Path, store: &Path, out: &Path, format: &str, extra: &[String]) -> Output {
    imgbuild()
        .arg("build")
        .arg(recipe)
        .arg("--store")
        .arg(store)
        .arg("-o")
        .arg(out)
        .args(["--format", format, "--json"])
        .args(extra)
        .output()
        .expect("run imgbuild build")
}

fn manifest_digest(out: &Output) -> String {
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("build --json");
    report["digest"].as_str().expect("digest").to_owned()
}

/// Flips one byte in the middle of a stored blob.
fn flip_a_byte(store: &Path, digest: &str) {
    let blob = store
        .join("v1/blobs/sha256")
        .join(&digest["sha256:".len()..]);
    fs_err::set_permissions(&blob, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = fs_err::read(&blob).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs_err::write(&blob, &bytes).unwrap();
}

#[test]
fn a_flipped_byte_fails_every_export_and_the_push_and_repair_restores_the_image() {
    let registry = Registry::plain();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let recipe = repo().join("recipes/hello.toml");
    let first = build(&recipe, &store, &tmp.path().join("out0"), "oci", &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let digest = manifest_digest(&first);
    let layout = tmp.path().join("out0/hello.oci");
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs_err::read(layout.join("blobs/sha256").join(&digest["sha256:".len()..])).unwrap(),
    )
    .unwrap();
    // The biggest layer (the copied app): the builder reads it too, before any export.
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // The config: only the exporters and the push read it.
    let config = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let target = format!("{}/team/hello:1.0", registry.host());
    // Gone, so that no export below can be answered by copying this output.
    fs_err::remove_dir_all(tmp.path().join("out0")).unwrap();

    for (round, blob) in [&layer, &config].into_iter().enumerate() {
        flip_a_byte(&store, blob);
        let check = |what: &str, out: &Output| {
            let text = stderr(out);
            assert_eq!(out.status.code(), Some(1), "{what}: {text}");
            assert!(text.contains(blob.as_str()), "{what} names {blob}: {text}");
            assert!(
                text.contains("imgbuild store verify --repair"),
                "{what} says what to do: {text}"
            );
        };
        for format in ["oci", "oci-archive", "docker-archive", "tar"] {
            let out_dir = tmp.path().join(format!("out-{round}-{format}"));
            let out = build(&recipe, &store, &out_dir, format, &[]);
            check(format, &out);
            let left: Vec<_> = fs_err::read_dir(&out_dir)
                .map(|d| d.map(|e| e.unwrap().file_name()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{format} left {left:?} in -o");
        }
        let push = imgbuild()
            .args(["push", "hello:1.0", &target, "--store"])
            .arg(&store)
            .args(registry.imgbuild_args())
            .output()
            .expect("run imgbuild push");
        check("push", &push);

        // Without --repair: exit 1 and one JSON object that names the broken blob.
        let found = imgbuild()
            .args(["store", "verify", "--json", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert_eq!(found.status.code(), Some(1), "{}", stderr(&found));
        let report: serde_json::Value =
            serde_json::from_slice(&found.stdout).expect("verify --json prints one JSON object");
        assert!(
            report.to_string().contains(&blob["sha256:".len()..]),
            "{report}"
        );

        let verify = imgbuild()
            .args(["store", "verify", "--repair", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert!(verify.status.success(), "{}", stderr(&verify));
        assert!(
            String::from_utf8_lossy(&verify.stdout).contains(blob.as_str()),
            "verify names the broken blob"
        );
        run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
        let again = build(&recipe, &store, &tmp.path().join("out1"), "oci", &[]);
        assert!(again.status.success(), "{}", stderr(&again));
        assert_eq!(manifest_digest(&again), digest);
        let rebuilt = fs_err::read(
            tmp.path()
                .join("out1/hello.oci/blobs/sha256")
                .join(&blob["sha256:".len()..]),
        )
        .unwrap();
        assert_eq!(
            &imgbuild_store::Digest::of(&rebuilt).to_string(),
            blob,
            "the rebuilt blob is the original"
        );
    }
}

#[test]
fn every_exporter_refuses_a_layer_that_rots_after_the_image_was_loaded() {
    use imgbuild_formats::{export, ExportOptions, Format, StoredImage};
    use imgbuild_store::{Compression, Store};
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let mut writer = store.layer_writer(Compression::Zstd).unwrap();
    {
        let mut tar = TarWriter::new(&mut writer);
        let body = vec![b'x'; 200_000];
        tar.append(
            &EntryMeta::file("data", body.len() as u64, 0),
            &mut &body[..],
        )
        .unwrap();
        tar.finish().unwrap();
    }
    let layer = writer.commit(&store).unwrap();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id.to_string()]},
    });
    let config = store.put_bytes(config.to_string().as_bytes()).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config.digest.to_string(), "size": config.size},
        "layers": [{"mediaType": layer.media_type, "digest": layer.digest.to_string(),
                    "size": layer.size}],
    });
    let manifest = store.put_bytes(manifest.to_string().as_bytes()).unwrap();
    // A later build: the store that wrote the blobs trusts them for as long as it is open.
    drop(store);
    let store = Store::open(&root).unwrap();
    let image = StoredImage::load(&store, "rot", &["1".to_owned()], &manifest.digest).unwrap();
    // The image is loaded and the layer not yet read: the exporters are the only check left.
    flip_a_byte(&root, &layer.digest.to_string());
    for format in [
        Format::Oci,
        Format::OciArchive,
        Format::DockerArchive,
        Format::Tar,
    ] {
        let out = tmp.path().join(format!("out-{}", format.name()));
        let err = export(&store, &image, format, &ExportOptions::new(&out))
            .expect_err("a corrupt layer must fail the export");
        let mut text = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        assert!(
            text.contains(&layer.digest.to_string())
                && text.contains("imgbuild store verify --repair"),
            "{}: {text}",
            format.name()
        );
        let left: Vec<_> = fs_err::read_dir(&out)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} left {left:?}", format.name());
    }
}

/// A cached layer that rots between builds: the next build that reads it (a later step
/// missed, so the builder merges the layers below it through the store's layer reader)
/// fails with the store's corrupt-blob error, even though the bytes decompress and parse.
#[test]
fn a_cached_layer_that_rots_fails_the_rebuild_that_reads_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Incompressible: zstd stores it as raw blocks, so a flipped byte still decompresses
    // (into a wrong byte of big.bin) and only the digest check at the end can catch it.
    incompressible(&tmp.path().join("big.bin"), 3);
    let recipe = tmp.path().join("rot.toml");
    let write_recipe = |content: &str| {
        fs_err::write(
            &recipe,
            format!(
                "[image]\nname = \"rot\"\n\n[from]\nscratch = true\n\n\
                 [[step]]\ncopy = \"big.bin\"\nto = \"/big.bin\"\n\n\
                 [[step]]\nwrite = \"/etc/motd\"\ncontent = \"{content}\"\n"
            ),
        )
        .unwrap();
    };
    write_recipe("one");
    let store = tmp.path().join("store");
    let first = build(&recipe, &store, &tmp.path().join("out0"), "oci", &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let layer = report["steps"][0]["layer"].as_str().unwrap().to_owned();
    flip_a_byte(&store, &layer);

    write_recipe("two");
    let again = build(&recipe, &store, &tmp.path().join("out1"), "oci", &[]);
    let text = stderr(&again);
    assert_eq!(again.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("blob {layer} in the store is corrupt"))
            && text.contains("run `imgbuild store verify --repair`, then build again"),
        "{text}"
    );
    // With --json, stdout holds the error object, not a build report.
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap_or_default();
    assert!(
        report.get("digest").is_none() && report["error"]["kind"] == "store",
        "no report of a successful build: {report}"
    );
}

#[test]
fn six_builds_at_once_on_brand_new_stores_with_gc_beside_them_all_succeed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let recipes: Vec<PathBuf> = (0..6)
        .map(|i| {
            let path = tmp.path().join(format!("r{i}.toml"));
            fs_err::write(
                &path,
                format!(
                    "[image]\nname = \"r{i}\"\n\n[from]\nscratch = true\n\n\
                     [[step]]\nwrite = \"/etc/common\"\ncontent = \"shared\\n\"\n\n\
                     [[step]]\nwrite = \"/etc/own\"\ncontent = \"recipe {i}\\n\"\n"
                ),
            )
            .unwrap();
            path
        })
        .collect();
    for round in 0..20 {
        let store = tmp.path().join(format!("store-{round}"));
        let mut children: Vec<(String, std::process::Child)> = recipes
            .iter()
            .enumerate()
            .map(|(i, recipe)| {
                let child = imgbuild()
                    .arg("build")
                    .arg(recipe)
                    .arg("--store")
                    .arg(&store)
                    .arg("-o")
                    .arg(tmp.path().join(format!("out-{round}-{i}")))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("spawn build");
                (format!("build {i}"), child)
            })
            .collect();
        let gc = imgbuild()
            .args(["store", "gc", "--store"])
            .arg(&store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn gc");
        children.push(("gc".into(), gc));
        for (what, child) in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}, {what}: {}",
                stderr(&out)
            );
        }
        run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
    }
}

#[test]
fn a_killed_writers_temp_blob_is_swept_by_the_next_build() {
    require_tool("flock", "util-linux");
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = tmp.path().join("store");
    let recipe = repo().join("recipes/hello.toml");
    run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
    let temp_blob = store.join("v1/tmp/blob-4242-0-killed");
    // A writer that holds its temp blob's lock, as a build does, until it is killed.
    let mut writer = Command::new("sh")
        .arg("-c")
        .arg(r#"exec 9>"$1"; printf partial >&9; flock 9; echo locked; exec sleep 60"#)
        .arg("sh")
        .arg(&temp_blob)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn writer");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(writer.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = tmp.path().join("out");
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(&out),
    );
    assert!(temp_blob.exists(), "a live writer's temp blob stays");
    writer.kill().unwrap(); // SIGKILL
    writer.wait().unwrap();
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&recipe)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(&out),
    );
    let left: Vec<_> = fs_err::read_dir(store.join("v1/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "tmp/ still holds {left:?}");
}

/// `mebibytes` MiB that zstd cannot shrink, written to `path`.
fn incompressible(path: &Path, mebibytes: usize) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let bytes: Vec<u8> = (0..mebibytes << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    fs_err::write(path, bytes).unwrap();
}

#[test]
fn a_build_killed_mid_layer_write_leaves_no_temp_blob_after_the_next_build() {
    let tmp = tempfile::tempdir().expect("tempdir");
    incompressible(&tmp.path().join("big.bin"), 32);
    let recipe = tmp.path().join("big.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"big\"\n\n[from]\nscratch = true\n\n\
         [[step]]\ncopy = \"big.bin\"\nto = \"/big.bin\"\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
    let temp_blobs = || -> Vec<PathBuf> {
        fs_err::read_dir(store.join("v1/tmp"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("blob-")
                    && p.metadata().is_ok_and(|m| m.len() > 0)
            })
            .collect()
    };
    let mut build = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(&store)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let killed = loop {
        let found = temp_blobs();
        if !found.is_empty() {
            build.kill().unwrap(); // SIGKILL, mid-write
            build.wait().unwrap();
            break found;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the build never wrote a temp blob"
        );
        assert!(
            build.try_wait().unwrap().is_none(),
            "the build ended before it was caught writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    assert!(
        killed.iter().any(|p| p.exists()),
        "the killed build left {killed:?}"
    );
    let small = tmp.path().join("small.toml");
    fs_err::write(
        &small,
        "[image]\nname = \"small\"\n\n[from]\nscratch = true\n\n\
         [[step]]\nwrite = \"/x\"\ncontent = \"x\"\n",
    )
    .unwrap();
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&small)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(tmp.path().join("out")),
    );
    for path in &killed {
        assert!(!path.exists(), "{} survived the next build", path.display());
    }
    run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
}

#[test]
fn a_build_killed_in_a_run_step_leaves_no_scratch_dir_after_the_next_build() {
    let tmp = tempfile::tempdir().expect("tempdir");
    hostile_rootfs(&tmp.path().join("rootfs.tar"));
    let recipe = tmp.path().join("slow.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"slow\"\n\n[from]\nrootfs = \"rootfs.tar\"\n\n\
         [[step]]\nrun = \"sleep 30\"\n",
    )
    .unwrap();
    let store = tmp.path().join("store");
    let scratch_dirs = || -> Vec<PathBuf> {
        fs_err::read_dir(store.join("v1/tmp"))
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| {
                        p.file_name()
                            .unwrap()
                            .to_string_lossy()
                            .starts_with("scratch-")
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut build = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(&store)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let killed = loop {
        let found = scratch_dirs();
        if !found.is_empty() {
            // Let the sandbox start in it, then SIGKILL the build.
            std::thread::sleep(std::time::Duration::from_millis(300));
            build.kill().unwrap();
            build.wait().unwrap();
            break found;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the run step never got a scratch dir"
        );
        assert!(build.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert!(killed.iter().all(|p| p.exists()), "left behind: {killed:?}");
    let small = tmp.path().join("small.toml");
    fs_err::write(
        &small,
        "[image]\nname = \"small\"\n\n[from]\nscratch = true\n\n\
         [[step]]\nwrite = \"/x\"\ncontent = \"x\"\n",
    )
    .unwrap();
    run_ok(
        imgbuild()
            .arg("build")
            .arg(&small)
            .arg("--store")
            .arg(&store)
            .arg("-o")
            .arg(tmp.path().join("out")),
    );
    let left: Vec<_> = fs_err::read_dir(store.join("v1/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "tmp/ still holds {left:?}");
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        fs_err::create_dir_all(dir).unwrap();
        run_ok(
            Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0755"),
                    "tmpfs",
                ])
                .arg(dir),
        );
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_store_disk_says_no_space_left_and_leaves_the_store_clean() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&tmp.path().join("disk"), "8m");
    let store = disk.0.join("store");
    incompressible(&tmp.path().join("big.bin"), 16);
    let recipe = tmp.path().join("big.toml");
    fs_err::write(
        &recipe,
        "[image]\nname = \"big\"\n\n[from]\nscratch = true\n\n\
         [[step]]\nwrite = \"/small\"\ncontent = \"fits\\n\"\n\n\
         [[step]]\ncopy = \"big.bin\"\nto = \"/big.bin\"\n",
    )
    .unwrap();
    let out = imgbuild()
        .arg("build")
        .arg(&recipe)
        .arg("--store")
        .arg(&store)
        .arg("-o")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("no space left on device while writing")
            && text.contains(&store.display().to_string()),
        "{text}"
    );
    assert!(!text.contains("changed while the build read it"), "{text}");
    run_ok(imgbuild().args(["store", "verify", "--store"]).arg(&store));
    let left: Vec<_> = fs_err::read_dir(store.join("v1/tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "tmp/ still holds {left:?}");
    drop(disk);
}
