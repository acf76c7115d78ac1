//! Signing what a push wrote: cosign signature images in the repository
//! (tag `sha256-<hex>.sig`), and simple signatures in the lookaside store
//! `registries.d` names for it; and reading both back for `verify`.

use treeport_core::blobs::BlobStore;
use treeport_core::digest::Digest;
use treeport_core::error::Result;
use treeport_core::sign::{Signing, cosign, gpg, lookaside, payload};

use crate::reference::Reference;
use crate::registry::Registry;

/// True when `sig` (a stored simple signature) is the signer's own for
/// `digest` under one of `identities`: a new one replaces it. Other
/// signers' signatures, and those for other names, stay.
fn replaced_by(
    sig: &[u8],
    signer: &gpg::GpgSigner,
    digest: &Digest,
    identities: &[String],
) -> bool {
    let Some((content, Some(by))) = gpg::content_of(sig) else {
        return false;
    };
    by == signer.fingerprint().to_uppercase()
        && payload::parse(&content, payload::SIMPLE_SIGNING_TYPE)
            .is_ok_and(|p| p.digest == *digest && identities.contains(&p.identity))
}

/// The lookaside name of a reference.
#[must_use]
pub fn docker_name(reference: &Reference) -> lookaside::DockerName {
    lookaside::DockerName {
        host: reference.registry.clone(),
        path: reference.repository.clone(),
        tag: reference.push_tags().into_iter().next(),
    }
}

/// The repository as cosign names it in its payloads (`HOST/REPO`).
#[must_use]
pub fn repository(reference: &Reference) -> String {
    format!("{}/{}", reference.registry, reference.repository)
}

/// Where simple signatures of `reference` are written; checked before a
/// push so that a lookaside that cannot be written fails first.
pub fn lookaside_for_writing(signing: &Signing, reference: &Reference) -> Result<String> {
    let name = docker_name(reference);
    let found = lookaside::lookup(signing.registries_d.as_deref(), &name)?;
    // Checked now, before anything is pushed: a URL treeport cannot write,
    // or a store it cannot create a file in, fails here.
    lookaside::check_writable(&found.write)?;
    Ok(found.write)
}

/// Signs `targets` pushed to `reference`; returns how many signatures
/// were made.
///
/// `lookaside` is where simple signatures go, found and checked before the
/// push ([`lookaside_for_writing`]).
pub fn sign(
    signing: &Signing,
    lookaside: Option<&str>,
    registry: &Registry,
    reference: &Reference,
    targets: &[Digest],
    store: &BlobStore,
) -> Result<u64> {
    let mut made = 0;
    for c in signing.cosign_signatures(&repository(reference), targets)? {
        let current = registry.find_manifest(&c.tag)?;
        if let Some((raw, blobs)) =
            cosign::add_signature(current.as_ref(), &c.payload, &c.signature, store)?
        {
            registry.push_tagged(&c.tag, &raw, &blobs, store)?;
            made += 1;
        }
    }
    if let Some(gpg) = &signing.gpg {
        let base = match lookaside {
            Some(base) => base.to_string(),
            None => lookaside_for_writing(signing, reference)?,
        };
        let name = docker_name(reference);
        // One signature per name the image is pushed as: a policy matches
        // the reference a pull uses (`HOST/REPO:TAG`) exactly.
        let tags = reference.push_tags();
        let identities: Vec<String> = if let Some(i) = &signing.identity {
            vec![i.clone()]
        } else if tags.is_empty() {
            vec![repository(reference)]
        } else {
            tags.iter()
                .map(|t| format!("{}:{t}", repository(reference)))
                .collect()
        };
        for digest in targets {
            // Signatures already there for other names stay (another tag
            // of the same image, another signer's); ours for these names
            // are replaced.
            let mut signatures: Vec<Vec<u8>> = lookaside::read_signatures(&base, &name, digest)?
                .into_iter()
                .filter(|sig| !replaced_by(sig, gpg, digest, &identities))
                .collect();
            let before = signatures.len();
            if before + identities.len() > lookaside::MAX_SIGNATURES {
                return Err(treeport_core::Error::invalid(format!(
                    "lookaside {base}: {digest} already has {before} signatures; at most {} are kept",
                    lookaside::MAX_SIGNATURES
                )));
            }
            for identity in &identities {
                let payload = payload::simple_signing(identity, digest, signing.timestamp)?;
                signatures.push(gpg.sign(&payload)?);
            }
            made += (signatures.len() - before) as u64;
            lookaside::put_signatures(&base, &name, digest, &signatures)?;
        }
    }
    Ok(made)
}
