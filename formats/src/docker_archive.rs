//! The docker-archive format that `docker load`, `podman load` and skopeo's
//! `docker-archive:` transport read: `manifest.json`, the config as `<hex>.json`, and each
//! layer uncompressed as `<diff_id hex>/layer.tar`.

use crate::{ExportError, StoredImage};
use imgbuild_store::tarball::{EntryMeta, TarWriter};
use imgbuild_store::Store;
use std::io::{self, Write};

/// Writes the docker-archive of `image` to `out`.
pub fn write(store: &Store, image: &StoredImage, out: &mut dyn Write) -> Result<(), ExportError> {
    let epoch = image.epoch();
    let mut tar = TarWriter::new(out);
    let file = |path: &str, size: u64| EntryMeta::file(path, size, epoch);
    let config_name = format!("{}.json", image.manifest.config.digest.hex());
    let config = store.read_blob(&image.manifest.config.digest)?;
    tar.append(
        &file(&config_name, config.len() as u64),
        &mut config.as_slice(),
    )?;
    let mut layer_names = Vec::new();
    for diff_id in image.diff_ids() {
        let dir = diff_id.hex();
        let name = format!("{dir}/layer.tar");
        // The tar header needs the size first: count the uncompressed bytes, then stream.
        let size = io::copy(&mut store.open_layer(diff_id)?, &mut io::sink())?;
        tar.append(&EntryMeta::dir(dir, epoch), &mut io::empty())?;
        tar.append(&file(&name, size), &mut store.open_layer(diff_id)?)?;
        layer_names.push(name);
    }
    let repo_tags: Vec<String> = image
        .tags
        .iter()
        .map(|t| format!("{}:{t}", image.name))
        .collect();
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(io::Error::other)?;
    tar.append(
        &file("manifest.json", manifest.len() as u64),
        &mut manifest.as_slice(),
    )?;
    tar.finish()?;
    Ok(())
}
