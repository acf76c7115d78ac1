//! Checking signatures: cosign signature images found beside an image,
//! and simple signatures read from a lookaside store.

use std::io::Read as _;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ports::ImageReader;

use super::{cosign, gpg, payload};

/// A signature that checked out.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Checked {
    /// `cosign` or `simple-signing`.
    pub format: &'static str,
    /// The manifest it vouches for.
    pub digest: String,
    /// The reference it was made for.
    pub identity: String,
    /// The key: a GPG fingerprint, or the public key file.
    pub key: String,
}

/// The cosign signatures of `digest` (through the image's
/// `sha256-<hex>.sig` tag) that `key` verifies; an error when there is
/// none, naming why the last one failed.
pub fn cosign_signatures(
    reader: &mut dyn ImageReader,
    digest: &Digest,
    key: &cosign::PublicKey,
    key_name: &str,
) -> Result<Vec<Checked>> {
    let tag = cosign::signature_tag(digest);
    let raw = reader.tagged(&tag)?.ok_or_else(|| {
        Error::invalid(format!(
            "{digest}: no cosign signature (no image tagged {tag} beside it)"
        ))
    })?;
    let layers = cosign::signature_layers(&raw.bytes, &format!("signature image {tag}"))?;
    let mut why = format!("{tag} holds no signature");
    let mut out = Vec::new();
    for layer in layers {
        if layer.size > payload::MAX_PAYLOAD {
            why = format!("payload {} is larger than 64 KiB", layer.payload);
            continue;
        }
        let mut bytes = Vec::new();
        reader
            .blob(&layer.payload)?
            .take(layer.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::invalid(format!("payload {}: {e}", layer.payload)))?;
        if bytes.len() as u64 != layer.size || Digest::of(&bytes) != layer.payload {
            why = format!(
                "payload {} does not match its digest or size",
                layer.payload
            );
            continue;
        }
        if !key.verifies(&bytes, &layer.signature) {
            why = format!(
                "the signature of payload {} does not verify with {key_name}",
                layer.payload
            );
            continue;
        }
        let p = match payload::parse(&bytes, payload::COSIGN_TYPE) {
            Ok(p) => p,
            Err(e) => {
                why = e.to_string();
                continue;
            }
        };
        if p.digest != *digest {
            why = format!("a signature names {} instead", p.digest);
            continue;
        }
        out.push(Checked {
            format: "cosign",
            digest: digest.to_string(),
            identity: p.identity,
            key: key_name.to_string(),
        });
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{digest}: no valid cosign signature: {why}"
        )));
    }
    Ok(out)
}

/// The simple signatures among `signatures` that a key of `keyring` made
/// for `digest`, with an identity `identity_ok` accepts; an error when
/// there is none, naming why the last one failed.
pub fn simple_signatures(
    signatures: &[Vec<u8>],
    keyring: &gpg::Keyring,
    digest: &Digest,
    identity_ok: &dyn Fn(&str) -> bool,
) -> Result<Vec<Checked>> {
    let mut why = "no signature in the lookaside store".to_string();
    let mut out = Vec::new();
    for (i, sig) in signatures.iter().enumerate() {
        let n = i + 1;
        let verified = match keyring.verify(sig) {
            Ok(v) => v,
            Err(e) => {
                why = format!("signature-{n}: {e}");
                continue;
            }
        };
        let p = match payload::parse(&verified.payload, payload::SIMPLE_SIGNING_TYPE) {
            Ok(p) => p,
            Err(e) => {
                why = format!("signature-{n}: {e}");
                continue;
            }
        };
        if p.digest != *digest {
            why = format!("signature-{n} names {} instead", p.digest);
            continue;
        }
        if !identity_ok(&p.identity) {
            why = format!(
                "signature-{n} was made for {}, not this reference",
                p.identity
            );
            continue;
        }
        out.push(Checked {
            format: "simple-signing",
            digest: digest.to_string(),
            identity: p.identity,
            key: verified.fingerprint,
        });
    }
    if out.is_empty() {
        return Err(Error::invalid(format!(
            "{digest}: no valid simple signature: {why}"
        )));
    }
    Ok(out)
}
