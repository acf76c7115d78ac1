//! cosign key-based signatures: ECDSA P-256 keys (PEM, or cosign's
//! encrypted format), and signatures stored as cosign stores them: an image
//! tagged `sha256-<hex>.sig` whose layers are payloads
//! (`application/vnd.dev.cosign.simplesigning.v1+json`), each with its
//! signature in the `dev.cosignproject.cosign/signature` annotation.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use serde_json::{Value, json};

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::json;
use crate::media;
use crate::ports::RawManifest;

/// The media type of a cosign payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding a layer's signature (base64 of ASN.1 DER).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// At most this many signatures are read from one signature image.
pub const MAX_SIGNATURES: usize = 1000;
/// The largest encrypted key file read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// The tag cosign stores the signatures of `digest` under.
#[must_use]
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// A private key that signs.
pub struct SigningKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(ECDSA P-256)")
    }
}

/// A public key that verifies.
#[derive(Clone, Debug)]
pub struct PublicKey(p256::ecdsa::VerifyingKey);

/// One PEM block: its label and decoded body.
struct Pem {
    label: String,
    body: Vec<u8>,
}

fn read_pem(path: &Path, flag: &str) -> Result<Pem> {
    use std::io::Read as _;
    let what = format!("{flag} {}", path.display());
    let mut bytes = Vec::new();
    crate::blobs::open_user_file(path)
        .map_err(|e| e.context(flag.to_string()))?
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e).context(flag.to_string()))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(Error::invalid(format!(
            "{what}: larger than 64 KiB; not a key file"
        )));
    }
    let not_pem = || {
        let hint = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
            " (a binary GPG keyring goes to --gpg-key)"
        } else {
            ""
        };
        Error::invalid(format!("{what}: not a PEM file{hint}"))
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_pem())?;
    let mut lines = text.lines().map(str::trim);
    // The first block that is not curve parameters (`openssl ecparam
    // -genkey` writes an EC PARAMETERS block before the key).
    let label = loop {
        let Some(label) = lines.by_ref().find_map(|l| {
            l.strip_prefix("-----BEGIN ")
                .and_then(|l| l.strip_suffix("-----"))
        }) else {
            return Err(
                if text.contains("-----BEGIN PGP") || !text.contains("-----BEGIN") {
                    not_pem()
                } else {
                    Error::invalid(format!("{what}: no key in it"))
                },
            );
        };
        if label != "EC PARAMETERS" {
            break label.to_string();
        }
    };
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    let mut ended = false;
    for l in lines {
        if l == end {
            ended = true;
            break;
        }
        // RFC 1421 headers (Proc-Type: ...) carry no body.
        if !l.contains(':') {
            b64.push_str(l);
        }
    }
    if !ended {
        return Err(Error::invalid(format!("{what}: no '{end}' line")));
    }
    let body = B64
        .decode(b64.as_bytes())
        .map_err(|e| Error::invalid(format!("{what}: bad base64 in the {label} block: {e}")))?;
    Ok(Pem { label, body })
}

/// The algorithm a PKCS#8 or SPKI object identifier names, for messages.
fn algorithm_name(oid: &str) -> &'static str {
    match oid {
        "1.2.840.113549.1.1.1" => "an RSA key",
        "1.3.101.112" => "an Ed25519 key",
        "1.3.101.113" => "an Ed448 key",
        "1.2.840.10045.2.1" => "an elliptic-curve key on another curve",
        "1.2.840.10040.4.1" => "a DSA key",
        _ => "a key of an unknown type",
    }
}

fn unsupported(what: &str, kind: &str) -> Error {
    Error::invalid(format!(
        "{what}: {kind}; treeport signs and verifies with ECDSA P-256 keys (as `cosign generate-key-pair` makes)"
    ))
}

/// Why PKCS#8 DER did not give a P-256 key, in words.
fn pkcs8_refusal(what: &str, der: &[u8]) -> Error {
    use p256::pkcs8::der::Decode as _;
    match p256::pkcs8::PrivateKeyInfo::from_der(der) {
        Ok(info) => unsupported(what, algorithm_name(&info.algorithm.oid.to_string())),
        Err(e) => Error::invalid(format!("{what}: not a PKCS#8 private key: {e}")),
    }
}

/// The encrypted key document inside an `ENCRYPTED SIGSTORE PRIVATE KEY`
/// block (go-tuf's `encrypted` format: scrypt, then `NaCl` secretbox).
#[derive(serde::Deserialize)]
struct Encrypted {
    kdf: Kdf,
    cipher: Cipher,
    ciphertext: String,
}

