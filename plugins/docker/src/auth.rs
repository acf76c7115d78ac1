//! Registry credentials and `WWW-Authenticate` challenges.
//!
//! Credentials come from `--creds`, an auth file (`--authfile`,
//! `REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`,
//! `~/.docker/config.json`), or a `docker-credential-*` helper, which is
//! given the registry on its stdin, never a secret in its arguments. A secret
//! never appears in a message: [`Secret`] prints as `<redacted>`.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;
use treeport_core::error::{Error, Result};

/// A password or token that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    #[must_use]
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for an Authorization header only.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A user name and its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub secret: Secret,
}

impl Credentials {
    /// The value of a basic `Authorization` header.
    #[must_use]
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.secret.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The auth files searched, in order, when no `--authfile` is given.
#[must_use]
pub fn default_auth_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|f| !f.is_empty()) {
        out.push(PathBuf::from(f));
    }
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        out.push(Path::new(&d).join("containers/auth.json"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        out.push(Path::new(&home).join(".config/containers/auth.json"));
        out.push(Path::new(&home).join(".docker/config.json"));
    }
    out
}

/// Reduces an auth-file key (`https://host:5000/v1/`, `host:5000/repo`) to
/// its registry host.
fn key_host(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// Finds credentials for `registry` (`host[:port]`) in `files` (the first
/// file that exists and knows the registry wins).
pub fn lookup(registry: &str, files: &[PathBuf]) -> Result<Option<Credentials>> {
    for path in files {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        let file: AuthFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(format!(
                "auth file {}: not valid JSON ({})",
                path.display(),
                e.classify_name()
            ))
        })?;
        if let Some((_, helper)) = file
            .cred_helpers
            .iter()
            .find(|(k, _)| key_host(k) == registry)
        {
            return helper_get(helper, registry);
        }
        if let Some((_, entry)) = file.auths.iter().find(|(k, _)| key_host(k) == registry) {
            return decode_entry(entry, registry, path).map(Some);
        }
        if let Some(store) = &file.creds_store
            && let Some(c) = helper_get(store, registry)?
        {
            return Ok(Some(c));
        }
    }
    Ok(None)
}

/// The kind of a `serde_json` error without its text, which could quote the file.
trait Classify {
    fn classify_name(&self) -> &'static str;
}

impl Classify for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected structure",
            serde_json::error::Category::Eof => "unexpected end",
        }
    }
}

fn decode_entry(entry: &AuthEntry, registry: &str, path: &Path) -> Result<Credentials> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Credentials {
            username: u.clone(),
            secret: Secret::new(p.clone()),
        });
    }
    if let Some(token) = &entry.identitytoken
        && !token.is_empty()
    {
        return Ok(Credentials {
            username: "<token>".into(),
            secret: Secret::new(token.clone()),
        });
    }
    let bad = || {
        Error::invalid(format!(
            "auth file {}: the entry for {registry} is not base64 of USER:PASSWORD",
            path.display()
        ))
    };
    let raw = entry.auth.as_deref().ok_or_else(bad)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(raw.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, pass) = text.split_once(':').ok_or_else(bad)?;
    Ok(Credentials {
        username: user.to_string(),
        secret: Secret::new(pass),
    })
}

/// A credential helper's answer.
#[derive(Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Asks `docker-credential-<helper>` for the registry's credentials. The
/// registry goes on stdin, as the helper protocol says.
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    if helper.is_empty()
        || !helper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(Error::invalid(format!(
            "credential helper name '{helper}' is not valid"
        )));
    }
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::invalid(format!("cannot run {program}: {e}")))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(registry.as_bytes())
        .map_err(|e| Error::invalid(format!("{program}: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| Error::invalid(format!("{program}: {e}")))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::invalid(format!(
            "{program} get failed for {registry} ({})",
            out.status
        )));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout).map_err(|_| {
        Error::invalid(format!(
            "{program} gave an answer that is not credentials JSON"
        ))
    })?;
    Ok(Some(Credentials {
        username: reply.username,
        secret: Secret::new(reply.secret),
    }))
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased scheme: `basic` or `bearer`.
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value into its challenges (RFC 7235:
/// `scheme k=v, k="quoted \" value", scheme2 ...`).
#[must_use]
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let s = header.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t' || s[*i] == b',') {
            *i += 1;
        }
    };
    let token = |i: &mut usize| -> String {
        let start = *i;
        while *i < s.len() && !b" \t,=\"".contains(&s[*i]) {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    };
    while i < s.len() {
        skip_ws(&mut i);
        let word = token(&mut i);
        if word.is_empty() {
            if i < s.len() {
                i += 1;
            }
            continue;
        }
        // A word followed by '=' is a parameter of the current challenge.
        let mut j = i;
        while j < s.len() && (s[j] == b' ' || s[j] == b'\t') {
            j += 1;
        }
        if j < s.len() && s[j] == b'=' && !out.is_empty() {
            i = j + 1;
            while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
                i += 1;
            }
            let value = if i < s.len() && s[i] == b'"' {
                i += 1;
                let mut v = Vec::new();
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    v.push(s[i]);
                    i += 1;
                }
                i += 1;
                String::from_utf8_lossy(&v).into_owned()
            } else {
                token(&mut i)
            };
            out.last_mut()
                .expect("checked non-empty")
                .params
                .insert(word.to_ascii_lowercase(), value);
        } else {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quotes_and_several_schemes() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push", Basic realm="x \"y\"""#,
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.example/token");
        assert_eq!(c[0].params["scope"], "repository:a/b:pull,push");
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(c[1].params["realm"], "x \"y\"");
        assert!(parse_challenges("").is_empty());
        assert!(parse_challenges("=,\"\"").is_empty());
    }

    #[test]
    fn auth_files_are_read_and_secrets_do_not_print() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let file = dir.path().join("auth.json");
        std::fs::write(
            &file,
            r#"{"auths":{"https://reg.example:5000/v1/":{"auth":"YWxpY2U6czNjcjN0"}}}"#,
        )
        .expect("the test fixture is valid");
        let c = lookup("reg.example:5000", std::slice::from_ref(&file))
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(c.username, "alice");
        assert_eq!(c.secret.expose(), "s3cr3t");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert!(
            lookup("other:5000", &[file])
                .expect("the test fixture is valid")
                .is_none()
        );
    }
}
