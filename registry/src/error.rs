//! What can go wrong talking to a registry, and the errors named for each operation.

use crate::ReferenceError;
use imgbuild_store::{Digest, StoreError};

/// A request to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry could not be reached or the connection broke.
    #[error("cannot talk to registry {host}: {message}; check that it is running and reachable (a plain-HTTP registry needs --insecure-registry {host}, one with a private CA needs --registry-ca FILE)")]
    Transport {
        /// `host[:port]`.
        host: String,
        /// What the HTTP client said.
        message: String,
    },
    /// Credentials were refused or missing.
    #[error("authentication to {host} failed ({status}): check IMGBUILD_REGISTRY_USER/PASSWORD or `docker login {host}`")]
    Auth {
        /// `host[:port]`.
        host: String,
        /// 401 or 403.
        status: u16,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: registry answered {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL (never with credentials).
        url: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// A manifest or blob does not exist.
    #[error("{what} not found in {repository} on {host}")]
    NotFound {
        /// `host[:port]`.
        host: String,
        /// The repository.
        repository: String,
        /// What was asked for.
        what: String,
    },
    /// Bytes received (or a digest the registry reported) do not match the digest asked for.
    #[error("registry {host} served bytes for {expected} that hash to {found}; refusing them (the registry or a proxy is corrupting data)")]
    DigestMismatch {
        /// `host[:port]`.
        host: String,
        /// The digest we asked for or sent.
        expected: Digest,
        /// What the bytes hash to (or what the registry reported).
        found: Digest,
    },
    /// The registry sent more bytes for a blob than its descriptor declares.
    #[error("registry {host} sent more than the {expected} bytes the descriptor of {digest} declares; stopped reading and stored nothing (the registry or a proxy is misbehaving)")]
    Oversized {
        /// `host[:port]`.
        host: String,
        /// The blob asked for.
        digest: Digest,
        /// The size its descriptor declares.
        expected: u64,
    },
    /// The registry sent fewer bytes for a blob than its descriptor declares.
    #[error("registry {host} sent {received} bytes for {digest}, fewer than the {expected} its descriptor declares; stored nothing")]
    Truncated {
        /// `host[:port]`.
        host: String,
        /// The blob asked for.
        digest: Digest,
        /// The size its descriptor declares.
        expected: u64,
        /// What arrived before the end of the body.
        received: u64,
    },
    /// A blob or manifest is refused before any byte is written because of its size.
    #[error("refusing {what} from {host}: {reason}")]
    TooLarge {
        /// `host[:port]`.
        host: String,
        /// What was to be fetched.
        what: String,
        /// Why its size is refused.
        reason: String,
    },
    /// A document from the registry is not what its media type says.
    #[error("{what} from {host} is malformed: {message}")]
    Malformed {
        /// `host[:port]`.
        host: String,
        /// What was read.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// Credentials could not be read (Docker config or credential helper).
    #[error("reading credentials for {host}: {message}")]
    Credentials {
        /// `host[:port]`.
        host: String,
        /// What failed.
        message: String,
    },
    /// The CA file given with --registry-ca could not be used.
    #[error("CA file {path}: {message}")]
    Ca {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A reference is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl RegistryError {
    /// True for failures worth retrying: broken connections, 5xx and 429.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Truncated { .. } => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// True when the user has to fix something (credentials, a reference, a flag).
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::Auth { .. }
                | Self::Reference(_)
                | Self::Credentials { .. }
                | Self::Ca { .. }
                | Self::NotFound { .. }
        )
    }
}

/// Pulling an image (a base or a cache) failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// Talking to the registry failed.
    #[error("pulling {reference}: {source}")]
    Registry {
        /// What was pulled.
        reference: String,
        /// Why it failed.
        #[source]
        source: RegistryError,
    },
    /// The image has no manifest for the platform the recipe asks for.
    #[error("pulling {reference}: no image for platform {platform} in its index (it has: {available}); set [image] platform to one of them")]
    NoPlatform {
        /// What was pulled.
        reference: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
}

impl PullError {
    pub(crate) fn at(reference: &impl std::fmt::Display) -> impl Fn(RegistryError) -> Self {
        let reference = reference.to_string();
        move |source| Self::Registry {
            reference: reference.clone(),
            source,
        }
    }

    /// True when the user has to fix something.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Registry { source, .. } => source.is_user_error(),
            Self::NoPlatform { .. } => true,
        }
    }
}

/// Pushing an image (or a cache) failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Talking to the registry failed.
    #[error("pushing to {reference}: {source}")]
    Registry {
        /// Where it was pushed.
        reference: String,
        /// Why it failed.
        #[source]
        source: RegistryError,
    },
    /// The image to push is not complete in the store or layout.
    #[error("pushing to {reference}: {source}")]
    Source {
        /// Where it was pushed.
        reference: String,
        /// What is missing.
        #[source]
        source: StoreError,
    },
}

impl PushError {
    pub(crate) fn at(reference: &impl std::fmt::Display) -> impl Fn(RegistryError) -> Self {
        let reference = reference.to_string();
        move |source| Self::Registry {
            reference: reference.clone(),
            source,
        }
    }

    /// True when the user has to fix something.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Registry { source, .. } => source.is_user_error(),
            Self::Source { .. } => false,
        }
    }
}
