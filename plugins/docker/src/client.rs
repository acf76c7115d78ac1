//! An HTTP client for one registry: TLS as skopeo configures it, the basic
//! and bearer-token flows, and retries with backoff for transient failures
//! (connection errors, 5xx, 429).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use treeport_core::error::{Error, Result};
use ureq::http::{self, Response};
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::auth::{Challenge, Credentials, parse_challenges};

/// How a client talks to a registry.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub credentials: Option<Credentials>,
    pub tls_verify: bool,
    pub cert_dir: Option<PathBuf>,
    /// Attempts per request for transient failures.
    pub attempts: u32,
    /// The first backoff delay; it doubles each time.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            credentials: None,
            tls_verify: true,
            cert_dir: None,
            attempts: 6,
            backoff: Duration::from_millis(200),
        }
    }
}

/// The longest a document's body (a manifest, a token, a tag list page, an
/// error) may take to arrive.
pub const DOCUMENT_DEADLINE: Duration = Duration::from_secs(60);

/// How long a request may keep being retried after transient failures.
const RETRY_BUDGET: Duration = Duration::from_secs(180);

/// The slowest transfer a blob may make before its deadline passes: the
/// deadline is a minute plus the blob's size at this rate.
const SLOWEST_BYTES_PER_SEC: u64 = 256 * 1024;

/// How long moving `bytes` may take.
#[must_use]
pub fn transfer_deadline(bytes: u64) -> Duration {
    DOCUMENT_DEADLINE + Duration::from_secs(bytes / SLOWEST_BYTES_PER_SEC)
}

/// A reader that fails once its deadline has passed: a server that sends a
/// byte every few seconds keeps each read alive but cannot stretch the
/// whole transfer past the deadline.
pub struct Deadline<R> {
    inner: R,
    until: std::time::Instant,
    what: String,
}

impl<R> Deadline<R> {
    pub fn new(inner: R, limit: Duration, what: impl Into<String>) -> Self {
        Deadline {
            inner,
            until: std::time::Instant::now() + limit,
            what: what.into(),
        }
    }
}

impl<R: Read> Read for Deadline<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::time::Instant::now() > self.until {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{}: too slow, gave up at its deadline", self.what),
            ));
        }
        self.inner.read(buf)
    }
}

/// The scheme, host (lowercase) and port of an absolute URL.
fn origin(url: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let default = match scheme.as_str() {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    Some((scheme, host.to_ascii_lowercase(), port))
}

/// A request body that can be sent again on a retry.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`, streamed.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

impl Body<'_> {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
}

/// What the registry asked for, learned from its challenges.
#[derive(Clone, Debug, Default)]
enum AuthMode {
    #[default]
    Unknown,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A client for one registry.
pub struct Client {
    registry: String,
    options: ClientOptions,
    agent: ureq::Agent,
    /// `https` or `http` (only with `--tls-verify=false`), found on first use.
    scheme: OnceLock<&'static str>,
    auth: Mutex<AuthMode>,
    /// Bearer tokens by scope set.
    tokens: Mutex<HashMap<String, String>>,
}

fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .max_redirects(8)
            .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            // Documents, tokens and error bodies: a whole minute at most,
            // however slowly the server drips them. Blob downloads set
            // their own deadline from their size.
            .timeout_recv_body(Some(DOCUMENT_DEADLINE))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .timeout_per_write(Some(Duration::from_secs(120)))
            .user_agent(concat!("treeport/", env!("CARGO_PKG_VERSION")))
            .build(),
    )
}

/// Root certificates: the system bundle, the registry's `certs.d` directories
/// (as containers and docker keep them), and `--cert-dir`.
fn root_certs(registry: &str, cert_dir: Option<&Path>) -> Result<RootCerts> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    let mut add_pem = |path: &Path| -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        for item in ureq::tls::parse_pem(&bytes) {
            if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        Ok(())
    };
    for bundle in [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ] {
        if Path::new(bundle).is_file() {
            add_pem(Path::new(bundle))?;
            break;
        }
    }
    let mut dirs: Vec<PathBuf> = vec![
        Path::new("/etc/containers/certs.d").join(registry),
        Path::new("/etc/docker/certs.d").join(registry),
    ];
    if let Some(d) = cert_dir {
        if !d.is_dir() {
            return Err(Error::invalid(format!(
                "--cert-dir {}: not a directory",
                d.display()
            )));
        }
        dirs.push(d.to_path_buf());
    }
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "crt") {
                add_pem(&p)?;
            }
        }
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    })
}

