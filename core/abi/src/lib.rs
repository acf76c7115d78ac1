//! treeport-plugin-api: the stable-ABI interface of treeport plugins.
//!
//! A third-party plugin is a `cdylib` that depends on this crate (and on
//! `abi_stable`, whose attribute exports the root module), implements
//! [`Source`], [`Transform`] or [`Sink`], and lists its plugins with
//! [`export_plugins!`]. treeport loads it at run time, checks the interface
//! version and the layout of every type that crosses the boundary, and wraps
//! each plugin in the same traits as its built-in ones.
//!
//! Only `StableAbi` types cross the boundary ([`Entry`], [`Draft`],
//! [`BuiltImage`], `RString`, `RVec`, `RResult<_, PluginError>`,
//! `#[sabi_trait]` objects). File content crosses as a stream read in chunks
//! ([`ReadObj`]), never as a whole file. A panic inside a plugin is caught by
//! the glue in this crate and returned as a [`PluginError`].
//!
//! # Versioning
//!
//! [`INTERFACE_VERSION`] names the interface. Within one version, fields may
//! be added only below the `#[sabi(last_prefix_field)]` markers of
//! [`PluginMod`] and the trait objects, and old plugins keep loading; any
//! other change (a field's type, an enum's variants, a method's signature)
//! raises the version, and plugins built for another version are refused.

// abi_stable's derives and `#[sabi_trait]` expand to unsafe code (layouts,
// vtables); the code written here has no unsafe block of its own.
#![allow(
    unsafe_code,
    non_local_definitions,
    clippy::used_underscore_binding,
    clippy::expl_impl_clone_on_copy,
    clippy::must_use_candidate
)]

use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use abi_stable;
use abi_stable::library::RootModule;
use abi_stable::sabi_trait::prelude::TD_Opaque;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{RBox, ROption, RResult, RSliceMut, RStr, RString, RVec, Tuple2};
use abi_stable::{StableAbi, declare_root_module_statics, package_version_strings, sabi_trait};

/// The version of this interface. Plugins built for another are refused.
pub const INTERFACE_VERSION: u32 = 1;

/// An error a plugin returns: a message for the user, and whether it is the
/// user's malformed request (exit status 2) rather than a failure.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    pub message: RString,
    pub usage: bool,
}

impl PluginError {
    /// A failure (exit status 1).
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: RString::from(message.into()),
            usage: false,
        }
    }

    /// A malformed request (exit status 2).
    #[must_use]
    pub fn usage(message: impl Into<String>) -> Self {
        PluginError {
            message: RString::from(message.into()),
            usage: true,
        }
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<io::Error> for PluginError {
    fn from(e: io::Error) -> Self {
        PluginError::new(e.to_string())
    }
}

/// The result type of plugin calls.
pub type PluginResult<T> = Result<T, PluginError>;

/// Which stage a plugin fills.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Transform,
    Sink,
}

/// What a tree entry is.
#[repr(u8)]
#[derive(StableAbi, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// The target is [`Entry::target`].
    Symlink,
    /// The device number is [`Entry::major`] and [`Entry::minor`].
    CharDevice,
    BlockDevice,
    Fifo,
}

/// Where a regular file's bytes come from.
#[repr(u8)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub enum Content {
    None,
    /// A key the opener understands: for a source, its own
    /// [`Source::open`]; for a transform, the host's [`HostContent::open`].
    Key(u64),
    /// Small generated content, held in memory.
    Bytes(RVec<u8>),
}

/// A key and a value (labels, annotations, options, xattrs).
pub type Pair<K, V> = Tuple2<K, V>;

/// One node of a tree.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated, no `.` or `..` components; bytes, maybe not UTF-8.
    pub path: RVec<u8>,
    pub kind: Kind,
    /// A symlink's target.
    pub target: RVec<u8>,
    pub major: u32,
    pub minor: u32,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: RVec<Pair<RVec<u8>, RVec<u8>>>,
    /// A regular file's size.
    pub size: u64,
    pub content: Content,
    /// Regular files with the same id are one inode with several names.
    pub link: ROption<u64>,
    /// The layer the entry goes to.
    pub layer: u32,
}

