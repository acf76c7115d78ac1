//! The signed payload both formats share: containers/image's "simple
//! signing" JSON, which names the manifest digest and the reference the
//! image was signed for. Simple signing (GPG) types it
//! `atomic container signature`; cosign `cosign container image signature`.

use serde_json::{Value, json};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::json;

/// The payload type of containers/image simple signing.
pub const SIMPLE_SIGNING_TYPE: &str = "atomic container signature";
/// The payload type of cosign signatures.
pub const COSIGN_TYPE: &str = "cosign container image signature";
/// The largest payload read back (containers/image's own bound is 4 MiB
/// for a whole signature; a payload is a few hundred bytes).
pub const MAX_PAYLOAD: u64 = 64 * 1024;

/// What a verified payload says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The `docker-reference` it was signed for.
    pub identity: String,
    /// The manifest digest it vouches for.
    pub digest: Digest,
}

/// A simple signing payload for `digest` as `identity`, with the creator
/// and time in its optional part (as skopeo writes them).
pub fn simple_signing(identity: &str, digest: &Digest, timestamp: i64) -> Result<Vec<u8>> {
    json::to_canonical_vec(&json!({
        "critical": {
            "type": SIMPLE_SIGNING_TYPE,
            "image": {"docker-manifest-digest": digest.to_string()},
            "identity": {"docker-reference": identity},
        },
        "optional": {
            "creator": concat!("treeport ", env!("CARGO_PKG_VERSION")),
            "timestamp": timestamp,
        },
    }))
}

/// A cosign payload for `digest` as `identity` (a repository, as cosign
/// writes it).
pub fn cosign(identity: &str, digest: &Digest) -> Result<Vec<u8>> {
    json::to_canonical_vec(&json!({
        "critical": {
            "identity": {"docker-reference": identity},
            "image": {"docker-manifest-digest": digest.to_string()},
            "type": COSIGN_TYPE,
        },
        "optional": Value::Null,
    }))
}

/// Reads a payload whose signature checked out, requiring type `kind`.
/// Unknown critical fields are refused, as containers/image does: a field
/// the signer meant to bind must not be ignored.
pub fn parse(bytes: &[u8], kind: &str) -> Result<Payload> {
    let bad = |why: &str| Error::invalid(format!("signature payload: {why}"));
    let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(&e.to_string()))?;
    let critical = v
        .get("critical")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no critical section"))?;
    if let Some(extra) = critical
        .keys()
        .find(|k| !matches!(k.as_str(), "type" | "image" | "identity"))
    {
        return Err(bad(&format!("unknown critical field '{extra}'")));
    }
    let found = critical.get("type").and_then(Value::as_str).unwrap_or("");
    if found != kind {
        return Err(bad(&format!("type '{found}', expected '{kind}'")));
    }
    let digest = critical
        .get("image")
        .and_then(|i| i.get("docker-manifest-digest"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no docker-manifest-digest"))?;
    let identity = critical
        .get("identity")
        .and_then(|i| i.get("docker-reference"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no docker-reference"))?;
    Ok(Payload {
        identity: identity.to_string(),
        digest: digest
            .parse()
            .map_err(|_| bad(&format!("bad digest '{digest}'")))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back_and_types_are_kept_apart() {
        let d = Digest::of(b"manifest");
        let p = cosign("127.0.0.1:5000/a/b", &d).expect("the test fixture is valid");
        assert_eq!(
            String::from_utf8(p.clone()).expect("the test fixture is valid"),
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"127.0.0.1:5000/a/b"}},"image":{{"docker-manifest-digest":"{d}"}},"type":"cosign container image signature"}},"optional":null}}"#
            )
        );
        assert_eq!(
            parse(&p, COSIGN_TYPE)
                .expect("the test literal parses")
                .digest,
            d
        );
        assert!(parse(&p, SIMPLE_SIGNING_TYPE).is_err());
        let s = simple_signing("h/r:t", &d, 5).expect("the test fixture is valid");
        let got = parse(&s, SIMPLE_SIGNING_TYPE).expect("the test literal parses");
        assert_eq!(got.identity, "h/r:t");
        let extra = br#"{"critical":{"type":"atomic container signature","image":{"docker-manifest-digest":"sha256:00"},"identity":{"docker-reference":"x"},"new":1}}"#;
        assert!(parse(extra, SIMPLE_SIGNING_TYPE).is_err());
    }
}
