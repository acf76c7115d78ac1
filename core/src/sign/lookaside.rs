//! Where simple signatures of registry images live: the "lookaside" store
//! that containers/image's `registries.d` configuration names, per
//! registry, namespace or repository. A signature of the manifest `DIGEST`
//! of `HOST/PATH` is `BASE/PATH@sha256=HEX/signature-N` (N from 1).
//!
//! The configuration is read as containers/image reads it: every `*.yaml`
//! file of the directory; `docker:` scopes (`host/repo:tag`, `host/repo`,
//! its parent namespaces, `host`, `*.domain`) matched most specific first,
//! then `default-docker:`; `lookaside-staging` (or the older
//! `sigstore-staging`) for writing, else `lookaside` (`sigstore`). Without
//! any, the built-in default directory is used, as podman and skopeo do.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};

/// At most this many signatures are read for one image.
pub const MAX_SIGNATURES: usize = 64;
/// The largest registries.d file read.
const MAX_CONFIG: u64 = 1024 * 1024;

/// A registry image as the lookaside names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerName {
    /// `HOST[:PORT]`
    pub host: String,
    /// The repository path below the host (`library/debian`).
    pub path: String,
    pub tag: Option<String>,
}

impl DockerName {
    /// `HOST/PATH`
    #[must_use]
    pub fn repository(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// `HOST/PATH:TAG`, or `HOST/PATH` without a tag.
    #[must_use]
    pub fn with_tag(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.repository()),
            None => self.repository(),
        }
    }

    /// The scopes a `registries.d` entry may name for this image, most
    /// specific first.
    fn scopes(&self) -> Vec<String> {
        let mut out = vec![self.with_tag()];
        let mut path = self.path.as_str();
        loop {
            out.push(format!("{}/{path}", self.host));
            match path.rsplit_once('/') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
        out.push(self.host.clone());
        let hostname = self.host.split(':').next().unwrap_or(&self.host);
        let mut rest = hostname;
        while let Some((_, after)) = rest.split_once('.') {
            out.push(format!("*.{after}"));
            rest = after;
        }
        out
    }
}

/// The lookaside locations configured for one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookaside {
    /// Where signatures are read from.
    pub read: String,
    /// Where new signatures are written.
    pub write: String,
}

#[derive(Default)]
struct Entry {
    lookaside: Option<String>,
    staging: Option<String>,
}

fn entry(what: &str, config: &Yaml) -> Result<Entry> {
    if config.as_hash().is_none() && !config.is_null() {
        return Err(Error::invalid(format!(
            "{what}: must be a mapping (lookaside: URL, ...)"
        )));
    }
    let get = |new: &str, old: &str| -> Result<Option<String>> {
        let (current, former) = (&config[new], &config[old]);
        if !current.is_badvalue() && !former.is_badvalue() {
            return Err(Error::invalid(format!(
                "{what}: both {new} and {old} are set; they are one setting (the second its old name)"
            )));
        }
        let value = if current.is_badvalue() {
            former
        } else {
            current
        };
        match value {
            Yaml::BadValue | Yaml::Null => Ok(None),
            Yaml::String(url) => Ok(Some(url.clone())),
            _ => Err(Error::invalid(format!("{what}: {new} must be a URL"))),
        }
    };
    Ok(Entry {
        lookaside: get("lookaside", "sigstore")?,
        staging: get("lookaside-staging", "sigstore-staging")?,
    })
}

/// The `registries.d` directory: `dir`, else the user's
/// (`~/.config/containers/registries.d`) when it exists, else
/// `/etc/containers/registries.d`.
#[must_use]
pub fn config_dir(dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let user = Path::new(&home).join(".config/containers/registries.d");
        if user.is_dir() {
            return user;
        }
    }
    PathBuf::from("/etc/containers/registries.d")
}

/// The built-in default store (no configuration names one): root's
/// `/var/lib/containers/sigstore`, else `~/.local/share/containers/sigstore`.
fn builtin_default() -> String {
    if rustix::process::geteuid().is_root() {
        return "file:///var/lib/containers/sigstore".to_string();
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/".to_string());
    format!("file://{home}/.local/share/containers/sigstore")
}

/// Counts the aliases of a YAML document as it is parsed (nothing is
/// built): `registries.d` has no use for them, and expanding them is how a
/// few hundred bytes become gigabytes.
struct Aliases(usize);

impl yaml_rust2::parser::EventReceiver for Aliases {
    fn on_event(&mut self, ev: yaml_rust2::Event) {
        if matches!(ev, yaml_rust2::Event::Alias(_)) {
            self.0 += 1;
        }
    }
}

/// Reads one `registries.d` file: a regular file (never through a FIFO or
/// a device), at most 1 MiB, without YAML aliases.
fn read_config(file: &Path) -> Result<Vec<Yaml>> {
    let what = format!("registries.d {}", file.display());
    let mut text = String::new();
    crate::blobs::open_user_file(file)
        .map_err(|e| e.context("registries.d"))?
        .take(MAX_CONFIG + 1)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(Error::invalid(format!("{what}: larger than 1 MiB")));
    }
    let mut aliases = Aliases(0);
    yaml_rust2::parser::Parser::new_from_str(&text)
        .load(&mut aliases, true)
        .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
    if aliases.0 > 0 {
        return Err(Error::invalid(format!(
            "{what}: YAML aliases (*name) are not accepted here"
        )));
    }
    YamlLoader::load_from_str(&text).map_err(|e| Error::invalid(format!("{what}: {e}")))
}

