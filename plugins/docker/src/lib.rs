//! Sink `docker://HOST[:PORT]/REPO[:TAG[,TAG...]]`: a registry over the OCI
//! distribution API, spoken directly (no skopeo), and the reader for the same
//! references (`inspect`, `pull`, `index`).
//!
//! A push checks each blob with `HEAD` and sends only what the registry lacks;
//! a blob this machine has pushed to another repository of the same registry
//! is mounted instead of uploaded; blobs upload in parallel, streamed from
//! disk, large ones in chunks. Transient failures are retried with backoff,
//! and an interrupted push run again sends only what is still missing. In an
//! export, each layer is also streamed to the registry while it is encoded
//! (see `stream`), so the upload overlaps compression.

mod auth;
mod client;
mod locations;
mod reference;
mod registry;
pub mod signatures;
mod stream;

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

pub use auth::{Challenge, Credentials, Secret, parse_challenges};
pub use client::{Client, ClientOptions};
pub use reference::Reference;
pub use registry::Registry;
use treeport_core::blobs::BlobStore;
use treeport_core::copy::ImageSet;
use treeport_core::digest::Digest;
use treeport_core::error::{Error, Result};
use treeport_core::image::BuiltImage;
use treeport_core::plugin::{
    BlobTap, Builtin, BuiltinFactory, ImageReader, OptionKind, OptionSpec, Options, RawManifest,
    Selector, Sink, Written,
};
use treeport_core::progress::Context;
use treeport_core::sign::Format;

treeport_core::inventory::submit! {
    Builtin {
        kind: "docker",
        description: "a container registry over the OCI distribution API (push, pull, tags, mounts)",
        usage: "docker://HOST[:PORT]/REPO[:TAG]",
        options: OPTIONS,
        factory: BuiltinFactory::Sink(DockerSink::build, Some(DockerReader::build)),
    }
}

/// Options (the command line's registry flags), with their help.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "creds",
        OptionKind::String,
        "USER[:PASS] (from --creds; never logged)",
    ),
    OptionSpec::new(
        "authfile",
        OptionKind::String,
        "an auth.json or docker config.json (from --authfile)",
    ),
    OptionSpec::new(
        "tls-verify",
        OptionKind::Boolean,
        "true or false (from --tls-verify)",
    ),
    OptionSpec::new(
        "cert-dir",
        OptionKind::String,
        "a directory of CA certificates, *.crt (from --cert-dir)",
    ),
];

/// Builds the client options from plugin options.
pub fn client_options(registry: &str, options: &Options) -> Result<ClientOptions> {
    let keys: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
    options.check_keys("docker", &keys)?;
    let tls_verify = match options.get("tls-verify") {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => {
            return Err(Error::usage(format!(
                "--tls-verify={other}: expected true or false"
            )));
        }
    };
    let credentials = if let Some(creds) = options.get("creds") {
        let (user, pass) = creds.split_once(':').ok_or_else(|| {
            Error::usage(
                "--creds needs USER:PASSWORD here (the password is asked for on a terminal)",
            )
        })?;
        if user.is_empty() {
            return Err(Error::usage("--creds has an empty user name"));
        }
        Some(Credentials {
            username: user.to_string(),
            secret: Secret::new(pass),
        })
    } else {
        let files = match options.get("authfile") {
            Some(f) => {
                let path = PathBuf::from(f);
                if !path.is_file() {
                    return Err(Error::invalid(format!("--authfile {f}: no such file")));
                }
                vec![path]
            }
            None => auth::default_auth_files(),
        };
        auth::lookup(registry, &files)?
    };
    Ok(ClientOptions {
        credentials,
        tls_verify,
        cert_dir: options.get("cert-dir").map(PathBuf::from),
        ..ClientOptions::default()
    })
}

/// Pushes images to a registry.
pub struct DockerSink {
    reference: Reference,
    options: Options,
    registry: Option<Arc<Registry>>,
    /// Layers streamed while they were encoded (an export).
    tap: Option<Arc<stream::RegistryTap>>,
    /// Where simple signatures go, found when the sink is prepared.
    lookaside: Option<String>,
}

impl DockerSink {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Sink>> {
        let reference = Reference::parse(selector.require_rest("//HOST/REPO[:TAG]")?)?;
        // The referrers tags (`sha256-<hex>`) and cosign's (`.sig`) are
        // treeport's: a push to one would replace an image's artifact list.
        for tag in &reference.tags {
            treeport_core::layout::check_user_tag(tag)?;
        }
        // Checked now so a bad flag fails before any work.
        client_options(&reference.registry, options)?;
        Ok(Box::new(DockerSink {
            reference,
            options: options.clone(),
            registry: None,
            tap: None,
            lookaside: None,
        }))
    }

