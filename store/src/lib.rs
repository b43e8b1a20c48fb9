//! The content-addressed store behind every imgbuild build.
//!
//! Blobs are kept by their sha256 digest; a SQLite index records which blobs are layers
//! (with the uncompressed `diff_id` beside each compressed digest, as the
//! [OCI image spec](https://github.com/opencontainers/image-spec/blob/main/config.md#layer-diffid)
//! requires), which step cache key produced which layer, and which image refs point at which
//! manifest. On disk:
//!
//! ```text
//! <root>/
//!   CACHEDIR.TAG            marks the tree as a cache for backup tools
//!   v1/
//!     lock                  flock: shared for builds, exclusive for gc
//!     index.lock            flock held while the schema is created or migrated
//!     index.sqlite          the index (WAL mode); `remote_blobs` lists blobs kept in a registry
//!     blobs/sha256/<hex>    immutable blobs, read-only files
//!     tmp/                  blobs being written (`blob-*`, each flocked by its writer) and
//!                           scratch dirs (`scratch-<id>-*`, live while `owner-<id>.lock` is)
//!     unpacked/             layers unpacked as overlay lower dirs
//! ```
//!
//! The root, `v1/`, `tmp/` and `unpacked/` are 0700: unpacked untrusted layers hold setuid
//! files and device nodes that no other user may reach through the store.
//!
//! Blobs are written to `tmp/`, hashed while written, fsynced and renamed into place before
//! the index mentions them, so a build killed at any moment leaves the store consistent: at
//! worst an unindexed blob or temp file that `gc` removes.
#![forbid(unsafe_code)]

mod blob;
mod digest;
mod error;
mod index;
pub mod layer;
mod lock;
mod maintenance;
pub mod oci;
mod remote;
mod store;
pub mod tarball;
mod verified;

pub use blob::{BlobWriter, Descriptor};
pub use digest::{Digest, DigestError, Sha256Writer};
pub use error::StoreError;
pub use index::{CacheEntry, ImageRef, LayerRecord};
pub use layer::{Compression, LayerWriter};
pub use maintenance::{GcOptions, GcReport, StoreUsage, VerifyReport};
pub use remote::BlobFetcher;
pub use store::Store;
pub use verified::VerifiedReader;