#[derive(serde::Deserialize)]
struct Kdf {
    name: String,
    params: KdfParams,
    salt: String,
}

#[derive(serde::Deserialize)]
struct KdfParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(serde::Deserialize)]
struct Cipher {
    name: String,
    nonce: String,
}

/// Decrypts cosign's encrypted key body with `passphrase`: PKCS#8 DER.
fn decrypt(what: &str, body: &[u8], passphrase: &[u8]) -> Result<Vec<u8>> {
    use crypto_secretbox::aead::{Aead as _, KeyInit as _};
    let bad = |why: String| Error::invalid(format!("{what}: {why}"));
    let doc: Encrypted = serde_json::from_slice(body)
        .map_err(|e| bad(format!("not a cosign encrypted key: {e}")))?;
    if doc.kdf.name != "scrypt" || doc.cipher.name != "nacl/secretbox" {
        return Err(bad(format!(
            "encrypted with {} and {}; cosign keys use scrypt and nacl/secretbox",
            doc.kdf.name, doc.cipher.name
        )));
    }
    let KdfParams { n, r, p } = doc.kdf.params;
    // Bounded: scrypt takes 128 * r * N bytes of memory and p times the
    // work; cosign writes N=32768 (65536 lately), r=8, p=1, and a key file
    // asking for more would cost a signer gigabytes or minutes.
    if !n.is_power_of_two() || !(2..=1 << 16).contains(&n) || r == 0 || r > 8 || p == 0 || p > 2 {
        return Err(bad(format!(
            "scrypt parameters N={n}, r={r}, p={p} are out of bounds (N a power of two up to 65536, r up to 8, p up to 2, as cosign writes them)"
        )));
    }
    let decode = |field: &str, s: &str| {
        B64.decode(s.as_bytes())
            .map_err(|e| bad(format!("bad base64 in {field}: {e}")))
    };
    let salt = decode("kdf.salt", &doc.kdf.salt)?;
    let nonce = decode("cipher.nonce", &doc.cipher.nonce)?;
    let ciphertext = decode("ciphertext", &doc.ciphertext)?;
    if nonce.len() != 24 {
        return Err(bad(format!(
            "the nonce has {} bytes, expected 24",
            nonce.len()
        )));
    }
    let params = scrypt::Params::new(n.trailing_zeros() as u8, r, p, 32)
        .map_err(|e| bad(format!("scrypt parameters: {e}")))?;
    let mut key = [0u8; 32];
    scrypt::scrypt(passphrase, &salt, &params, &mut key)
        .map_err(|e| bad(format!("scrypt: {e}")))?;
    let cipher = crypto_secretbox::XSalsa20Poly1305::new(&key.into());
    cipher
        .decrypt(
            crypto_secretbox::Nonce::from_slice(&nonce),
            ciphertext.as_slice(),
        )
        .map_err(|_| bad("wrong passphrase (or a damaged key file)".to_string()))
}

impl SigningKey {
    /// Loads a private key: cosign's `ENCRYPTED SIGSTORE PRIVATE KEY` (or
    /// the older `ENCRYPTED COSIGN PRIVATE KEY`), decrypted with the
    /// passphrase `passphrase` returns (asked only for an encrypted key);
    /// or an unencrypted PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`.
    pub fn load(path: &Path, passphrase: &mut dyn FnMut() -> Result<String>) -> Result<Self> {
        let what = format!("--sign-key {}", path.display());
        let pem = read_pem(path, "--sign-key")?;
        let key = match pem.label.as_str() {
            "ENCRYPTED SIGSTORE PRIVATE KEY" | "ENCRYPTED COSIGN PRIVATE KEY" => {
                let pass = passphrase()?;
                let der = decrypt(&what, &pem.body, pass.as_bytes())?;
                drop(pass);
                p256::ecdsa::SigningKey::from_pkcs8_der(&der)
                    .map_err(|_| pkcs8_refusal(&what, &der))?
            }
            "PRIVATE KEY" => p256::ecdsa::SigningKey::from_pkcs8_der(&pem.body)
                .map_err(|_| pkcs8_refusal(&what, &pem.body))?,
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(&pem.body)
                .map(p256::ecdsa::SigningKey::from)
                .map_err(|_| unsupported(&what, "an elliptic-curve key on another curve"))?,
            "RSA PRIVATE KEY" => return Err(unsupported(&what, "an RSA key")),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(Error::invalid(format!(
                    "{what}: a PKCS#8 key encrypted with a password; decrypt it (openssl pkcs8 -in KEY -out PLAIN) or use cosign's own key format"
                )));
            }
            "OPENSSH PRIVATE KEY" => return Err(unsupported(&what, "an OpenSSH key")),
            "PGP PRIVATE KEY BLOCK" => {
                return Err(unsupported(
                    &what,
                    "a PGP key (sign with it through --sign-by FINGERPRINT)",
                ));
            }
            "PUBLIC KEY" => {
                return Err(Error::invalid(format!(
                    "{what}: a public key; signing needs the private key"
                )));
            }
            other => return Err(unsupported(&what, &format!("a '{other}' PEM block"))),
        };
        Ok(SigningKey(key))
    }

    /// Signs `payload` (ECDSA over its SHA-256, deterministic per RFC
    /// 6979): the base64 of the ASN.1 DER signature, as cosign stores it.
    #[must_use]
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig: p256::ecdsa::Signature = self.0.sign(payload);
        B64.encode(sig.to_der().as_bytes())
    }
}

