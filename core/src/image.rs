//! The image under construction ([`ImageDraft`], what transforms edit) and the
//! finished image ([`BuiltImage`], what sinks write).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use oci_spec::image::{
    self as oci, ConfigBuilder, DescriptorBuilder, HistoryBuilder, ImageConfigurationBuilder,
    ImageManifestBuilder, MediaType, RootFsBuilder,
};

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::json;
use crate::layer::EncodedLayer;
use crate::media;
use crate::tree::Tree;

/// Keys of [`ImageDraft::attachments`] that sources and transforms share.
pub mod attachments {
    /// An OSTree commit object's bytes (left by the `ostree` source).
    pub const OSTREE_COMMIT: &str = "ostree.commit-object";
    /// The commit's detached metadata object, if it has one.
    pub const OSTREE_COMMITMETA: &str = "ostree.commitmeta-object";
    /// Present when the commit kept `/etc` in `/usr/etc` (exported at `/etc`).
    pub const OSTREE_USR_ETC: &str = "ostree.usr-etc";
    /// The root directory's dirmeta object (layers do not carry the root).
    pub const OSTREE_ROOT_DIRMETA: &str = "ostree.root-dirmeta-object";
}

/// Per-layer metadata; entries point at a layer through [`crate::tree::Entry::layer`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerInfo {
    /// Annotations on the layer's descriptor in the manifest.
    pub annotations: BTreeMap<String, String>,
    /// The `created_by` text of the layer's history entry.
    pub created_by: String,
}

/// The runtime configuration and platform of an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageConfig {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub author: Option<String>,
    pub user: Option<String>,
    /// `KEY=VALUE` entries; one per key.
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `PORT/PROTO` entries.
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub stop_signal: Option<String>,
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            architecture: host_architecture().to_string(),
            os: "linux".to_string(),
            variant: None,
            author: None,
            user: None,
            env: Vec::new(),
            entrypoint: None,
            cmd: None,
            working_dir: None,
            labels: BTreeMap::new(),
            exposed_ports: BTreeSet::new(),
            volumes: BTreeSet::new(),
            stop_signal: None,
        }
    }
}

impl ImageConfig {
    /// Sets `key` in the environment, replacing an earlier value.
    pub fn set_env(&mut self, key: &str, value: &str) {
        let prefix = format!("{key}=");
        let entry = format!("{key}={value}");
        match self.env.iter_mut().find(|e| e.starts_with(&prefix)) {
            Some(existing) => *existing = entry,
            None => self.env.push(entry),
        }
    }

    /// Removes the environment variable `key`, if set.
    pub fn remove_env(&mut self, key: &str) {
        let prefix = format!("{key}=");
        self.env.retain(|e| !e.starts_with(&prefix) && e != key);
    }
}

pub use crate::platform::{go_architecture, host_architecture};

/// The architectures the OCI image spec names for `platform.architecture`
/// (Go's `GOARCH` values).
pub const OCI_ARCHITECTURES: [&str; 14] = [
    "386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le", "ppc64",
    "ppc64le", "riscv64", "s390x", "wasm",
];

/// The operating systems the OCI image spec names for `platform.os` (Go's
/// `GOOS` values).
pub const OCI_OSES: [&str; 15] = [
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "illumos",
    "ios",
    "js",
    "linux",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
];

/// An architecture as a user or Debian names it (`amd64`, `aarch64`,
/// `armhf`, `ppc64el`, with an optional `/VARIANT`) as the OCI platform
/// values: the architecture and its variant (Debian's `armhf` is `arm/v7`,
/// `armel` is `arm/v5`).
///
/// # Errors
/// A usage error for a name the OCI spec does not know, listing those it
/// does.
pub fn parse_architecture(value: &str) -> Result<(String, Option<String>)> {
    let (name, variant) = match value.split_once('/') {
        Some((a, v)) => (a, Some(v.to_string())),
        None => (value, None),
    };
    let arch = go_architecture(name);
    if !OCI_ARCHITECTURES.contains(&arch) {
        return Err(crate::Error::usage(format!(
            "--arch {value}: unknown architecture (OCI names: {}; Debian names such as \
             armhf, ppc64el, i386 are taken too)",
            OCI_ARCHITECTURES.join(", ")
        )));
    }
    let variant = variant.or(match name {
        "armhf" => Some("v7".to_string()),
        "armel" => Some("v5".to_string()),
        _ => None,
    });
    if let Some(v) = &variant {
        let ok = v.len() >= 2 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit());
        if !ok {
            return Err(crate::Error::usage(format!(
                "--arch {value}: variant '{v}' is not of the form v5, v7, v8..."
            )));
        }
    }
    Ok((arch.to_string(), variant))
}

