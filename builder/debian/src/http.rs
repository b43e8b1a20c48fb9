//! Minimal blocking HTTP GET used for the archive (plain `http://` mirrors such as
//! `http://deb.debian.org/debian`; integrity comes from the signed Release, not TLS).

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// A failed download.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request failed (DNS, connection, timeout, non-2xx status).
    #[error("GET {url} failed: {source}; check the mirror URL and network access")]
    Request {
        /// The URL requested.
        url: String,
        /// The underlying client error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The body could not be read or written to disk.
    #[error("GET {url}: reading the body into {path} failed: {source}")]
    Body {
        /// The URL requested.
        url: String,
        /// Destination (or `<memory>`).
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server answered 404.
    #[error("GET {url}: not found (404)")]
    NotFound {
        /// The URL requested.
        url: String,
    },
    /// The server answered 410.
    #[error("GET {url}: gone (410)")]
    Gone {
        /// The URL requested.
        url: String,
    },
}

impl HttpError {
    /// True when the user has to fix something: a 404 means a wrong mirror URL or suite,
    /// or a lock naming files the mirror no longer has. A failed connection is not.
    pub fn is_user_error(&self) -> bool {
        self.is_not_found()
    }

    /// True for a 404 or 410 answer: the server does not have the file.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::Gone { .. })
    }
}

/// How many times a request is tried before giving up.
pub const ATTEMPTS: u32 = 3;

/// A shared blocking HTTP client.
#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

/// What a download to disk produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Bytes written.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes written.
    pub sha256: String,
}

impl Http {
    /// A client with a 30 s connect timeout and a 10 min overall per-request timeout.
    pub fn new() -> Http {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_global(Some(Duration::from_secs(600)))
            .user_agent("imgbuild")
            // Keep a connection per download thread: a new one costs a DNS look-up, and a
            // slow resolver makes that seconds.
            .max_idle_connections(32)
            .max_idle_connections_per_host(16)
            .build();
        Http {
            agent: ureq::Agent::with_parts(
                config,
                ureq::unversioned::transport::DefaultConnector::default(),
                CachingResolver::default(),
            ),
        }
    }

    /// Sends the GET, retrying transient failures (connection errors, timeouts, 5xx)
    /// up to [`ATTEMPTS`] times with a short backoff; 4xx answers are final.
    fn open(&self, url: &str) -> Result<ureq::Body, HttpError> {
        let mut attempt = 1;
        loop {
            match self.agent.get(url).call() {
                Ok(resp) => return Ok(resp.into_body()),
                Err(ureq::Error::StatusCode(404)) => {
                    return Err(HttpError::NotFound {
                        url: url.to_owned(),
                    })
                }
                Err(ureq::Error::StatusCode(410)) => {
                    return Err(HttpError::Gone {
                        url: url.to_owned(),
                    })
                }
                Err(e) => {
                    let final_status = matches!(e, ureq::Error::StatusCode(c) if c < 500);
                    if final_status || attempt >= ATTEMPTS {
                        return Err(HttpError::Request {
                            url: url.to_owned(),
                            source: Box::new(e),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                    attempt += 1;
                }
            }
        }
    }

    /// GETs `url` into memory, reading at most `limit` bytes.
    pub fn get_bytes(&self, url: &str, limit: u64) -> Result<Vec<u8>, HttpError> {
        let body = self.open(url)?;
        let mut out = Vec::new();
        body.into_reader()
            .take(limit)
            .read_to_end(&mut out)
            .map_err(|source| HttpError::Body {
                url: url.to_owned(),
                path: "<memory>".to_owned(),
                source,
            })?;
        Ok(out)
    }

    /// GETs `url` into `dest` (created or truncated), hashing as it streams; reads at
    /// most `limit` bytes so a wrong size cannot fill the disk.
    pub fn get_to_file(&self, url: &str, dest: &Path, limit: u64) -> Result<Downloaded, HttpError> {
        let body_err = |source| HttpError::Body {
            url: url.to_owned(),
            path: dest.display().to_string(),
            source,
        };
        let body = self.open(url)?;
        let mut reader = body.into_reader().take(limit);
        let mut file = fs_err::File::create(dest).map_err(body_err)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = reader.read(&mut buf).map_err(body_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(body_err)?;
            size += n as u64;
        }
        file.flush().map_err(body_err)?;
        Ok(Downloaded {
            size,
            sha256: hex::encode(hasher.finalize()),
        })
    }
}

/// Joins a mirror base URL and an archive-relative path with exactly one `/`.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn join() {
        assert_eq!(
            super::join("http://m/debian/", "/dists/x"),
            "http://m/debian/dists/x"
        );
        assert_eq!(
            super::join("http://m/debian", "pool/a.deb"),
            "http://m/debian/pool/a.deb"
        );
    }
}

/// Resolves each host once per client. ureq looks the host up for every request, even one
/// that reuses a pooled connection, and a resolver that drops the odd UDP query turns
/// that into seconds per package.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    seen: std::sync::Mutex<
        std::collections::HashMap<String, ureq::unversioned::resolver::ResolvedSocketAddrs>,
    >,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = uri
            .authority()
            .map(|a| format!("{}|{a}", uri.scheme_str().unwrap_or("")))
            .unwrap_or_default();
        let cached = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(addrs) = cached {
            return Ok(addrs);
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, addrs.clone());
        Ok(addrs)
    }
}
