//! The image's root filesystem, layers merged and whiteouts applied, as one tar stream.

use crate::{ExportError, StoredImage};
use imgbuild_store::tarball::{MergedTree, TarWriter, TreeSink};
use imgbuild_store::Store;
use std::io::{Read, Write};

/// Streams the merged tree of `image` into `sink`.
pub fn stream(
    store: &Store,
    image: &StoredImage,
    sink: &mut dyn TreeSink,
) -> Result<(), ExportError> {
    let tree = merged_tree(store, image)?;
    stream_tree(store, image, &tree, sink)
}

/// Streams `tree` (the [`merged_tree`] of `image`) into `sink`.
pub fn stream_tree(
    store: &Store,
    image: &StoredImage,
    tree: &MergedTree,
    sink: &mut dyn TreeSink,
) -> Result<(), ExportError> {
    let readers = image
        .diff_ids()
        .iter()
        .map(|d| store.open_layer(d))
        .collect::<Result<Vec<Box<dyn Read + Send>>, _>>()?;
    tree.stream(readers, sink)
        .map_err(|source| ExportError::Layer {
            diff_id: image.manifest_digest.clone(),
            source,
        })
}

/// The merged metadata of every path in `image`.
pub fn merged_tree(store: &Store, image: &StoredImage) -> Result<MergedTree, ExportError> {
    Ok(store.merged_tree(image.diff_ids())?)
}

/// Writes the flattened root filesystem of `image` as a tar to `out`.
pub fn write(store: &Store, image: &StoredImage, out: &mut dyn Write) -> Result<(), ExportError> {
    let mut tar = TarWriter::new(out);
    stream(store, image, &mut tar)?;
    tar.finish()?;
    Ok(())
}
