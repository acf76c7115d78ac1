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
        signer.sign(b"treeport probe").map_err(|e| {
            let hint = if signer.passphrase.is_none() {
                " (a key with a passphrase needs --sign-passphrase-file, or a terminal for gpg-agent to ask on)"
            } else {
                ""
            };
            Error::invalid(format!("{what}: {e}{hint}"))
        })?;
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

/// A writer that refuses more than `limit` bytes: what a signed message
/// holds is read through it, so a small compressed message cannot expand
/// into gigabytes.
struct Bounded {
    buf: Vec<u8>,
    limit: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > self.limit {
            return Err(std::io::Error::other("signed content too large"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One signature of a message: its key's fingerprint, and whether it checks
/// out (or why not).
type SignatureStatus = (String, std::result::Result<(), String>);

/// Verifies an opaque signed message in `ctx`, its content bounded to
/// [`super::payload::MAX_PAYLOAD`]: the content, and each signature's
/// fingerprint with its status.
fn verify_bounded(ctx: &mut Context, signature: &[u8]) -> Result<(Vec<u8>, Vec<SignatureStatus>)> {
    let mut sink = Bounded {
        buf: Vec::new(),
        limit: super::payload::MAX_PAYLOAD as usize,
    };
    let result = {
        let data = gpgme::Data::from_writer(&mut sink)
            .map_err(|e| Error::invalid(format!("gpgme: {}", e.error())))?;
        ctx.verify_opaque(signature, data)
    }
    .map_err(|e| {
        Error::invalid(format!(
            "not an OpenPGP signature, or its content is larger than 64 KiB: {e}"
        ))
    })?;
    let sigs = result
        .signatures()
        .map(|sig| {
            (
                sig.fingerprint().unwrap_or("").to_uppercase(),
                sig.status().map_err(|e| e.to_string()),
            )
        })
        .collect();
    Ok((sink.buf, sigs))
}

/// What a signed message holds and the primary fingerprint of the key of
/// the user's keyring that made it, when its one signature checks out there
/// (for sorting signatures already stored, never for trusting them).
#[must_use]
pub fn content_of(signature: &[u8]) -> Option<(Vec<u8>, Option<String>)> {
    let mut ctx = context().ok()?;
    let (content, sigs) = verify_bounded(&mut ctx, signature).ok()?;
    let signer = match sigs.as_slice() {
        [(fpr, Ok(()))] => primary_fingerprint(&mut ctx, fpr),
        _ => None,
    };
    (!content.is_empty()).then_some((content, signer))
}

/// The primary key's fingerprint of the key (or subkey) `fpr` in `ctx`'s
/// keyring.
fn primary_fingerprint(ctx: &mut Context, fpr: &str) -> Option<String> {
    ctx.get_key(fpr)
        .ok()
        .and_then(|k| k.fingerprint().ok().map(str::to_uppercase))
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
    /// temporary keyring (removed on every way out, as treeport's other
    /// temporaries are).
    pub fn load(path: &Path) -> Result<Self> {
        use std::io::Read as _;
        let what = format!("--gpg-key {}", path.display());
        let file = crate::blobs::open_user_file(path).map_err(|e| e.context("--gpg-key"))?;
        let mut bytes = Vec::new();
        file.take(MAX_KEYRING + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(path, e))?;
        if bytes.len() as u64 > MAX_KEYRING {
            return Err(Error::invalid(format!("{what}: larger than 16 MiB")));
        }
        let home = crate::blobs::temp_dir_in(&std::env::temp_dir())?;
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .map_err(|e| Error::io(home.path(), e))?;
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
        let keyring = Keyring {
            home,
            fingerprints,
            what,
        };
        if keyring.fingerprints.is_empty() {
            return Err(Error::invalid(format!(
                "{}: no OpenPGP public key in it",
                keyring.what
            )));
        }
        Ok(keyring)
    }

    /// Checks `signature` (an `OpenPGP` signed message): exactly one
    /// signature, made by one of the keyring's keys (or a signing subkey of
    /// one), intact. Returns what it holds.
    pub fn verify(&self, signature: &[u8]) -> Result<Verified> {
        let mut ctx = context()?;
        ctx.set_engine_home_dir(self.home.path().to_string_lossy().as_bytes())
            .map_err(|e| Error::invalid(format!("gpgme: {e}")))?;
        let (payload, sigs) = verify_bounded(&mut ctx, signature)?;
        // As containers/image: a message with several signatures is refused.
        let (fpr, status) = match sigs.as_slice() {
            [one] => one,
            [] => return Err(Error::invalid("no signature in it")),
            more => {
                return Err(Error::invalid(format!(
                    "{} signatures in one message; simple signing has one",
                    more.len()
                )));
            }
        };
        if let Err(e) = status {
            return Err(Error::invalid(format!("signature by {fpr}: {e}")));
        }
        match primary_fingerprint(&mut ctx, fpr) {
            Some(primary) if self.fingerprints.contains(&primary) => Ok(Verified {
                payload,
                fingerprint: primary,
            }),
            _ => Err(Error::invalid(format!(
                "signed by {fpr}, which is not a key of {}",
                self.what
            ))),
        }
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
