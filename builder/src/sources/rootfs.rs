//! A rootfs tarball as a base layer: decompressed (gzip, zstd or plain, by magic bytes),
//! paths normalised, anything escaping the root refused, mtimes clamped to the build's
//! timestamp, then written back as one deterministic layer.

use super::SourceError;
use imgbuild_store::tarball::{read_expanding, TarWriter};
use imgbuild_store::{Compression, LayerRecord, Store};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Opens a possibly compressed tarball as a plain tar stream.
pub(crate) fn open_tarball(path: &Path) -> Result<Box<dyn Read>, SourceError> {
    let mut reader = BufReader::new(fs_err::File::open(path)?);
    let magic = reader.fill_buf()?;
    let compression = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    Ok(compression.decoder(reader)?)
}

/// Imports the tarball at `path` as a layer.
pub(crate) fn import(
    store: &Store,
    path: &Path,
    epoch: u64,
    compression: Compression,
) -> Result<LayerRecord, SourceError> {
    let layer_err = |source| SourceError::Layer {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(open_tarball(path)?);
    let mut layer = store.layer_writer(compression)?;
    {
        let mut out = TarWriter::new(&mut layer);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type() == tar::EntryType::XGlobalHeader {
                // `git archive`'s comment record: nothing to import.
                continue;
            }
            // PAX sparse files (GNU format 1.0) are expanded into plain files here.
            let (mut meta, mut data) = read_expanding(&mut entry).map_err(layer_err)?;
            if meta.path.is_empty() {
                continue;
            }
            meta.mtime = meta.mtime.min(epoch);
            out.append(&meta, &mut data)?;
        }
        out.finish()?;
    }
    Ok(layer.commit(store)?)
}
