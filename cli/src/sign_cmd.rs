//! The signing flags (`--sign-key`, `--sign-by`, ...) made into what a
//! run signs with, and `verify --key/--gpg-key`.

use std::path::Path;
use std::sync::Arc;

use treeport_core::Error;
use treeport_core::digest::Digest;
use treeport_core::plugin::{ImageReader, Selector};
use treeport_core::sign::{Signing, check, cosign, gpg, lookaside};

use crate::args::{SignFlags, VerifyArgs};

/// The environment variable cosign reads a key's passphrase from.
pub const PASSPHRASE_ENV: &str = "COSIGN_PASSWORD";

/// What the run signs with, or `None` when no signing flag is given. Keys
/// are loaded (and GPG keys tried) now, so a bad key fails before any work.
pub fn signing(flags: &SignFlags) -> anyhow::Result<Option<Arc<Signing>>> {
    if !flags.signs() {
        for (set, flag) in [
            (flags.sign_identity.is_some(), "--sign-identity"),
            (
                flags.sign_passphrase_file.is_some(),
                "--sign-passphrase-file",
            ),
        ] {
            if set {
                return Err(Error::usage(format!("{flag} needs --sign-key or --sign-by")).into());
            }
        }
        return Ok(None);
    }
    let cosign = match &flags.sign_key {
        Some(path) => Some(cosign::SigningKey::load(path, &mut || {
            passphrase(path, flags.sign_passphrase_file.as_deref())
        })?),
        None => None,
    };
    let gpg = match &flags.sign_by {
        Some(fpr) => {
            let pass = match &flags.sign_passphrase_file {
                Some(file) => {
                    Some(first_line(file).map_err(|e| e.context("--sign-passphrase-file"))?)
                }
                None => None,
            };
            Some(gpg::GpgSigner::new(fpr, pass)?)
        }
        None => None,
    };
    if let Some(identity) = &flags.sign_identity {
        check_identity(identity)?;
    }
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok(Some(Arc::new(Signing {
        cosign,
        gpg,
        identity: flags.sign_identity.clone(),
        registries_d: flags.registries_d.clone(),
        timestamp,
    })))
}

/// Refuses a `--sign-identity` that is not a container image reference
/// (`HOST[:PORT]/PATH[:TAG|@DIGEST]`, or a bare name): what a policy
/// compares it with is one.
fn check_identity(identity: &str) -> treeport_core::Result<()> {
    let ok = !identity.is_empty()
        && identity.len() <= 512
        && identity
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@+".contains(&b))
        && !identity.starts_with(['/', ':', '@', '.', '-'])
        && !identity.ends_with(['/', ':', '@'])
        && !identity.contains("//");
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "--sign-identity '{}': not an image reference (HOST[:PORT]/PATH[:TAG])",
            crate::output::escape(identity)
        )))
    }
}

/// The passphrase of an encrypted key: the first line of `file`, else
/// `$COSIGN_PASSWORD`, else asked for on the terminal. Never taken from
/// the command line, never printed.
fn passphrase(key: &Path, file: Option<&Path>) -> treeport_core::Result<String> {
    if let Some(file) = file {
        return first_line(file).map_err(|e| e.context("--sign-passphrase-file"));
    }
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::usage(format!(
            "key {} is encrypted: set {PASSPHRASE_ENV}, give --sign-passphrase-file, or run on a terminal to be asked",
            key.display()
        )));
    }
    rpassword::prompt_password(format!("Passphrase for key {}: ", key.display()))
        .map_err(|e| Error::invalid(format!("reading the passphrase: {e}")))
}

/// The first line of a passphrase file (at most 64 KiB read).
fn first_line(file: &Path) -> treeport_core::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(64 * 1024).read_to_string(&mut text))
        .map_err(|e| Error::io(file, e))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// The signatures `verify --key/--gpg-key` requires of the image whose top
/// document is `digest`, each checked; an error when one kind has none.
pub fn verify(
    args: &VerifyArgs,
    flags: &SignFlags,
    selector: &Selector,
    reader: &mut dyn ImageReader,
    digest: &Digest,
) -> anyhow::Result<Vec<check::Checked>> {
    let mut out = Vec::new();
    if let Some(path) = &args.key {
        let key = cosign::PublicKey::load(path)?;
        out.extend(check::cosign_signatures(
            reader,
            digest,
            &key,
            &path.display().to_string(),
        )?);
    }
    if let Some(path) = &args.gpg_key {
        if selector.kind() != "docker" {
            return Err(Error::usage(format!(
                "--gpg-key checks simple signatures, which live beside registry images (docker://); {} is not one",
                args.image
            ))
            .into());
        }
        let reference = treeport_docker::Reference::parse(selector.rest())?;
        let keyring = gpg::Keyring::load(path)?;
        let name = lookaside::DockerName {
            host: reference.registry.clone(),
            path: reference.repository.clone(),
            tag: reference.tags.first().cloned(),
        };
        let store = lookaside::lookup(flags.registries_d.as_deref(), &name)?;
        let signatures = lookaside::read_signatures(&store.read, &name, digest)?;
        // As containers/image's default (matchRepoDigestOrExact): a tag
        // must be named exactly; a digest reference accepts the repository.
        let exact = match (&reference.digest, reference.tags.first()) {
            (Some(_), _) => None,
            (None, Some(t)) => Some(format!("{}:{t}", name.repository())),
            (None, None) => Some(format!("{}:latest", name.repository())),
        };
        let repo = name.repository();
        let identity_ok = |id: &str| match &exact {
            Some(want) => id == want,
            None => repository_of(id) == repo,
        };
        out.extend(
            check::simple_signatures(&signatures, &keyring, digest, &identity_ok)
                .map_err(|e| e.context(format!("lookaside {}", store.read)))?,
        );
    }
    Ok(out)
}

/// The repository part of a reference: without its tag or digest.
fn repository_of(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    let last = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last..].find(':') {
        Some(i) => &reference[..last + i],
        None => reference,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn repositories_keep_their_port() {
        assert_eq!(super::repository_of("h:5000/a/b:t"), "h:5000/a/b");
        assert_eq!(super::repository_of("h:5000/a/b"), "h:5000/a/b");
        assert_eq!(super::repository_of("h/a@sha256:00"), "h/a");
    }
}
