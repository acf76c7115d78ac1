//! The command line, as clap parses it.

// Doc comments here are the user's `--help` text, not rustdoc.
#![allow(clippy::doc_markdown)]

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Turn OS trees (OSTree commits, Debian/Ubuntu rootfs trees, directories,
/// tarballs) into OCI container images.
#[derive(Parser, Debug)]
#[command(name = "treeport", version, about, max_term_width = 100)]
pub struct Cli {
    /// Print nothing but errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub registry: RegistryFlags,

    #[command(flatten)]
    pub sign: SignFlags,

    /// Load a plugin library (repeatable).
    #[arg(
        long = "plugin",
        global = true,
        value_name = "FILE",
        help_heading = "Plugins"
    )]
    pub plugins: Vec<std::path::PathBuf>,

    /// Load every plugin library (*.so) in a directory (repeatable); also the
    /// directories of $TREEPORT_PLUGIN_PATH (colon-separated).
    #[arg(
        long = "plugin-dir",
        global = true,
        value_name = "DIR",
        help_heading = "Plugins"
    )]
    pub plugin_dirs: Vec<std::path::PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Export a tree through transforms to one or more image destinations.
    Export(Box<ExportArgs>),
    /// Show an image's manifest, config and layers.
    Inspect(InspectArgs),
    /// Work with plugins.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// apt-ostree's forms: build an image from an OSTree commit, push a layout.
    #[command(subcommand)]
    Oci(OciCommand),
    /// Copy an image (or an index) from one reference to another, checking
    /// every blob: docker://... to oci:DIR[:TAG], and any other pair.
    Pull(PullArgs),
    /// List the tags of a registry repository.
    Tags(TagsArgs),
    /// Combine per-architecture images into one image index at DEST.
    Index(IndexArgs),
    /// Work with pipeline files.
    #[command(subcommand)]
    Pipeline(PipelineCommand),
    /// Check an image as a strict consumer would: every digest and size,
    /// media types, diff_ids, tar headers; with --against, its content.
    Verify(VerifyArgs),
    /// Print the SBOM published beside an image (by the sbom transform).
    Sbom(SbomArgs),
}

#[derive(Args, Debug)]
pub struct SbomArgs {
    /// The image: oci:DIR[:TAG]
    pub image: String,
    /// Which document.
    #[arg(long, value_enum, default_value_t = SbomFormat::Spdx)]
    pub format: SbomFormat,
    /// From an index, the image for this platform (OS/ARCH[/VARIANT]).
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SbomFormat {
    /// SPDX 2.3 JSON.
    Spdx,
    /// CycloneDX 1.5 JSON.
    Cyclonedx,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The image: oci:DIR[:TAG], oci-archive:, docker-archive:, docker://
    pub image: String,
    /// A source whose tree the unpacked image must equal (rootfs:DIR, ...).
    #[arg(long, value_name = "SOURCE")]
    pub against: Option<String>,
    /// An option of the --against source (repeatable).
    #[arg(long = "source-opt", value_name = "KEY=VALUE")]
    pub source_opts: Vec<String>,
    /// Require a cosign signature of the image that this public key
    /// (PEM, as cosign.pub) verifies.
    #[arg(long, value_name = "PUB")]
    pub key: Option<std::path::PathBuf>,
    /// Require a simple signing signature (from the registry's lookaside
    /// store) by a key of this GPG public keyring.
    #[arg(long, value_name = "PUBRING")]
    pub gpg_key: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PipelineCommand {
    /// Check a pipeline file without running it: syntax, kinds, options.
    Check(PipelineCheckArgs),
}

#[derive(Args, Debug)]
pub struct PipelineCheckArgs {
    /// The pipeline file (TOML).
    pub file: std::path::PathBuf,
}

/// Registry flags, as skopeo spells them.
#[derive(Args, Debug, Default, Clone)]
pub struct RegistryFlags {
    /// Registry credentials; with USER alone, the password is asked for on a
    /// terminal. Prefer --authfile: a command line is visible to other users.
    #[arg(
        long,
        global = true,
        value_name = "USER[:PASS]",
        help_heading = "Registry"
    )]
    pub creds: Option<String>,
    /// An auth.json (containers) or config.json (docker) with credentials
    /// [default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
    /// ~/.docker/config.json].
    #[arg(long, global = true, value_name = "FILE", help_heading = "Registry")]
    pub authfile: Option<String>,
    /// Verify the registry's TLS certificate (false also allows plain HTTP).
    #[arg(
        long,
        global = true,
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true,
        help_heading = "Registry"
    )]
    pub tls_verify: Option<bool>,
    /// A directory of CA certificates (*.crt) for the registry.
    #[arg(long, global = true, value_name = "DIR", help_heading = "Registry")]
    pub cert_dir: Option<String>,
}