/// Checks an operating system name against the OCI spec's.
///
/// # Errors
/// A usage error naming the valid values.
pub fn check_os(os: &str) -> Result<()> {
    if OCI_OSES.contains(&os) {
        Ok(())
    } else {
        Err(crate::Error::usage(format!(
            "--os {os}: unknown operating system (OCI names: {})",
            OCI_OSES.join(", ")
        )))
    }
}

/// An image being assembled: the tree, its layer plan, and its metadata.
#[derive(Clone, Debug)]
pub struct ImageDraft {
    pub tree: Tree,
    /// One element per layer; at least one.
    pub layers: Vec<LayerInfo>,
    pub config: ImageConfig,
    /// Annotations of the manifest.
    pub annotations: BTreeMap<String, String>,
    /// The source's own time (an `OSTree` commit's timestamp), if it has one.
    pub source_time: Option<i64>,
    /// History text for the image when it has one layer.
    pub created_by: String,
    /// Data a source leaves for transforms that know it (an OSTree source
    /// leaves its commit object), by a key the two agree on.
    pub attachments: BTreeMap<String, Arc<[u8]>>,
    /// Labels whose value is the `diff_id` of a layer, known only once the
    /// layers are encoded: (label, layer index).
    pub diffid_labels: Vec<(String, usize)>,
    /// Documents published beside the image as OCI 1.1 artifacts that refer
    /// to it (an SBOM): sinks that can hold them write them.
    pub artifacts: Vec<Artifact>,
    /// The transform that wrote the tree's final form (see
    /// [`Transform::seals_tree`](crate::plugin::Transform::seals_tree)); from
    /// then on the tree and its layer plan may not change.
    pub sealed_by: Option<String>,
}

impl ImageDraft {
    /// A one-layer image of `tree` with default metadata.
    #[must_use]
    pub fn new(tree: Tree) -> Self {
        ImageDraft {
            tree,
            layers: vec![LayerInfo::default()],
            config: ImageConfig::default(),
            annotations: BTreeMap::new(),
            source_time: None,
            created_by: String::from("treeport"),
            attachments: BTreeMap::new(),
            artifacts: Vec::new(),
            diffid_labels: Vec::new(),
            sealed_by: None,
        }
    }

    /// A digest of everything a sealed tree must keep: each entry's path,
    /// kind, metadata, layer and rank, and the layer count.
    #[must_use]
    pub fn shape(&self) -> crate::digest::Digest {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update((self.layers.len() as u64).to_le_bytes());
        for e in self.tree.entries() {
            h.update((e.path.as_bytes().len() as u64).to_le_bytes());
            h.update(e.path.as_bytes());
            h.update(format!("{:?}", e.kind).as_bytes());
            for n in [
                u64::from(e.mode),
                u64::from(e.uid),
                u64::from(e.gid),
                e.mtime as u64,
                e.size,
                e.link.map_or(u64::MAX, |l| l),
                e.layer as u64,
                u64::from(e.rank),
                e.xattrs.len() as u64,
            ] {
                h.update(n.to_le_bytes());
            }
            for (k, v) in &e.xattrs {
                h.update((k.len() as u64).to_le_bytes());
                h.update(k);
                h.update((v.len() as u64).to_le_bytes());
                h.update(v);
            }
        }
        crate::digest::Digest::from_bytes(h.finalize().into())
    }
}

/// A layer as the manifest describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerDescriptor {
    pub encoded: EncodedLayer,
    pub annotations: BTreeMap<String, String>,
}

/// A finished image: every blob is in the run's [`BlobStore`].
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// The manifest's bytes, exactly as stored and pushed.
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub layers: Vec<LayerDescriptor>,
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    /// The image time, seconds since the epoch.
    pub created: i64,
    /// Artifact manifests whose `subject` is this image (their blobs are in
    /// the store): what [`ImageDraft::artifacts`] became.
    pub referrers: Vec<Referrer>,
}

/// An artifact manifest referring to an image, with its blobs and type.
#[derive(Clone, Debug)]
pub struct Referrer {
    pub raw: crate::ports::RawManifest,
    /// The empty config, then the document.
    pub blobs: Vec<(Digest, u64)>,
    pub artifact_type: String,
}

