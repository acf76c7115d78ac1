//! The OCI image layout: `oci-layout`, `index.json` and `blobs/sha256/<hex>`.
//!
//! Several tags live in one layout, each an `index.json` entry annotated with
//! `org.opencontainers.image.ref.name`. `index.json` is only ever replaced by
//! an atomic rename under an exclusive lock on the layout directory, so two
//! writers both land and a reader never sees a half-written index.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, DescriptorBuilder, ImageIndex, ImageIndexBuilder, MediaType};

use crate::blobs::{self, BlobStore};
use crate::digest::Digest;
use crate::error::{Error, IoResultExt, Result};
use crate::image::{self, BuiltImage};
use crate::json;
use crate::media::ANNOTATION_REF_NAME;

/// The descriptor of an artifact manifest, for a referrers index.
pub fn referrer_descriptor(r: &image::Referrer) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(MediaType::ImageManifest)
        .digest(image::oci_digest(&r.raw.digest)?)
        .size(r.raw.bytes.len() as u64)
        .artifact_type(MediaType::Other(r.artifact_type.clone()))
        .build()
        .map_err(|e| Error::Other(format!("referrer descriptor: {e}")))
}

/// The index a referrers tag names, listing `listed`.
pub fn referrers_index(listed: Vec<Descriptor>) -> Result<RawManifest> {
    let bytes = json::to_canonical_vec(&empty_index(listed)?)?;
    Ok(RawManifest {
        digest: Digest::of(&bytes),
        media_type: crate::media::OCI_INDEX.to_string(),
        bytes,
    })
}

/// The descriptor of an index document.
pub fn index_descriptor(raw: &RawManifest) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(MediaType::ImageIndex)
        .digest(image::oci_digest(&raw.digest)?)
        .size(raw.bytes.len() as u64)
        .build()
        .map_err(|e| Error::Other(format!("referrers descriptor: {e}")))
}

/// The artifacts `index` lists for `subject` under its referrers tag;
/// `read` gives a blob's bytes, checked here against the digest.
pub fn listed_referrers(
    index: &ImageIndex,
    subject: &Digest,
    what: &str,
    read: impl FnOnce(&Digest) -> Result<Vec<u8>>,
) -> Result<Vec<Descriptor>> {
    let tag = referrers_tag(subject);
    let Some(d) = index
        .manifests()
        .iter()
        .find(|d| ref_name(d) == Some(tag.as_str()))
    else {
        return Ok(Vec::new());
    };
    let digest: Digest = d.digest().to_string().parse()?;
    let bytes = read(&digest)?;
    if Digest::of(&bytes) != digest {
        return Err(Error::invalid(format!(
            "{what}: referrers index {digest} does not match its digest"
        )));
    }
    let listed: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("{what}: referrers index {digest}: {e}")))?;
    Ok(listed.manifests().clone())
}

