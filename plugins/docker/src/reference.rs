//! `docker://HOST[:PORT]/REPO[:TAG[,TAG...]|@DIGEST]` references.

use std::fmt;

use treeport_core::digest::Digest;
use treeport_core::error::{Error, Result};

/// A parsed registry reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `host` or `host:port`.
    pub registry: String,
    /// The repository path, e.g. `debian/bookworm`.
    pub repository: String,
    /// Tags (a push may name several, comma-separated).
    pub tags: Vec<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses the rest of a `docker:` selector (`//HOST/REPO...`).
    pub fn parse(rest: &str) -> Result<Self> {
        let bad = |why: &str| {
            Error::usage(format!(
                "docker:{rest}: {why} (expected docker://HOST[:PORT]/REPO[:TAG])"
            ))
        };
        let body = rest.strip_prefix("//").ok_or_else(|| bad("missing '//'"))?;
        let (registry, path) = body.split_once('/').ok_or_else(|| bad("no repository"))?;
        if registry.is_empty()
            || !registry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        {
            return Err(bad("bad registry host"));
        }
        let (path, digest) = match path.split_once('@') {
            Some((p, d)) => (p, Some(d.parse::<Digest>()?)),
            None => (path, None),
        };
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tags) = match path[last_slash..].find(':') {
            Some(i) => {
                let (repo, tags) = path.split_at(last_slash + i);
                (repo, tags[1..].split(',').map(str::to_string).collect())
            }
            None => (path, Vec::new()),
        };
        check_repository(repository).map_err(|()| bad("invalid repository name"))?;
        for tag in &tags {
            check_tag(tag).map_err(|()| bad(&format!("invalid tag '{tag}'")))?;
        }
        Ok(Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tags,
            digest,
        })
    }

    /// The reference to fetch: the digest, else the first tag, else `latest`.
    #[must_use]
    pub fn target(&self) -> String {
        match (&self.digest, self.tags.first()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The tags a push writes: those given, else `latest` (none when the
    /// reference is a digest).
    #[must_use]
    pub fn push_tags(&self) -> Vec<String> {
        if !self.tags.is_empty() {
            self.tags.clone()
        } else if self.digest.is_some() {
            Vec::new()
        } else {
            vec!["latest".to_string()]
        }
    }

    /// The same repository with another path (for a mount source).
    #[must_use]
    pub fn with_repository(&self, repository: &str) -> Reference {
        Reference {
            repository: repository.to_string(),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repository)?;
        if !self.tags.is_empty() {
            write!(f, ":{}", self.tags.join(","))?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The distribution spec's repository grammar: lowercase components of
/// alphanumerics joined by `.`, `_`, `__` or `-`, separated by `/`.
fn check_repository(name: &str) -> std::result::Result<(), ()> {
    if name.is_empty() || name.len() > 255 {
        return Err(());
    }
    for component in name.split('/') {
        let b = component.as_bytes();
        if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric()
        {
            return Err(());
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c))
        {
            return Err(());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> std::result::Result<(), ()> {
    let b = tag.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(c));
    if ok { Ok(()) } else { Err(()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_ports_tags_and_digests() {
        let r = Reference::parse("//127.0.0.1:5000/debian/bookworm:12,latest")
            .expect("the test literal parses");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "debian/bookworm");
        assert_eq!(r.tags, ["12", "latest"]);
        assert_eq!(
            r.to_string(),
            "docker://127.0.0.1:5000/debian/bookworm:12,latest"
        );
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("//localhost/x@{d}")).expect("the test literal parses");
        assert_eq!(r.target(), d);
        assert!(r.push_tags().is_empty());
        let r = Reference::parse("//localhost/x").expect("the test literal parses");
        assert_eq!(r.target(), "latest");
    }

    #[test]
    fn bad_references_are_usage_errors() {
        for bad in [
            "localhost/x",
            "//localhost",
            "//localhost/X",
            "//h/x:bad tag",
            "//h/x/",
            "//h/-x",
        ] {
            assert!(Reference::parse(bad).unwrap_err().is_usage(), "{bad}");
        }
    }
}
