//! The distribution API's blob and manifest endpoints: exists (HEAD), fetch into the store
//! (verified), cross-repository mount, streamed monolithic upload, manifest get and put.

use crate::client::{header, unexpected, ReqBody};
use crate::{Client, Reference, RegistryError};
use imgbuild_store::{Descriptor, Digest, Store, StoreError};
use std::io::{Read, Write};
use ureq::http::Method;

/// Every manifest media type imgbuild reads.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

pub(crate) fn pull_scope(r: &Reference) -> String {
    format!("repository:{}:pull", r.repository)
}

pub(crate) fn push_scope(r: &Reference) -> String {
    format!("repository:{}:pull,push", r.repository)
}

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (their sha256 is the digest).
    pub bytes: Vec<u8>,
    /// The `Content-Type` the registry gave (or the document's own `mediaType`).
    pub media_type: String,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Client {
    /// True when the repository already has the blob.
    pub fn blob_exists(&self, r: &Reference, digest: &Digest) -> Result<bool, RegistryError> {
        let url = format!("{}blobs/{digest}", self.base_url(r));
        self.retry(|| {
            let mut resp = self.call(
                r,
                &push_or_pull(r),
                Method::HEAD,
                &url,
                &[],
                &ReqBody::Empty,
            )?;
            match resp.status().as_u16() {
                200 => Ok(true),
                404 => Ok(false),
                _ => Err(unexpected("HEAD", &url, &mut resp, &r.registry)),
            }
        })
    }

    /// Downloads a blob of `size` bytes (as its descriptor declares) into the store,
    /// refusing bytes that do not hash to `digest`. The download stops at `size`: a body
    /// that runs longer, or ends sooner, is an error and nothing is stored. A size above
    /// [`MAX_BLOB_SIZE`] or above the store's free space is refused before any request.
    pub fn fetch_blob(
        &self,
        store: &Store,
        r: &Reference,
        digest: &Digest,
        size: u64,
    ) -> Result<Descriptor, RegistryError> {
        if store.has_blob(digest)? {
            let size = fs_err::metadata(store.blob_path(digest))?.len();
            return Ok(Descriptor {
                digest: digest.clone(),
                size,
            });
        }
        check_blob_size(r, digest, size)?;
        check_free_space(store, r, &format!("blob {digest}"), size)?;
        let url = format!("{}blobs/{digest}", self.base_url(r));
        self.retry(|| {
            let mut resp = self.call(r, &pull_scope(r), Method::GET, &url, &[], &ReqBody::Empty)?;
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    return Err(RegistryError::NotFound {
                        host: r.registry.clone(),
                        repository: r.repository.clone(),
                        what: format!("blob {digest}"),
                    })
                }
                _ => return Err(unexpected("GET", &url, &mut resp, &r.registry)),
            }
            let declared = resp.body().content_length();
            if declared.is_some_and(|n| n > size) {
                return Err(RegistryError::Oversized {
                    host: r.registry.clone(),
                    digest: digest.clone(),
                    expected: size,
                });
            }
            let mut reader = resp.into_body().into_reader();
            store_bounded(store, &mut reader, r, digest, size)
        })
    }

    /// Fetches a manifest (or index) by tag or digest, checking it against the digest when
    /// one was asked for.
    pub fn get_manifest(
        &self,
        r: &Reference,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = format!("{}manifests/{reference}", self.base_url(r));
        let fetched = self.retry(|| {
            let mut resp = self.call(
                r,
                &pull_scope(r),
                Method::GET,
                &url,
                &[("accept", MANIFEST_ACCEPT)],
                &ReqBody::Empty,
            )?;
            match resp.status().as_u16() {
                200 => {}
                404 => {
                    return Err(RegistryError::NotFound {
                        host: r.registry.clone(),
                        repository: r.repository.clone(),
                        what: format!("manifest {reference}"),
                    })
                }
                _ => return Err(unexpected("GET", &url, &mut resp, &r.registry)),
            }
            let content_type = header(&resp, "content-type").unwrap_or("").to_owned();
            let bytes = read_manifest(&mut resp, r, reference)?;
            Ok((content_type, bytes))
        })?;
        let (content_type, bytes) = fetched;
        let digest = Digest::of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            if expected != digest {
                return Err(RegistryError::DigestMismatch {
                    host: r.registry.clone(),
                    expected,
                    found: digest,
                });
            }
        }
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| {
                v.get("mediaType")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or(content_type);
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
        })
    }

    /// Tries a cross-repository mount of `digest` from `from` (same registry); true when
    /// the registry mounted it, false when it started an ordinary upload instead.
    pub fn mount_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        let url = format!(
            "{}blobs/uploads/?mount={digest}&from={from}",
            self.base_url(r)
        );
        let scope = format!("{} repository:{from}:pull", push_scope(r));
        self.retry(|| {
            let mut resp = self.call(r, &scope, Method::POST, &url, &[], &ReqBody::Empty)?;
            match resp.status().as_u16() {
                201 => Ok(true),
                202 => Ok(false),
                _ => Err(unexpected("POST", &url, &mut resp, &r.registry)),
            }
        })
    }

    /// Uploads a blob in one streamed PUT and checks the digest the registry reports.
    /// The whole upload (session and PUT) is retried on transient failures.
    pub fn upload_blob(
        &self,
        r: &Reference,
        digest: &Digest,
        open: &(dyn Fn() -> Result<(Box<dyn Read + Send>, u64), RegistryError> + Sync),
    ) -> Result<(), RegistryError> {
        let start = format!("{}blobs/uploads/", self.base_url(r));
        let scope = push_scope(r);
        self.retry(|| {
            let mut resp = self.call(r, &scope, Method::POST, &start, &[], &ReqBody::Empty)?;
            if resp.status().as_u16() != 202 {
                return Err(unexpected("POST", &start, &mut resp, &r.registry));
            }
            let location = header(&resp, "location")
                .ok_or_else(|| RegistryError::Malformed {
                    host: r.registry.clone(),
                    what: "upload session".into(),
                    message: "no Location header".into(),
                })?
                .to_owned();
            let location = absolute(&start, &location);
            let sep = if location.contains('?') { '&' } else { '?' };
            let put = format!("{location}{sep}digest={digest}");
            let mut resp = self.call(
                r,
                &scope,
                Method::PUT,
                &put,
                &[("content-type", "application/octet-stream")],
                &ReqBody::Stream(open),
            )?;
            if resp.status().as_u16() != 201 {
                return Err(unexpected(
                    "PUT",
                    &strip_query(&put),
                    &mut resp,
                    &r.registry,
                ));
            }
            check_reported(&resp, r, digest)
        })
    }

    /// Puts a manifest under `tag_or_digest` and returns the digest the registry reports
    /// (checked against the bytes' own).
    pub fn put_manifest(
        &self,
        r: &Reference,
        tag_or_digest: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<Digest, RegistryError> {
        let url = format!("{}manifests/{tag_or_digest}", self.base_url(r));
        let digest = Digest::of(bytes);
        self.retry(|| {
            let mut resp = self.call(
                r,
                &push_scope(r),
                Method::PUT,
                &url,
                &[("content-type", media_type)],
                &ReqBody::Bytes(bytes),
            )?;
            if resp.status().as_u16() != 201 {
                return Err(unexpected("PUT", &url, &mut resp, &r.registry));
            }
            check_reported(&resp, r, &digest)
        })?;
        Ok(digest)
    }
}