/// Signing flags, as skopeo and cosign spell them.
#[derive(Args, Debug, Default, Clone)]
pub struct SignFlags {
    /// Sign what is written with this GPG key (containers/image simple
    /// signing, from $GNUPGHOME); the signatures go to the lookaside
    /// store registries.d names for the registry.
    #[arg(
        long,
        global = true,
        value_name = "FINGERPRINT",
        help_heading = "Signing"
    )]
    pub sign_by: Option<String>,
    /// Sign what is written with this cosign key (ECDSA P-256 PEM, or
    /// cosign's encrypted key: the passphrase from $COSIGN_PASSWORD,
    /// --sign-passphrase-file, or a terminal prompt).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Signing")]
    pub sign_key: Option<std::path::PathBuf>,
    /// A file whose first line is the passphrase of the signing key (the
    /// --sign-key key, and the --sign-by key through gpg's loopback
    /// pinentry).
    #[arg(long, global = true, value_name = "FILE", help_heading = "Signing")]
    pub sign_passphrase_file: Option<std::path::PathBuf>,
    /// The reference the signatures name [default: the destination's
    /// repository (cosign), HOST/REPO:TAG (simple signing), the tag (a
    /// layout)].
    #[arg(long, global = true, value_name = "REF", help_heading = "Signing")]
    pub sign_identity: Option<String>,
    /// The registries.d directory naming lookaside stores [default:
    /// ~/.config/containers/registries.d if it exists, else
    /// /etc/containers/registries.d].
    #[arg(
        long = "registries.d",
        global = true,
        value_name = "DIR",
        help_heading = "Signing"
    )]
    pub registries_d: Option<std::path::PathBuf>,
}

impl SignFlags {
    /// True when a signature is asked for.
    pub fn signs(&self) -> bool {
        self.sign_by.is_some() || self.sign_key.is_some()
    }
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Where the image is: docker://HOST/REPO[:TAG], oci:DIR[:TAG], ...
    pub source: String,
    /// Where it goes: oci:DIR[:TAG], docker://..., ...
    pub destination: String,
    /// From an index, only the image for this platform (OS/ARCH[/VARIANT]).
    #[arg(long)]
    pub platform: Option<String>,
}

