//! A small, blocking client for the
//! [OCI distribution spec](https://github.com/opencontainers/distribution-spec/blob/main/spec.md):
//! one `ureq` agent (rustls), per-host authentication (basic, or bearer tokens fetched with
//! the credentials), and retries with exponential backoff for transient failures.

use crate::auth::{credentials_for, Credentials};
use crate::{Reference, RegistryError};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ureq::http::{Method, Request, Response};
use ureq::{Body, SendBody};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `host[:port]`s spoken to over plain HTTP (everything else is HTTPS).
    pub insecure: Vec<String>,
    /// A PEM file of CA certificates to trust instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// How many times a request is tried before a transient failure is reported.
    pub attempts: u32,
    /// The first retry's delay; each later one doubles it.
    pub backoff: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            ca_file: None,
            attempts: 4,
            backoff: Duration::from_millis(250),
        }
    }
}

/// What a request sends.
pub(crate) enum ReqBody<'a> {
    /// Nothing.
    Empty,
    /// A small document.
    Bytes(&'a [u8]),
    /// A stream of known length, opened anew for every attempt.
    Stream(&'a (dyn Fn() -> Result<(Box<dyn Read + Send>, u64), RegistryError> + Sync)),
}

#[derive(Debug, Clone)]
enum Challenge {
    Basic,
    Bearer,
}

#[derive(Default)]
struct HostAuth {
    credentials: Option<Option<Credentials>>,
    challenge: Option<Challenge>,
    /// `Authorization` header values by scope (one value for basic auth, under "").
    headers: HashMap<String, String>,
}

/// A registry client shared by every pull and push of one command.
pub struct Client {
    options: RegistryOptions,
    agent: ureq::Agent,
    auth: Mutex<HashMap<String, HostAuth>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .finish()
    }
}

