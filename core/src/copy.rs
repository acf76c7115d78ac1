//! Images as sets of manifests and blobs, read from any [`ImageReader`] and
//! written by any sink that can take them: what `pull`, `oci push` and
//! `index` are made of.

use std::io::Read;

use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};

use crate::blobs::BlobStore;
use crate::digest::{Digest, HashWriter};
use crate::error::{Error, Result};
use crate::image::{BuiltImage, Referrer, oci_digest};
use crate::plugin::{Sink, Written};
use crate::ports::{ImageReader, RawManifest};
use crate::progress::Context;
use crate::resolve::{self, Platform};
use crate::{json, media};

pub use crate::ports::{ImageSet, SetManifest};

impl BuiltImage {
    /// The image as a set of one manifest.
    #[must_use]
    pub fn to_set(&self) -> ImageSet {
        ImageSet {
            index: None,
            manifests: vec![SetManifest {
                raw: RawManifest {
                    bytes: self.manifest.clone(),
                    media_type: media::OCI_MANIFEST.to_string(),
                    digest: self.manifest_digest,
                },
                blobs: self.blobs(),
                platform: Some(Platform {
                    os: self.os.clone(),
                    architecture: self.architecture.clone(),
                    variant: self.variant.clone(),
                }),
            }],
            referrers: Vec::new(),
        }
    }
}

/// The blobs a manifest references.
pub fn manifest_blobs(raw: &RawManifest) -> Result<Vec<(Digest, u64)>> {
    let m = resolve::parse_manifest(raw)?;
    let mut out = vec![(m.config().digest().to_string().parse()?, m.config().size())];
    for l in m.layers() {
        out.push((l.digest().to_string().parse()?, l.size()));
    }
    Ok(out)
}

fn platform_of(d: &oci_spec::image::Descriptor) -> Option<Platform> {
    d.platform().as_ref().map(|p| Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone(),
    })
}

/// Reads the manifests of the image a reader names. From an index: every
/// manifest, or only the one for `platform` (then the set has no index).
pub fn read_set(reader: &mut dyn ImageReader, platform: Option<&Platform>) -> Result<ImageSet> {
    let top = reader.top()?;
    if !media::is_index(&top.media_type) {
        let blobs = manifest_blobs(&top)?;
        return Ok(ImageSet {
            index: None,
            manifests: vec![SetManifest {
                raw: top,
                blobs,
                platform: None,
            }],
            referrers: Vec::new(),
        });
    }
    let index = resolve::parse_index(&top)?;
    let mut manifests = Vec::new();
    for d in index.manifests() {
        let p = platform_of(d);
        if let Some(want) = platform
            && !p.as_ref().is_some_and(|p| {
                p == want
                    || (want.variant.is_none()
                        && p.os == want.os
                        && p.architecture == want.architecture)
            })
        {
            continue;
        }
        let media_type = d.media_type().to_string();
        if !media::is_manifest(&media_type) {
            // Attestations and nested indexes are not images to copy.
            continue;
        }
        let digest: Digest = d.digest().to_string().parse()?;
        let raw = reader.manifest(&digest)?;
        if raw.bytes.len() as u64 != d.size() {
            return Err(Error::invalid(format!(
                "index {}: manifest {digest} is {} bytes, the index says {}",
                top.digest,
                raw.bytes.len(),
                d.size()
            )));
        }
        let blobs = manifest_blobs(&raw)?;
        manifests.push(SetManifest {
            raw,
            blobs,
            platform: p,
        });
    }
    match (platform, manifests.len()) {
        (Some(want), 0) => Err(Error::invalid(format!(
            "index {} has no image for {want}",
            top.digest
        ))),
        (Some(_), _) => Ok(ImageSet {
            index: None,
            manifests: manifests.into_iter().take(1).collect(),
            referrers: Vec::new(),
        }),
        (None, 0) => Err(Error::invalid(format!(
            "index {} lists no image",
            top.digest
        ))),
        (None, _) => Ok(ImageSet {
            index: Some(top),
            manifests,
            referrers: Vec::new(),
        }),
    }
}

/// The most artifacts copied along with one document; more are left
/// behind (a warning).
pub const MAX_REFERRERS: usize = 256;

/// The largest artifact manifest copied (an SBOM's is under 1 KiB).
pub const MAX_ARTIFACT_MANIFEST: u64 = 64 << 10;

/// The most bytes of artifact blobs one copy fetches, all artifacts
/// together; an artifact past it is left behind (a warning).
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