/// The largest blob imgbuild downloads (1 TiB): a descriptor claiming more is refused.
pub const MAX_BLOB_SIZE: u64 = 1 << 40;
/// The largest manifest or index imgbuild reads (4 MiB, as containerd).
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// Refuses a descriptor size above [`MAX_BLOB_SIZE`].
pub(crate) fn check_blob_size(
    r: &Reference,
    digest: &Digest,
    size: u64,
) -> Result<(), RegistryError> {
    if size > MAX_BLOB_SIZE {
        return Err(RegistryError::TooLarge {
            host: r.registry.clone(),
            what: format!("blob {digest}"),
            reason: format!(
                "its descriptor declares {size} bytes, more than the {MAX_BLOB_SIZE} (1 TiB) imgbuild accepts; the image or the registry is broken"
            ),
        });
    }
    Ok(())
}

/// Refuses `size` bytes of `what` when the store's file system has less free space.
pub(crate) fn check_free_space(
    store: &Store,
    r: &Reference,
    what: &str,
    size: u64,
) -> Result<(), RegistryError> {
    let Ok(stat) = rustix::fs::statvfs(store.root()) else {
        return Ok(());
    };
    let free = stat.f_bavail.saturating_mul(stat.f_frsize);
    if size > free {
        return Err(RegistryError::TooLarge {
            host: r.registry.clone(),
            what: what.to_owned(),
            reason: format!(
                "its descriptors declare {size} bytes, but only {free} bytes are free under {}; free space or use another --store",
                store.root().display()
            ),
        });
    }
    Ok(())
}