/// The lookaside locations for `name`, from the `registries.d` directory
/// `dir` (see [`config_dir`]). The default directories configure nothing
/// when they do not exist; a directory given that does not exist, a file
/// that does not parse or a setting of the wrong type is an error naming
/// it.
pub fn lookup(dir: Option<&Path>, name: &DockerName) -> Result<Lookaside> {
    let given = dir.is_some();
    let dir = config_dir(dir);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(std::result::Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !given => Vec::new(),
        Err(e) => {
            return Err(Error::io(&dir, e).context("--registries.d"));
        }
    };
    files.sort();
    let mut default: Option<Entry> = None;
    let mut scoped: Vec<(String, Entry)> = Vec::new();
    for file in &files {
        let what = format!("registries.d {}", file.display());
        let docs = read_config(file)?;
        for doc in &docs {
            if doc.as_hash().is_none() && !doc.is_null() {
                return Err(Error::invalid(format!("{what}: not a mapping")));
            }
            let d = &doc["default-docker"];
            if !d.is_badvalue() && !d.is_null() {
                if default.is_some() {
                    return Err(Error::invalid(format!(
                        "{what}: default-docker is configured more than once (in this file or another)"
                    )));
                }
                default = Some(entry(&format!("{what}: default-docker"), d)?);
            }
            let docker = &doc["docker"];
            if !docker.is_badvalue() && !docker.is_null() && docker.as_hash().is_none() {
                return Err(Error::invalid(format!(
                    "{what}: docker: must be a mapping of scopes"
                )));
            }
            if let Some(map) = docker.as_hash() {
                for (k, v) in map {
                    let scope = k.as_str().ok_or_else(|| {
                        Error::invalid(format!("{what}: a docker: scope that is not a string"))
                    })?;
                    if scoped.iter().any(|(s, _)| s == scope) {
                        return Err(Error::invalid(format!(
                            "{what}: docker scope {scope} is configured more than once"
                        )));
                    }
                    scoped.push((
                        scope.to_string(),
                        entry(&format!("{what}: docker: {scope}"), v)?,
                    ));
                }
            }
        }
    }
    let chosen = name
        .scopes()
        .iter()
        .find_map(|s| scoped.iter().find(|(k, _)| k == s).map(|(_, e)| e))
        .or(default.as_ref());
    let (read, staging) = chosen.map_or((None, None), |e| (e.lookaside.clone(), e.staging.clone()));
    let read = read.unwrap_or_else(builtin_default);
    Ok(Lookaside {
        write: staging.unwrap_or_else(|| read.clone()),
        read,
    })
}

/// The directory a `file://` lookaside URL names for the signatures of
/// `digest` of `name`.
pub fn signature_dir(base: &str, name: &DockerName, digest: &Digest) -> Result<PathBuf> {
    let path = base.strip_prefix("file://").ok_or_else(|| {
        Error::invalid(format!(
            "lookaside {base}: only file:// lookaside stores are written and read here"
        ))
    })?;
    if !path.starts_with('/') {
        return Err(Error::invalid(format!(
            "lookaside {base}: a file:// URL needs an absolute path"
        )));
    }
    if name
        .path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(Error::invalid(format!(
            "repository {}: not a plain path",
            name.path
        )));
    }
    Ok(PathBuf::from(format!(
        "{}/{}@sha256={}",
        path.trim_end_matches('/'),
        name.path,
        digest.hex()
    )))
}

/// Fails unless signatures can be written under the lookaside URL `base`
/// (a `file://` directory, made if missing, where a file can be created).
pub fn check_writable(base: &str) -> Result<()> {
    let probe = DockerName {
        host: "h".into(),
        path: "p".into(),
        tag: None,
    };
    let dir = signature_dir(base, &probe, &Digest::of(b""))?;
    let root = dir.parent().unwrap_or(&dir);
    std::fs::create_dir_all(root)
        .at(root)
        .and_then(|()| crate::blobs::temp_file_in(root).map(drop))
        .map_err(|e| e.context(format!("lookaside {base}")))
}