impl BuiltImage {
    /// Every blob the manifest references: config first, then layers.
    #[must_use]
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        let mut out = vec![(self.config_digest, self.config.len() as u64)];
        out.extend(
            self.layers
                .iter()
                .map(|l| (l.encoded.digest, l.encoded.size)),
        );
        out
    }

    /// The OCI platform of the image.
    #[must_use]
    pub fn platform(&self) -> oci::Platform {
        let mut p = oci::Platform::default();
        p.set_architecture(oci::Arch::from(self.architecture.as_str()));
        p.set_os(oci::Os::from(self.os.as_str()));
        p.set_variant(self.variant.clone());
        p
    }
}

fn spec_err(what: &str) -> impl Fn(oci_spec::OciSpecError) -> Error + '_ {
    move |e| Error::Other(format!("building the {what}: {e}"))
}

fn hash_map(map: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!map.is_empty()).then(|| map.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Writes the config and manifest of `draft` with its encoded `layers` into
/// `store`, and returns the finished image.
pub fn build(
    draft: &ImageDraft,
    layers: Vec<EncodedLayer>,
    created: i64,
    store: &BlobStore,
) -> Result<BuiltImage> {
    let created_text = json::rfc3339(created);
    let mut c = draft.config.clone();
    for (label, index) in &draft.diffid_labels {
        let layer = layers.get(*index).ok_or_else(|| {
            Error::invalid(format!(
                "label {label} names layer {index}, which does not exist"
            ))
        })?;
        c.labels.insert(label.clone(), layer.diff_id.to_string());
    }
    let c = &c;

    let mut runtime = ConfigBuilder::default();
    if let Some(user) = &c.user {
        runtime = runtime.user(user.clone());
    }
    if !c.env.is_empty() {
        runtime = runtime.env(c.env.clone());
    }
    if let Some(entrypoint) = &c.entrypoint {
        runtime = runtime.entrypoint(entrypoint.clone());
    }
    if let Some(cmd) = &c.cmd {
        runtime = runtime.cmd(cmd.clone());
    }
    if let Some(dir) = &c.working_dir {
        runtime = runtime.working_dir(dir.clone());
    }
    if let Some(labels) = hash_map(&c.labels) {
        runtime = runtime.labels(labels);
    }
    if !c.exposed_ports.is_empty() {
        runtime = runtime.exposed_ports(c.exposed_ports.iter().cloned().collect::<Vec<_>>());
    }
    if !c.volumes.is_empty() {
        runtime = runtime.volumes(c.volumes.iter().cloned().collect::<Vec<_>>());
    }
    if let Some(signal) = &c.stop_signal {
        runtime = runtime.stop_signal(signal.clone());
    }
    let runtime = runtime.build().map_err(spec_err("image config"))?;

    let history = layers
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let info = draft.layers.get(i);
            let created_by = info
                .map(|l| l.created_by.as_str())
                .filter(|s| !s.is_empty())
                .unwrap_or(&draft.created_by);
            HistoryBuilder::default()
                .created(created_text.clone())
                .created_by(created_by.to_string())
                .build()
                .map_err(spec_err("image history"))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut config = ImageConfigurationBuilder::default()
        .created(created_text.clone())
        .architecture(oci::Arch::from(c.architecture.as_str()))
        .os(oci::Os::from(c.os.as_str()))
        .config(runtime)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    layers
                        .iter()
                        .map(|l| l.diff_id.to_string())
                        .collect::<Vec<_>>(),
                )
                .build()
                .map_err(spec_err("image rootfs"))?,
        )
        .history(history);
    if let Some(variant) = &c.variant {
        config = config.variant(variant.clone());
    }
    if let Some(author) = &c.author {
        config = config.author(author.clone());
    }
    let config = config.build().map_err(spec_err("image config"))?;
    let config_bytes = json::to_canonical_vec(&config)?;
    let config_digest = store.put(&config_bytes)?;

    let descriptors = layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut d = DescriptorBuilder::default()
                .media_type(MediaType::from(l.media_type))
                .digest(oci_digest(&l.digest)?)
                .size(l.size);
            if let Some(a) = draft
                .layers
                .get(i)
                .and_then(|info| hash_map(&info.annotations))
            {
                d = d.annotations(a);
            }
            d.build().map_err(spec_err("layer descriptor"))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(
            DescriptorBuilder::default()
                .media_type(MediaType::ImageConfig)
                .digest(oci_digest(&config_digest)?)
                .size(config_bytes.len() as u64)
                .build()
                .map_err(spec_err("config descriptor"))?,
        )
        .layers(descriptors);
    if let Some(a) = hash_map(&draft.annotations) {
        manifest = manifest.annotations(a);
    }
    let manifest = manifest.build().map_err(spec_err("manifest"))?;
    let manifest_bytes = json::to_canonical_vec(&manifest)?;
    let manifest_digest = store.put(&manifest_bytes)?;

    let layer_descriptors = layers
        .into_iter()
        .enumerate()
        .map(|(i, encoded)| LayerDescriptor {
            encoded,
            annotations: draft
                .layers
                .get(i)
                .map(|l| l.annotations.clone())
                .unwrap_or_default(),
        })
        .collect();

    let referrers = draft
        .artifacts
        .iter()
        .map(|a| {
            a.manifest(
                &manifest_digest,
                manifest_bytes.len() as u64,
                &created_text,
                store,
            )
        })
        .collect::<Result<Vec<_>>>()?;

    Ok(BuiltImage {
        manifest: manifest_bytes,
        manifest_digest,
        config: config_bytes,
        config_digest,
        layers: layer_descriptors,
        architecture: c.architecture.clone(),
        os: c.os.clone(),
        variant: c.variant.clone(),
        created,
        referrers,
    })
}

