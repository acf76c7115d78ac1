//! Source `tar:FILE`: a tar archive, plain, gzip- or zstd-compressed
//! (recognised by its first bytes, whatever the file is called).
//!
//! The reading itself is [`treeport_core::archive`]: a plain archive is read
//! in place, a compressed one spooled; no member is held in memory; members
//! escaping the root are refused.

use std::path::PathBuf;

use treeport_core::archive::read_archive;
use treeport_core::error::Result;
use treeport_core::image::ImageDraft;
use treeport_core::plugin::{Builtin, BuiltinFactory, Options, Selector, Source};
use treeport_core::progress::Context;

treeport_core::inventory::submit! {
    Builtin {
        kind: "tar",
        description: "a tar archive (plain, gzip or zstd), members streamed or spooled, never held in memory",
        usage: "tar:FILE",
        options: &[],
        factory: BuiltinFactory::Source(TarSource::build),
    }
}

/// Reads a tar archive.
pub struct TarSource {
    file: PathBuf,
}

impl TarSource {
    #[must_use]
    pub fn new(file: impl Into<PathBuf>) -> Self {
        TarSource { file: file.into() }
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        options.check_keys("source tar", &[])?;
        Ok(Box::new(TarSource::new(
            selector.require_rest("an archive file")?,
        )))
    }
}

impl Source for TarSource {
    fn read(&mut self, _ctx: &Context) -> Result<ImageDraft> {
        Ok(ImageDraft::new(read_archive(&self.file)?))
    }
}
