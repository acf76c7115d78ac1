//! Image signatures, in the two formats container tools verify:
//!
//! - containers/image "simple signing" ([`gpg`]): an `OpenPGP` signed
//!   message of a JSON payload naming the manifest digest and the
//!   reference, made with a GPG key through gpgme and stored beside a
//!   registry in the "lookaside" store `registries.d` names
//!   ([`lookaside`]); skopeo and podman verify it under a `signedBy`
//!   policy.
//! - cosign key-based signatures ([`cosign`]): an ECDSA P-256 signature of
//!   a similar payload, stored as an image tagged `sha256-<hex>.sig` in the
//!   same repository or layout.
//!
//! A run signs every document it writes: the image manifest (an index and
//! each of its manifests), and every artifact referring to the image (its
//! SBOM).

pub mod check;
pub mod cosign;
pub mod gpg;
pub mod lookaside;
pub mod payload;

use std::path::PathBuf;

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::image::Referrer;
use crate::layout::Layout;
use crate::ports::{ImageSet, RawManifest};

/// A signature format a sink can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// cosign: a `sha256-<hex>.sig` image beside the image.
    Cosign,
    /// Simple signing: GPG signatures in a registry's lookaside store.
    Simple,
}

impl Format {
    /// The flag that asks for it.
    #[must_use]
    pub fn flag(self) -> &'static str {
        match self {
            Format::Cosign => "--sign-key",
            Format::Simple => "--sign-by",
        }
    }
}

/// What a run signs with.
#[derive(Debug, Default)]
pub struct Signing {
    /// cosign's key (`--sign-key`).
    pub cosign: Option<cosign::SigningKey>,
    /// A GPG key for simple signing (`--sign-by`).
    pub gpg: Option<gpg::GpgSigner>,
    /// The reference the signatures are made for (`--sign-identity`),
    /// instead of the destination's own.
    pub identity: Option<String>,
    /// The `registries.d` directory (`--registries.d`).
    pub registries_d: Option<PathBuf>,
    /// The time simple signing payloads carry.
    pub timestamp: i64,
}

impl Signing {
    /// The formats asked for.
    #[must_use]
    pub fn formats(&self) -> Vec<Format> {
        let mut out = Vec::new();
        if self.cosign.is_some() {
            out.push(Format::Cosign);
        }
        if self.gpg.is_some() {
            out.push(Format::Simple);
        }
        out
    }

    /// Refuses (a usage error) a sink that cannot hold every format asked
    /// for; `held` is what it can hold.
    pub fn check_sink(&self, held: &[Format], sink: &str) -> Result<()> {
        for f in self.formats() {
            if !held.contains(&f) {
                let why = match f {
                    Format::Simple => {
                        "simple signatures (--sign-by) live beside registry images: sign a docker:// destination"
                    }
                    Format::Cosign => {
                        "cosign signatures (--sign-key) are written to docker://, oci: and oci-archive: destinations"
                    }
                };
                return Err(Error::usage(format!(
                    "{} cannot sign what sink {sink} writes: {why}",
                    f.flag()
                )));
            }
        }
        Ok(())
    }

    /// Signs `targets` with cosign into the layout `layout`, each under its
    /// `sha256-<hex>.sig` tag (added to what is there). `identity` is what
    /// the payloads name unless `--sign-identity` says otherwise. Returns
    /// how many signatures were added.
    pub fn sign_layout(
        &self,
        layout: &Layout,
        identity: &str,
        targets: &[Digest],
        store: &BlobStore,
    ) -> Result<u64> {
        let mut added = 0;
        for c in self.cosign_signatures(identity, targets)? {
            let changed = layout.update_tag(&c.tag, store, |current| {
                cosign::add_signature(current, &c.payload, &c.signature, store)
            })?;
            added += u64::from(changed);
        }
        Ok(added)
    }

    /// New cosign signature images of `targets` (for a destination that
    /// starts empty: an archive), their blobs put into `store`.
    pub fn cosign_images(
        &self,
        identity: &str,
        targets: &[Digest],
        store: &BlobStore,
    ) -> Result<Vec<SignatureImage>> {
        let mut out = Vec::new();
        for c in self.cosign_signatures(identity, targets)? {
            if let Some((raw, blobs)) =
                cosign::add_signature(None, &c.payload, &c.signature, store)?
            {
                out.push(SignatureImage {
                    tag: c.tag,
                    raw,
                    blobs,
                });
            }
        }
        Ok(out)
    }

    /// The cosign payload and signature of each of `targets`, naming
    /// `identity` unless `--sign-identity` names another; none without a
    /// cosign key.
    pub fn cosign_signatures(
        &self,
        identity: &str,
        targets: &[Digest],
    ) -> Result<Vec<CosignSignature>> {
        let Some(key) = &self.cosign else {
            return Ok(Vec::new());
        };
        let identity = self.identity.as_deref().unwrap_or(identity);
        targets
            .iter()
            .map(|digest| {
                let payload = payload::cosign(identity, digest)?;
                Ok(CosignSignature {
                    tag: cosign::signature_tag(digest),
                    signature: key.sign(&payload),
                    payload,
                })
            })
            .collect()
    }
}

/// One cosign signature to store: under `tag`, `payload` signed.
#[derive(Clone, Debug)]
pub struct CosignSignature {
    /// `sha256-<hex>.sig`
    pub tag: String,
    pub payload: Vec<u8>,
    /// Base64 of the ASN.1 DER signature.
    pub signature: String,
}

/// A cosign signature image, ready to be written under its tag.
#[derive(Clone, Debug)]
pub struct SignatureImage {
    /// `sha256-<hex>.sig`
    pub tag: String,
    pub raw: RawManifest,
    /// Its config and payload, in the store.
    pub blobs: Vec<(Digest, u64)>,
}

/// The documents a run signs for a written set and its artifacts: the top
/// document, each manifest of an index (per platform), each artifact.
#[must_use]
pub fn targets(set: &ImageSet, referrers: &[Referrer]) -> Vec<Digest> {
    let mut out = vec![set.top().digest];
    if set.index.is_some() {
        out.extend(set.manifests.iter().map(|m| m.raw.digest));
    }
    out.extend(referrers.iter().map(|r| r.raw.digest));
    out
}