/// Copies at most `size` bytes of `reader` into a new blob and commits it if they hash to
/// `digest`. One byte more than `size`, or the end before it, stores nothing (the temp
/// file is removed when the writer drops).
fn store_bounded(
    store: &Store,
    reader: &mut dyn Read,
    r: &Reference,
    digest: &Digest,
    size: u64,
) -> Result<Descriptor, RegistryError> {
    let mut writer = store.blob_writer()?;
    let mut limited = reader.take(size.saturating_add(1));
    let mut buf = vec![0u8; 1 << 16];
    let mut received: u64 = 0;
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(RegistryError::Transport {
                    host: r.registry.clone(),
                    message: e.to_string(),
                })
            }
        };
        received += n as u64;
        if received > size {
            return Err(RegistryError::Oversized {
                host: r.registry.clone(),
                digest: digest.clone(),
                expected: size,
            });
        }
        writer
            .write_all(&buf[..n])
            .map_err(|e| RegistryError::Store(StoreError::Io(e)))?;
    }
    if received < size {
        return Err(RegistryError::Truncated {
            host: r.registry.clone(),
            digest: digest.clone(),
            expected: size,
            received,
        });
    }
    writer.commit_verified(digest).map_err(|e| match e {
        StoreError::DigestMismatch { expected, found } => RegistryError::DigestMismatch {
            host: r.registry.clone(),
            expected,
            found,
        },
        other => other.into(),
    })
}

/// Reads a manifest body, refusing one above [`MAX_MANIFEST_SIZE`].
fn read_manifest(
    resp: &mut ureq::http::Response<ureq::Body>,
    r: &Reference,
    reference: &str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = |size: String| {
        RegistryError::TooLarge {
        host: r.registry.clone(),
        what: format!("manifest {reference}"),
        reason: format!(
            "it is {size} bytes, more than the {MAX_MANIFEST_SIZE} (4 MiB) imgbuild reads for a manifest or index"
        ),
    }
    };
    if let Some(n) = resp.body().content_length() {
        if n > MAX_MANIFEST_SIZE {
            return Err(too_large(n.to_string()));
        }
    }
    let mut bytes = Vec::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_MANIFEST_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transport {
            host: r.registry.clone(),
            message: e.to_string(),
        })?;
    if bytes.len() as u64 > MAX_MANIFEST_SIZE {
        return Err(too_large(format!("more than {MAX_MANIFEST_SIZE}")));
    }
    Ok(bytes)
}

/// Pushes ask for push scope even on HEAD so one token serves the whole push.
fn push_or_pull(r: &Reference) -> String {
    push_scope(r)
}

pub(crate) fn check_reported(
    resp: &ureq::http::Response<ureq::Body>,
    r: &Reference,
    digest: &Digest,
) -> Result<(), RegistryError> {
    if let Some(reported) = header(resp, "docker-content-digest") {
        let found: Digest = reported.parse().map_err(|_| RegistryError::Malformed {
            host: r.registry.clone(),
            what: "Docker-Content-Digest header".into(),
            message: format!("`{reported}` is not a sha256 digest"),
        })?;
        if found != *digest {
            return Err(RegistryError::DigestMismatch {
                host: r.registry.clone(),
                expected: digest.clone(),
                found,
            });
        }
    }
    Ok(())
}

/// Resolves a `Location` header against the URL it answered.
fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_owned();
    }
    let origin_end = base
        .find("://")
        .and_then(|i| base[i + 3..].find('/').map(|j| i + 3 + j))
        .unwrap_or(base.len());
    format!("{}{location}", &base[..origin_end])
}

fn strip_query(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resolves_locations() {
        assert_eq!(
            super::absolute(
                "http://h:5000/v2/a/blobs/uploads/",
                "/v2/a/blobs/uploads/x?s=1"
            ),
            "http://h:5000/v2/a/blobs/uploads/x?s=1"
        );
        assert_eq!(
            super::absolute("http://h/v2/", "https://other/up"),
            "https://other/up"
        );
    }
}
