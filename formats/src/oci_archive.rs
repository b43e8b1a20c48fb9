//! An OCI layout as one tar stream, written straight from the store's blobs.

use crate::oci_layout::{LayoutContent, OCI_LAYOUT};
use crate::ExportError;
use imgbuild_store::tarball::{EntryMeta, TarWriter};
use imgbuild_store::Store;
use std::io::{self, Write};

/// Writes the archive of a layout's `content` to `out`.
pub fn write(
    store: &Store,
    content: &LayoutContent,
    out: &mut dyn Write,
) -> Result<(), ExportError> {
    let epoch = content.epoch;
    let mut tar = TarWriter::new(out);
    let file = |path: &str, size: u64| EntryMeta::file(path, size, epoch);
    for dir in ["blobs", "blobs/sha256"] {
        tar.append(&EntryMeta::dir(dir, epoch), &mut io::empty())?;
    }
    for digest in &content.blobs {
        let path = format!("blobs/sha256/{}", digest.hex());
        // Hashed while streamed: a blob that rotted in the store fails the export.
        let mut blob = store.open_blob_verified(digest)?;
        tar.append(&file(&path, blob.size()), &mut blob)?;
        blob.finish()?;
    }
    let index = &content.index_json;
    tar.append(
        &file("index.json", index.len() as u64),
        &mut index.as_slice(),
    )?;
    tar.append(
        &file("oci-layout", OCI_LAYOUT.len() as u64),
        &mut OCI_LAYOUT.as_bytes(),
    )?;
    tar.finish()?;
    Ok(())
}
