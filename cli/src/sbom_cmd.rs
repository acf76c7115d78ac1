//! `treeport sbom IMAGE`: the SBOM published beside an image, checked
//! against its digests and printed.

use std::io::{Read, Seek, Write};

use treeport_core::Error;
use treeport_core::digest::{Digest, HashReader};
use treeport_core::plugin::Selector;
use treeport_core::registry::Registry;
use treeport_core::resolve::{self, Platform};

use crate::args::{RegistryFlags, SbomArgs, SbomFormat};
use crate::registry_cmd::plugin_options;

/// The largest SBOM document read (a large distribution's is a few MiB).
const MAX_SBOM: u64 = 256 << 20;

/// Runs `treeport sbom`.
pub fn run(args: &SbomArgs, registry: &Registry, flags: &RegistryFlags) -> anyhow::Result<()> {
    let selector = Selector::parse(&args.image)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let options = plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
    let mut reader = registry.reader(&selector, &options)?;
    let image = resolve::resolve(&mut *reader, platform.as_ref())?;
    let subject = image.manifest.digest;
    let (wanted, name) = match args.format {
        SbomFormat::Spdx => ("application/spdx+json", "SPDX"),
        SbomFormat::Cyclonedx => ("application/vnd.cyclonedx+json", "CycloneDX"),
    };
    let referrers = reader.referrers(&subject)?;
    let Some(found) = referrers.iter().find(|r| r.artifact_type == wanted) else {
        let listed: Vec<&str> = referrers.iter().map(|r| r.artifact_type.as_str()).collect();
        return Err(Error::invalid(format!(
            "{}: no {name} SBOM refers to image {subject} (referrers: {}); export it with --transform sbom",
            args.image,
            if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
        ))
        .into());
    };
    // A manifest (a registry serves it as one, not as a blob), checked
    // against the digest and size it is listed with.
    let raw = reader.manifest(&found.digest)?;
    if raw.digest != found.digest || raw.bytes.len() as u64 != found.size {
        return Err(Error::invalid(format!(
            "artifact {}: content does not match its descriptor",
            found.digest
        ))
        .into());
    }
    let manifest: serde_json::Value = serde_json::from_slice(&raw.bytes)
        .map_err(|e| Error::invalid(format!("artifact {}: {e}", found.digest)))?;
    if manifest["subject"]["digest"] != subject.to_string() {
        return Err(Error::invalid(format!(
            "artifact {}: its subject is not image {subject}",
            found.digest
        ))
        .into());
    }
    let layer = &manifest["layers"][0];
    let (Some(digest), Some(size)) = (
        layer["digest"]
            .as_str()
            .and_then(|d| d.parse::<Digest>().ok()),
        layer["size"].as_u64(),
    ) else {
        return Err(Error::invalid(format!("artifact {}: no document layer", found.digest)).into());
    };
    if size > MAX_SBOM {
        return Err(Error::invalid(format!(
            "artifact {}: a document of {size} bytes is more than {MAX_SBOM}",
            found.digest
        ))
        .into());
    }
    // Checked whole before a byte is printed.
    let mut spool = tempfile::tempfile()?;
    let mut hashed = HashReader::new(reader.blob(&digest)?.take(size + 1));
    std::io::copy(&mut hashed, &mut spool)?;
    let (_, got, len) = hashed.finish();
    if got != digest || len != size {
        return Err(Error::invalid(format!(
            "SBOM blob {digest}: content does not match its descriptor (got {got}, {len} bytes)"
        ))
        .into());
    }
    spool.rewind()?;
    let mut stdout = std::io::stdout().lock();
    std::io::copy(&mut spool, &mut stdout)?;
    stdout.flush()?;
    Ok(())
}