impl PublicKey {
    /// Loads a `PUBLIC KEY` (SPKI) PEM file holding a P-256 key.
    pub fn load(path: &Path) -> Result<Self> {
        use p256::pkcs8::der::Decode as _;
        let what = format!("--key {}", path.display());
        let pem = read_pem(path, "--key")?;
        if pem.label != "PUBLIC KEY" {
            return Err(Error::invalid(format!(
                "{what}: a '{}' PEM block; verifying needs a PUBLIC KEY (cosign.pub)",
                pem.label
            )));
        }
        p256::ecdsa::VerifyingKey::from_public_key_der(&pem.body)
            .map(PublicKey)
            .map_err(
                |_| match p256::pkcs8::spki::SubjectPublicKeyInfoRef::from_der(&pem.body) {
                    Ok(info) => unsupported(&what, algorithm_name(&info.algorithm.oid.to_string())),
                    Err(e) => Error::invalid(format!("{what}: not a public key: {e}")),
                },
            )
    }

    /// True when `signature` (base64 of ASN.1 DER, or of the raw 64-byte
    /// form) is this key's signature of `payload`.
    #[must_use]
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(bytes) = B64.decode(signature.trim().as_bytes()) else {
            return false;
        };
        let sig = p256::ecdsa::Signature::from_der(&bytes)
            .or_else(|_| p256::ecdsa::Signature::from_slice(&bytes));
        sig.is_ok_and(|s| self.0.verify(payload, &s).is_ok())
    }
}

/// One signature layer of a signature image.
#[derive(Clone, Debug)]
pub struct SignatureLayer {
    pub payload: Digest,
    pub size: u64,
    pub signature: String,
}

/// The signature layers a signature image lists (at most
/// [`MAX_SIGNATURES`]); layers of other types are skipped.
pub fn signature_layers(manifest: &[u8], what: &str) -> Result<Vec<SignatureLayer>> {
    let bad = |why: String| Error::invalid(format!("{what}: {why}"));
    let v: Value = serde_json::from_slice(manifest).map_err(|e| bad(e.to_string()))?;
    let layers = v
        .get("layers")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("not an image manifest (no layers)".to_string()))?;
    if layers.len() > MAX_SIGNATURES {
        return Err(bad(format!(
            "{} signatures; at most {MAX_SIGNATURES} are read",
            layers.len()
        )));
    }
    let mut out = Vec::new();
    for l in layers {
        if l.get("mediaType").and_then(Value::as_str) != Some(PAYLOAD_MEDIA_TYPE) {
            continue;
        }
        let digest = l.get("digest").and_then(Value::as_str).unwrap_or("");
        let payload: Digest = digest
            .parse()
            .map_err(|_| bad(format!("bad layer digest '{digest}'")))?;
        let size = l.get("size").and_then(Value::as_u64).unwrap_or(u64::MAX);
        let signature = l
            .get("annotations")
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        out.push(SignatureLayer {
            payload,
            size,
            signature,
        });
    }
    Ok(out)
}

/// A signature image and the blobs it added to the store.
pub type Signed = (RawManifest, Vec<(Digest, u64)>);