impl Entry {
    /// An entry of `kind` at `path`, owned by root, mode 0755 for a
    /// directory and 0644 otherwise.
    #[must_use]
    pub fn new(path: impl Into<Vec<u8>>, kind: Kind) -> Self {
        Entry {
            path: RVec::from(path.into()),
            kind,
            target: RVec::new(),
            major: 0,
            minor: 0,
            mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: RVec::new(),
            size: 0,
            content: Content::None,
            link: ROption::RNone,
            layer: 0,
        }
    }
}

/// An image's runtime configuration and platform.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub architecture: RString,
    pub os: RString,
    pub variant: ROption<RString>,
    pub author: ROption<RString>,
    pub user: ROption<RString>,
    pub env: RVec<RString>,
    pub entrypoint: ROption<RVec<RString>>,
    pub cmd: ROption<RVec<RString>>,
    pub working_dir: ROption<RString>,
    pub labels: RVec<Pair<RString, RString>>,
    pub exposed_ports: RVec<RString>,
    pub volumes: RVec<RString>,
    pub stop_signal: ROption<RString>,
}

/// A layer of the plan.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerInfo {
    pub annotations: RVec<Pair<RString, RString>>,
    pub created_by: RString,
}

/// An image being assembled: what a source yields and a transform edits.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, Default, PartialEq, Eq)]
pub struct Draft {
    pub entries: RVec<Entry>,
    /// At least one.
    pub layers: RVec<LayerInfo>,
    pub config: Config,
    pub annotations: RVec<Pair<RString, RString>>,
    pub source_time: ROption<i64>,
    pub created_by: RString,
}

impl Draft {
    /// A draft of `entries` in one layer, for the host's architecture and OS
    /// (empty strings: the host fills in its defaults).
    #[must_use]
    pub fn new(entries: Vec<Entry>) -> Self {
        Draft {
            entries: RVec::from(entries),
            layers: RVec::from(vec![LayerInfo::default()]),
            ..Draft::default()
        }
    }

    /// Sets a label in the image config, replacing an earlier value.
    pub fn set_label(&mut self, key: &str, value: &str) {
        set_pair(&mut self.config.labels, key, value);
    }

    /// The value of a label.
    #[must_use]
    pub fn label(&self, key: &str) -> Option<&str> {
        self.config
            .labels
            .iter()
            .find(|p| p.0.as_str() == key)
            .map(|p| p.1.as_str())
    }

    /// The entry at `path` (as bytes, without a leading slash).
    #[must_use]
    pub fn entry(&self, path: &[u8]) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path.as_slice() == path)
    }
}

/// Sets `key` in a list of pairs, replacing an earlier value.
pub fn set_pair(pairs: &mut RVec<Pair<RString, RString>>, key: &str, value: &str) {
    match pairs.iter_mut().find(|p| p.0.as_str() == key) {
        Some(p) => p.1 = RString::from(value),
        None => pairs.push(Tuple2(RString::from(key), RString::from(value))),
    }
}

/// A layer of a finished image.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LayerDesc {
    pub digest: RString,
    pub diff_id: RString,
    pub size: u64,
    pub tar_size: u64,
    pub media_type: RString,
    pub annotations: RVec<Pair<RString, RString>>,
}

/// A finished image, as a sink receives it.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct BuiltImage {
    pub manifest: RVec<u8>,
    pub manifest_digest: RString,
    pub config: RVec<u8>,
    pub config_digest: RString,
    pub layers: RVec<LayerDesc>,
    pub architecture: RString,
    pub os: RString,
    pub created: i64,
}

