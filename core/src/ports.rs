//! What the engine exchanges with the world, beneath the plugin traits:
//! image readers and the manifests they return, sets of images to write,
//! and taps on blobs being encoded. The plugin traits, the engine (layers,
//! copies, progress) and the sinks all build on these; none of them is
//! imported here.

use std::collections::BTreeSet;
use std::io::Read;

use crate::digest::Digest;
use crate::error::Result;
use crate::platform::Platform;

/// Receives layer blobs as they are encoded. Best effort by design: a
/// stream may fall behind, fail or be abandoned, and the sink's `write` must
/// still deliver every blob the image holds.
pub trait BlobTap: Send + Sync {
    /// A stream for one blob about to be encoded, or `None` to skip it.
    fn open(&self) -> Option<Box<dyn BlobStream>>;
}

/// One blob's bytes, offered as they are produced.
pub trait BlobStream: Send {
    /// Offers the next bytes. Must return at once: a stream that cannot keep
    /// up drops out rather than slow the encoder down.
    fn offer(&mut self, bytes: &[u8]);

    /// The blob is complete: these were all its bytes. A stream dropped
    /// without `finish` (the encoding failed) must be abandoned.
    fn finish(self: Box<Self>, digest: &Digest, size: u64);
}

/// A manifest or index as stored, with its media type.
#[derive(Clone, Debug)]
pub struct RawManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// Reads an image from where a sink of the same kind writes one.
pub trait ImageReader: Send {
    /// The manifest or index the reference names.
    fn top(&mut self) -> Result<RawManifest>;

    /// A manifest named by digest (a child of an index).
    fn manifest(&mut self, digest: &Digest) -> Result<RawManifest>;

    /// Streams a blob. Callers check the digest as they read.
    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>>;

    /// Artifacts that refer to the manifest `subject` (an SBOM, a
    /// signature). Readers of kinds that cannot hold them have none.
    fn referrers(&mut self, _subject: &Digest) -> Result<Vec<ReferrerInfo>> {
        Ok(Vec::new())
    }

    /// The manifest tagged `tag` beside the image (in the same repository,
    /// layout or archive), or `None` when there is none: how cosign
    /// signature images (`sha256-<hex>.sig`) are found. Readers of kinds
    /// that hold one image have none.
    fn tagged(&mut self, _tag: &str) -> Result<Option<RawManifest>> {
        Ok(None)
    }

    /// The manifest digest other tools report for this image, when it is
    /// not the digest of the manifest [`ImageReader::top`] returns (a docker
    /// archive holds no manifest; skopeo makes one of its own).
    fn reported_digest(&mut self, _top: &RawManifest) -> Result<Option<Digest>> {
        Ok(None)
    }
}

/// One image manifest of a set, with the blobs it references.
#[derive(Clone, Debug)]
pub struct SetManifest {
    pub raw: RawManifest,
    /// Config first, then layers.
    pub blobs: Vec<(Digest, u64)>,
    pub platform: Option<Platform>,
}

/// One image, or an index of several, ready to write.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// The index naming the manifests, when the set is one.
    pub index: Option<RawManifest>,
    pub manifests: Vec<SetManifest>,
    /// Artifacts (an SBOM) that refer to the set's documents, by subject:
    /// what a copy carries along beside the image. Their blobs are not in
    /// [`ImageSet::blobs`].
    pub referrers: Vec<(Digest, Vec<crate::image::Referrer>)>,
}

impl ImageSet {
    /// Every artifact of [`ImageSet::referrers`], whatever its subject.
    #[must_use]
    pub fn all_referrers(&self) -> Vec<crate::image::Referrer> {
        self.referrers
            .iter()
            .flat_map(|(_, r)| r.iter().cloned())
            .collect()
    }

    /// The document a tag points at: the index, else the only manifest.
    #[must_use]
    pub fn top(&self) -> &RawManifest {
        self.index
            .as_ref()
            .unwrap_or_else(|| &self.manifests[0].raw)
    }

    /// Every blob of every manifest, once each.
    #[must_use]
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        let mut seen = BTreeSet::new();
        self.manifests
            .iter()
            .flat_map(|m| m.blobs.iter().copied())
            .filter(|(d, _)| seen.insert(*d))
            .collect()
    }
}

/// An artifact manifest that refers to an image, as a reader lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReferrerInfo {
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: String,
}
