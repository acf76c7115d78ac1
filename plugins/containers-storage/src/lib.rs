//! Source `containers-storage:NAME[:TAG]`: an image in the local store of
//! podman and buildah (what `podman build` made), flattened into a tree.
//!
//! The store is read through podman itself, as the store's format is
//! podman's to define: `podman image save --format oci-dir` copies the
//! image into a private temporary OCI layout, which is then read like any
//! `oci:` source (every blob checked against its digest). podman finds the
//! store as it always does (`CONTAINERS_STORAGE_CONF`, `storage.conf`, the
//! user's own store when not root); the options `root`, `runroot` and
//! `storage-driver` name another one, as podman's global flags do.

use std::process::{Command, Stdio};

use treeport_core::error::{Error, Result};
use treeport_core::flatten::ImageSource;
use treeport_core::image::ImageDraft;
use treeport_core::layout::LayoutReader;
use treeport_core::plugin::{
    Builtin, BuiltinFactory, OptionKind, OptionSpec, Options, Selector, Source,
};
use treeport_core::progress::Context;
use treeport_core::resolve::Platform;

treeport_core::inventory::submit! {
    Builtin {
        kind: "containers-storage",
        description: "an image in podman's and buildah's local store, flattened (read through podman)",
        usage: "containers-storage:NAME[:TAG]",
        options: &[
            OptionSpec::new("root", OptionKind::String, "DIR: the store's root (podman --root)"),
            OptionSpec::new("runroot", OptionKind::String, "DIR: the store's run root (podman --runroot)"),
            OptionSpec::new("storage-driver", OptionKind::String, "NAME: the store's driver (podman --storage-driver), e.g. vfs, overlay"),
            OptionSpec::new("platform", OptionKind::String, "OS/ARCH[/VARIANT]: from a manifest list, this platform's image"),
        ],
        factory: BuiltinFactory::Source(StorageSource::build),
    }
}

/// Reads an image from the local containers store.
pub struct StorageSource {
    selector: Selector,
    image: String,
    /// podman's global flags naming the store.
    store_flags: Vec<String>,
    platform: Option<Platform>,
}

impl StorageSource {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        options.check_keys(
            "source containers-storage",
            &["root", "runroot", "storage-driver", "platform"],
        )?;
        let image = selector.require_rest("an image name")?.to_string();
        if image.starts_with('-') {
            return Err(Error::usage(format!(
                "containers-storage:{image}: not an image name"
            )));
        }
        let (platform, rest) = ImageSource::split_options(options)?;
        let mut store_flags = Vec::new();
        for (key, value) in rest.iter() {
            store_flags.push(format!("--{key}={value}"));
        }
        Ok(Box::new(StorageSource {
            selector: selector.clone(),
            image,
            store_flags,
            platform,
        }))
    }
}

impl Source for StorageSource {
    fn read(&mut self, ctx: &Context) -> Result<ImageDraft> {
        let temp = treeport_core::blobs::temp_dir_in(&std::env::temp_dir())?;
        let layout = temp.path().join("image");
        let mut cmd = Command::new("podman");
        cmd.args(&self.store_flags)
            .args([
                "image", "save", "--quiet", "--format", "oci-dir", "--output",
            ])
            .arg(&layout)
            .arg(&self.image)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::invalid(
                    "containers-storage source: podman is not installed (it reads the store)",
                )
            } else {
                Error::invalid(format!("containers-storage source: running podman: {e}"))
            }
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let last = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message");
            return Err(Error::invalid(format!(
                "containers-storage source: podman could not save '{}': {}",
                self.image,
                last.trim()
            )));
        }
        let reader = LayoutReader::open(&layout, None)?;
        let mut draft = ImageSource::new(
            Box::new(reader),
            self.selector.clone(),
            self.platform.clone(),
        )
        .read(ctx)?;
        // The content is in the draft's own spool: the saved copy can go.
        drop(temp);
        draft.created_by = format!("treeport from {}", self.selector);
        Ok(draft)
    }
}