/// A stream of bytes, read in chunks across the boundary.
#[sabi_trait]
pub trait ReadObj: Send {
    /// Reads into `buf`; 0 at the end.
    #[sabi(last_prefix_field)]
    fn read(&mut self, buf: RSliceMut<'_, u8>) -> RResult<usize, PluginError>;
}

/// A boxed [`ReadObj`].
pub type ReaderBox = ReadObj_TO<'static, RBox<()>>;

/// A source, as it crosses the boundary.
#[sabi_trait]
pub trait SourceObj: Send {
    fn read(&mut self) -> RResult<Draft, PluginError>;
    #[sabi(last_prefix_field)]
    fn open(&self, key: u64) -> RResult<ReaderBox, PluginError>;
}

/// Content of the host's tree, opened for a transform.
#[sabi_trait]
pub trait ContentObj: Send {
    #[sabi(last_prefix_field)]
    fn open(&self, key: u64) -> RResult<ReaderBox, PluginError>;
}

/// A transform, as it crosses the boundary.
#[sabi_trait]
pub trait TransformObj: Send {
    #[sabi(last_prefix_field)]
    fn apply(
        &mut self,
        draft: Draft,
        content: ContentObj_TO<'static, RBox<()>>,
    ) -> RResult<Draft, PluginError>;
}

/// The host's blob store, for a sink.
#[sabi_trait]
pub trait BlobsObj: Send {
    /// A local file holding the blob, when there is one.
    fn path(&self, digest: RStr<'_>) -> ROption<RString>;
    #[sabi(last_prefix_field)]
    fn open(&self, digest: RStr<'_>) -> RResult<ReaderBox, PluginError>;
}

/// A sink, as it crosses the boundary.
#[sabi_trait]
pub trait SinkObj: Send {
    fn prepare(&mut self) -> RResult<(), PluginError>;
    #[sabi(last_prefix_field)]
    fn write(
        &mut self,
        image: BuiltImage,
        blobs: BlobsObj_TO<'static, RBox<()>>,
    ) -> RResult<RString, PluginError>;
}

/// A plugin instance made by a factory.
#[repr(u8)]
#[derive(StableAbi)]
pub enum Instance {
    Source(SourceObj_TO<'static, RBox<()>>),
    Transform(TransformObj_TO<'static, RBox<()>>),
    Sink(SinkObj_TO<'static, RBox<()>>),
}

/// Makes instances of one plugin.
#[sabi_trait]
pub trait FactoryObj: Send + Sync {
    /// `selector` is the whole selector as typed (`KIND:REST`); `options`
    /// the `KEY=VALUE` options given to the stage.
    #[sabi(last_prefix_field)]
    fn make(
        &self,
        selector: RStr<'_>,
        options: RVec<Pair<RString, RString>>,
    ) -> RResult<Instance, PluginError>;
}

/// One plugin of a library.
#[repr(C)]
#[derive(StableAbi)]
pub struct Descriptor {
    pub role: Role,
    pub kind: RString,
    pub description: RString,
    pub usage: RString,
    pub version: RString,
    pub options: RVec<Pair<RString, RString>>,
    pub factory: FactoryObj_TO<'static, RBox<()>>,
}

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    pub interface_version: extern "C" fn() -> u32,
    #[sabi(last_prefix_field)]
    pub descriptors: extern "C" fn() -> RResult<RVec<Descriptor>, PluginError>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "treeport_plugin";
    const NAME: &'static str = "treeport_plugin";
    const VERSION_STRINGS: VersionStrings = package_version_strings!();
}

// ---------------------------------------------------------------------------
// What plugin authors implement.

/// A source: yields a tree.
pub trait Source: Send + 'static {
    /// Reads the tree. File entries name their content with
    /// [`Content::Key`], opened later with [`Source::open`], or carry small
    /// content as [`Content::Bytes`].
    fn read(&mut self) -> PluginResult<Draft>;

    /// Opens the content stored under `key`. Called from encoder threads,
    /// one stream per call.
    fn open(&self, key: u64) -> PluginResult<Box<dyn Read + Send>>;
}

/// A transform: edits a draft. [`HostContent`] opens the content of the
/// host's entries (their [`Content::Key`]).
pub trait Transform: Send + 'static {
    fn apply(&mut self, draft: &mut Draft, content: &HostContent) -> PluginResult<()>;
}

/// A sink: writes a finished image. [`HostBlobs`] reads its blobs.
pub trait Sink: Send + 'static {
    /// Checks the destination before any work is done.
    fn prepare(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// Writes the image and says where it went.
    fn write(&mut self, image: &BuiltImage, blobs: &HostBlobs) -> PluginResult<String>;
}

/// A plugin instance, as a factory makes it.
pub enum Made {
    Source(Box<dyn Source>),
    Transform(Box<dyn Transform>),
    Sink(Box<dyn Sink>),
}

/// Makes a plugin instance from the selector (`KIND:REST`) and options.
pub type MakeFn = fn(&str, &[(String, String)]) -> PluginResult<Made>;

/// One plugin a library provides.
pub struct Plugin {
    pub role: Role,
    pub kind: &'static str,
    pub description: &'static str,
    pub usage: &'static str,
    pub version: &'static str,
    pub options: &'static [(&'static str, &'static str)],
    pub make: MakeFn,
}

/// The host's content, for a transform.
pub struct HostContent(ContentObj_TO<'static, RBox<()>>);

impl HostContent {
    /// Opens the content of an entry whose content is `Content::Key(key)`.
    pub fn open(&self, key: u64) -> PluginResult<impl Read + use<>> {
        self.0.open(key).into_result().map(StreamRead)
    }
}

/// The host's blob store, for a sink.
pub struct HostBlobs(BlobsObj_TO<'static, RBox<()>>);

impl HostBlobs {
    /// A local path of the blob, when it is a file.
    #[must_use]
    pub fn path(&self, digest: &str) -> Option<String> {
        self.0.path(digest.into()).into_option().map(String::from)
    }

    /// Streams the blob.
    pub fn open(&self, digest: &str) -> PluginResult<impl Read + use<>> {
        self.0.open(digest.into()).into_result().map(StreamRead)
    }
}

/// A [`ReaderBox`] as a `std::io::Read`.
pub struct StreamRead(pub ReaderBox);

impl Read for StreamRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(RSliceMut::from_mut_slice(buf))
            .into_result()
            .map_err(|e| io::Error::other(e.message.to_string()))
    }
}

/// A `std::io::Read` as a [`ReadObj`], with panics caught.
pub struct ReadAdapter<R>(pub R);

impl<R: Read + Send> ReadObj for ReadAdapter<R> {
    fn read(&mut self, mut buf: RSliceMut<'_, u8>) -> RResult<usize, PluginError> {
        guard(|| self.0.read(buf.as_mut_slice()).map_err(PluginError::from))
    }
}

/// Boxes a reader for the boundary.
#[must_use]
pub fn reader_box<R: Read + Send + 'static>(r: R) -> ReaderBox {
    ReadObj_TO::from_value(ReadAdapter(r), TD_Opaque)
}

thread_local! {
    /// Where the last panic on this thread happened, recorded by the hook.
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The plugin's own panic hook (a `cdylib` has its own standard library):
/// it records where a panic happened instead of printing to the host's
/// terminal, since [`guard`] reports the panic as an error.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let at = info
                .location()
                .map(|l| format!("{}:{}", l.file(), l.line()));
            PANIC_AT.with(|p| *p.borrow_mut() = at);
        }));
    });
}

