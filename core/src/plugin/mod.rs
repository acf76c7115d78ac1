//! The three plugin roles, what each is given and returns, and how a plugin
//! describes itself. The engine builds on these; they import nothing of it
//! (the registry that makes stages is [`crate::registry`]).
//!
//! A plugin never sees another plugin: a source yields an [`ImageDraft`],
//! transforms edit it, the engine encodes it once, and every sink receives the
//! same [`BuiltImage`] with the [`BlobStore`] that holds its blobs.

mod registry;
mod selector;

use std::path::PathBuf;
use std::sync::Arc;

pub use registry::{
    Builtin, BuiltinFactory, Factory, Make, MakeFn, OptionInfo, OptionKind, OptionSpec, Origin,
    Plugin, PluginInfo, ReaderFactory, SinkFactory, SourceFactory, TransformFactory, option_infos,
};
pub use selector::{Options, Selector};

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::Result;
use crate::image::{BuiltImage, ImageDraft};
use crate::ports::ImageSet;
pub use crate::ports::{BlobStream, BlobTap, ImageReader, RawManifest, ReferrerInfo};
use crate::progress::Context;

/// Yields a filesystem tree and the image metadata that comes with it.
pub trait Source: Send {
    /// Reads the tree. Content may be opened lazily later, so whatever the
    /// entries refer to must stay alive as long as the returned draft.
    fn read(&mut self, ctx: &Context) -> Result<ImageDraft>;
}

/// Reshapes an image before it is encoded: the tree, the layer plan, or the
/// metadata.
pub trait Transform: Send {
    fn apply(&mut self, image: &mut ImageDraft, ctx: &Context) -> Result<()>;

    /// True when the transform writes the tree's final form, which later
    /// stages may not reshape (bootc: the tree becomes an OSTree commit's
    /// objects, whose order and grouping the importer relies on). It sets
    /// [`ImageDraft::sealed_by`] when it runs.
    fn seals_tree(&self) -> bool {
        false
    }

    /// True when the transform adds, drops or moves entries, or replans
    /// layers. Such a transform after one that [seals](Transform::seals_tree)
    /// the tree is refused before any work starts; for transforms that do
    /// not say (loaded plugins), the pipeline checks the tree is unchanged
    /// after they ran instead.
    fn reshapes_tree(&self) -> bool {
        false
    }
}

/// Writes a finished image to a destination.
pub trait Sink: Send {
    /// Checks the destination before any work is done, so a run that cannot
    /// succeed fails at once.
    fn prepare(&mut self, _ctx: &Context) -> Result<()> {
        Ok(())
    }

    /// A directory on the destination's filesystem where the encoder may
    /// stage blobs, so they can be hardlinked rather than copied.
    fn staging_dir(&self) -> Option<PathBuf> {
        None
    }

    /// A tap that receives each layer's compressed bytes while it is being
    /// encoded, so the sink can send them on before the layer is complete
    /// (a registry upload overlapping compression). `None`, the default,
    /// means the sink only sees finished blobs in [`Sink::write`].
    fn blob_tap(&mut self) -> Option<Arc<dyn BlobTap>> {
        None
    }

    /// Writes the image and says where it went.
    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, ctx: &Context) -> Result<Written>;

    /// The signature formats the sink writes when the run signs
    /// ([`Context::signing`]); a run asking for another refuses the sink
    /// before anything is done.
    fn signature_formats(&self) -> &'static [crate::sign::Format] {
        &[]
    }

    /// False for destinations that hold OCI manifests only (an OCI layout:
    /// skopeo and umoci do not see Docker manifests there); a copied Docker
    /// image is then converted to OCI media types first.
    fn takes_docker_manifests(&self) -> bool {
        true
    }

    /// True for destinations that keep the artifacts of a copied image
    /// ([`ImageSet::referrers`]: an SBOM); a copy reads them only then.
    fn keeps_referrers(&self) -> bool {
        false
    }

    /// Writes an image set read from elsewhere (a pull, a push of a layout,
    /// an index of several images). Sinks that cannot hold an index, or a
    /// copied image, refuse.
    fn write_set(&mut self, set: &ImageSet, _blobs: &BlobStore, _ctx: &Context) -> Result<Written> {
        Err(crate::Error::usage(format!(
            "this destination cannot take a copied image{}",
            if set.index.is_some() {
                " or an index"
            } else {
                ""
            }
        )))
    }
}

/// What a sink wrote: where, and counters worth reporting (blobs uploaded,
/// skipped, mounted...).
#[derive(Clone, Debug, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Written {
    pub destination: String,
    /// The manifest (or index) digest a consumer of this destination sees:
    /// what `skopeo inspect` and `treeport inspect` report for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    pub counters: std::collections::BTreeMap<String, u64>,
}

impl Written {
    /// A report with no counters.
    #[must_use]
    pub fn to(destination: impl Into<String>) -> Self {
        Written {
            destination: destination.into(),
            manifest_digest: None,
            counters: std::collections::BTreeMap::new(),
        }
    }

    /// The report with the destination's manifest digest.
    #[must_use]
    pub fn with_manifest(mut self, digest: Digest) -> Self {
        self.manifest_digest = Some(digest.to_string());
        self
    }
}