fn transient_status(s: u16) -> bool {
    matches!(s, 408 | 429 | 500 | 502 | 503 | 504)
}

impl Client {
    /// A client for `registry` (`host[:port]`).
    pub fn new(registry: &str, options: ClientOptions) -> Result<Self> {
        let tls = if options.tls_verify {
            TlsConfig::builder()
                .root_certs(root_certs(registry, options.cert_dir.as_deref())?)
                .build()
        } else {
            TlsConfig::builder().disable_verification(true).build()
        };
        Ok(Client {
            registry: registry.to_string(),
            agent: agent(tls),
            options,
            scheme: OnceLock::new(),
            auth: Mutex::new(AuthMode::Unknown),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's `host[:port]`.
    #[must_use]
    pub fn registry(&self) -> &str {
        &self.registry
    }

    fn scheme(&self) -> Result<&'static str> {
        if let Some(s) = self.scheme.get() {
            return Ok(s);
        }
        // The version check tells whether the registry speaks TLS.
        let probe = |scheme: &str| {
            self.agent
                .get(&format!("{scheme}://{}/v2/", self.registry))
                .call()
                .map(|r| r.status().as_u16())
        };
        let chosen = match probe("https") {
            Ok(_) => "https",
            Err(e) if !self.options.tls_verify => match probe("http") {
                Ok(_) => "http",
                Err(_) => return Err(self.transport_error("GET /v2/", &e)),
            },
            Err(e) => return Err(self.transport_error("GET /v2/", &e)),
        };
        Ok(self.scheme.get_or_init(|| chosen))
    }

    /// An absolute URL for a registry path or a `Location` header.
    pub fn url(&self, path_or_url: &str) -> Result<String> {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            return Ok(path_or_url.to_string());
        }
        Ok(format!(
            "{}://{}{}",
            self.scheme()?,
            self.registry,
            path_or_url
        ))
    }

    /// True when `url` is the registry itself (same scheme, host and port):
    /// the only place its credentials go, besides the token realm it names.
    fn is_registry(&self, url: &str) -> Result<bool> {
        let own = format!("{}://{}/", self.scheme()?, self.registry);
        Ok(origin(url).is_some() && origin(url) == origin(&own))
    }

    /// The error for a request elsewhere that asked for credentials.
    fn elsewhere_needs_auth(&self, url: &str) -> Error {
        let host = origin(url).map_or_else(String::new, |(s, h, p)| format!("{s}://{h}:{p}"));
        Error::invalid(format!(
            "registry {} sent treeport to {host}, which asks for credentials; \
             they are sent only to {} itself",
            self.registry, self.registry
        ))
    }

    fn transport_error(&self, what: &str, e: &ureq::Error) -> Error {
        let text = e.to_string();
        // A TLS client reading a plain HTTP answer sees a record of no TLS
        // content type.
        if self.options.tls_verify
            && (text.contains("InvalidContentType") || text.contains("corrupt message"))
        {
            return Error::invalid(format!(
                "registry {}: {what}: the registry answered in plain HTTP, not HTTPS; \
                 to talk to it without TLS, pass --tls-verify=false",
                self.registry
            ));
        }
        let hint = if self.options.tls_verify
            && (text.contains("certificate")
                || matches!(e, ureq::Error::Tls(_) | ureq::Error::Rustls(_)))
        {
            " (use --cert-dir with the registry's CA, or --tls-verify=false)"
        } else {
            ""
        };
        Error::invalid(format!("registry {}: {what}: {text}{hint}", self.registry))
    }

    /// Sends a request, handling authentication and retrying transient
    /// failures. `scopes` are the token scopes the request needs. Returns
    /// the final response whatever its status; 401 after authenticating is
    /// an error.
    pub fn send(
        &self,
        method: &http::Method,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        scopes: &[String],
    ) -> Result<Response<ureq::Body>> {
        self.send_with(
            method,
            path_or_url,
            headers,
            body,
            scopes,
            Some(DOCUMENT_DEADLINE),
        )
    }

    /// [`Client::send`] for a response whose body is a blob: its time limit
    /// is set by whoever reads it, from the blob's size (see [`Deadline`]).
    pub fn send_for_blob(
        &self,
        method: &http::Method,
        path_or_url: &str,
        scopes: &[String],
    ) -> Result<Response<ureq::Body>> {
        self.send_with(method, path_or_url, &[], Body::Empty, scopes, None)
    }

    fn send_with(
        &self,
        method: &http::Method,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        scopes: &[String],
        recv_limit: Option<Duration>,
    ) -> Result<Response<ureq::Body>> {
        let url = self.url(path_or_url)?;
        let what = format!("{method} {}", redact_query(path_or_url));
        // A Location or Link the registry gave may point anywhere: only the
        // registry gets its credentials.
        let own = self.is_registry(&url)?;
        // Retries stop when this request has taken too long in all.
        let started = std::time::Instant::now();
        let retry =
            |attempt: u32| attempt < self.options.attempts && started.elapsed() < RETRY_BUDGET;
        let mut delay = self.options.backoff;
        let mut authenticated_once = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let auth = if own {
                self.authorization(scopes)?
            } else {
                None
            };
            let result = self.send_once(method, &url, headers, body, auth.as_deref(), recv_limit);
            // Where the answer really came from: a redirect may have taken
            // the request elsewhere, whose challenges are not the registry's.
            let answered_by = result.as_ref().ok().map(|resp| {
                use ureq::ResponseExt;
                resp.get_uri().to_string()
            });
            let from_registry = match &answered_by {
                Some(u) => own && self.is_registry(u)?,
                None => own,
            };
            match result {
                Ok(resp) if resp.status().as_u16() == 401 && !from_registry => {
                    return Err(self.elsewhere_needs_auth(answered_by.as_deref().unwrap_or(&url)));
                }
                Ok(resp) if resp.status().as_u16() == 401 => {
                    let challenges = resp
                        .headers()
                        .get_all("www-authenticate")
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(parse_challenges)
                        .collect::<Vec<_>>();
                    if authenticated_once || !self.learn(&challenges)? {
                        return Err(self.auth_failed());
                    }
                    authenticated_once = true;
                    // Drop any token that did not work for these scopes.
                    self.tokens
                        .lock()
                        .expect("token cache lock")
                        .remove(&scopes.join(" "));
                }
                Ok(resp) if transient_status(resp.status().as_u16()) && retry(attempt) => {
                    let wait = retry_after(&resp)
                        .unwrap_or(delay)
                        .min(Duration::from_secs(30));
                    std::thread::sleep(wait);
                    delay *= 2;
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retry(attempt) && transient_error(&e) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => return Err(self.transport_error(&what, &e)),
            }
        }
    }

    fn send_once(
        &self,
        method: &http::Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
        auth: Option<&str>,
        recv_limit: Option<Duration>,
    ) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
        use ureq::RequestExt;
        let req = request(method, url, headers, auth);
        // However slowly the server reads, the body is sent by its deadline.
        let send_limit = Some(transfer_deadline(body.len()));
        let run = |req: http::Request<ureq::SendBody<'_>>| {
            req.with_agent(&self.agent)
                .configure()
                .timeout_send_body(send_limit)
                .timeout_recv_body(recv_limit)
                .run()
        };
        match body {
            Body::Empty => {
                let req = if method == http::Method::PUT
                    || method == http::Method::POST
                    || method == http::Method::PATCH
                {
                    req.header("Content-Length", "0")
                } else {
                    req
                };
                run(req
                    .body(ureq::SendBody::none())
                    .map_err(ureq::Error::Http)?)
            }
            Body::Bytes(bytes) => {
                let req = req.header("Content-Length", bytes.len().to_string());
                run(req
                    .body(ureq::SendBody::from_owned_reader(std::io::Cursor::new(
                        bytes.to_vec(),
                    )))
                    .map_err(ureq::Error::Http)?)
            }
            Body::File { path, offset, len } => {
                let mut file = treeport_core::blobs::open_regular(path)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                file.seek(SeekFrom::Start(offset))?;
                let reader = file.take(len);
                let req = req.header("Content-Length", body.len().to_string());
                run(req
                    .body(ureq::SendBody::from_owned_reader(reader))
                    .map_err(ureq::Error::Http)?)
            }
        }
    }

    /// Sends a body of unknown length as it is produced (chunked transfer
    /// encoding), once: a stream cannot be sent again, so there is no retry,
    /// and the credentials are those an earlier request of the same scopes
    /// settled.
    pub fn send_stream(
        &self,
        method: &http::Method,
        path_or_url: &str,
        headers: &[(&str, &str)],
        body: &mut dyn Read,
        scopes: &[String],
    ) -> Result<Response<ureq::Body>> {
        let url = self.url(path_or_url)?;
        let auth = if self.is_registry(&url)? {
            self.authorization(scopes)?
        } else {
            None
        };
        let req = request(method, &url, headers, auth.as_deref())
            .header("Transfer-Encoding", "chunked")
            .body(ureq::SendBody::from_reader(body))
            .map_err(|e| Error::Other(e.to_string()))?;
        self.agent.run(req).map_err(|e| {
            self.transport_error(&format!("{method} {}", redact_query(path_or_url)), &e)
        })
    }

    fn auth_failed(&self) -> Error {
        match &self.options.credentials {
            Some(c) => Error::invalid(format!(
                "authentication failed for registry {} (user {})",
                self.registry, c.username
            )),
            None => Error::invalid(format!(
                "authentication failed for registry {}: it needs credentials (--creds or --authfile)",
                self.registry
            )),
        }
    }

    /// Records what the registry's challenges ask for; false when nothing
    /// can answer them.
    fn learn(&self, challenges: &[Challenge]) -> Result<bool> {
        let mut auth = self.auth.lock().expect("auth lock");
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = b.params.get("realm").cloned().ok_or_else(|| {
                Error::invalid(format!(
                    "registry {}: bearer challenge without a realm",
                    self.registry
                ))
            })?;
            *auth = AuthMode::Bearer {
                realm,
                service: b.params.get("service").cloned(),
            };
            return Ok(true);
        }
        if challenges.iter().any(|c| c.scheme == "basic") {
            if self.options.credentials.is_none() {
                return Ok(false);
            }
            *auth = AuthMode::Basic;
            return Ok(true);
        }
        Ok(false)
    }

    /// The `Authorization` value for a request needing `scopes`.
    fn authorization(&self, scopes: &[String]) -> Result<Option<String>> {
        let mode = self.auth.lock().expect("auth lock").clone();
        match mode {
            AuthMode::Unknown => Ok(None),
            AuthMode::Basic => Ok(self
                .options
                .credentials
                .as_ref()
                .map(Credentials::basic_header)),
            AuthMode::Bearer { realm, service } => {
                let key = scopes.join(" ");
                if let Some(t) = self.tokens.lock().expect("token cache lock").get(&key) {
                    return Ok(Some(format!("Bearer {t}")));
                }
                let token = self.fetch_token(&realm, service.as_deref(), scopes)?;
                self.tokens
                    .lock()
                    .expect("token cache lock")
                    .insert(key, token.clone());
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    /// The bearer-token flow: GET the realm with service and scopes, with the
    /// credentials as basic auth when there are any.
    fn fetch_token(&self, realm: &str, service: Option<&str>, scopes: &[String]) -> Result<String> {
        let mut url = realm.to_string();
        let sep = if url.contains('?') { '&' } else { '?' };
        let mut params: Vec<String> = Vec::new();
        if let Some(s) = service {
            params.push(format!("service={}", encode(s)));
        }
        params.extend(
            scopes
                .iter()
                .map(|scope| format!("scope={}", encode(scope))),
        );
        if !params.is_empty() {
            url.push(sep);
            url.push_str(&params.join("&"));
        }
        let mut delay = self.options.backoff;
        for attempt in 1..=self.options.attempts {
            let mut req = http::Request::builder().method(http::Method::GET).uri(&url);
            if let Some(c) = &self.options.credentials {
                req = req.header("Authorization", c.basic_header());
            }
            let req = req
                .body(())
                .map_err(|e| Error::invalid(format!("token request: {e}")))?;
            match self.agent.run(req) {
                Ok(mut resp) if resp.status().is_success() => {
                    #[derive(serde::Deserialize)]
                    struct Token {
                        token: Option<String>,
                        access_token: Option<String>,
                    }
                    let bytes = resp
                        .body_mut()
                        .with_config()
                        .limit(1 << 20)
                        .read_to_vec()
                        .map_err(|e| {
                            Error::invalid(format!(
                                "registry {}: token service answer: {e}",
                                self.registry
                            ))
                        })?;
                    let t: Token = serde_json::from_slice(&bytes).map_err(|_| {
                        Error::invalid(format!(
                            "registry {}: the token service answer is not JSON",
                            self.registry
                        ))
                    })?;
                    return t
                        .token
                        .or(t.access_token)
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "registry {}: the token service gave no token",
                                self.registry
                            ))
                        });
                }
                Ok(resp) if matches!(resp.status().as_u16(), 401 | 403) => {
                    return Err(self.auth_failed());
                }
                Ok(resp)
                    if transient_status(resp.status().as_u16())
                        && attempt < self.options.attempts =>
                {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Ok(resp) => {
                    return Err(Error::invalid(format!(
                        "registry {}: token service answered {}",
                        self.registry,
                        resp.status()
                    )));
                }
                Err(e) if attempt < self.options.attempts && transient_error(&e) => {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                Err(e) => {
                    return Err(Error::invalid(format!(
                        "registry {}: token service {}: {e}",
                        self.registry,
                        redact_query(realm)
                    )));
                }
            }
        }
        Err(Error::invalid(format!(
            "registry {}: token service kept failing",
            self.registry
        )))
    }

    /// An error for an unexpected response, with the registry's own error
    /// code and message when it sent them.
    pub fn unexpected(&self, what: &str, resp: &mut Response<ureq::Body>) -> Error {
        let status = resp.status();
        let detail = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .ok()
            .and_then(|text| {
                let v: serde_json::Value = serde_json::from_str(&text).ok()?;
                let e = v.get("errors")?.get(0)?;
                Some(format!(
                    ": {} {}",
                    e.get("code")?.as_str().unwrap_or(""),
                    e.get("message").and_then(|m| m.as_str()).unwrap_or("")
                ))
            })
            .unwrap_or_default();
        Error::invalid(format!(
            "registry {}: {what}: {status}{detail}",
            self.registry
        ))
    }
}

