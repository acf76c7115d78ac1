//! Sink `oci-archive:FILE[:TAG]`: a tar of an OCI image layout, as skopeo's
//! `oci-archive:` transport reads it; and the reader for the same references.
//!
//! The archive is written under a temporary name beside `FILE` and renamed
//! into place when complete; an interrupted run leaves any earlier archive
//! as it was.

use std::io::Read;
use std::path::PathBuf;

use treeport_core::archive::{ArchiveFile, ArchiveFiles, write_archive};
use treeport_core::blobs::BlobStore;
use treeport_core::copy::ImageSet;
use treeport_core::digest::Digest;
use treeport_core::error::{Error, Result};
use treeport_core::image::BuiltImage;
use treeport_core::layout::{self, LAYOUT_CONTENT, LAYOUT_FILE, blob_name};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, ImageReader, Options, RawManifest, Selector, Sink, Written,
};
use treeport_core::progress::Context;
use treeport_core::sign::{self, Format};
use treeport_core::{json, media};

treeport_core::inventory::submit! {
    Builtin {
        kind: "oci-archive",
        description: "a tar archive of an OCI image layout, as skopeo's oci-archive: reads it",
        usage: "oci-archive:FILE[:TAG]",
        options: &[],
        factory: BuiltinFactory::Sink(OciArchiveSink::build, Some(OciArchiveReader::build)),
    }
}

/// Writes an image as an OCI archive.
pub struct OciArchiveSink {
    file: PathBuf,
    tag: String,
}

/// Adds artifacts referring to `subject` (an SBOM) to the archive's
/// index under the referrers tag, as the OCI layout sink writes them, and
/// their blobs and documents to what the archive holds.
fn add_referrers(
    index: &mut oci_spec::image::ImageIndex,
    subject: &Digest,
    referrers: &[treeport_core::image::Referrer],
    digests: &mut Vec<Digest>,
    documents: &mut Vec<RawManifest>,
) -> Result<()> {
    let listed = referrers
        .iter()
        .map(layout::referrer_descriptor)
        .collect::<Result<Vec<_>>>()?;
    let raw = layout::referrers_index(listed)?;
    let mut tagged = layout::index_descriptor(&raw)?;
    tagged.set_annotations(Some(
        [(
            treeport_core::media::ANNOTATION_REF_NAME.to_string(),
            layout::referrers_tag(subject),
        )]
        .into(),
    ));
    let mut manifests = index.manifests().clone();
    manifests.push(tagged);
    index.set_manifests(manifests);
    for r in referrers {
        digests.extend(r.blobs.iter().map(|(d, _)| *d));
        documents.push(r.raw.clone());
    }
    documents.push(raw);
    Ok(())
}

impl OciArchiveSink {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Sink>> {
        options.check_keys("sink oci-archive", &[])?;
        let (file, tag) = layout::split_path_tag(selector.require_rest("a file")?);
        let tag = tag.unwrap_or("latest");
        layout::check_user_tag(tag)?;
        Ok(Box::new(OciArchiveSink {
            file: file.into(),
            tag: tag.to_string(),
        }))
    }
}

impl Sink for OciArchiveSink {
    fn prepare(&mut self, _ctx: &Context) -> Result<()> {
        treeport_core::blobs::check_file_destination(&self.file, "oci-archive")
    }

    fn takes_docker_manifests(&self) -> bool {
        false
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(treeport_core::blobs::parent_dir(&self.file))
    }

    fn signature_formats(&self) -> &'static [Format] {
        &[Format::Cosign]
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        let mut index = layout::index_for(image, &self.tag)?;
        let mut digests: Vec<Digest> = image.blobs().into_iter().map(|(d, _)| d).collect();
        digests.push(image.manifest_digest);
        let mut documents = Vec::new();
        if !image.referrers.is_empty() {
            add_referrers(
                &mut index,
                &image.manifest_digest,
                &image.referrers,
                &mut digests,
                &mut documents,
            )?;
        }
        let targets = sign::targets(&image.to_set(), &image.referrers);
        let signed = self.finish(
            ctx,
            &targets,
            blobs,
            index,
            digests,
            documents,
            image.created,
        )?;
        Ok(self.written(image.manifest_digest, signed))
    }

    fn keeps_referrers(&self) -> bool {
        true
    }

    /// A copy's artifacts are written as they were; what is signed is the
    /// image alone (the artifacts are whatever the source listed).
    fn write_set(&mut self, set: &ImageSet, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        let mut index = layout::index_for_set(set, &self.tag)?;
        let mut digests: Vec<Digest> = set.blobs().into_iter().map(|(d, _)| d).collect();
        let mut documents: Vec<RawManifest> = set
            .manifests
            .iter()
            .map(|m| m.raw.clone())
            .chain(set.index.clone())
            .collect();
        for (subject, referrers) in &set.referrers {
            add_referrers(&mut index, subject, referrers, &mut digests, &mut documents)?;
        }
        let signed = self.finish(
            ctx,
            &sign::targets(set, &[]),
            blobs,
            index,
            digests,
            documents,
            0,
        )?;
        Ok(self.written(set.top().digest, signed))
    }
}

impl OciArchiveSink {
    fn written(&self, digest: Digest, signed: u64) -> Written {
        let mut w = Written::to(format!("oci-archive:{}:{}", self.file.display(), self.tag))
            .with_manifest(digest);
        if signed > 0 {
            w.counters.insert("signatures".to_string(), signed);
        }
        w
    }

