//! Real registries for the tests: Debian's `docker-registry` on 127.0.0.1,
//! with htpasswd or token auth and a self-signed TLS certificate; a token
//! service; and an HTTP proxy that injects faults or throttles.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::{require, tool};

/// The user and password the test registries accept.
pub const USER: &str = "treeport";
/// A password with characters that must survive quoting and encoding.
pub const PASSWORD: &str = "s3cret-Pa55:word!";

/// How a registry authenticates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    None,
    Htpasswd,
    Token,
}

/// A running `docker-registry`, stopped when dropped.
pub struct RegistryServer {
    child: Child,
    pub dir: tempfile::TempDir,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Directory with `ca.crt`, for `--cert-dir`.
    pub cert_dir: PathBuf,
    /// An auth file with the test credentials for this registry.
    pub authfile: PathBuf,
    _token: Option<TokenServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local address")
        .port()
}

/// Writes a self-signed certificate for 127.0.0.1 into `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    tool(
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key.to_str().expect("temporary paths are UTF-8"),
            "-out",
            cert.to_str().expect("temporary paths are UTF-8"),
        ],
    );
    (cert, key)
}

/// Writes a CA (to `ca_out`) and a server certificate for 127.0.0.1 that
/// it signed, as a registry serves one.
fn signed_by_ca(dir: &Path, ca_out: &Path) -> (PathBuf, PathBuf) {
    let (ca_cert, ca_key) = self_signed(dir, "ca");
    std::fs::copy(&ca_cert, ca_out).expect("copy a fixture file");
    let key = dir.join("server.key");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.crt");
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write a fixture file");
    tool(
        "openssl",
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            key.to_str().expect("temporary paths are UTF-8"),
            "-out",
            csr.to_str().expect("temporary paths are UTF-8"),
        ],
    );
    tool(
        "openssl",
        [
            "x509",
            "-req",
            "-in",
            csr.to_str().expect("temporary paths are UTF-8"),
            "-CA",
            ca_cert.to_str().expect("temporary paths are UTF-8"),
            "-CAkey",
            ca_key.to_str().expect("temporary paths are UTF-8"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext.to_str().expect("temporary paths are UTF-8"),
            "-out",
            cert.to_str().expect("temporary paths are UTF-8"),
        ],
    );
    (cert, key)
}