/// What a reader reports of listed artifacts.
pub fn referrer_infos(listed: &[Descriptor]) -> Result<Vec<crate::ports::ReferrerInfo>> {
    listed
        .iter()
        .map(|d| {
            Ok(crate::ports::ReferrerInfo {
                digest: d.digest().to_string().parse()?,
                size: d.size(),
                artifact_type: d
                    .artifact_type()
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Refuses a tag of the referrers tag schema's form (`sha256-<hex>`) as a
/// user's tag: treeport keeps those for an image's artifacts and drops
/// them when their image goes.
pub fn check_user_tag(tag: &str) -> Result<()> {
    check_tag(tag)?;
    if referrers_subject(tag).is_some() {
        return Err(Error::usage(format!(
            "tag '{tag}' has the form sha256-<digest>[.sig], which names an image's artifacts (its SBOM, its signatures); choose another"
        )));
    }
    Ok(())
}

/// The tag that names the referrers of `subject` (the OCI distribution
/// spec's referrers tag schema): `sha256-<hex>`.
#[must_use]
pub fn referrers_tag(subject: &Digest) -> String {
    format!("sha256-{}", subject.hex())
}

/// The subject a tag attached to an image names, if `tag` is one: a
/// referrers tag (`sha256-<hex>`) or a cosign signature tag
/// (`sha256-<hex>.sig`).
fn referrers_subject(tag: &str) -> Option<&str> {
    let rest = tag.strip_prefix("sha256-")?;
    let hex = rest.strip_suffix(".sig").unwrap_or(rest);
    is_sha256_hex(hex).then_some(hex)
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for a referrers tag (`sha256-<hex>`), not a signature tag.
fn is_referrers_tag(tag: &str) -> bool {
    tag.strip_prefix("sha256-").is_some_and(is_sha256_hex)
}

use crate::plugin::RawManifest;
use crate::ports::ImageSet;

/// The name of the layout marker file.
pub const LAYOUT_FILE: &str = "oci-layout";
/// The content of the layout marker file.
pub const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Splits `DIR[:TAG]` (the rest of an `oci:` or `oci-archive:` selector).
/// The tag is what follows the last colon, unless that part holds a slash
/// (then the colon belongs to the path).
#[must_use]
pub fn split_path_tag(rest: &str) -> (&str, Option<&str>) {
    match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !path.is_empty() => {
            (path, (!tag.is_empty()).then_some(tag))
        }
        _ => (rest, None),
    }
}

/// Checks a tag for an OCI layout's `ref.name`.
pub fn check_tag(tag: &str) -> Result<()> {
    let ok = !tag.is_empty()
        && tag.len() <= 255
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:/@+".contains(&b))
        && tag.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "'{tag}' is not a valid tag (letters, digits and . _ - : / @ +, starting with a letter or digit)"
        )))
    }
}

/// An OCI image layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
    /// `blobs/sha256`, held open for writing (a layout made with
    /// [`Layout::create`]).
    blobs: Option<std::sync::Arc<blobs::BlobDir>>,
}

/// An exclusive lock on a layout, released when dropped.
pub struct LayoutLock {
    _file: File,
}