    /// Adds the signatures of `targets` (when the run signs), then writes
    /// the archive: `index`, every blob of `digests` (once each) from
    /// `blobs`, and `documents`. Returns how many signatures it holds.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        ctx: &Context,
        targets: &[Digest],
        blobs: &BlobStore,
        mut index: oci_spec::image::ImageIndex,
        mut digests: Vec<Digest>,
        mut documents: Vec<RawManifest>,
        created: i64,
    ) -> Result<u64> {
        let signed = self.add_signatures(
            ctx,
            targets,
            blobs,
            &mut index,
            &mut digests,
            &mut documents,
        )?;
        let mut files = vec![
            ArchiveFile::bytes(LAYOUT_FILE, LAYOUT_CONTENT),
            ArchiveFile::bytes("index.json", &json::to_canonical_vec(&index)?),
        ];
        let mut seen = std::collections::BTreeSet::new();
        digests.retain(|d| seen.insert(*d));
        for d in digests {
            files.push(ArchiveFile::disk(blob_name(&d), &blobs.path(&d))?);
        }
        for raw in &documents {
            files.push(ArchiveFile::bytes(blob_name(&raw.digest), &raw.bytes));
        }
        write_archive(&self.file, files, created)?;
        Ok(signed)
    }

    /// With `--sign-key`: cosign signature images of `targets` (under
    /// `sha256-<hex>.sig`, naming the tag as their identity) join the
    /// archive's index, blobs and documents. Returns how many.
    fn add_signatures(
        &self,
        ctx: &Context,
        targets: &[Digest],
        blobs: &BlobStore,
        index: &mut oci_spec::image::ImageIndex,
        digests: &mut Vec<Digest>,
        documents: &mut Vec<RawManifest>,
    ) -> Result<u64> {
        let Some(signing) = ctx.signing() else {
            return Ok(0);
        };
        let images = signing.cosign_images(&self.tag, targets, blobs)?;
        let mut manifests = index.manifests().clone();
        for image in &images {
            manifests.push(layout::tagged_descriptor(&image.raw, &image.tag)?);
            digests.extend(image.blobs.iter().map(|(d, _)| *d));
            documents.push(image.raw.clone());
        }
        index.set_manifests(manifests);
        Ok(images.len() as u64)
    }
}

/// Reads an image from an OCI archive.
pub struct OciArchiveReader {
    files: ArchiveFiles,
    tag: Option<String>,
}

impl OciArchiveReader {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        options.check_keys("oci-archive image", &[])?;
        let (file, tag) = layout::split_path_tag(selector.require_rest("a file")?);
        let files = ArchiveFiles::open(std::path::Path::new(file))?;
        if !files.has(LAYOUT_FILE) {
            return Err(Error::invalid(format!(
                "{file}: not an OCI archive (no oci-layout file)"
            )));
        }
        Ok(Box::new(OciArchiveReader {
            files,
            tag: tag.map(str::to_string),
        }))
    }

    fn manifest_at(&self, digest: &Digest, media_type: Option<String>) -> Result<RawManifest> {
        let bytes = self.files.read_document(&blob_name(digest))?;
        if Digest::of(&bytes) != *digest {
            return Err(Error::invalid(format!(
                "{}: blob {digest} does not match its digest",
                self.files.what()
            )));
        }
        let media_type = media_type
            .or_else(|| media::sniff_media_type(&bytes))
            .ok_or_else(|| {
                Error::invalid(format!("{}: {digest} has no mediaType", self.files.what()))
            })?;
        Ok(RawManifest {
            bytes,
            media_type,
            digest: *digest,
        })
    }
}

impl ImageReader for OciArchiveReader {
    fn top(&mut self) -> Result<RawManifest> {
        let index = serde_json::from_slice(&self.files.read_document("index.json")?)
            .map_err(|e| Error::invalid(format!("{}: index.json: {e}", self.files.what())))?;
        let d = layout::resolve_in(&index, self.tag.as_deref(), self.files.what())?;
        let digest: Digest = d.digest().to_string().parse()?;
        let raw = self.manifest_at(&digest, Some(d.media_type().to_string()))?;
        layout::check_descriptor_size(&d, &raw, self.files.what())?;
        Ok(raw)
    }

    fn manifest(&mut self, digest: &Digest) -> Result<RawManifest> {
        self.manifest_at(digest, None)
    }

    fn tagged(&mut self, tag: &str) -> Result<Option<RawManifest>> {
        let index = serde_json::from_slice(&self.files.read_document("index.json")?)
            .map_err(|e| Error::invalid(format!("{}: index.json: {e}", self.files.what())))?;
        let Some(d) = layout::find_tagged(&index, tag) else {
            return Ok(None);
        };
        let digest: Digest = d.digest().to_string().parse()?;
        let raw = self.manifest_at(&digest, Some(d.media_type().to_string()))?;
        layout::check_descriptor_size(&d, &raw, self.files.what())?;
        Ok(Some(raw))
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        Ok(self.files.open_file(&blob_name(digest))?)
    }

    fn referrers(&mut self, subject: &Digest) -> Result<Vec<treeport_core::plugin::ReferrerInfo>> {
        let index = serde_json::from_slice(&self.files.read_document("index.json")?)
            .map_err(|e| Error::invalid(format!("{}: index.json: {e}", self.files.what())))?;
        let what = self.files.what().to_string();
        let listed = layout::listed_referrers(&index, subject, &what, |d| {
            self.files.read_document(&blob_name(d))
        })?;
        layout::referrer_infos(&listed)
    }
}
