//! Sink `oci:DIR[:TAG]`: an OCI image layout directory, and the reader for
//! the same references (`treeport inspect oci:DIR:TAG`).
//!
//! A new layout is assembled in a temporary directory beside `DIR` and renamed
//! into place, so a failed run leaves nothing. In an existing layout, blobs are
//! added first and `index.json` is replaced atomically under the layout's
//! lock; other tags are kept.

use std::fs;
use std::path::{Path, PathBuf};

use treeport_core::blobs::{BlobStore, TEMP_PREFIX};
use treeport_core::copy::ImageSet;
use treeport_core::digest::Digest;
use treeport_core::error::{Error, IoResultExt, Result};
use treeport_core::image::BuiltImage;
use treeport_core::layout::{self, Layout, LayoutReader};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, ImageReader, Options, Selector, Sink, Written,
};
use treeport_core::progress::Context;
use treeport_core::sign::{self, Format};

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
        layout::check_user_tag(tag)?;
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

    fn signature_formats(&self) -> &'static [Format] {
        &[Format::Cosign]
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        let mut set = image.to_set();
        if !image.referrers.is_empty() {
            set.referrers = vec![(image.manifest_digest, image.referrers.clone())];
        }
        let done = self.put(&set, blobs)?;
        self.sign(done, &sign::targets(&set, &image.referrers), blobs, ctx)
    }

    fn keeps_referrers(&self) -> bool {
        true
    }

    /// A copy's artifacts are written as they were; what is signed is the
    /// image alone (the artifacts are whatever the source listed).
    fn write_set(&mut self, set: &ImageSet, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        let done = self.put(set, blobs)?;
        self.sign(done, &sign::targets(set, &[]), blobs, ctx)
    }
}

impl OciSink {
    /// Writes the set's blobs and documents, and tags its top document;
    /// then its artifacts, under their referrers tags.
    fn put(&mut self, set: &ImageSet, blobs: &BlobStore) -> Result<Written> {
        let done = Written::to(format!("oci:{}:{}", self.dir.display(), self.tag))
            .with_manifest(set.top().digest);
        let put = |layout: &Layout| -> Result<()> {
            layout.put_set(set, blobs, &self.tag)?;
            for (subject, referrers) in &set.referrers {
                layout.put_referrers(referrers, blobs, subject)?;
            }
            Ok(())
        };
        if self.dir.exists() {
            put(&Layout::create(&self.dir)?)?;
            return Ok(done);
        }
        // A new layout: assemble it beside its final name, then rename.
        let parent = self.parent();
        let temp = treeport_core::blobs::temp_dir_in(&parent)?;
        put(&Layout::create(temp.path())?)?;
        match fs::rename(temp.path(), &self.dir) {
            Ok(()) => {
                // Moved away: nothing is left for the guard to remove.
                let _ = temp.keep();
            }
            // Another run made the layout meanwhile: add to it, under its lock.
            Err(_) if self.dir.join("oci-layout").is_file() => {
                put(&Layout::create(&self.dir)?)?;
            }
            Err(e) => return Err(treeport_core::Error::io(&self.dir, e)),
        }
        Ok(done)
    }

    /// With `--sign-key`: cosign signatures of `targets`, each under its
    /// `sha256-<hex>.sig` tag, naming the image's tag as their identity
    /// (unless `--sign-identity` names another).
    fn sign(
        &self,
        mut done: Written,
        targets: &[Digest],
        blobs: &BlobStore,
        ctx: &Context,
    ) -> Result<Written> {
        if let Some(signing) = ctx.signing() {
            let n = signing
                .sign_layout(&Layout::create(&self.dir)?, &self.tag, targets, blobs)
                .map_err(|e| e.context("the image is written, but signing it failed"))?;
            done.counters.insert("signatures".to_string(), n);
        }
        Ok(done)
    }
}

/// Reads an image from an OCI layout (core's [`LayoutReader`]).
pub struct OciReader;

impl OciReader {
    /// Opens `dir`, reading the image tagged `tag` (or its only image).
    pub fn open(dir: impl Into<PathBuf>, tag: Option<&str>) -> Result<LayoutReader> {
        LayoutReader::open(dir, tag)
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        options.check_keys("oci image", &[])?;
        let (dir, tag) = layout::split_path_tag(selector.require_rest("a directory")?);
        Ok(Box::new(LayoutReader::open(dir, tag)?))
    }
}
