//! The content-addressed store behind every imgbuild build.
//!
//! Blobs are kept by their sha256 digest; a SQLite index records which blobs are layers
//! (with the uncompressed `diff_id` beside each compressed digest, as the
//! [OCI image spec](https://github.com/opencontainers/image-spec/blob/main/config.md#layer-diffid)
//! requires), which step cache key produced which layer, and which image refs point at which
//! manifest. On disk:
//!
//! The directory tree is drawn in [`layout`]; every directory below `v1/` is a [`Bucket`]
//! that other crates reach through [`Store::bucket`]. The root, `v1/` and every bucket are
//! 0700: unpacked untrusted layers hold setuid files and device nodes that no other user
//! may reach through the store. In `tmp/`, blobs being written are `blob-*`, each flocked by
//! its writer, and run steps' scratch dirs are `scratch-<id>-*`, live while
//! `owner-<id>.lock` is flocked.
//!
//! Blobs are written to `tmp/`, hashed while written, fsynced and renamed into place before
//! the index mentions them, so a build killed at any moment leaves the store consistent: at
//! worst an unindexed blob or temp file that `gc` removes.
#![forbid(unsafe_code)]

mod blob;
mod digest;
mod disk;
mod error;
mod file_digests;
mod gc;
mod index;
pub mod layer;
pub mod layout;
mod lock;
mod maintenance;
pub mod oci;
mod outputs;
mod remote;
mod store;
pub mod tarball;
mod toc;
mod usage;
mod verified;

pub use blob::{BlobWriter, Descriptor};
pub use digest::{Digest, DigestError, Sha256Writer};
pub use error::StoreError;
pub use file_digests::KnownDigest;
pub use gc::{GcOptions, GcReport};
pub use index::{CacheEntry, ImageRef, LayerRecord, OutputRecord};
pub use layer::{Compression, LayerWriter};
pub use layout::Bucket;
pub use maintenance::VerifyReport;
pub use remote::BlobFetcher;
pub use store::{RefRollback, Store};
pub use toc::MergeError;
pub use usage::StoreUsage;
pub use verified::{LayerReader, VerifiedReader};
