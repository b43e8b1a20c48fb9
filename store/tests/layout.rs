//! The store's buckets against `du -sb`, `gc` in every bucket, and ref rollback.

use imgbuild_store::{Bucket, Compression, Digest, GcOptions, LayerRecord, Store, StoreError};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `du -sb PATH`: apparent bytes of everything below it, hard links once.
fn du_sb(path: &Path) -> u64 {
    let out = std::process::Command::new("du")
        .arg("-sb")
        .arg(path)
        .output()
        .expect("`du` (coreutils) runs");
    assert!(out.status.success(), "du -sb failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du prints a number")
}

/// `du -sb` of a store this process has open, without the index's shared-memory file,
/// which goes when the store is closed (and which `store du` leaves out).
fn du_sb_open(root: &Path) -> u64 {
    let shm = fs_err::metadata(root.join("v1/index.sqlite-shm")).map_or(0, |m| m.len());
    du_sb(root) - shm
}

/// Bytes that do not compress, so blob sizes are what the test asks for.
fn noise(seed: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Digest::of(&[seed]).hex().into_bytes();
    while out.len() < len {
        block = Digest::of(&block).hex().into_bytes();
        out.extend_from_slice(&block);
    }
    out.truncate(len);
    out
}

fn layer(store: &Store, seed: u8, len: usize) -> LayerRecord {
    let mut w = store.layer_writer(Compression::None).unwrap();
    w.write_all(&noise(seed, len)).unwrap();
    w.commit(store).unwrap()
}

fn image(store: &Store, layers: &[&LayerRecord]) -> Digest {
    let config = store.put_bytes(b"{}").unwrap();
    let manifest = serde_json::json!({
        "config": {"digest": config.digest.to_string()},
        "layers": layers.iter().map(|l| serde_json::json!({"digest": l.digest.to_string()})).collect::<Vec<_>>(),
    });
    store
        .put_bytes(manifest.to_string().as_bytes())
        .unwrap()
        .digest
}

/// Unpacks `layer` as an unpacked layer would look: a big file, a read-only dir and a
/// mode-0 dir with a file inside. Returns the dir.
fn unpack(store: &Store, layer: &LayerRecord, used: SystemTime) -> PathBuf {
    let dir = store
        .unpack_layer_with(
            &layer.diff_id,
            "trusted",
            |_, dir| -> Result<(), StoreError> {
                fs_err::write(dir.join("big"), noise(9, 300_000))?;
                fs_err::create_dir_all(dir.join("ro/sub"))?;
                fs_err::write(dir.join("ro/sub/f"), b"x")?;
                fs_err::create_dir(dir.join("locked"))?;
                fs_err::write(dir.join("locked/f"), b"y")?;
                for (d, mode) in [("ro/sub", 0o555), ("ro", 0o555), ("locked", 0o000)] {
                    fs_err::set_permissions(dir.join(d), std::fs::Permissions::from_mode(mode))?;
                }
                Ok(())
            },
        )
        .unwrap();
    let mut stamp = dir.clone().into_os_string();
    stamp.push(".used");
    fs_err::File::options()
        .write(true)
        .open(PathBuf::from(stamp))
        .expect("unpacking stamps the dir as used")
        .set_modified(used)
        .unwrap();
    dir
}

fn days_ago(days: u64) -> SystemTime {
    SystemTime::now() - Duration::from_secs(days * 86_400)
}

#[test]
fn du_counts_every_bucket_and_gc_max_size_drops_least_recently_used_unpacked_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open_exclusive(&root).unwrap();
    let tagged = layer(&store, 1, 200_000);
    let cached = layer(&store, 2, 200_000);
    store.set_ref("app:1", &image(&store, &[&tagged])).unwrap();
    store
        .cache_put(&Digest::of(b"step"), &cached.diff_id, "step")
        .unwrap();
    let oldest = unpack(&store, &cached, days_ago(3));
    let newer = unpack(&store, &tagged, days_ago(1));
    fs_err::write(
        store.bucket(Bucket::BootAssets).join("x.json"),
        vec![b' '; 5000],
    )
    .unwrap();

    let usage = store.usage().unwrap();
    let du = du_sb_open(&root);
    assert_eq!(usage.bytes, du, "store du against du -sb: {usage:?}");
    assert_eq!(usage.unpacked, 2);
    assert!(usage.buckets[&Bucket::Unpacked] > 600_000, "{usage:?}");
    assert!(usage.buckets[&Bucket::Blobs] >= 400_000, "{usage:?}");
    assert!(usage.buckets[&Bucket::BootAssets] >= 5000, "{usage:?}");

    // Room for everything but one unpacked layer: the least recently used one goes.
    let max = du - 250_000;
    let report = store
        .gc(&GcOptions {
            keep_recent: Duration::from_secs(7 * 86_400),
            max_size: Some(max),
        })
        .unwrap();
    assert_eq!(report.unpacked_removed, 1, "{report:?}");
    assert_eq!(report.cache_entries_removed, 0, "{report:?}");
    assert!(!oldest.exists() && newer.is_dir());
    let du = du_sb_open(&root);
    assert!(du <= max, "du -sb {du} > --max-size {max}");
    assert_eq!(report.bytes_kept, du);
    assert_eq!(report.over_max_size, 0);

    // Room for the image's blobs only: the cache entry and the other unpacked layer go.
    let max = du - 300_000 - 150_000;
    let report = store
        .gc(&GcOptions {
            keep_recent: Duration::from_secs(7 * 86_400),
            max_size: Some(max),
        })
        .unwrap();
    assert_eq!(report.cache_entries_removed, 1, "{report:?}");
    assert_eq!(report.unpacked_removed, 1, "{report:?}");
    assert!(!newer.exists());
    assert!(store.has_blob(&tagged.digest).unwrap());
    assert!(!store.has_blob(&cached.digest).unwrap());
    let du = du_sb_open(&root);
    assert!(du <= max, "du -sb {du} > --max-size {max}");
    assert_eq!(store.usage().unwrap().bytes, du);

    // Smaller than the image: the image stays, and gc says how far over it is.
    let report = store
        .gc(&GcOptions {
            keep_recent: Duration::ZERO,
            max_size: Some(1000),
        })
        .unwrap();
    assert!(store.has_blob(&tagged.digest).unwrap());
    assert_eq!(report.over_max_size, du_sb_open(&root) - 1000, "{report:?}");
}