impl Layout {
    /// Opens the layout at `dir`, creating it (and `oci-layout`, `blobs/sha256`)
    /// when missing. An existing non-empty directory that is not a layout is refused.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).at(&dir)?;
        let marker = dir.join(LAYOUT_FILE);
        if !marker.exists() {
            let foreign = fs::read_dir(&dir)
                .at(&dir)?
                .filter_map(std::result::Result::ok)
                .any(|e| {
                    !e.file_name()
                        .to_string_lossy()
                        .starts_with(blobs::TEMP_PREFIX)
                });
            if foreign {
                return Err(Error::invalid(format!(
                    "{}: directory exists and is not an OCI image layout (no oci-layout file)",
                    dir.display()
                )));
            }
            blobs::write_atomic(&marker, LAYOUT_CONTENT)?;
        }
        // Blobs are written relative to this handle: a `blobs` or
        // `blobs/sha256` that is (or becomes) a symlink sends none
        // elsewhere.
        let blobs = blobs::BlobDir::open(&dir, &["blobs", "sha256"], true)?;
        Ok(Layout {
            dir,
            blobs: Some(std::sync::Arc::new(blobs)),
        })
    }

    /// Opens an existing layout. Its `blobs` and `blobs/sha256` must be
    /// directories of its own, not symlinks to elsewhere.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let marker = dir.join(LAYOUT_FILE);
        if !marker.exists() && fs::symlink_metadata(&marker).is_err() {
            return Err(Error::invalid(format!(
                "{}: not an OCI image layout (no oci-layout file)",
                dir.display()
            )));
        }
        let text = read_document(&marker)?;
        let version: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| Error::invalid(format!("{}: {e}", marker.display())))?;
        if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(Error::invalid(format!(
                "{}: unsupported imageLayoutVersion",
                marker.display()
            )));
        }
        for sub in [dir.join("blobs"), dir.join("blobs").join("sha256")] {
            if fs::symlink_metadata(&sub).is_ok() {
                check_real_dir(&sub)?;
            }
        }
        Ok(Layout { dir, blobs: None })
    }

    /// The open `blobs/sha256` to write to.
    fn blob_dir(&self) -> Result<std::sync::Arc<blobs::BlobDir>> {
        match &self.blobs {
            Some(b) => Ok(std::sync::Arc::clone(b)),
            None => Ok(std::sync::Arc::new(blobs::BlobDir::open(
                &self.dir,
                &["blobs", "sha256"],
                true,
            )?)),
        }
    }

    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` lives.
    #[must_use]
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    /// Takes the layout's exclusive lock (blocks until it is free).
    pub fn lock(&self) -> Result<LayoutLock> {
        let file = File::open(&self.dir).at(&self.dir)?;
        file.lock().at(&self.dir)?;
        Ok(LayoutLock { _file: file })
    }

    /// The index; an empty one when the layout has none yet. It is a
    /// document like a manifest, so at most 4 MiB.
    pub fn read_index(&self) -> Result<ImageIndex> {
        let path = self.dir.join("index.json");
        if fs::symlink_metadata(&path).is_err() {
            return empty_index(Vec::new());
        }
        let bytes = read_document(&path)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::invalid(format!("{}: {e}", path.display())))
    }

    /// Replaces the index atomically. Call with the lock held.
    pub fn write_index(&self, index: &ImageIndex) -> Result<()> {
        blobs::write_atomic(
            &self.dir.join("index.json"),
            &json::to_canonical_vec(index)?,
        )
    }

    /// Hardlinks (or copies) the blob `digest` of `size` bytes from `store`
    /// into the layout; a blob already there is kept only when it checks
    /// out.
    pub fn put_blob(&self, store: &BlobStore, digest: &Digest, size: u64) -> Result<()> {
        self.blob_dir()?
            .place(
                &store.path(digest),
                &digest.hex(),
                digest,
                size,
                None,
                &self.dir,
            )
            .map(drop)
    }

    /// Adds `descriptor` to the index under `tag`, replacing what the tag
    /// named before and keeping every other entry.
    pub fn set_tag(&self, tag: &str, descriptor: Descriptor) -> Result<()> {
        let _lock = self.lock()?;
        self.set_tag_locked(tag, descriptor)
    }

    /// [`Layout::set_tag`], the layout's lock held by the caller.
    fn set_tag_locked(&self, tag: &str, mut descriptor: Descriptor) -> Result<()> {
        check_tag(tag)?;
        let mut annotations = descriptor.annotations().clone().unwrap_or_default();
        annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
        descriptor.set_annotations(Some(annotations));
        let index = self.read_index()?;
        let mut manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) != Some(tag))
            .cloned()
            .collect();
        manifests.push(descriptor);
        self.drop_dangling_referrers(&mut manifests);
        let mut out = empty_index(manifests)?;
        if let Some(a) = index.annotations() {
            out.set_annotations(Some(a.clone()));
        }
        self.write_index(&out)
    }

    /// Drops referrers and signature tags whose subject nothing names any
    /// more: neither an entry nor a manifest an entry's index lists (the
    /// image they describe was untagged or replaced). An artifact's
    /// signatures stay while a kept referrers tag lists the artifact.
    fn drop_dangling_referrers(&self, manifests: &mut Vec<Descriptor>) {
        let mut named = std::collections::BTreeSet::new();
        let children = |d: &Descriptor| -> Vec<String> {
            if *d.media_type() == MediaType::ImageIndex
                && let Ok(digest) = d.digest().to_string().parse::<Digest>()
                && let Ok(bytes) = read_document(&self.blob_path(&digest))
                && let Ok(index) = serde_json::from_slice::<ImageIndex>(&bytes)
            {
                return index
                    .manifests()
                    .iter()
                    .map(|m| m.digest().to_string())
                    .collect();
            }
            Vec::new()
        };
        for d in manifests
            .iter()
            .filter(|d| ref_name(d).and_then(referrers_subject).is_none())
        {
            named.insert(d.digest().to_string());
            named.extend(children(d));
        }
        let kept = |d: &Descriptor, named: &std::collections::BTreeSet<String>| {
            ref_name(d)
                .and_then(referrers_subject)
                .is_none_or(|hex| named.contains(&format!("sha256:{hex}")))
        };
        // The referrers tags of named images list artifacts, which their
        // signature tags refer to.
        for d in manifests
            .iter()
            .filter(|d| ref_name(d).is_some_and(is_referrers_tag))
        {
            if kept(d, &named) {
                named.extend(children(d));
            }
        }
        manifests.retain(|d| kept(d, &named));
    }

    /// Replaces what `tag` names with what `update` makes of it (the
    /// manifest there now, if any), under the layout's lock: the new
    /// manifest and its `blobs` (from `store`) are written first. `update`
    /// returning `None` changes nothing.
    pub fn update_tag(
        &self,
        tag: &str,
        store: &BlobStore,
        update: impl FnOnce(Option<&RawManifest>) -> Result<Option<(RawManifest, Vec<(Digest, u64)>)>>,
    ) -> Result<bool> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let current = match index.manifests().iter().find(|d| ref_name(d) == Some(tag)) {
            Some(d) => {
                let digest: Digest = d.digest().to_string().parse()?;
                let bytes = read_document(&self.blob_path(&digest))?;
                Some(RawManifest {
                    bytes,
                    media_type: d.media_type().to_string(),
                    digest,
                })
            }
            None => None,
        };
        let Some((raw, blobs)) = update(current.as_ref())? else {
            return Ok(false);
        };
        for (digest, size) in &blobs {
            self.put_blob(store, digest, *size)?;
        }
        self.put_raw(&raw)?;
        self.set_tag_locked(tag, tagged_descriptor(&raw, tag)?)?;
        Ok(true)
    }

    /// Writes every blob and manifest of `set` (all in `store`) and tags its
    /// top document.
    pub fn put_set(&self, set: &ImageSet, store: &BlobStore, tag: &str) -> Result<()> {
        for (digest, size) in set.blobs() {
            self.put_blob(store, &digest, size)?;
        }
        for m in &set.manifests {
            self.put_raw(&m.raw)?;
        }
        if let Some(index) = &set.index {
            self.put_raw(index)?;
        }
        self.set_tag(tag, top_descriptor(set)?)
    }

    /// Writes artifacts that refer to the image `subject` (an SBOM) and
    /// lists them as the OCI distribution spec's referrers tag schema does
    /// for registries: the tag `sha256-<hex of subject>` names an index of
    /// the artifact manifests (each with its `artifactType`). Artifacts
    /// listed there before stay, unless they are the same.
    pub fn put_referrers(
        &self,
        referrers: &[image::Referrer],
        store: &BlobStore,
        subject: &Digest,
    ) -> Result<()> {
        for r in referrers {
            for (digest, size) in &r.blobs {
                self.put_blob(store, digest, *size)?;
            }
            self.put_raw(&r.raw)?;
        }
        let tag = referrers_tag(subject);
        // Read, merge and write under the lock: two exports adding
        // artifacts at once each keep the other's.
        let _lock = self.lock()?;
        let mut listed = self.referrers(subject)?;
        for r in referrers {
            if !listed
                .iter()
                .any(|d| d.digest().to_string() == r.raw.digest.to_string())
            {
                listed.push(referrer_descriptor(r)?);
            }
        }
        let raw = referrers_index(listed)?;
        self.put_raw(&raw)?;
        self.set_tag_locked(&tag, index_descriptor(&raw)?)
    }

    /// The artifacts listed for the image `subject` (through its referrers
    /// tag), each a descriptor with its `artifactType`.
    pub fn referrers(&self, subject: &Digest) -> Result<Vec<Descriptor>> {
        let what = self.dir.display().to_string();
        listed_referrers(&self.read_index()?, subject, &what, |digest| {
            read_document(&self.blob_path(digest))
        })
    }

    /// Writes a manifest or index as a blob (atomically), unless the right
    /// bytes are there already.
    fn put_raw(&self, raw: &RawManifest) -> Result<()> {
        self.blob_dir()?
            .put_bytes(&raw.digest.hex(), &raw.digest, &raw.bytes, &self.dir)
    }

    /// The descriptor a tag names. Without a tag, the layout must hold exactly
    /// one image.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor> {
        resolve_in(&self.read_index()?, tag, &self.dir.display().to_string())
    }
}

/// The descriptor `tag` names in `index`, if any.
#[must_use]
pub fn find_tagged(index: &ImageIndex, tag: &str) -> Option<Descriptor> {
    index
        .manifests()
        .iter()
        .find(|d| ref_name(d) == Some(tag))
        .cloned()
}

/// A descriptor of the document `raw`, named `tag` (for an index.json).
pub fn tagged_descriptor(raw: &RawManifest, tag: &str) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(MediaType::from(raw.media_type.as_str()))
        .digest(image::oci_digest(&raw.digest)?)
        .size(raw.bytes.len() as u64)
        .annotations(std::collections::HashMap::from([(
            ANNOTATION_REF_NAME.to_string(),
            tag.to_string(),
        )]))
        .build()
        .map_err(|e| Error::Other(format!("descriptor of {tag}: {e}")))
}

/// The descriptor `tag` names in `index` (`what` names the layout in
/// errors). Without a tag, the index must hold exactly one image.
pub fn resolve_in(index: &ImageIndex, tag: Option<&str>, what: &str) -> Result<Descriptor> {
    let found: Vec<&Descriptor> = match tag {
        Some(tag) => index
            .manifests()
            .iter()
            .filter(|d| ref_name(d) == Some(tag))
            .collect(),
        // An image's referrers tag (its SBOM) is not an image.
        None => index
            .manifests()
            .iter()
            .filter(|d| ref_name(d).and_then(referrers_subject).is_none())
            .collect(),
    };
    match (found.as_slice(), tag) {
        ([one], _) => Ok((*one).clone()),
        ([], Some(tag)) => Err(Error::invalid(format!(
            "{what}: no image tagged '{tag}' (tags: {})",
            tags(index).join(", ")
        ))),
        ([], None) => Err(Error::invalid(format!("{what}: holds no image"))),
        (_, _) => Err(Error::usage(format!(
            "{what}: holds several images; name one with :TAG (tags: {})",
            tags(index).join(", ")
        ))),
    }
}

/// The index of a layout that holds `image` under `tag`, and nothing else.
pub fn index_for(image: &BuiltImage, tag: &str) -> Result<ImageIndex> {
    check_tag(tag)?;
    let mut annotations = BTreeMap::new();
    annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
    empty_index(vec![image::manifest_descriptor(
        image,
        &annotations,
        false,
    )?])
}

/// Reads an image from an OCI layout: manifests checked against their
/// digests (and `index.json`'s sizes), blobs opened as regular files only.
pub struct LayoutReader {
    layout: Layout,
    tag: Option<String>,
}

impl LayoutReader {
    /// Opens `dir`, reading the image tagged `tag` (or its only image).
    ///
    /// # Errors
    /// `dir` is not an OCI layout.
    pub fn open(dir: impl Into<PathBuf>, tag: Option<&str>) -> Result<Self> {
        Ok(LayoutReader {
            layout: Layout::open(dir)?,
            tag: tag.map(str::to_string),
        })
    }

    fn read_manifest(&self, digest: &Digest, media_type: Option<String>) -> Result<RawManifest> {
        let path = self.layout.blob_path(digest);
        let file = blobs::open_regular(&path)?;
        let bytes = crate::media::read_limited(file, &path.display().to_string())?;
        if Digest::of(&bytes) != *digest {
            return Err(Error::invalid(format!(
                "{}: content does not match its digest {digest}",
                path.display()
            )));
        }
        let media_type = match media_type {
            Some(m) => m,
            None => crate::media::sniff_media_type(&bytes)
                .ok_or_else(|| Error::invalid(format!("{}: no mediaType", path.display())))?,
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest: *digest,
        })
    }
}

impl crate::plugin::ImageReader for LayoutReader {
    fn top(&mut self) -> Result<RawManifest> {
        let descriptor = self.layout.resolve(self.tag.as_deref())?;
        let digest: Digest = descriptor.digest().to_string().parse()?;
        let raw = self.read_manifest(&digest, Some(descriptor.media_type().to_string()))?;
        check_descriptor_size(&descriptor, &raw, &self.layout.dir().display().to_string())?;
        Ok(raw)
    }

    fn manifest(&mut self, digest: &Digest) -> Result<RawManifest> {
        self.read_manifest(digest, None)
    }

    fn tagged(&mut self, tag: &str) -> Result<Option<RawManifest>> {
        let what = self.layout.dir().display().to_string();
        let Some(d) = find_tagged(&self.layout.read_index()?, tag) else {
            return Ok(None);
        };
        let digest: Digest = d.digest().to_string().parse()?;
        let raw = self.read_manifest(&digest, Some(d.media_type().to_string()))?;
        check_descriptor_size(&d, &raw, &what)?;
        Ok(Some(raw))
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn std::io::Read + '_>> {
        Ok(Box::new(blobs::open_regular(
            &self.layout.blob_path(digest),
        )?))
    }

    fn referrers(&mut self, subject: &Digest) -> Result<Vec<crate::ports::ReferrerInfo>> {
        referrer_infos(&self.layout.referrers(subject)?)
    }
}

/// Reads a layout's own document (`oci-layout`, `index.json`): a regular
/// file, not through a symlink, at most 4 MiB.
fn read_document(path: &Path) -> Result<Vec<u8>> {
    let file = blobs::open_regular(path)?;
    crate::media::read_limited(file, &path.display().to_string())
}

/// Refuses a layout directory that is a symlink (blobs would be read from,
/// or written to, wherever it points) or not a directory.
fn check_real_dir(path: &Path) -> Result<()> {
    let m = fs::symlink_metadata(path).at(path)?;
    if m.file_type().is_symlink() {
        return Err(Error::invalid(format!(
            "{}: is a symlink; a layout's blobs must be inside it",
            path.display()
        )));
    }
    if !m.is_dir() {
        return Err(Error::invalid(format!(
            "{}: is not a directory",
            path.display()
        )));
    }
    Ok(())
}

/// Checks that a manifest has the size its descriptor (in `index.json`)
/// gives; `what` names the layout.
pub fn check_descriptor_size(d: &Descriptor, raw: &RawManifest, what: &str) -> Result<()> {
    if raw.bytes.len() as u64 == d.size() {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "{what}: manifest {} is {} bytes, index.json says {}",
        raw.digest,
        raw.bytes.len(),
        d.size()
    )))
}

/// The descriptor a tag of `set` points at: its index, or its one manifest.
pub fn top_descriptor(set: &ImageSet) -> Result<Descriptor> {
    let top = set.top();
    DescriptorBuilder::default()
        .media_type(MediaType::from(top.media_type.as_str()))
        .digest(image::oci_digest(&top.digest)?)
        .size(top.bytes.len() as u64)
        .build()
        .map_err(|e| Error::Other(format!("building a descriptor: {e}")))
}

/// An `index.json` holding `set` under `tag`, as an OCI archive of a copied
/// image has.
pub fn index_for_set(set: &ImageSet, tag: &str) -> Result<ImageIndex> {
    check_tag(tag)?;
    let mut d = top_descriptor(set)?;
    d.set_annotations(Some(std::collections::HashMap::from([(
        ANNOTATION_REF_NAME.to_string(),
        tag.to_string(),
    )])));
    empty_index(vec![d])
}

/// The path of a blob inside a layout.
#[must_use]
pub fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The `ref.name` annotation of a descriptor.
#[must_use]
pub fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_REF_NAME))
        .map(String::as_str)
}

fn tags(index: &ImageIndex) -> Vec<&str> {
    index.manifests().iter().filter_map(ref_name).collect()
}

/// An image index with the given manifests.
pub fn empty_index(manifests: Vec<Descriptor>) -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| Error::Other(format!("building the image index: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_tag_split_on_the_last_colon() {
        assert_eq!(
            split_path_tag("/tmp/img:latest"),
            ("/tmp/img", Some("latest"))
        );
        assert_eq!(split_path_tag("/tmp/img"), ("/tmp/img", None));
        assert_eq!(split_path_tag("/tmp/a:b/img"), ("/tmp/a:b/img", None));
        assert_eq!(split_path_tag("img:"), ("img", None));
    }

    #[test]
    fn tags_are_checked() {
        assert!(check_tag("latest").is_ok());
        assert!(check_tag("v1.0-rc1").is_ok());
        assert!(check_tag("").is_err());
        assert!(check_tag("-x").is_err());
        assert!(check_tag("a b").is_err());
    }

    #[test]
    fn a_non_layout_directory_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        fs::write(dir.path().join("precious"), b"x").expect("the test writes its fixture");
        let err = Layout::create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an OCI image layout"), "{err}");
        assert!(Layout::open(dir.path()).is_err());
    }
}