#[derive(Args, Debug)]
pub struct TagsArgs {
    /// The repository: docker://HOST[:PORT]/REPO
    pub repository: String,
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Where the index goes: oci:DIR[:TAG] or docker://HOST/REPO[:TAG].
    pub destination: String,
    /// The per-architecture images (any reference treeport reads).
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum OciCommand {
    /// Build an image from an OSTree commit (an OCI layout or a docker archive).
    Build(Box<OciBuildArgs>),
    /// Push an OCI layout's image to a registry: REGISTRY is HOST[:PORT].
    Push(OciPushArgs),
}

#[derive(Args, Debug)]
pub struct OciPushArgs {
    /// The OCI image layout directory, LAYOUT[:TAG] (without TAG: the image
    /// tagged as NAME's TAG, else the layout's only image).
    #[arg(value_name = "LAYOUT[:TAG]")]
    pub layout: String,
    /// The registry, HOST[:PORT].
    pub registry: String,
    /// The repository and tag, NAME[:TAG] (TAG defaults to latest).
    #[arg(value_name = "NAME[:TAG]")]
    pub name: String,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum OciFormat {
    /// An OCI image layout directory.
    Oci,
    /// A docker save archive.
    Docker,
}

#[derive(Args, Debug)]
pub struct OciBuildArgs {
    /// The OSTree repository.
    #[arg(long, value_name = "REPO")]
    pub repo: String,
    /// The ref or commit checksum to export.
    #[arg(long, value_name = "REF")]
    pub source: String,
    /// Where to write the image: a directory (oci) or a file (docker).
    #[arg(long, value_name = "PATH")]
    pub output: String,
    /// The output format.
    #[arg(long, value_enum, default_value = "oci")]
    pub format: OciFormat,
    /// The tag (oci), or NAME[:TAG] (docker) [default: latest; docker names
    /// default to the ref].
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// A transform, applied in order (repeatable).
    #[arg(long = "transform", value_name = "KIND[:KEY=VALUE,...]")]
    pub transforms: Vec<String>,

    #[command(flatten)]
    pub image: ImageFlags,

    #[command(flatten)]
    pub encoding: EncodingFlags,
}

#[derive(Subcommand, Debug)]
pub enum PluginsCommand {
    /// List every source, transform and sink with its origin.
    List,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A pipeline file (TOML) with the source, transforms, sinks and image
    /// settings; flags on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<std::path::PathBuf>,

    /// Where the tree comes from: rootfs:DIR, tar:FILE, ...
    #[arg(long, value_name = "KIND:REST", required_unless_present = "pipeline")]
    pub source: Option<String>,

    /// An option of the source (repeatable).
    #[arg(long = "source-opt", value_name = "KEY=VALUE")]
    pub source_opts: Vec<String>,

    /// An option of the sinks (repeatable); every sink must take it.
    #[arg(long = "sink-opt", value_name = "KEY=VALUE")]
    pub sink_opts: Vec<String>,

    /// A transform, applied in order (repeatable).
    #[arg(long = "transform", value_name = "KIND[:KEY=VALUE,...]")]
    pub transforms: Vec<String>,

    /// A destination (repeatable: one run writes every sink).
    #[arg(
        long = "sink",
        value_name = "KIND:DEST",
        required_unless_present = "pipeline"
    )]
    pub sinks: Vec<String>,

    #[command(flatten)]
    pub image: ImageFlags,

    #[command(flatten)]
    pub encoding: EncodingFlags,
}

/// Flags that set the image's metadata (the `config` transform).
#[derive(Args, Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFlags {
    /// A label in the image config; KEY- removes one (an image source's,
    /// say).
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Image")]
    pub label: Vec<String>,
    /// An annotation on the manifest; KEY- removes one.
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Image")]
    pub annotation: Vec<String>,
    /// An environment variable; KEY- removes one.
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Image")]
    pub env: Vec<String>,
    /// An exposed port.
    #[arg(long, value_name = "PORT[/PROTO]", help_heading = "Image")]
    pub expose: Vec<String>,
    /// A volume mount point.
    #[arg(long, value_name = "PATH", help_heading = "Image")]
    pub volume: Vec<String>,
    /// The entrypoint: a JSON array, or words split on whitespace.
    #[arg(
        long,
        value_name = "CMD",
        help_heading = "Image",
        allow_hyphen_values = true
    )]
    pub entrypoint: Option<String>,
    /// The default command: a JSON array, or words split on whitespace.
    #[arg(
        long,
        value_name = "CMD",
        help_heading = "Image",
        allow_hyphen_values = true
    )]
    pub cmd: Option<String>,
    /// The working directory.
    #[arg(long, value_name = "PATH", help_heading = "Image")]
    pub workdir: Option<String>,
    /// The user the container runs as.
    #[arg(long, value_name = "USER[:GROUP]", help_heading = "Image")]
    pub user: Option<String>,
    /// The image architecture (amd64, arm64, ... or Debian names).
    #[arg(long, value_name = "ARCH[/VARIANT]", help_heading = "Image")]
    pub arch: Option<String>,
    /// The image operating system.
    #[arg(long, value_name = "OS", help_heading = "Image")]
    pub os: Option<String>,
}