/// The artifacts (an SBOM) that refer to the documents of `set`, each
/// manifest read by digest and checked against its listing: the same
/// digest and size, its `subject` the document it is listed for.
///
/// What the source lists is up to whoever can push there, so an artifact
/// that cannot be copied costs itself, not the image: a listing that
/// cannot be read, an artifact that is not an image manifest (an index, an
/// old artifact manifest) or cannot be fetched, one past the bounds above,
/// each is a warning and left behind.
///
/// # Errors
/// A listed manifest whose bytes do not match its listing, or that names
/// another subject: the source lies.
pub fn read_referrers(
    reader: &mut dyn ImageReader,
    set: &ImageSet,
    ctx: &Context,
) -> Result<Vec<(Digest, Vec<Referrer>)>> {
    let subjects: Vec<Digest> = set
        .index
        .iter()
        .map(|i| i.digest)
        .chain(set.manifests.iter().map(|m| m.raw.digest))
        .collect();
    let mut budget = MAX_ARTIFACT_BYTES;
    let mut out = Vec::new();
    for subject in subjects {
        let leave = |what: &str| {
            ctx.warn(&format!("image {subject}: {what}; not copied"));
        };
        let mut listed = match reader.referrers(&subject) {
            Ok(listed) => listed,
            Err(e) => {
                leave(&format!("its artifacts cannot be listed ({e})"));
                continue;
            }
        };
        let mut seen = std::collections::BTreeSet::new();
        listed.retain(|info| seen.insert(info.digest));
        if listed.len() > MAX_REFERRERS {
            leave(&format!(
                "{} artifacts refer to it, the last {} past the {MAX_REFERRERS} treeport copies",
                listed.len(),
                listed.len() - MAX_REFERRERS
            ));
            listed.truncate(MAX_REFERRERS);
        }
        let mut found = Vec::with_capacity(listed.len());
        for info in listed {
            let name = format!("artifact {}", info.digest);
            if info.size > MAX_ARTIFACT_MANIFEST {
                leave(&format!(
                    "{name} is a {} byte manifest, larger than the {MAX_ARTIFACT_MANIFEST} an artifact's may be",
                    info.size
                ));
                continue;
            }
            let raw = match reader.manifest(&info.digest) {
                Ok(raw) => raw,
                Err(e) => {
                    leave(&format!("{name} cannot be read ({e})"));
                    continue;
                }
            };
            if raw.digest != info.digest || raw.bytes.len() as u64 != info.size {
                return Err(Error::invalid(format!(
                    "{name}: content does not match its descriptor"
                )));
            }
            let Ok(m) = resolve::parse_manifest(&raw) else {
                leave(&format!(
                    "{name} is not an image manifest ({})",
                    raw.media_type
                ));
                continue;
            };
            let names = m
                .subject()
                .as_ref()
                .is_some_and(|d| d.digest().to_string() == subject.to_string());
            if !names {
                return Err(Error::invalid(format!(
                    "{name}: listed for image {subject}, but its subject is another"
                )));
            }
            let listed_blobs = manifest_blobs(&raw)?;
            let size: u64 = listed_blobs.iter().map(|(_, s)| *s).sum();
            if size > budget {
                leave(&format!(
                    "{name} holds {size} bytes, past the {MAX_ARTIFACT_BYTES} of artifacts one copy fetches"
                ));
                continue;
            }
            budget -= size;
            // The type the manifest itself gives (the listing only repeats
            // it), else its config's media type, as the spec says.
            let artifact_type = m
                .artifact_type()
                .as_ref()
                .map_or_else(|| m.config().media_type().to_string(), ToString::to_string);
            found.push(Referrer {
                raw,
                blobs: listed_blobs,
                artifact_type,
            });
        }
        if !found.is_empty() {
            out.push((subject, found));
        }
    }
    Ok(out)
}

/// Stores every manifest of `set` in `store` and fetches every blob it
/// does not hold yet, checking each against its digest and size.
pub fn fetch(
    reader: &mut dyn ImageReader,
    set: &ImageSet,
    store: &BlobStore,
    ctx: &Context,
) -> Result<()> {
    if let Some(index) = &set.index {
        store.put(&index.bytes)?;
    }
    for m in &set.manifests {
        store.put(&m.raw.bytes)?;
    }
    fetch_blobs(reader, set.blobs(), store, ctx)
}