/// The OCI empty descriptor's content (`{}`), the config of artifacts.
pub const EMPTY_JSON: &[u8] = b"{}";
/// Its media type.
pub const MEDIA_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// A document published beside an image as an OCI 1.1 artifact.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The artifact's type, also its one layer's media type
    /// (`application/spdx+json`).
    pub artifact_type: String,
    pub bytes: Arc<[u8]>,
}

impl Artifact {
    /// The artifact's manifest, referring to the image `subject`; its blobs
    /// (the document, the empty config) go into `store`.
    pub fn manifest(
        &self,
        subject: &Digest,
        subject_size: u64,
        created: &str,
        store: &BlobStore,
    ) -> Result<Referrer> {
        let empty = store.put(EMPTY_JSON)?;
        let doc = store.put(&self.bytes)?;
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::media::OCI_MANIFEST,
            "artifactType": self.artifact_type,
            "config": {
                "mediaType": MEDIA_EMPTY,
                "digest": empty.to_string(),
                "size": EMPTY_JSON.len(),
                "data": "e30=",
            },
            "layers": [{
                "mediaType": self.artifact_type,
                "digest": doc.to_string(),
                "size": self.bytes.len(),
            }],
            "subject": {
                "mediaType": crate::media::OCI_MANIFEST,
                "digest": subject.to_string(),
                "size": subject_size,
            },
            "annotations": {"org.opencontainers.image.created": created},
        });
        let bytes = json::to_canonical_vec(&manifest)?;
        let digest = store.put(&bytes)?;
        Ok(Referrer {
            raw: crate::ports::RawManifest {
                bytes,
                media_type: crate::media::OCI_MANIFEST.to_string(),
                digest,
            },
            blobs: vec![
                (empty, EMPTY_JSON.len() as u64),
                (doc, self.bytes.len() as u64),
            ],
            artifact_type: self.artifact_type.clone(),
        })
    }
}

/// Converts a digest to oci-spec's type.
pub fn oci_digest(d: &Digest) -> Result<oci::Digest> {
    d.to_string()
        .parse::<oci::Digest>()
        .map_err(|e| Error::Other(format!("digest {d}: {e}")))
}

/// A descriptor of the manifest of `image`, for an index.
pub fn manifest_descriptor(
    image: &BuiltImage,
    annotations: &BTreeMap<String, String>,
    with_platform: bool,
) -> Result<oci::Descriptor> {
    let mut d = DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(oci_digest(&image.manifest_digest)?)
        .size(image.manifest.len() as u64);
    if let Some(a) = hash_map(annotations) {
        d = d.annotations(a);
    }
    if with_platform {
        d = d.platform(image.platform());
    }
    d.build().map_err(spec_err("manifest descriptor"))
}

/// The media type string of an oci-spec media type.
#[must_use]
pub fn media_type_str(m: &MediaType) -> String {
    m.to_string()
}

/// True when `m` is a layer media type treeport can read.
#[must_use]
pub fn is_layer_media_type(m: &str) -> bool {
    m.starts_with(media::OCI_LAYER_TAR)
        || m.starts_with("application/vnd.docker.image.rootfs.diff.tar")
}
