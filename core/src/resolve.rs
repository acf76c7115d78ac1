//! Reading an image back through an [`ImageReader`]: the index (if any), the
//! manifest for a platform, and the config, each checked against its digest.

use std::io::Read;

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::{Digest, HashReader};
use crate::error::{Error, Result};
use crate::media;
use crate::ports::{ImageReader, RawManifest};

pub use crate::platform::Platform;

/// One image, read and checked.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The index the reference named, when it named one.
    pub index: Option<(RawManifest, ImageIndex)>,
    pub manifest: RawManifest,
    pub parsed: ImageManifest,
    pub config_bytes: Vec<u8>,
    pub config: ImageConfiguration,
}

/// Parses an index.
pub fn parse_index(raw: &RawManifest) -> Result<ImageIndex> {
    serde_json::from_slice(&raw.bytes)
        .map_err(|e| Error::invalid(format!("index {}: {e}", raw.digest)))
}

/// Parses a manifest.
pub fn parse_manifest(raw: &RawManifest) -> Result<ImageManifest> {
    let m: ImageManifest = serde_json::from_slice(&raw.bytes)
        .map_err(|e| Error::invalid(format!("manifest {}: {e}", raw.digest)))?;
    if m.layers().len() > media::MAX_LAYERS {
        return Err(Error::invalid(format!(
            "manifest {}: {} layers, more than the {} treeport reads",
            raw.digest,
            m.layers().len(),
            media::MAX_LAYERS
        )));
    }
    Ok(m)
}

/// Reads a whole small blob (a config) and checks its digest and size.
pub fn read_document(reader: &mut dyn ImageReader, digest: &Digest, size: u64) -> Result<Vec<u8>> {
    if size > media::MAX_DOCUMENT {
        return Err(Error::invalid(format!(
            "blob {digest} is {size} bytes, larger than a config may be"
        )));
    }
    let mut hashed = HashReader::new(reader.blob(digest)?);
    let mut bytes = Vec::new();
    (&mut hashed)
        .take(media::MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::invalid(format!("blob {digest}: {e}")))?;
    let (_, got, len) = hashed.finish();
    if got != *digest || len != size {
        return Err(Error::invalid(format!(
            "blob {digest}: content does not match its descriptor (got {got}, {len} bytes)"
        )));
    }
    Ok(bytes)
}

/// Reads the image a reader's reference names; from an index, the manifest of
/// `platform` (the host's when `None`, or the only one).
pub fn resolve(reader: &mut dyn ImageReader, platform: Option<&Platform>) -> Result<ResolvedImage> {
    let top = reader.top()?;
    let (index, manifest) = if media::is_index(&top.media_type) {
        let parsed = parse_index(&top)?;
        let wanted = platform.cloned().unwrap_or_else(Platform::host);
        let children = parsed.manifests();
        let pick = children
            .iter()
            .find(|d| d.platform().as_ref().is_some_and(|p| wanted.matches(p)))
            .or(if platform.is_none() && children.len() == 1 {
                children.first()
            } else {
                None
            })
            .ok_or_else(|| {
                Error::invalid(format!(
                    "index {} has no image for {wanted} (platforms: {})",
                    top.digest,
                    children
                        .iter()
                        .filter_map(|d| d.platform().as_ref())
                        .map(|p| format!("{}/{}", p.os(), p.architecture()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
        let digest: Digest = pick.digest().to_string().parse()?;
        let manifest = reader.manifest(&digest)?;
        if manifest.bytes.len() as u64 != pick.size() {
            return Err(Error::invalid(format!(
                "index {}: manifest {digest} is {} bytes, the index says {}",
                top.digest,
                manifest.bytes.len(),
                pick.size()
            )));
        }
        (Some((top, parsed)), manifest)
    } else {
        (None, top)
    };
    if !media::is_manifest(&manifest.media_type) {
        return Err(Error::invalid(format!(
            "{}: unsupported media type '{}'",
            manifest.digest, manifest.media_type
        )));
    }
    let parsed = parse_manifest(&manifest)?;
    let config_digest: Digest = parsed.config().digest().to_string().parse()?;
    let config_bytes = read_document(reader, &config_digest, parsed.config().size())?;
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| Error::invalid(format!("config {config_digest}: {e}")))?;
    Ok(ResolvedImage {
        index,
        manifest,
        parsed,
        config_bytes,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse() {
        assert_eq!(
            Platform::parse("linux/arm64/v8")
                .expect("the test literal parses")
                .to_string(),
            "linux/arm64/v8"
        );
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//").is_err());
    }
}