/// Stores the manifests of `referrers` and fetches their blobs, as
/// [`fetch`] does an image's.
pub fn fetch_referrers(
    reader: &mut dyn ImageReader,
    referrers: &[Referrer],
    store: &BlobStore,
    ctx: &Context,
) -> Result<()> {
    for r in referrers {
        store.put(&r.raw.bytes)?;
    }
    let blobs = referrers.iter().flat_map(|r| r.blobs.iter().copied());
    fetch_blobs(reader, blobs.collect(), store, ctx)
}

/// Fetches each of `blobs` that `store` does not hold yet, once, checking
/// it against its digest and size as it streams.
fn fetch_blobs(
    reader: &mut dyn ImageReader,
    blobs: Vec<(Digest, u64)>,
    store: &BlobStore,
    ctx: &Context,
) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    let missing: Vec<(Digest, u64)> = blobs
        .into_iter()
        .filter(|(d, _)| !store.contains(d) && seen.insert(*d))
        .collect();
    let task = ctx
        .progress()
        .task("fetching blobs", Some(missing.iter().map(|(_, s)| s).sum()));
    for (digest, size) in missing {
        let mut input = reader.blob(&digest)?;
        let mut out = HashWriter::new(store.create()?);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = input
                .read(&mut buf)
                .map_err(|e| Error::invalid(format!("blob {digest}: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > size {
                return Err(Error::invalid(format!(
                    "blob {digest}: more than the {size} bytes its descriptor says"
                )));
            }
            std::io::Write::write_all(&mut out, &buf[..n])
                .map_err(|e| Error::io(store.dir(), e))?;
            task.advance(n as u64);
        }
        let (writer, got, len) = out.finish();
        if got != digest || len != size {
            return Err(Error::invalid(format!(
                "blob {digest}: content does not match its descriptor (got {got}, {len} bytes)"
            )));
        }
        let (stored, _) = writer.commit()?;
        debug_assert_eq!(stored, digest);
    }
    task.finish();
    Ok(())
}

/// The OCI media type for a Docker schema 2 one (the same bytes, as
/// skopeo converts them).
fn oci_media_type(docker: &str) -> Option<&'static str> {
    Some(match docker {
        media::DOCKER_MANIFEST => media::OCI_MANIFEST,
        media::DOCKER_MANIFEST_LIST => media::OCI_INDEX,
        media::DOCKER_CONFIG => media::OCI_CONFIG,
        media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP,
        media::DOCKER_LAYER_TAR => media::OCI_LAYER_TAR,
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        }
        _ => return None,
    })
}

/// Rewrites the media types of a manifest's JSON in place; true if any was
/// Docker's.
fn rewrite_media_types(value: &mut serde_json::Value) -> bool {
    let mut changed = false;
    let mut fix = |v: &mut serde_json::Value| {
        if let Some(oci) = v
            .get("mediaType")
            .and_then(|m| m.as_str())
            .and_then(oci_media_type)
        {
            v["mediaType"] = oci.into();
            changed = true;
        }
    };
    fix(value);
    if let Some(config) = value.get_mut("config") {
        fix(config);
    }
    for key in ["layers", "manifests"] {
        if let Some(list) = value.get_mut(key).and_then(|l| l.as_array_mut()) {
            list.iter_mut().for_each(&mut fix);
        }
    }
    changed
}

/// The set with its Docker schema 2 manifests (and manifest list) written
/// as OCI ones: the same config and layer blobs under OCI media types, as
/// `skopeo copy` converts for an OCI destination. Manifests that change get
/// new digests; an index then names the new ones.
///
/// # Errors
/// A manifest that is not JSON.
pub fn to_oci(set: &ImageSet) -> Result<ImageSet> {
    let mut renamed = std::collections::BTreeMap::new();
    let mut manifests = Vec::with_capacity(set.manifests.len());
    for m in &set.manifests {
        let mut value: serde_json::Value = serde_json::from_slice(&m.raw.bytes)
            .map_err(|e| Error::invalid(format!("manifest {}: {e}", m.raw.digest)))?;
        let mut m = m.clone();
        if rewrite_media_types(&mut value) {
            let bytes = json::to_canonical_vec(&value)?;
            let digest = Digest::of(&bytes);
            renamed.insert(m.raw.digest.to_string(), (digest, bytes.len()));
            m.raw = RawManifest {
                bytes,
                media_type: media::OCI_MANIFEST.to_string(),
                digest,
            };
        }
        manifests.push(m);
    }
    let index = match &set.index {
        Some(index) => {
            let mut value: serde_json::Value = serde_json::from_slice(&index.bytes)
                .map_err(|e| Error::invalid(format!("index {}: {e}", index.digest)))?;
            let mut changed = rewrite_media_types(&mut value);
            if let Some(list) = value.get_mut("manifests").and_then(|l| l.as_array_mut()) {
                for d in list {
                    let old = d.get("digest").and_then(|x| x.as_str()).unwrap_or_default();
                    if let Some((digest, size)) = renamed.get(old) {
                        d["digest"] = digest.to_string().into();
                        d["size"] = (*size).into();
                        changed = true;
                    }
                }
            }
            Some(if changed {
                let bytes = json::to_canonical_vec(&value)?;
                RawManifest {
                    digest: Digest::of(&bytes),
                    bytes,
                    media_type: media::OCI_INDEX.to_string(),
                }
            } else {
                index.clone()
            })
        }
        None => None,
    };
    // Artifacts of a document whose digest changed name a subject that is
    // gone: they are left behind.
    let kept: Vec<Digest> = manifests
        .iter()
        .map(|m| m.raw.digest)
        .chain(index.as_ref().map(|i| i.digest))
        .collect();
    let referrers = set
        .referrers
        .iter()
        .filter(|(subject, _)| kept.contains(subject))
        .cloned()
        .collect();
    Ok(ImageSet {
        index,
        manifests,
        referrers,
    })
}

