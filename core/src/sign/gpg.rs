//! GPG for containers/image "simple signing", through gpgme as skopeo
//! does: signing with a secret key of the user's keyring (`GNUPGHOME`, else
//! `~/.gnupg`), and verifying against given public keys imported into a
//! keyring of their own (a temporary `GNUPGHOME`), never the user's.

use std::path::Path;

use gpgme::{Context, Protocol};

use crate::error::{Error, Result};

/// The largest signature read (containers/image's bound).
pub const MAX_SIGNATURE: u64 = 4 * 1024 * 1024;
/// The largest public keyring read.
const MAX_KEYRING: u64 = 16 * 1024 * 1024;

fn context() -> Result<Context> {
    Context::from_protocol(Protocol::OpenPgp)
        .map_err(|e| Error::invalid(format!("gpgme: cannot start the OpenPGP engine: {e}")))
}

fn gnupghome() -> String {
    std::env::var("GNUPGHOME").unwrap_or_else(|_| "~/.gnupg".to_string())
}

/// Signs with one secret key.
#[derive(Clone)]
pub struct GpgSigner {
    fingerprint: String,
    /// Given to gpg through loopback pinentry (skopeo's
    /// `--sign-passphrase-file`); without it, gpg-agent asks as usual.
    passphrase: Option<String>,
}

impl std::fmt::Debug for GpgSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpgSigner")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl GpgSigner {
    /// A signer for the secret key `fingerprint` (a fingerprint or key
    /// id). Checked now, by signing a probe: an unknown key, or one that
    /// cannot sign, fails before anything is written.
    pub fn new(fingerprint: &str, passphrase: Option<String>) -> Result<Self> {
        let what = format!("--sign-by {fingerprint}");
        let mut ctx = context()?;
        let key = ctx.get_secret_key(fingerprint).map_err(|_| {
            Error::invalid(format!(
                "{what}: no secret key with this fingerprint in the keyring of {}",
                gnupghome()
            ))
        })?;
        if !key.can_sign() {
            return Err(Error::invalid(format!(
                "{what}: the key cannot sign (revoked, expired or without a signing key)"
            )));
        }
        let signer = GpgSigner {
            fingerprint: key
                .fingerprint()
                .map_err(|_| Error::invalid(format!("{what}: the key has no fingerprint")))?
                .to_string(),
            passphrase,
        };
        signer
            .sign(b"treeport probe")
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        Ok(signer)
    }

    /// The key's full fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// An `OpenPGP` signed message (binary, not detached) holding `payload`,
    /// as simple signing stores it.
    pub fn sign(&self, payload: &[u8]) -> Result<Vec<u8>> {
        let mut ctx = context()?;
        ctx.set_armor(false);
        let key = ctx
            .get_secret_key(&self.fingerprint)
            .map_err(|e| Error::invalid(format!("GPG key {}: {e}", self.fingerprint)))?;
        ctx.add_signer(&key)
            .map_err(|e| Error::invalid(format!("GPG key {}: {e}", self.fingerprint)))?;
        let mut out = Vec::new();
        let signed = match &self.passphrase {
            Some(pass) => {
                ctx.set_pinentry_mode(gpgme::PinentryMode::Loopback)
                    .map_err(|e| Error::invalid(format!("gpgme: loopback pinentry: {e}")))?;
                let pass = pass.clone();
                let mut asked = false;
                let provider = move |_: gpgme::PassphraseRequest<'_>,
                                     w: &mut dyn std::io::Write|
                      -> gpgme::Result<()> {
                    // Asked again: the passphrase was wrong.
                    if std::mem::replace(&mut asked, true) {
                        return Err(gpgme::Error::BAD_PASSPHRASE);
                    }
                    w.write_all(pass.as_bytes())
                        .and_then(|()| w.write_all(b"\n"))
                        .map_err(|_| gpgme::Error::EOF)
                };
                ctx.with_passphrase_provider(provider, |ctx| ctx.sign_normal(payload, &mut out))
            }
            None => ctx.sign_normal(payload, &mut out),
        };
        signed.map_err(|e| {
            Error::invalid(format!("signing with GPG key {}: {e}", self.fingerprint))
        })?;
        Ok(out)
    }
}

/// What a signed message holds, whoever signed it and whether or not the
/// signature checks out (for sorting signatures, never for trusting them).
#[must_use]
pub fn content_of(signature: &[u8]) -> Option<Vec<u8>> {
    let mut ctx = context().ok()?;
    let mut content = Vec::new();
    ctx.verify_opaque(signature, &mut content).ok()?;
    (!content.is_empty()).then_some(content)
}

/// Public keys to verify with, in a keyring of their own.
pub struct Keyring {
    home: tempfile::TempDir,
    fingerprints: Vec<String>,
    what: String,
}

/// A signature that checked out: its content and the key that made it.
#[derive(Clone, Debug)]
pub struct Verified {
    pub payload: Vec<u8>,
    pub fingerprint: String,
}

impl Keyring {
    /// Imports the public keys of `path` (binary or armored) into a new
    /// temporary keyring.
    pub fn load(path: &Path) -> Result<Self> {
        let what = format!("--gpg-key {}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if !meta.is_file() || meta.len() > MAX_KEYRING {
            return Err(Error::invalid(format!(
                "{what}: not a keyring file (at most 16 MiB)"
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let home = tempfile::Builder::new()
            .prefix("treeport-gpg-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let mut ctx = context()?;
        ctx.set_engine_home_dir(home.path().to_string_lossy().as_bytes())
            .map_err(|e| Error::invalid(format!("gpgme: {e}")))?;
        let result = ctx
            .import(&bytes)
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        let fingerprints: Vec<String> = result
            .imports()
            .filter_map(|i| i.fingerprint().ok().map(str::to_uppercase))
            .collect();
        if fingerprints.is_empty() {
            return Err(Error::invalid(format!(
                "{what}: no OpenPGP public key in it"
            )));
        }
        Ok(Keyring {
            home,
            fingerprints,
            what,
        })
    }

    /// Checks `signature` (an `OpenPGP` signed message): made by one of the
    /// keyring's keys, and intact. Returns what it holds.
    pub fn verify(&self, signature: &[u8]) -> Result<Verified> {
        let mut ctx = context()?;
        ctx.set_engine_home_dir(self.home.path().to_string_lossy().as_bytes())
            .map_err(|e| Error::invalid(format!("gpgme: {e}")))?;
        let mut payload = Vec::new();
        let result = ctx
            .verify_opaque(signature, &mut payload)
            .map_err(|e| Error::invalid(format!("not an OpenPGP signature: {e}")))?;
        let mut why = "no signature in it".to_string();
        for sig in result.signatures() {
            let fpr = sig.fingerprint().unwrap_or("").to_uppercase();
            if let Err(e) = sig.status() {
                why = format!("signature by {fpr}: {e}");
                continue;
            }
            // Made by an imported key, or by a signing subkey of one.
            let primary = ctx
                .get_key(&fpr)
                .ok()
                .and_then(|k| k.fingerprint().ok().map(str::to_uppercase));
            if let Some(primary) = primary.filter(|p| self.fingerprints.contains(p)) {
                return Ok(Verified {
                    payload,
                    fingerprint: primary,
                });
            }
            why = format!("signed by {fpr}, which is not a key of {}", self.what);
        }
        Err(Error::invalid(why))
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        // gpg may have started an agent for the temporary home: stop it
        // before the directory goes.
        let _ = std::process::Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
