//! Media types of the OCI image spec 1.1 and of Docker's schema 2.

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// The annotation that names a tag in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation for the image's creation time.
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

/// True for the media types of an image index or manifest list.
#[must_use]
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// True for the media types of a single-image manifest.
#[must_use]
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// The most layers an image may have for treeport to read it (overlay
/// filesystems stack at most a few hundred; Docker stops at 128).
pub const MAX_LAYERS: usize = 1000;

/// The largest manifest, index or config treeport reads (registries use 4 MiB).
pub const MAX_DOCUMENT: u64 = 4 << 20;

/// Reads a JSON document of at most [`MAX_DOCUMENT`] bytes; `what` names it in errors.
pub fn read_limited(reader: impl std::io::Read, what: &str) -> crate::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    reader
        .take(MAX_DOCUMENT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::Error::invalid(format!("{what}: {e}")))?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(crate::Error::invalid(format!(
            "{what}: larger than {} MiB, refused",
            MAX_DOCUMENT >> 20
        )));
    }
    Ok(bytes)
}

/// The `mediaType` field of a manifest or index.
#[must_use]
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    probe.media_type.or_else(|| {
        // An OCI index may omit mediaType; a manifests array gives it away.
        probe.manifests.map(|_| OCI_INDEX.to_string())
    })
}