/// Copies the image `reader` names to `sink`: manifests, then the blobs the
/// reader's own store lacks (fetched and checked into a staging store on the
/// sink's filesystem), then the sink writes the set.
pub fn copy(
    reader: &mut dyn ImageReader,
    sink: &mut dyn Sink,
    platform: Option<&Platform>,
    ctx: &Context,
) -> Result<(ImageSet, Written)> {
    sink.prepare(ctx)?;
    let mut set = read_set(reader, platform)?;
    // Every blob is read from the source and checked into a store of this
    // run's own, on the destination's filesystem, whatever the source:
    // nothing unchecked (and nothing but the bytes its digest names, even
    // from a layout whose files are symlinks or FIFOs) reaches the sink.
    let store = BlobStore::temporary_in(sink.staging_dir().as_deref())?;
    fetch(reader, &set, &store, ctx)?;
    // The image is whole; then its artifacts, if the source lists any and
    // the destination keeps them.
    if sink.keeps_referrers() {
        set.referrers = read_referrers(reader, &set, ctx)?;
        if !set.referrers.is_empty() {
            fetch_referrers(reader, &set.all_referrers(), &store, ctx)?;
        }
    }
    let set = if sink.takes_docker_manifests() {
        set
    } else {
        let converted = to_oci(&set)?;
        if converted.referrers.len() < set.referrers.len() {
            ctx.warn(
                "the image's manifests change digest as they become OCI ones, so the artifacts naming them are not copied",
            );
        }
        converted
    };
    let written = sink.write_set(&set, &store, ctx)?;
    Ok((set, written))
}

/// An OCI index of `manifests`, each with its platform.
pub fn build_index(manifests: &[SetManifest]) -> Result<RawManifest> {
    let mut descriptors = Vec::with_capacity(manifests.len());
    for m in manifests {
        let p = m.platform.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "manifest {} has no platform for the index",
                m.raw.digest
            ))
        })?;
        let mut platform = oci_spec::image::Platform::default();
        platform.set_architecture(oci_spec::image::Arch::from(p.architecture.as_str()));
        platform.set_os(oci_spec::image::Os::from(p.os.as_str()));
        platform.set_variant(p.variant.clone());
        descriptors.push(
            DescriptorBuilder::default()
                .media_type(MediaType::from(m.raw.media_type.as_str()))
                .digest(oci_digest(&m.raw.digest)?)
                .size(m.raw.bytes.len() as u64)
                .platform(platform)
                .build()
                .map_err(|e| Error::Other(format!("building an index descriptor: {e}")))?,
        );
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors)
        .build()
        .map_err(|e| Error::Other(format!("building the image index: {e}")))?;
    let bytes = json::to_canonical_vec(&index)?;
    Ok(RawManifest {
        digest: Digest::of(&bytes),
        bytes,
        media_type: media::OCI_INDEX.to_string(),
    })
}

/// The platform an image's config declares.
pub fn config_platform(reader: &mut dyn ImageReader, m: &SetManifest) -> Result<Platform> {
    let (digest, size) = m.blobs[0];
    let bytes = resolve::read_document(reader, &digest, size)?;
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("config {digest}: {e}")))?;
    Ok(Platform {
        os: config.os().to_string(),
        architecture: config.architecture().to_string(),
        variant: config.variant().clone(),
    })
}