impl RegistryServer {
    /// Starts a registry with `auth`, over TLS when `tls`.
    pub fn start(auth: Auth, tls: bool) -> Self {
        require("docker-registry");
        require("openssl");
        let dir = tempfile::tempdir().expect("registry dir");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let cert_dir = dir.path().join("certs");
        std::fs::create_dir(&cert_dir).expect("create a fixture directory");
        let mut http = format!("  addr: {addr}\n  secret: treeport-test-secret\n");
        if tls {
            let (cert, key) = signed_by_ca(dir.path(), &cert_dir.join("ca.crt"));
            let _ = write!(
                http,
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            );
        }
        let mut token = None;
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd => {
                require("htpasswd");
                let line = tool("htpasswd", ["-Bbn", USER, PASSWORD]);
                let file = dir.path().join("htpasswd");
                std::fs::write(&file, line.trim()).expect("write a fixture file");
                format!(
                    "auth:\n  htpasswd:\n    realm: treeport-test\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token => {
                let (cert, key) = self_signed(dir.path(), "token");
                let server = TokenServer::start(&cert, key);
                let yaml = format!(
                    "auth:\n  token:\n    realm: http://{}/token\n    service: treeport-test\n    issuer: treeport-test-issuer\n    rootcertbundle: {}\n",
                    server.addr,
                    cert.display()
                );
                token = Some(server);
                yaml
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n{http}{auth_yaml}",
            dir.path().join("storage").display()
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write a fixture file");
        let log =
            std::fs::File::create(dir.path().join("registry.log")).expect("create a fixture file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .expect("a socket or file handle can be duplicated"),
            )
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect(&addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {addr}: {}",
                std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let authfile = dir.path().join("auth.json");
        write_authfile(&authfile, &addr, USER, PASSWORD);
        RegistryServer {
            child,
            dir,
            addr,
            cert_dir,
            authfile,
            _token: token,
        }
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Digests of the blobs the registry stores.
    pub fn stored_blobs(&self) -> Vec<String> {
        let root = self
            .dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256");
        let mut out = Vec::new();
        let Ok(prefixes) = std::fs::read_dir(&root) else {
            return out;
        };
        for p in prefixes.flatten() {
            for b in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
                if b.path().join("data").is_file() {
                    out.push(format!("sha256:{}", b.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a containers auth.json with `user:password` for `registry`.
pub fn write_authfile(path: &Path, registry: &str, user: &str, password: &str) {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    std::fs::write(
        path,
        format!(r#"{{"auths":{{"{registry}":{{"auth":"{auth}"}}}}}}"#),
    )
    .expect("write a fixture file");
}

/// A token service for the registry's token auth: checks the basic
/// credentials and issues RS256 JWTs with the granted scopes.
pub struct TokenServer {
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(cert: &Path, key: PathBuf) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token service");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address")
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let pem = std::fs::read_to_string(cert).expect("read a fixture file");
        let der_b64: String = pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .join("");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let key = key.clone();
                let der = der_b64.clone();
                std::thread::spawn(move || serve_token(conn, &key, &der));
            }
        });
        TokenServer { addr, stop }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// The connection is moved in from the accepting thread.
#[allow(clippy::needless_pass_by_value)]
fn serve_token(conn: TcpStream, key: &Path, cert_der_b64: &str) {
    let mut reader = BufReader::new(
        conn.try_clone()
            .expect("a socket or file handle can be duplicated"),
    );
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorized = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line
            .strip_prefix("Authorization: Basic ")
            .or_else(|| line.strip_prefix("authorization: Basic "))
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(v.trim())
                .unwrap_or_default();
            authorized = decoded == format!("{USER}:{PASSWORD}").as_bytes();
        }
    }
    let mut conn = conn;
    if !authorized {
        let _ = conn.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for pair in query.split('&') {
        if let Some(scope) = pair.strip_prefix("scope=") {
            let scope = percent_decode(scope);
            let parts: Vec<&str> = scope.split(':').collect();
            if parts.len() == 3 {
                let actions: Vec<&str> = parts[2].split(',').collect();
                access.push(
                    serde_json::json!({"type": parts[0], "name": parts[1], "actions": actions}),
                );
            }
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [cert_der_b64]});
    let claims = serde_json::json!({
        "iss": "treeport-test-issuer",
        "sub": USER,
        "aud": "treeport-test",
        "exp": now + 600,
        "nbf": now - 60,
        "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(signing_input.as_bytes())
        .expect("openssl reads the input");
    let signature = child
        .wait_with_output()
        .expect("wait for a helper process")
        .stdout;
    let jwt = format!("{signing_input}.{}", b64url(&signature));
    let body =
        serde_json::json!({"token": jwt, "access_token": jwt, "expires_in": 600}).to_string();
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain-HTTP proxy in front of a registry that fails every `fail_every`th
/// request with a 500 and can throttle what it forwards.
pub struct Proxy {
    pub addr: String,
    pub requests: Arc<AtomicU64>,
    /// Requests refused for a chunked body.
    pub refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// What a [`Proxy`] does to the traffic it passes.
#[derive(Clone, Copy, Default)]
struct Faults {
    /// Answer 500 to every k-th request.
    fail_every: Option<u64>,
    /// Pass request bodies at this many bytes a second.
    rate: Option<u64>,
    /// Answer 411 to requests with a chunked body.
    refuse_chunked: bool,
}

impl Proxy {
    /// Proxies to `upstream` (`127.0.0.1:PORT`, plain HTTP).
    pub fn start(upstream: &str, fail_every: Option<u64>, bytes_per_sec: Option<u64>) -> Self {
        Self::with(
            upstream,
            Faults {
                fail_every,
                rate: bytes_per_sec,
                refuse_chunked: false,
            },
        )
    }

    /// Proxies to `upstream`, refusing requests with a chunked body
    /// (`411 Length Required`).
    pub fn refusing_streams(upstream: &str) -> Self {
        Self::with(
            upstream,
            Faults {
                refuse_chunked: true,
                ..Faults::default()
            },
        )
    }

    fn with(upstream: &str, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address")
            .to_string();
        let requests = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r2, f2, s2, up) = (
            Arc::clone(&requests),
            Arc::clone(&refused),
            Arc::clone(&stop),
            upstream.to_string(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (r3, f3, s3, up2) = (
                    Arc::clone(&r2),
                    Arc::clone(&f2),
                    Arc::clone(&s2),
                    up.clone(),
                );
                std::thread::spawn(move || proxy_one(conn, &up2, &r3, &f3, &s3, faults));
            }
        });
        Proxy {
            addr,
            requests,
            refused,
            stop,
        }
    }
}

impl Proxy {
    /// Stops forwarding: open connections pass no more bytes either way
    /// (what a client killed mid-request has already sent stays unsent).
    pub fn cut(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn proxy_one(
    mut client: TcpStream,
    upstream: &str,
    count: &AtomicU64,
    refused: &AtomicU64,
    stop: &Arc<AtomicBool>,
    faults: Faults,
) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Read the request head; a TLS hello (0x16) is not HTTP: hang up.
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
        if head.len() == 1 && head[0] == 0x16 {
            return;
        }
        if head.len() > 64 * 1024 {
            return;
        }
    }
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    if faults.refuse_chunked
        && String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    {
        refused.fetch_add(1, Ordering::Relaxed);
        let _ = client.write_all(
            b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    if faults.fail_every.is_some_and(|k| n.is_multiple_of(k)) {
        let _ = client.write_all(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut rewritten = String::new();
    for line in text.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") || line.is_empty() {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    let Ok(mut server) = TcpStream::connect(upstream) else {
        return;
    };
    if server.write_all(rewritten.as_bytes()).is_err() {
        return;
    }
    let (mut c2, mut s2) = (
        client
            .try_clone()
            .expect("a socket or file handle can be duplicated"),
        server
            .try_clone()
            .expect("a socket or file handle can be duplicated"),
    );
    let stop2 = Arc::clone(stop);
    let up = std::thread::spawn(move || {
        let _ = pump(&mut c2, &mut s2, faults.rate, &stop2);
        let _ = s2.shutdown(Shutdown::Write);
    });
    let _ = pump(&mut server, &mut client, None, stop);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
}

// Throttling needs only approximate arithmetic.
#[allow(clippy::cast_precision_loss)]
fn pump(
    from: &mut TcpStream,
    to: &mut TcpStream,
    rate: Option<u64>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let start = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::ErrorKind::ConnectionAborted.into());
        }
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
        sent += n as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// A canned HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body one byte at a time with this pause between bytes (a
    /// server that never quite stops).
    pub drip: Option<Duration>,
}

impl Reply {
    /// A 200 with a body and a content type.
    pub fn ok(content_type: &str, body: Vec<u8>) -> Self {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body,
            drip: None,
        }
    }

    /// A status with headers and no body.
    pub fn status(status: u16, headers: &[(&str, &str)]) -> Self {
        Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            body: Vec::new(),
            drip: None,
        }
    }
}

/// A request a fake registry received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// Header names in lowercase, with their values.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The value of a header, if the request had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A registry that answers whatever a test makes it answer: for digests
/// that lie, oversized documents, redirect loops, other hosts. It records
/// every request it got.
pub struct FakeRegistry {
    pub addr: String,
    stop: Arc<AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
}

impl FakeRegistry {
    /// Serves `handler(method, path)` on 127.0.0.1 over plain HTTP.
    pub fn start(handler: impl Fn(&str, &str) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_with(move |r: &Seen| handler(&r.method, &r.path))
    }

    /// Serves `handler(request)` on 127.0.0.1 over plain HTTP.
    pub fn start_with(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake registry");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address")
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let handler: Arc<Handler> = Arc::new(handler);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (h, seen, stop) = (Arc::clone(&handler), Arc::clone(&seen2), Arc::clone(&s2));
                std::thread::spawn(move || serve_fake(conn, &*h, &seen, &stop));
            }
        });
        FakeRegistry { addr, stop, seen }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("a panicking test thread poisons no lock here")
            .clone()
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.addr);
    }
}

// The connection is moved in from the accepting thread.
#[allow(clippy::needless_pass_by_value)]
fn serve_fake(
    conn: TcpStream,
    handler: &Handler,
    seen: &std::sync::Mutex<Vec<Seen>>,
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(
        conn.try_clone()
            .expect("a socket or file handle can be duplicated"),
    );
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        if request_line.starts_with('\u{16}') {
            return;
        }
        let mut length = 0usize;
        let mut chunked = false;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
                if k == "content-length" {
                    length = v.parse().unwrap_or(0);
                }
                if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                }
                headers.push((k, v));
            }
        }
        if chunked {
            // Read and drop chunks until the last one.
            loop {
                let mut size_line = String::new();
                if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
                    return;
                }
                let size = usize::from_str_radix(size_line.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0u8; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        }
        let mut parts = request_line.split_whitespace();
        let request = Seen {
            method: parts.next().unwrap_or("").to_string(),
            path: parts.next().unwrap_or("").to_string(),
            headers,
        };
        seen.lock()
            .expect("a panicking test thread poisons no lock here")
            .push(request.clone());
        let reply = handler(&request);
        let mut conn = &conn;
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            let _ = write!(head, "{k}: {v}\r\n");
        }
        head.push_str("\r\n");
        if conn.write_all(head.as_bytes()).is_err() {
            return;
        }
        if request.method == "HEAD" {
            continue;
        }
        match reply.drip {
            None => {
                if conn.write_all(&reply.body).is_err() {
                    return;
                }
            }
            Some(pause) => {
                for b in &reply.body {
                    if stop.load(Ordering::Relaxed) || conn.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(pause);
                }
            }
        }
    }
}
