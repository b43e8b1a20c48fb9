//! Layer tarballs: the entry model, a deterministic writer, a reader, the merge of a
//! layer stack into one tree (whiteouts applied) that exporters stream from, and the
//! entry-by-entry difference of two layers.
//!
//! Layers follow the [OCI layer spec](https://github.com/opencontainers/image-spec/blob/main/layer.md):
//! POSIX tar with PAX extensions, whiteouts as `.wh.NAME`, opaque directories as
//! `DIR/.wh..wh..opq`.

mod diff;
mod entry;
mod merge;
mod read;
mod resolve;
mod write;

pub use diff::{diff_layers, Change, Difference, LineDifference, TEXT_LIMIT};
pub use entry::{EntryKind, EntryMeta, OPAQUE_MARKER, WHITEOUT_PREFIX};
pub use merge::{MergedTree, TreeSink};
pub use read::{
    path_components, read_expanding, read_meta, read_raw_meta, refused_entry, LayerReadError,
    RawMeta,
};
pub use resolve::{PathResolver, ResolveError, MAX_LINKS};
pub use write::{TarWriter, WrittenEntries};
