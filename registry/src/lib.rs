//! imgbuild's registry client: the
//! [OCI distribution spec](https://github.com/opencontainers/distribution-spec/blob/main/spec.md)
//! spoken over blocking HTTP (`ureq` with rustls), enough to pull base images, push built
//! images and keep a build cache in a registry.
//!
//! - [`reference`]: parsing `HOST[:PORT]/REPO[:TAG][@DIGEST]`.
//! - [`auth`]: credentials from the environment and the Docker config.
//! - [`client`]: the HTTP client: authentication, retries with backoff.
//! - [`blobs`]: the blob and manifest endpoints, every byte checked against its digest.
//! - [`pull`]: resolving a reference for a platform and pulling it into the store.
//! - [`push`]: pushing an image from the store or an OCI layout.
//! - [`cache`]: the build cache artifact (`--cache-to`, `--cache-from`) and lazy fetching.
//! - [`referrers`](mod@referrers): documents (SBOMs, provenance) attached to a pushed image as OCI 1.1
//!   referrers, with the `sha256-HEX` tag fallback, and listing them back.
#![forbid(unsafe_code)]

pub mod auth;
pub mod blobs;
pub mod cache;
pub mod client;
mod error;
pub mod pull;
pub mod push;
pub mod reference;
pub mod referrers;
pub mod source;

#[doc(hidden)]
/// Internals the fuzz targets in `fuzz/` drive; not a stable API.
pub mod fuzzing {
    pub use crate::client::parse_challenge;
}

pub use cache::{export_cache, import_cache, CacheImport, CacheRecord, RegistryFetcher};
pub use client::{Client, RegistryOptions};
pub use error::{PullError, PushError, RegistryError};
pub use pull::{pull_image, resolve, PulledImage};
pub use push::{push_image, push_index, PushReport};
pub use reference::{Reference, ReferenceError};
pub use referrers::{attach, referrers, AttachReport, Attachment, Referrer};
pub use source::{BlobSource, LayoutSource};
