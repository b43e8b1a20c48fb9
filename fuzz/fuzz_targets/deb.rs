//! The `.deb` reader: the `ar` container, the control tarball and its `control` file, then
//! the data tarball read as the install step reads it (metadata, bytes, into a layer).
#![no_main]

use imgbuild_builder::debian::deb::Deb;
use imgbuild_store::tarball::{read_meta, TarWriter};
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Decompressed bytes read from one data tarball at most (a zstd bomb is not a bug).
const READ_CAP: u64 = 64 << 20;

fn deb_path() -> &'static PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
            .path()
            .join("fuzz.deb")
    })
}

fuzz_target!(|data: &[u8]| {
    let path = deb_path();
    std::fs::write(path, data).expect("write the input");
    let Ok(deb) = Deb::open(path) else {
        return;
    };
    let _ = deb.control().get("Package");
    let _ = deb.data_member();
    let Ok(mut archive) = deb.data() else {
        return;
    };
    let Ok(entries) = archive.entries() else {
        return;
    };
    let mut layer = TarWriter::new(io::sink());
    let mut budget = READ_CAP;
    for entry in entries {
        let Ok(mut entry) = entry else { return };
        let Ok(meta) = read_meta(&mut entry) else {
            return;
        };
        if meta.path.is_empty() {
            continue;
        }
        if meta.size > budget {
            return;
        }
        budget -= meta.size;
        let mut bytes = (&mut entry).take(meta.size);
        if layer.append(&meta, &mut bytes).is_err() {
            return;
        }
    }
    let _ = layer.finish();
});