fn transient_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::Timeout(_)
            | ureq::Error::Protocol(_)
    )
}

fn retry_after(resp: &Response<ureq::Body>) -> Option<Duration> {
    let v = resp.headers().get("retry-after")?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A path without its query string (upload URLs carry state tokens).
fn redact_query(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

/// Percent-encodes a query value.
#[must_use]
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// A request's method, URL, headers and credentials.
fn request(
    method: &http::Method,
    url: &str,
    headers: &[(&str, &str)],
    auth: Option<&str>,
) -> http::request::Builder {
    let mut req = http::Request::builder().method(method.clone()).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let o = |u: &str| origin(u);
        assert_eq!(
            o("https://Reg.example/v2/"),
            o("https://reg.example:443/v2/x")
        );
        assert_ne!(o("https://reg.example/v2/"), o("http://reg.example/v2/"));
        assert_ne!(
            o("http://127.0.0.1:5000/v2/"),
            o("http://127.0.0.1:5001/v2/")
        );
        assert_ne!(
            o("http://127.0.0.1:5000/"),
            o("http://evil@127.0.0.2:5000/")
        );
        assert_eq!(
            o("http://[::1]:5000/a"),
            Some(("http".into(), "::1".into(), 5000))
        );
        assert_eq!(o("ftp://x/"), None);
        assert_eq!(o("/v2/relative"), None);
    }
}