#[test]
fn gc_keeps_what_a_tag_needs_whatever_its_age_and_cleans_every_bucket() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_exclusive(tmp.path()).unwrap();
    let base = layer(&store, 1, 10_000);
    let top = layer(&store, 2, 10_000);
    let stale = layer(&store, 3, 10_000);
    store
        .set_ref("app:1", &image(&store, &[&base, &top]))
        .unwrap();
    for (key, l) in [("base", &base), ("top", &top), ("stale", &stale)] {
        store
            .cache_put(&Digest::of(key.as_bytes()), &l.diff_id, key)
            .unwrap();
    }
    let kept_unpacked = unpack(&store, &base, days_ago(30));
    let gone_unpacked = unpack(&store, &stale, days_ago(30));
    let half = store.bucket(Bucket::Unpacked).join("trusted/.unpacking-x");
    fs_err::create_dir_all(half.join("root/d")).unwrap();
    fs_err::set_permissions(half.join("root/d"), std::fs::Permissions::from_mode(0o0)).unwrap();
    let old_asset = store.bucket(Bucket::BootAssets).join("old.json");
    fs_err::write(&old_asset, b"[]").unwrap();
    fs_err::File::options()
        .write(true)
        .open(&old_asset)
        .unwrap()
        .set_modified(days_ago(30))
        .unwrap();
    let new_asset = store.bucket(Bucket::BootAssets).join("new.json");
    fs_err::write(&new_asset, b"[]").unwrap();
    fs_err::write(store.bucket(Bucket::Tmp).join("blob-1-2-dead"), b"half").unwrap();

    let report = store
        .gc(&GcOptions {
            keep_recent: Duration::from_secs(86_400),
            max_size: None,
        })
        .unwrap();
    let keys: Vec<String> = store
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.created_by)
        .collect();
    // Every entry was used within the day: none is dropped, but the old resolution, the
    // half-unpacked dir and the dead temp blob are.
    assert_eq!(keys.len(), 3, "{keys:?} {report:?}");
    assert!(!old_asset.exists() && new_asset.exists());
    assert!(!half.exists());
    assert_eq!(
        fs_err::read_dir(store.bucket(Bucket::Tmp)).unwrap().count(),
        0
    );

    let report = store
        .gc(&GcOptions {
            keep_recent: Duration::ZERO,
            max_size: None,
        })
        .unwrap();
    let mut keys: Vec<String> = store
        .cache_entries()
        .unwrap()
        .into_iter()
        .map(|e| e.created_by)
        .collect();
    keys.sort();
    assert_eq!(keys, ["base", "top"], "{report:?}");
    assert!(store.has_blob(&base.digest).unwrap() && store.has_blob(&top.digest).unwrap());
    assert!(!store.has_blob(&stale.digest).unwrap());
    assert!(kept_unpacked.is_dir() && !gone_unpacked.exists());
    assert!(!PathBuf::from(format!("{}.used", gone_unpacked.display())).exists());

    // Without the tag, everything goes.
    assert!(store.remove_ref("app:1").unwrap());
    assert!(!store.remove_ref("app:1").unwrap());
    store
        .gc(&GcOptions {
            keep_recent: Duration::ZERO,
            max_size: None,
        })
        .unwrap();
    assert!(store.cache_entries().unwrap().is_empty());
    assert!(!store.has_blob(&base.digest).unwrap());
    assert!(!kept_unpacked.exists());
    assert_eq!(store.usage().unwrap().blobs, 0);
}

#[test]
fn a_ref_rollback_restores_the_refs_unless_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let one = store.put_bytes(b"one").unwrap().digest;
    let two = store.put_bytes(b"two").unwrap().digest;
    store.set_ref("app:1", &one).unwrap();
    let names = ["app:1".to_owned(), "app:latest".to_owned()];
    let now = |store: &Store| -> Vec<(String, Digest)> {
        store
            .refs()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.manifest))
            .collect()
    };
    {
        let _rollback = store.ref_rollback(&names).unwrap();
        store.set_ref("app:1", &two).unwrap();
        store.set_ref("app:latest", &two).unwrap();
    }
    assert_eq!(now(&store), [("app:1".to_owned(), one.clone())]);
    let rollback = store.ref_rollback(&names).unwrap();
    store.set_ref("app:latest", &two).unwrap();
    rollback.keep();
    assert_eq!(
        now(&store),
        [("app:1".to_owned(), one), ("app:latest".to_owned(), two)]
    );
}

#[test]
fn every_bucket_exists_and_is_private_once_the_store_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for bucket in Bucket::ALL {
        let dir = store.bucket(bucket);
        assert_eq!(dir.parent(), Some(tmp.path().join("v1").as_path()));
        let mode = fs_err::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{bucket}");
    }
}