/// Replaces the signatures of `digest` of `name` under `base` with
/// `signatures` (`signature-1` ...; later ones removed), each file written
/// under a temporary name and renamed into place.
pub fn put_signatures(
    base: &str,
    name: &DockerName,
    digest: &Digest,
    signatures: &[Vec<u8>],
) -> Result<PathBuf> {
    let dir = signature_dir(base, name, digest)?;
    std::fs::create_dir_all(&dir).at(&dir)?;
    for (i, sig) in signatures.iter().enumerate() {
        let path = dir.join(format!("signature-{}", i + 1));
        let mut tmp = crate::blobs::temp_file_in(&dir)?;
        std::io::Write::write_all(&mut tmp, sig).at(&path)?;
        tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    }
    for i in signatures.len() + 1..=MAX_SIGNATURES {
        let path = dir.join(format!("signature-{i}"));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(dir)
}

/// The signatures of `digest` of `name` under `base` (at most
/// [`MAX_SIGNATURES`], each at most 4 MiB; regular files only).
pub fn read_signatures(base: &str, name: &DockerName, digest: &Digest) -> Result<Vec<Vec<u8>>> {
    let dir = signature_dir(base, name, digest)?;
    let mut out = Vec::new();
    for i in 1..=MAX_SIGNATURES {
        let path = dir.join(format!("signature-{i}"));
        let file = match crate::blobs::open_regular(&path) {
            Ok(f) => f,
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => break,
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.take(super::gpg::MAX_SIGNATURE + 1)
            .read_to_end(&mut bytes)
            .at(&path)?;
        if bytes.len() as u64 > super::gpg::MAX_SIGNATURE {
            return Err(Error::invalid(format!(
                "signature {}: larger than 4 MiB",
                path.display()
            )));
        }
        out.push(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> DockerName {
        DockerName {
            host: "reg.example.com:5000".into(),
            path: "team/app".into(),
            tag: Some("v1".into()),
        }
    }

    #[test]
    fn the_most_specific_scope_wins() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        std::fs::write(
            dir.path().join("a.yaml"),
            "default-docker:\n  lookaside: file:///d\ndocker:\n  reg.example.com:5000:\n    lookaside: file:///host\n  reg.example.com:5000/team:\n    sigstore: file:///ns\n    sigstore-staging: file:///ns-staging\n",
        )
        .expect("the test fixture is valid");
        let got = lookup(Some(dir.path()), &name()).expect("the test fixture is valid");
        assert_eq!(got.read, "file:///ns");
        assert_eq!(got.write, "file:///ns-staging");
        let other = DockerName {
            host: "other:1".into(),
            path: "x".into(),
            tag: None,
        };
        assert_eq!(
            lookup(Some(dir.path()), &other)
                .expect("the test fixture is valid")
                .write,
            "file:///d"
        );
        std::fs::write(
            dir.path().join("b.yaml"),
            "docker:\n  '*.example.com':\n    lookaside: file:///wild\n",
        )
        .expect("the test fixture is valid");
        let mut n = name();
        n.host = "x.example.com".into();
        assert_eq!(
            lookup(Some(dir.path()), &n)
                .expect("the test fixture is valid")
                .read,
            "file:///wild"
        );
        std::fs::write(
            dir.path().join("c.yaml"),
            "default-docker:\n  lookaside: x\n",
        )
        .expect("the test fixture is valid");
        let err = lookup(Some(dir.path()), &name()).unwrap_err().to_string();
        assert!(err.contains("more than once"), "{err}");
        std::fs::remove_file(dir.path().join("c.yaml")).expect("the test fixture is valid");
        // Aliases, wrong types, files that are not regular: refused.
        for (text, why) in [
            ("a: &x [1]\nb: *x\n", "aliases"),
            ("docker: [1, 2]\n", "mapping of scopes"),
            ("docker:\n  somehost: file:///x\n", "must be a mapping"),
        ] {
            std::fs::write(dir.path().join("d.yaml"), text).expect("the test writes its fixture");
            let err = lookup(Some(dir.path()), &name()).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        std::fs::remove_file(dir.path().join("d.yaml")).expect("the test fixture is valid");
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("z.yaml"))
            .expect("the test makes its symlink");
        assert!(lookup(Some(dir.path()), &name()).is_err());
        let missing = dir.path().join("missing");
        let err = lookup(Some(&missing), &name()).unwrap_err().to_string();
        assert!(err.contains("--registries.d"), "{err}");
    }

    #[test]
    fn signatures_are_replaced_and_read_back() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let base = format!("file://{}", dir.path().display());
        let d = Digest::of(b"m");
        put_signatures(&base, &name(), &d, &[b"a".to_vec(), b"b".to_vec()])
            .expect("the test fixture is valid");
        let at = signature_dir(&base, &name(), &d).expect("the test fixture is valid");
        assert!(at.ends_with(format!("team/app@sha256={}", d.hex())));
        put_signatures(&base, &name(), &d, &[b"c".to_vec()]).expect("the test fixture is valid");
        assert_eq!(
            read_signatures(&base, &name(), &d).expect("the test fixture is valid"),
            vec![b"c".to_vec()]
        );
        let mut bad = name();
        bad.path = "../x".into();
        assert!(signature_dir(&base, &bad, &d).is_err());
        assert!(signature_dir("https://x", &name(), &d).is_err());
    }
}