impl Client {
    /// A client with the given options (reads the CA file now).
    pub fn new(options: RegistryOptions) -> Result<Self, RegistryError> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = &options.ca_file {
            let ca_err = |message: String| RegistryError::Ca {
                path: path.clone(),
                message,
            };
            let pem = fs_err::read(path).map_err(|e| ca_err(e.to_string()))?;
            let mut certs = Vec::new();
            for item in ureq::tls::parse_pem(&pem) {
                if let ureq::tls::PemItem::Certificate(c) =
                    item.map_err(|e| ca_err(e.to_string()))?
                {
                    certs.push(c);
                }
            }
            if certs.is_empty() {
                return Err(ca_err("no PEM certificate in it".into()));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(certs)));
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls.build())
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(8)
            .build()
            .into();
        Ok(Self {
            options,
            agent,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// The options it was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// `https://HOST/v2/REPO/` or `http://` for insecure registries.
    pub(crate) fn base_url(&self, r: &Reference) -> String {
        let scheme = if self.options.insecure.contains(&r.registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}/v2/{}/", r.api_host(), r.repository)
    }

    /// Retries `f` with exponential backoff while it fails transiently.
    pub(crate) fn retry<T>(
        &self,
        mut f: impl FnMut() -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut delay = self.options.backoff;
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.is_transient() && attempt < self.options.attempts.max(1) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Sends one request (authenticating on a 401 and sending it again); no retries.
    pub(crate) fn call(
        &self,
        r: &Reference,
        scope: &str,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: &ReqBody<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let host = r.registry.as_str();
        let mut authenticated = false;
        loop {
            let auth = self.header_for(host, scope);
            let resp = self.send(host, &method, url, headers, auth.as_deref(), body)?;
            let status = resp.status().as_u16();
            if status == 401 {
                // One fresh authentication per request: a cached token may have expired.
                if authenticated {
                    return Err(RegistryError::Auth {
                        host: host.to_owned(),
                        status,
                    });
                }
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                self.authenticate(host, scope, &challenge)?;
                authenticated = true;
                continue;
            }
            if status == 403 {
                return Err(RegistryError::Auth {
                    host: host.to_owned(),
                    status,
                });
            }
            return Ok(resp);
        }
    }

    fn send(
        &self,
        host: &str,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        auth: Option<&str>,
        body: &ReqBody<'_>,
    ) -> Result<Response<Body>, RegistryError> {
        let mut req = Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let transport = |e: &dyn std::fmt::Display| RegistryError::Transport {
            host: host.to_owned(),
            message: e.to_string(),
        };
        let result = match body {
            ReqBody::Empty => {
                let req = req
                    .header("content-length", "0")
                    .body(())
                    .map_err(|e| transport(&e))?;
                self.agent.run(req)
            }
            ReqBody::Bytes(bytes) => {
                let req = req
                    .header("content-length", bytes.len().to_string())
                    .body(*bytes)
                    .map_err(|e| transport(&e))?;
                self.agent.run(req)
            }
            ReqBody::Stream(open) => {
                let (reader, len) = open()?;
                let req = req
                    .header("content-length", len.to_string())
                    .body(SendBody::from_owned_reader(reader))
                    .map_err(|e| transport(&e))?;
                self.agent.run(req)
            }
        };
        result.map_err(|e| transport(&e))
    }

    fn header_for(&self, host: &str, scope: &str) -> Option<String> {
        let auth = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = auth.get(host)?;
        match entry.challenge {
            Some(Challenge::Basic) => entry.headers.get("").cloned(),
            Some(Challenge::Bearer) => entry.headers.get(scope).cloned(),
            None => None,
        }
    }

    fn credentials(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        let cached = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(host)
            .and_then(|a| a.credentials.clone());
        if let Some(c) = cached {
            return Ok(c);
        }
        let found = credentials_for(host)?;
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(host.to_owned())
            .or_default()
            .credentials = Some(found.clone());
        Ok(found)
    }

    /// Answers a `WWW-Authenticate` challenge for `scope`.
    fn authenticate(&self, host: &str, scope: &str, challenge: &str) -> Result<(), RegistryError> {
        let creds = self.credentials(host)?;
        let denied = || RegistryError::Auth {
            host: host.to_owned(),
            status: 401,
        };
        let (scheme, params) = parse_challenge(challenge);
        let (parsed, header) = if scheme.eq_ignore_ascii_case("basic") {
            let creds = creds.ok_or_else(denied)?;
            (Challenge::Basic, creds.basic_header())
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let realm = params.get("realm").cloned().ok_or_else(denied)?;
            let service = params.get("service").cloned().unwrap_or_default();
            let token = self.fetch_token(host, &realm, &service, scope, creds.as_ref())?;
            (Challenge::Bearer, format!("Bearer {token}"))
        } else {
            return Err(denied());
        };
        let mut auth = self
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = auth.entry(host.to_owned()).or_default();
        let key = if matches!(parsed, Challenge::Basic) {
            ""
        } else {
            scope
        };
        entry.headers.insert(key.to_owned(), header);
        entry.challenge = Some(parsed);
        Ok(())
    }

    fn fetch_token(
        &self,
        host: &str,
        realm: &str,
        service: &str,
        scope: &str,
        creds: Option<&Credentials>,
    ) -> Result<String, RegistryError> {
        let mut url = format!("{realm}?service={}", encode(service));
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            url.push_str("&scope=");
            url.push_str(&encode(s));
        }
        let basic = creds.map(Credentials::basic_header);
        let mut resp = self.send(
            host,
            &Method::GET,
            &url,
            &[],
            basic.as_deref(),
            &ReqBody::Empty,
        )?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(RegistryError::Auth {
                host: host.to_owned(),
                status,
            });
        }
        let body = read_small(&mut resp, host)?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&body).map_err(|e| RegistryError::Malformed {
            host: host.to_owned(),
            what: "token response".into(),
            message: e.to_string(),
        })?;
        t.token
            .or(t.access_token)
            .ok_or_else(|| RegistryError::Malformed {
                host: host.to_owned(),
                what: "token response".into(),
                message: "no token in it".into(),
            })
    }
}

/// Reads a small response body (manifests, tokens, errors): at most 8 MiB.
pub(crate) fn read_small(resp: &mut Response<Body>, host: &str) -> Result<Vec<u8>, RegistryError> {
    resp.body_mut()
        .with_config()
        .limit(8 << 20)
        .read_to_vec()
        .map_err(|e| RegistryError::Transport {
            host: host.to_owned(),
            message: e.to_string(),
        })
}

/// Turns a response with an unexpected status into an error.
pub(crate) fn unexpected(
    method: &str,
    url: &str,
    resp: &mut Response<Body>,
    host: &str,
) -> RegistryError {
    let status = resp.status().as_u16();
    let body = read_small(resp, host).unwrap_or_default();
    let mut text: String = String::from_utf8_lossy(&body).chars().take(300).collect();
    text = text.trim().to_owned();
    RegistryError::Status {
        method: method.to_owned(),
        url: url.to_owned(),
        status,
        body: text,
    }
}

/// A response header as text.
pub(crate) fn header<'a>(resp: &'a Response<Body>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits `Bearer realm="x",service="y"` into the scheme and its parameters.
#[doc(hidden)]
pub fn parse_challenge(text: &str) -> (String, HashMap<String, String>) {
    let text = text.trim();
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(key, value.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    (scheme.to_owned(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "registry.example");
        assert_eq!(p["scope"], "repository:a/b:pull");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }
}
