//! Registry credentials: `IMGBUILD_REGISTRY_USER`/`IMGBUILD_REGISTRY_PASSWORD` first, then
//! the Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`): a
//! `credHelpers` entry for the host, then `auths`, then the `credsStore` helper.
//! Credentials are never printed; their `Debug` shows only the user name.

use crate::RegistryError;
use base64::Engine;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A user name and password (or identity token).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of a basic `Authorization` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

#[derive(serde::Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The key a Docker config uses for `host`, stripped of scheme and path.
fn normalize_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    if host == "index.docker.io" || host == "registry-1.docker.io" {
        crate::reference::DEFAULT_REGISTRY
    } else {
        host
    }
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// Finds credentials for `host` (`host[:port]`), or `None` to go anonymous.
pub fn credentials_for(host: &str) -> Result<Option<Credentials>, RegistryError> {
    let fail = |message: String| RegistryError::Credentials {
        host: host.to_owned(),
        message,
    };
    if let (Ok(user), Ok(password)) = (
        std::env::var("IMGBUILD_REGISTRY_USER"),
        std::env::var("IMGBUILD_REGISTRY_PASSWORD"),
    ) {
        return Ok(Some(Credentials { user, password }));
    }
    let Some(path) = config_path().filter(|p| p.is_file()) else {
        return Ok(None);
    };
    let text = fs_err::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    let config: DockerConfig = serde_json::from_str(&text)
        .map_err(|e| fail(format!("{} is not valid JSON: {e}", path.display())))?;
    if let Some((_, helper)) = config
        .cred_helpers
        .iter()
        .find(|(k, _)| normalize_key(k) == host)
    {
        return run_helper(helper, host);
    }
    if let Some((_, entry)) = config.auths.iter().find(|(k, _)| normalize_key(k) == host) {
        if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| {
                    fail(format!(
                        "the `auth` for {host} in {} is not base64",
                        path.display()
                    ))
                })?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| fail(format!("the `auth` for {host} is not UTF-8")))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| fail(format!("the `auth` for {host} is not USER:PASSWORD")))?;
            return Ok(Some(Credentials {
                user: user.to_owned(),
                password: password.to_owned(),
            }));
        }
        if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                user: user.clone(),
                password: password.clone(),
            }));
        }
    }
    match &config.creds_store {
        Some(store) if !store.is_empty() => run_helper(store, host),
        _ => Ok(None),
    }
}

/// Asks `docker-credential-NAME get` for `host`'s credentials.
fn run_helper(name: &str, host: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let fail = |message: String| RegistryError::Credentials {
        host: host.to_owned(),
        message,
    };
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("running {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|e| fail(format!("writing to {program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("running {program}: {e}")))?;
    if !out.status.success() {
        // Helpers exit non-zero with "credentials not found" when they have none.
        return Ok(None);
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout).map_err(|e| {
        fail(format!(
            "{program} printed something other than credentials: {e}"
        ))
    })?;
    Ok(Some(Credentials {
        user: answer.username,
        password: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalized_and_debug_hides_the_password() {
        assert_eq!(normalize_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalize_key("127.0.0.1:5000"), "127.0.0.1:5000");
        let c = Credentials {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.basic_header(), "Basic dTpodW50ZXIy");
    }
}