impl ImageFlags {
    /// The flags as options of the `config` transform, in a fixed order.
    pub fn to_options(&self) -> treeport_core::plugin::Options {
        let mut o = treeport_core::plugin::Options::new();
        let many: [(&str, &Vec<String>); 5] = [
            ("label", &self.label),
            ("annotation", &self.annotation),
            ("env", &self.env),
            ("expose", &self.expose),
            ("volume", &self.volume),
        ];
        for (key, values) in many {
            for v in values {
                o.push(key, v.clone());
            }
        }
        let one: [(&str, &Option<String>); 6] = [
            ("entrypoint", &self.entrypoint),
            ("cmd", &self.cmd),
            ("workdir", &self.workdir),
            ("user", &self.user),
            ("arch", &self.arch),
            ("os", &self.os),
        ];
        for (key, value) in one {
            if let Some(v) = value {
                o.push(key, v.clone());
            }
        }
        o
    }
}

#[derive(Clone, Copy, Debug, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionName {
    Gzip,
    Zstd,
    None,
}

/// Flags that control how layers are encoded.
#[derive(Args, Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EncodingFlags {
    /// Layer compression.
    #[arg(long, value_enum, help_heading = "Encoding")]
    pub compression: Option<CompressionName>,
    /// Compression level (gzip 1-9, default 2; zstd 1-22, default 3).
    #[arg(long, value_name = "N", help_heading = "Encoding")]
    pub compression_level: Option<i32>,
    /// Image time and upper bound of file mtimes, in seconds since the epoch
    /// [default: $SOURCE_DATE_EPOCH, else the source's own time].
    #[arg(
        long,
        value_name = "EPOCH",
        help_heading = "Encoding",
        allow_hyphen_values = true
    )]
    pub timestamp: Option<i64>,
    /// Worker threads for encoding [default: one per core].
    #[arg(long, value_name = "N", help_heading = "Encoding")]
    pub threads: Option<usize>,
    /// A cache of encoded layers: a layer whose input did not change since
    /// an earlier export with the same cache is not encoded again. DIR is
    /// this machine's; docker://HOST/REPO[:TAG] and oci:DIR[:TAG] are
    /// shared by every machine that names them.
    #[arg(
        long,
        value_name = "DIR|docker://...|oci:...",
        help_heading = "Encoding"
    )]
    pub cache: Option<std::path::PathBuf>,
    /// At most this many layers (1 to 127): the `chunk` transform's
    /// `max-layers` option, as rpm-ostree and chunkah spell it.
    #[arg(long, value_name = "N", help_heading = "Encoding")]
    pub max_layers: Option<usize>,
    /// An earlier image whose layer plan the `chunk` transform keeps, so an
    /// update changes as few layers as it can (its `previous` option).
    #[arg(long, value_name = "IMAGE", help_heading = "Encoding")]
    pub previous: Option<String>,
    /// Drop PATH and everything below it from the tree; with a trailing
    /// slash (PATH/), keep the directory and drop what is in it
    /// (repeatable; any source).
    #[arg(long, value_name = "PATH[/]", help_heading = "Tree")]
    #[serde(default)]
    pub prune: Vec<String>,
    /// From an image source that is an index, the image for this platform
    /// (OS/ARCH[/VARIANT]) [default: this machine's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", help_heading = "Tree")]
    pub platform: Option<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image: oci:DIR[:TAG], ...
    pub image: String,
    /// From an index, the image for this platform (OS/ARCH[/VARIANT]).
    #[arg(long)]
    pub platform: Option<String>,
}