/// A signature image with one more signature: the layers of `existing`
/// (a signature image already at the tag), then `payload` signed as
/// `signature`, unless that very pair is there already (signatures are
/// deterministic, so signing the same image again changes nothing). Its
/// new blobs (the payload and the config) go into `store`; returns the
/// manifest and those blobs, or `None` when nothing changes.
pub fn add_signature(
    existing: Option<&RawManifest>,
    payload: &[u8],
    signature: &str,
    store: &BlobStore,
) -> Result<Option<Signed>> {
    let payload_digest = Digest::of(payload);
    let mut layers: Vec<Value> = match existing {
        Some(raw) => serde_json::from_slice::<Value>(&raw.bytes)
            .ok()
            .filter(|v| {
                v.get("mediaType")
                    .and_then(Value::as_str)
                    .is_none_or(|m| m == media::OCI_MANIFEST || m == media::DOCKER_MANIFEST)
            })
            .and_then(|v| v.get("layers").and_then(Value::as_array).cloned())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "{}: the signature tag names something other than a signature image (an index, or not a manifest); left as it is",
                    raw.digest
                ))
            })?,
        None => Vec::new(),
    };
    if layers.len() >= MAX_SIGNATURES {
        return Err(Error::invalid(format!(
            "the signature image already holds {} signatures; at most {MAX_SIGNATURES} are kept",
            layers.len()
        )));
    }
    let same = |l: &Value| {
        l.get("digest").and_then(Value::as_str) == Some(payload_digest.to_string().as_str())
            && l.get("annotations")
                .and_then(|a| a.get(SIGNATURE_ANNOTATION))
                .and_then(Value::as_str)
                == Some(signature)
    };
    if layers.iter().any(same) {
        return Ok(None);
    }
    store.put(payload)?;
    layers.push(json!({
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "size": payload.len(),
        "digest": payload_digest.to_string(),
        "annotations": {SIGNATURE_ANNOTATION: signature},
    }));
    // The config go-containerregistry gives such an image: layers are
    // uncompressed, so diff_ids are the layer digests.
    let diff_ids: Vec<&Value> = layers.iter().filter_map(|l| l.get("digest")).collect();
    let zero = "0001-01-01T00:00:00Z";
    let config = json::to_canonical_vec(&json!({
        "architecture": "",
        "config": {},
        "created": zero,
        "history": vec![json!({"created": zero}); diff_ids.len()],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config_digest = store.put(&config)?;
    let manifest = json::to_canonical_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": config.len(),
            "digest": config_digest.to_string(),
        },
        "layers": layers,
    }))?;
    let digest = store.put(&manifest)?;
    Ok(Some((
        RawManifest {
            bytes: manifest,
            media_type: media::OCI_MANIFEST.to_string(),
            digest,
        },
        vec![
            (config_digest, config.len() as u64),
            (payload_digest, payload.len() as u64),
        ],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("the test writes its fixture");
        p
    }

    #[test]
    fn signs_verifies_and_refuses_other_keys() {
        use p256::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let secret = p256::SecretKey::from_slice(&[7u8; 32]).expect("the test document is JSON");
        let pem = secret
            .to_pkcs8_pem(LineEnding::LF)
            .expect("the test fixture is valid");
        let path = write(dir.path(), "k.pem", &pem);
        let key = SigningKey::load(&path, &mut || panic!("not encrypted"))
            .expect("the test fixture is valid");
        let sig = key.sign(b"payload");
        assert_eq!(sig, key.sign(b"payload"), "deterministic");
        let public = secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("the test fixture is valid");
        let pub_path = write(dir.path(), "k.pub", &public);
        let public = PublicKey::load(&pub_path).expect("the test fixture is valid");
        assert!(public.verifies(b"payload", &sig));
        assert!(!public.verifies(b"payloaD", &sig));
        assert!(!public.verifies(b"payload", "AAAA"));
        let err = PublicKey::load(&path).unwrap_err().to_string();
        assert!(err.contains("PUBLIC KEY"), "{err}");
        let err = SigningKey::load(&pub_path, &mut || panic!())
            .unwrap_err()
            .to_string();
        assert!(err.contains("a public key"), "{err}");
        // An Ed25519 PKCS#8 key (RFC 8410's example).
        let ed = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
        let err = SigningKey::load(&write(dir.path(), "ed.pem", ed), &mut || panic!())
            .unwrap_err()
            .to_string();
        assert!(err.contains("an Ed25519 key"), "{err}");
    }

    #[test]
    fn signature_images_grow_and_repeat_nothing() {
        let store = BlobStore::temporary_in(None).expect("a temporary store can be made");
        let (first, blobs) = add_signature(None, b"p1", "c2ln", &store)
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(blobs.len(), 2);
        assert!(
            add_signature(Some(&first), b"p1", "c2ln", &store)
                .expect("the test fixture is valid")
                .is_none()
        );
        let (second, _) = add_signature(Some(&first), b"p2", "c2ln", &store)
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        let layers = signature_layers(&second.bytes, "sig").expect("the test fixture is valid");
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1].payload, Digest::of(b"p2"));
        assert_eq!(layers[1].signature, "c2ln");
    }
}