/// Runs `f`, turning a panic into an error.
pub fn guard<T>(f: impl FnOnce() -> PluginResult<T>) -> RResult<T, PluginError> {
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r.into(),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_string());
            let at = PANIC_AT
                .with(|p| p.borrow_mut().take())
                .map(|at| format!(" (at {at})"))
                .unwrap_or_default();
            RResult::RErr(PluginError::new(format!("panicked: {msg}{at}")))
        }
    }
}

// ---------------------------------------------------------------------------
// Glue: the author's traits behind the boundary's objects.

#[doc(hidden)]
pub mod glue {
    use super::{
        BlobsObj_TO, BuiltImage, ContentObj_TO, Descriptor, Draft, FactoryObj, FactoryObj_TO,
        HostBlobs, HostContent, Instance, Made, MakeFn, Pair, Plugin, PluginError, RBox, RResult,
        RStr, RString, RVec, ReaderBox, Sink, SinkObj, SinkObj_TO, Source, SourceObj, SourceObj_TO,
        TD_Opaque, Transform, TransformObj, TransformObj_TO, Tuple2, guard, reader_box,
    };

    struct SourceGlue(Box<dyn Source>);

    impl SourceObj for SourceGlue {
        fn read(&mut self) -> RResult<Draft, PluginError> {
            guard(|| self.0.read())
        }

        fn open(&self, key: u64) -> RResult<ReaderBox, PluginError> {
            guard(|| self.0.open(key).map(reader_box))
        }
    }

    struct TransformGlue(Box<dyn Transform>);

    impl TransformObj for TransformGlue {
        fn apply(
            &mut self,
            mut draft: Draft,
            content: ContentObj_TO<'static, RBox<()>>,
        ) -> RResult<Draft, PluginError> {
            let content = HostContent(content);
            guard(|| self.0.apply(&mut draft, &content).map(|()| draft))
        }
    }

