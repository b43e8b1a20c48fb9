//! Image references: `HOST[:PORT]/REPO[:TAG][@sha256:HEX]`.

use imgbuild_store::Digest;
use std::fmt;

/// The registry a reference without a host names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `host[:port]` as written (`docker.io` when none was).
    pub registry: String,
    /// The repository path, e.g. `library/debian`.
    pub repository: String,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The manifest digest, if pinned.
    pub digest: Option<Digest>,
}

/// A reference that cannot be parsed.
#[derive(Debug, thiserror::Error)]
#[error("`{reference}` is not an image reference ({why}); write it as HOST[:PORT]/REPO[:TAG] or HOST/REPO@sha256:HEX")]
pub struct ReferenceError {
    /// What was written.
    pub reference: String,
    /// What is wrong.
    pub why: String,
}

impl Reference {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let fail = |why: &str| ReferenceError {
            reference: text.to_owned(),
            why: why.to_owned(),
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(d.parse::<Digest>().map_err(|e| fail(&e.to_string()))?),
            ),
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), rest.to_owned()),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo.to_owned(), Some(tag.to_owned())),
            _ => (path, None),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid_repo = !repository.is_empty()
            && repository.split('/').all(|c| {
                !c.is_empty()
                    && c.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if !valid_repo {
            return Err(fail(
                "the repository must be lowercase letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        if let Some(tag) = &tag {
            let ok = !tag.is_empty()
                && tag.len() <= 128
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(fail("a tag is letters, digits, `.`, `_` and `-`"));
            }
        }
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host the API is served from (Docker Hub's API host differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_REGISTRY {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifests endpoint for: the digest when pinned, else the tag
    /// (`latest` when neither is given).
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The same repository at another digest.
    pub fn with_digest(&self, digest: &Digest) -> Self {
        Self {
            digest: Some(digest.clone()),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_tags_and_digests() {
        let r = Reference::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "team/app")
        );
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("localhost:5000/app@{d}")).unwrap();
        assert_eq!(r.manifest_ref(), d);
        let r = Reference::parse("debian:bookworm").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/debian:bookworm");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert!(Reference::parse("host.io/App:x").is_err());
        assert!(Reference::parse("host.io/app:bad tag").is_err());
    }
}
