//! Sink `oci:DIR[:TAG]`: an OCI image layout directory, and the reader for
//! the same references (`treeport inspect oci:DIR:TAG`).
//!
//! A new layout is assembled in a temporary directory beside `DIR` and renamed
//! into place, so a failed run leaves nothing. In an existing layout, blobs are
//! added first and `index.json` is replaced atomically under the layout's
//! lock; other tags are kept.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use treeport_core::blobs::{BlobStore, TEMP_PREFIX};
use treeport_core::copy::ImageSet;
use treeport_core::digest::Digest;
use treeport_core::error::{Error, IoResultExt, Result};
use treeport_core::image::BuiltImage;
use treeport_core::layout::{self, Layout};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, ImageReader, Options, RawManifest, Selector, Sink, Written,
};
use treeport_core::progress::Context;

treeport_core::inventory::submit! {
    Builtin {
        kind: "oci",
        description: "an OCI image layout directory; other tags in it are kept",
        usage: "oci:DIR[:TAG]",
        options: &[],
        factory: BuiltinFactory::Sink(OciSink::build, Some(OciReader::build)),
    }
}

/// The tag used when a selector names none.
pub const DEFAULT_TAG: &str = "latest";

/// Writes an image into an OCI layout.
pub struct OciSink {
    dir: PathBuf,
    tag: String,
}

impl OciSink {
    /// A sink writing `tag` into the layout at `dir`.
    pub fn new(dir: impl Into<PathBuf>, tag: &str) -> Result<Self> {
        layout::check_tag(tag)?;
        Ok(OciSink {
            dir: dir.into(),
            tag: tag.to_string(),
        })
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Sink>> {
        options.check_keys("sink oci", &[])?;
        let (dir, tag) = layout::split_path_tag(selector.require_rest("a directory")?);
        Ok(Box::new(OciSink::new(dir, tag.unwrap_or(DEFAULT_TAG))?))
    }

    fn parent(&self) -> PathBuf {
        match self.dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }
}

/// Fails unless a file can be created in `dir`.
pub fn check_writable(dir: &Path) -> Result<()> {
    treeport_core::blobs::temp_file_in(dir).map(drop)
}

impl Sink for OciSink {
    fn prepare(&mut self, _ctx: &Context) -> Result<()> {
        // What killed runs left in the layout or beside it.
        treeport_core::cleanup::remove_stale(&self.parent());
        treeport_core::cleanup::remove_stale(&self.dir);
        let context = |e: Error| e.context(format!("oci destination {}", self.dir.display()));
        match fs::metadata(&self.dir) {
            Ok(meta) if meta.is_dir() => {
                if self.dir.join("oci-layout").exists() {
                    Layout::open(&self.dir).map_err(context)?;
                } else {
                    // Refuses a non-empty directory that is not a layout.
                    let probe = fs::read_dir(&self.dir)
                        .at(&self.dir)
                        .map_err(context)?
                        .filter_map(std::result::Result::ok)
                        .any(|e| !e.file_name().to_string_lossy().starts_with(TEMP_PREFIX));
                    if probe {
                        return Err(Error::invalid(format!(
                            "oci destination {}: directory exists and is not an OCI image layout",
                            self.dir.display()
                        )));
                    }
                }
                check_writable(&self.dir).map_err(context)
            }
            Ok(_) => Err(Error::invalid(format!(
                "oci destination {}: exists and is not a directory",
                self.dir.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let parent = self.parent();
                if !parent.is_dir() {
                    return Err(Error::invalid(format!(
                        "oci destination {}: parent directory {} does not exist",
                        self.dir.display(),
                        parent.display()
                    )));
                }
                check_writable(&parent).map_err(context)
            }
            Err(e) => Err(context(Error::io(&self.dir, e))),
        }
    }

    fn takes_docker_manifests(&self) -> bool {
        false
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(if self.dir.is_dir() {
            self.dir.clone()
        } else {
            self.parent()
        })
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        self.write_set(&image.to_set(), blobs, ctx)
    }

    fn write_set(&mut self, set: &ImageSet, blobs: &BlobStore, _ctx: &Context) -> Result<Written> {
        let done = Written::to(format!("oci:{}:{}", self.dir.display(), self.tag))
            .with_manifest(set.top().digest);
        if self.dir.exists() {
            Layout::create(&self.dir)?.put_set(set, blobs, &self.tag)?;
            return Ok(done);
        }
        // A new layout: assemble it beside its final name, then rename.
        let parent = self.parent();
        let temp = treeport_core::blobs::temp_dir_in(&parent)?;
        Layout::create(temp.path())?.put_set(set, blobs, &self.tag)?;
        match fs::rename(temp.path(), &self.dir) {
            Ok(()) => {
                // Moved away: nothing is left for the guard to remove.
                let _ = temp.keep();
            }
            // Another run made the layout meanwhile: add to it, under its lock.
            Err(_) if self.dir.join("oci-layout").is_file() => {
                Layout::create(&self.dir)?.put_set(set, blobs, &self.tag)?;
            }
            Err(e) => return Err(treeport_core::Error::io(&self.dir, e)),
        }
        Ok(done)
    }
}

/// Reads an image from an OCI layout.
pub struct OciReader {
    layout: Layout,
    tag: Option<String>,
}

impl OciReader {
    /// Opens `dir`, reading the image tagged `tag` (or its only image).
    pub fn open(dir: impl Into<PathBuf>, tag: Option<&str>) -> Result<Self> {
        Ok(OciReader {
            layout: Layout::open(dir)?,
            tag: tag.map(str::to_string),
        })
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        options.check_keys("oci image", &[])?;
        let (dir, tag) = layout::split_path_tag(selector.require_rest("a directory")?);
        Ok(Box::new(OciReader::open(dir, tag)?))
    }

    fn read_manifest(&self, digest: &Digest, media_type: Option<String>) -> Result<RawManifest> {
        let path = self.layout.blob_path(digest);
        let file = treeport_core::blobs::open_regular(&path)?;
        let bytes = treeport_core::media::read_limited(file, &path.display().to_string())?;
        if Digest::of(&bytes) != *digest {
            return Err(Error::invalid(format!(
                "{}: content does not match its digest {digest}",
                path.display()
            )));
        }
        let media_type = match media_type {
            Some(m) => m,
            None => treeport_core::media::sniff_media_type(&bytes)
                .ok_or_else(|| Error::invalid(format!("{}: no mediaType", path.display())))?,
        };
        Ok(RawManifest {
            bytes,
            media_type,
            digest: *digest,
        })
    }
}

impl ImageReader for OciReader {
    fn top(&mut self) -> Result<RawManifest> {
        let descriptor = self.layout.resolve(self.tag.as_deref())?;
        let digest: Digest = descriptor.digest().to_string().parse()?;
        let raw = self.read_manifest(&digest, Some(descriptor.media_type().to_string()))?;
        layout::check_descriptor_size(&descriptor, &raw, &self.layout.dir().display().to_string())?;
        Ok(raw)
    }

    fn manifest(&mut self, digest: &Digest) -> Result<RawManifest> {
        self.read_manifest(digest, None)
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(treeport_core::blobs::open_regular(
            &self.layout.blob_path(digest),
        )?))
    }
}