    struct SinkGlue(Box<dyn Sink>);

    impl SinkObj for SinkGlue {
        fn prepare(&mut self) -> RResult<(), PluginError> {
            guard(|| self.0.prepare())
        }

        fn write(
            &mut self,
            image: BuiltImage,
            blobs: BlobsObj_TO<'static, RBox<()>>,
        ) -> RResult<RString, PluginError> {
            let blobs = HostBlobs(blobs);
            guard(|| self.0.write(&image, &blobs).map(RString::from))
        }
    }

    struct FactoryGlue(MakeFn);

    impl FactoryObj for FactoryGlue {
        fn make(
            &self,
            selector: RStr<'_>,
            options: RVec<Pair<RString, RString>>,
        ) -> RResult<Instance, PluginError> {
            let options: Vec<(String, String)> = options
                .into_iter()
                .map(|Tuple2(k, v)| (k.into_string(), v.into_string()))
                .collect();
            guard(|| {
                (self.0)(selector.as_str(), &options).map(|made| match made {
                    Made::Source(s) => {
                        Instance::Source(SourceObj_TO::from_value(SourceGlue(s), TD_Opaque))
                    }
                    Made::Transform(t) => Instance::Transform(TransformObj_TO::from_value(
                        TransformGlue(t),
                        TD_Opaque,
                    )),
                    Made::Sink(s) => Instance::Sink(SinkObj_TO::from_value(SinkGlue(s), TD_Opaque)),
                })
            })
        }
    }

    /// The descriptors of `plugins`, for the root module.
    pub fn descriptors(plugins: fn() -> Vec<Plugin>) -> RResult<RVec<Descriptor>, PluginError> {
        guard(|| {
            Ok(plugins()
                .into_iter()
                .map(|p| Descriptor {
                    role: p.role,
                    kind: p.kind.into(),
                    description: p.description.into(),
                    usage: p.usage.into(),
                    version: p.version.into(),
                    options: p
                        .options
                        .iter()
                        .map(|(k, v)| Tuple2(RString::from(*k), RString::from(*v)))
                        .collect(),
                    factory: FactoryObj_TO::from_value(FactoryGlue(p.make), TD_Opaque),
                })
                .collect())
        })
    }
}

/// Exports a plugin library's root module. Give it a function returning the
/// library's [`Plugin`]s:
///
/// ```ignore
/// fn plugins() -> Vec<treeport_plugin_api::Plugin> { vec![/* ... */] }
/// treeport_plugin_api::export_plugins!(plugins);
/// ```
///
/// The plugin crate must also depend on `abi_stable` (its attribute writes
/// the exported symbol).
#[macro_export]
macro_rules! export_plugins {
    ($plugins:path) => {
        $crate::export_plugins!($plugins, version = $crate::INTERFACE_VERSION);
    };
    ($plugins:path, version = $version:expr) => {
        extern "C" fn __treeport_interface_version() -> u32 {
            $version
        }

        extern "C" fn __treeport_descriptors() -> $crate::abi_stable::std_types::RResult<
            $crate::abi_stable::std_types::RVec<$crate::Descriptor>,
            $crate::PluginError,
        > {
            $crate::glue::descriptors($plugins)
        }

        /// The root module treeport loads.
        #[$crate::abi_stable::export_root_module]
        pub fn __treeport_root_module() -> $crate::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::PluginMod {
                interface_version: __treeport_interface_version,
                descriptors: __treeport_descriptors,
            }
            .leak_into_prefix()
        }
    };
}

/// Reads options given as `KEY=VALUE` pairs: the last value of `key`.
#[must_use]
pub fn option<'a>(options: &'a [(String, String)], key: &str) -> Option<&'a str> {
    options
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Refuses options outside `allowed`, naming the plugin.
pub fn check_options(
    plugin: &str,
    options: &[(String, String)],
    allowed: &[&str],
) -> PluginResult<()> {
    for (k, _) in options {
        if !allowed.contains(&k.as_str()) {
            return Err(PluginError::usage(format!(
                "{plugin} has no option '{k}' (valid: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
    }
    Ok(())
}