    fn registry(&mut self) -> Result<&Arc<Registry>> {
        if self.registry.is_none() {
            let opts = client_options(&self.reference.registry, &self.options)?;
            self.registry = Some(Arc::new(Registry::new(self.reference.clone(), opts)?));
        }
        Ok(self.registry.as_ref().expect("set above"))
    }

    fn push(
        &mut self,
        set: &ImageSet,
        blobs: &BlobStore,
        streamed: &HashMap<Digest, u64>,
        ctx: &Context,
    ) -> Result<Written> {
        let counters = self.registry()?.push(set, blobs, streamed, ctx)?;
        Ok(Written {
            destination: self.reference.to_string(),
            manifest_digest: Some(set.top().digest.to_string()),
            counters,
        })
    }
}

impl DockerSink {
    /// With `--sign-key` or `--sign-by`: signs what was pushed.
    fn sign(
        &mut self,
        written: &mut Written,
        targets: &[Digest],
        blobs: &BlobStore,
        ctx: &Context,
    ) -> Result<()> {
        if let Some(signing) = ctx.signing() {
            let registry = Arc::clone(self.registry()?);
            let n = signatures::sign(
                signing,
                self.lookaside.as_deref(),
                &registry,
                &self.reference,
                targets,
                blobs,
            )
            .map_err(|e| e.context("the image is pushed, but signing it failed"))?;
            written.counters.insert("signatures".to_string(), n);
        }
        Ok(())
    }
}

impl Sink for DockerSink {
    fn prepare(&mut self, ctx: &Context) -> Result<()> {
        if let Some(signing) = ctx.signing()
            && signing.gpg.is_some()
        {
            self.lookaside = Some(signatures::lookaside_for_writing(signing, &self.reference)?);
        }
        // Authenticate and check push access before the export's work.
        self.registry()?.check_push_access()
    }

    fn signature_formats(&self) -> &'static [Format] {
        &[Format::Cosign, Format::Simple]
    }

    fn blob_tap(&mut self) -> Option<Arc<dyn BlobTap>> {
        let tap = Arc::new(stream::RegistryTap::new(Arc::clone(self.registry().ok()?)));
        self.tap = Some(Arc::clone(&tap));
        Some(tap)
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        let streamed = self.tap.take().map(|t| t.landed()).unwrap_or_default();
        let mut written = self.push(&image.to_set(), blobs, &streamed, ctx)?;
        if !image.referrers.is_empty() {
            let n =
                self.registry()?
                    .push_referrers(&image.referrers, blobs, &image.manifest_digest)?;
            written.counters.insert("referrers".to_string(), n);
        }
        let targets = treeport_core::sign::targets(&image.to_set(), &image.referrers);
        self.sign(&mut written, &targets, blobs, ctx)?;
        Ok(written)
    }

    fn keeps_referrers(&self) -> bool {
        true
    }

    /// A copy's artifacts are pushed as they were; what is signed is the
    /// image alone (the artifacts are whatever the source listed).
    fn write_set(&mut self, set: &ImageSet, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        let mut written = self.push(set, blobs, &HashMap::new(), ctx)?;
        let mut n = 0;
        for (subject, referrers) in &set.referrers {
            n += self.registry()?.push_referrers(referrers, blobs, subject)?;
        }
        if n > 0 {
            written.counters.insert("referrers".to_string(), n);
        }
        self.sign(
            &mut written,
            &treeport_core::sign::targets(set, &[]),
            blobs,
            ctx,
        )?;
        Ok(written)
    }
}

/// Reads images from a registry.
pub struct DockerReader {
    registry: Registry,
}

impl DockerReader {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        let reference = Reference::parse(selector.require_rest("//HOST/REPO[:TAG]")?)?;
        let opts = client_options(&reference.registry, options)?;
        Ok(Box::new(DockerReader {
            registry: Registry::new(reference, opts)?,
        }))
    }
}

impl ImageReader for DockerReader {
    fn referrers(&mut self, subject: &Digest) -> Result<Vec<treeport_core::plugin::ReferrerInfo>> {
        treeport_core::layout::referrer_infos(&self.registry.referrers(subject)?)
    }

    fn top(&mut self) -> Result<RawManifest> {
        let target = self.registry.reference().target();
        self.registry.get_manifest(&target)
    }

    fn manifest(&mut self, digest: &Digest) -> Result<RawManifest> {
        self.registry.get_manifest(&digest.to_string())
    }

    fn tagged(&mut self, tag: &str) -> Result<Option<RawManifest>> {
        self.registry.find_manifest(tag)
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        self.registry.get_blob(digest)
    }
}

/// The tags of a repository (`treeport tags`).
pub fn list_tags(rest: &str, options: &Options) -> Result<Vec<String>> {
    let reference = Reference::parse(rest)?;
    let opts = client_options(&reference.registry, options)?;
    Registry::new(reference, opts)?.tags()
}
