//! What crosses the boundary between treeport and a plugin library.
//!
//! Plugin authors do not use this module: the traits and types at the crate
//! root wrap it. It is public because the host implements its objects.
//!
//! # How it grows
//!
//! Everything here is either a `#[sabi_trait]` object, whose vtable is an
//! `abi_stable` prefix type (methods are appended after the
//! `#[sabi(last_prefix_field)]` marker, never inserted or changed), the
//! prefix-type root module [`PluginMod`] (fields appended the same way), or
//! one of the three frozen records [`EntryRecord`], [`LayerRecord`] and
//! [`OptionRecord`], which never change: a field a later interface version
//! adds to an entry, a layer or an option description reaches plugins
//! through a new accessor method, and the host keeps whatever an older
//! plugin does not know. Enumerations cross as `u8` codes, so a later
//! version can add kinds without changing any layout; the author's enums
//! ([`Kind`](crate::Kind), [`ErrorKind`](crate::ErrorKind),
//! [`OptionKind`](crate::OptionKind)) are `#[non_exhaustive]` and carry an
//! `Other` code for values they do not know.

// abi_stable's derives and `#[sabi_trait]` expand to unsafe code (layouts,
// vtables); the code written here has no unsafe block of its own.
#![allow(
    unsafe_code,
    non_local_definitions,
    clippy::used_underscore_binding,
    clippy::expl_impl_clone_on_copy,
    clippy::len_without_is_empty
)]

use abi_stable::library::RootModule;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::{
    RBox, ROption, RResult, RSlice, RSliceMut, RStr, RString, RVec, Tuple2,
};
use abi_stable::{StableAbi, declare_root_module_statics, sabi_trait};

/// A key and a value.
pub type Pair<K, V> = Tuple2<K, V>;
/// Labels, annotations.
pub type Pairs = RVec<Pair<RString, RString>>;

/// An error crossing the boundary: a message and an
/// [`ErrorKind`](crate::ErrorKind) code.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct ErrorRecord {
    /// One line for the user.
    pub message: RString,
    /// An [`ErrorKind`](crate::ErrorKind) code.
    pub kind: u8,
}

/// The result of a call across the boundary.
pub type Res<T> = RResult<T, ErrorRecord>;

/// Content codes of [`EntryRecord::content`].
pub mod content {
    /// No content (not a regular file, or an empty one).
    pub const NONE: u8 = 0;
    /// The content the host holds for entry number `key`.
    pub const HOST: u8 = 1;
    /// A source's own content, opened with its `open(key)`.
    pub const SOURCE: u8 = 2;
    /// The bytes in [`EntryRecord::bytes`](super::EntryRecord::bytes).
    pub const BYTES: u8 = 3;
}

/// One entry's interface-1.0 fields. Frozen: later fields come through
/// accessor methods of [`DraftObj`].
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct EntryRecord {
    /// [`Entry::path`](crate::Entry::path).
    pub path: RVec<u8>,
    /// A [`Kind`](crate::Kind) code.
    pub kind: u8,
    /// [`Entry::target`](crate::Entry::target).
    pub target: RVec<u8>,
    /// [`Entry::major`](crate::Entry::major).
    pub major: u32,
    /// [`Entry::minor`](crate::Entry::minor).
    pub minor: u32,
    /// [`Entry::mode`](crate::Entry::mode).
    pub mode: u32,
    /// [`Entry::uid`](crate::Entry::uid).
    pub uid: u32,
    /// [`Entry::gid`](crate::Entry::gid).
    pub gid: u32,
    /// [`Entry::mtime`](crate::Entry::mtime).
    pub mtime: i64,
    /// [`Entry::xattrs`](crate::Entry::xattrs).
    pub xattrs: RVec<Pair<RVec<u8>, RVec<u8>>>,
    /// [`Entry::size`](crate::Entry::size).
    pub size: u64,
    /// [`Entry::link`](crate::Entry::link).
    pub link: ROption<u64>,
    /// [`Entry::layer`](crate::Entry::layer).
    pub layer: u32,
    /// A [`content`] code.
    pub content: u8,
    /// The entry number ([`content::HOST`]) or source key
    /// ([`content::SOURCE`]).
    pub key: u64,
    /// The bytes of [`content::BYTES`].
    pub bytes: RVec<u8>,
}

/// One layer of a finished image (interface 1.0 fields; frozen).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LayerRecord {
    /// [`Layer::digest`](crate::Layer::digest).
    pub digest: RString,
    /// [`Layer::diff_id`](crate::Layer::diff_id).
    pub diff_id: RString,
    /// [`Layer::size`](crate::Layer::size).
    pub size: u64,
    /// [`Layer::tar_size`](crate::Layer::tar_size).
    pub tar_size: u64,
    /// [`Layer::media_type`](crate::Layer::media_type).
    pub media_type: RString,
    /// [`Layer::annotations`](crate::Layer::annotations).
    pub annotations: Pairs,
}

/// One option a plugin declares (interface 1.0 fields; frozen).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct OptionRecord {
    /// [`OptionSpec::name`](crate::OptionSpec::name).
    pub name: RString,
    /// An [`OptionKind`](crate::OptionKind) code.
    pub kind: u8,
    /// [`OptionSpec::help`](crate::OptionSpec::help).
    pub help: RString,
}

/// Option values as the host parsed and checked them: each name with its
/// values in order (one for a string, integer or boolean).
pub type OptionValues = RVec<Pair<RString, RVec<RString>>>;

/// A stream of bytes, read in chunks.
#[sabi_trait]
pub trait ReadObj: Send {
    /// Reads into `buf`; 0 at the end.
    #[sabi(last_prefix_field)]
    fn read(&mut self, buf: RSliceMut<'_, u8>) -> Res<usize>;
}

/// A boxed [`ReadObj`].
pub type ReaderBox = ReadObj_TO<'static, RBox<()>>;

/// The image being assembled, kept by the host; a source fills it, a
/// transform edits it, a sink reads the finished tree through it. Entry
/// numbers stay valid for the whole call: removed entries read as absent,
/// added ones get new numbers at the end.
#[sabi_trait]
pub trait DraftObj: Send {
    /// How many entry numbers there are (removed ones included).
    fn len(&self) -> u64;
    /// The number of the entry at `path`.
    fn find(&self, path: RSlice<'_, u8>) -> ROption<u64>;
    /// Entry `index`, unless it was removed.
    fn get(&self, index: u64) -> ROption<EntryRecord>;
    /// Streams the content of entry `index`.
    fn open(&self, index: u64) -> Res<ReaderBox>;
    /// Adds an entry, or updates the one at its path (its interface-1.0
    /// fields; others stay). Returns its number.
    fn put(&mut self, entry: EntryRecord) -> Res<u64>;
    /// Removes entry `index` and, for a directory, everything below it.
    fn remove(&mut self, index: u64) -> Res<()>;
    /// The image config's labels.
    fn labels(&self) -> Pairs;
    /// Sets a label, or removes it (`None`).
    fn set_label(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
    /// The manifest's annotations.
    fn annotations(&self) -> Pairs;
    /// Sets an annotation, or removes it (`None`).
    fn set_annotation(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
    /// A config field by its name (`architecture`, `os`, `variant`,
    /// `author`, `user`, `env`, `entrypoint`, `cmd`, `working-dir`,
    /// `exposed-ports`, `volumes`, `stop-signal`), as a list of strings.
    fn config(&self, field: RStr<'_>) -> Res<ROption<RVec<RString>>>;
    /// Sets a config field, or clears it (`None`).
    fn set_config(&mut self, field: RStr<'_>, value: ROption<RVec<RString>>) -> Res<()>;
    /// How many layers the plan has.
    fn layer_count(&self) -> u32;
    /// Appends a layer; returns its number.
    fn add_layer(&mut self) -> Res<u32>;
    /// A layer's annotations.
    fn layer_annotations(&self, layer: u32) -> Pairs;
    /// Sets a layer's annotation, or removes it (`None`).
    fn set_layer_annotation(
        &mut self,
        layer: u32,
        key: RStr<'_>,
        value: ROption<RStr<'_>>,
    ) -> Res<()>;
    /// A layer's history text.
    fn layer_created_by(&self, layer: u32) -> RString;
    /// Sets a layer's history text.
    fn set_layer_created_by(&mut self, layer: u32, text: RStr<'_>) -> Res<()>;
    /// The source's own time.
    fn source_time(&self) -> ROption<i64>;
    /// Sets the source's own time.
    fn set_source_time(&mut self, time: ROption<i64>) -> Res<()>;
    /// True for a sink's finished tree, which cannot be edited.
    #[sabi(last_prefix_field)]
    fn read_only(&self) -> bool;
}

/// A boxed [`DraftObj`].
pub type DraftBox = DraftObj_TO<'static, RBox<()>>;

/// The entries of one layer of a finished image, decoded by the host.
#[sabi_trait]
pub trait LayerEntriesObj: Send {
    /// The next member (`content` is [`content::HOST`] for a file whose
    /// bytes [`LayerEntriesObj::read`] gives), or none at the end.
    fn next(&mut self) -> Res<ROption<EntryRecord>>;
    /// Reads the current member's content.
    #[sabi(last_prefix_field)]
    fn read(&mut self, buf: RSliceMut<'_, u8>) -> Res<usize>;
}

/// A finished image, for a sink.
#[sabi_trait]
pub trait ImageObj: Send {
    /// The manifest's bytes.
    fn manifest(&self) -> RVec<u8>;
    /// `sha256:...` of the manifest.
    fn manifest_digest(&self) -> RString;
    /// The config's bytes.
    fn config(&self) -> RVec<u8>;
    /// `sha256:...` of the config.
    fn config_digest(&self) -> RString;
    /// The layers, bottom first.
    fn layers(&self) -> RVec<LayerRecord>;
    /// The image's architecture.
    fn architecture(&self) -> RString;
    /// The image's OS.
    fn os(&self) -> RString;
    /// The image time, seconds since the epoch.
    fn created(&self) -> i64;
    /// A local file holding the blob, when there is one.
    fn blob_path(&self, digest: RStr<'_>) -> ROption<RString>;
    /// Streams a blob.
    fn open_blob(&self, digest: RStr<'_>) -> Res<ReaderBox>;
    /// The members of layer `layer`, decompressed and decoded.
    #[sabi(last_prefix_field)]
    fn layer_entries(&self, layer: u32) -> Res<LayerEntriesObj_TO<'static, RBox<()>>>;
}

/// A source.
#[sabi_trait]
pub trait SourceObj: Send {
    /// Fills `draft` (entries' content: [`content::SOURCE`] keys, or bytes).
    fn read(&mut self, draft: DraftBox) -> Res<()>;
    /// Opens the content stored under `key`.
    #[sabi(last_prefix_field)]
    fn open(&self, key: u64) -> Res<ReaderBox>;
}

/// A transform.
#[sabi_trait]
pub trait TransformObj: Send {
    /// Edits the image through `draft`.
    #[sabi(last_prefix_field)]
    fn apply(&mut self, draft: DraftBox) -> Res<()>;
}

/// A sink.
#[sabi_trait]
pub trait SinkObj: Send {
    /// Checks the destination before any work.
    fn prepare(&mut self) -> Res<()>;
    /// Writes the image; says where it went.
    #[sabi(last_prefix_field)]
    fn write(&mut self, image: ImageObj_TO<'static, RBox<()>>) -> Res<RString>;
}

/// One plugin of a library: its description and its constructors.
#[sabi_trait]
pub trait PluginObj: Send + Sync {
    /// A [`Role`](crate::Role) code.
    fn role(&self) -> u8;
    /// The selector's kind.
    fn kind(&self) -> RString;
    /// One line for `treeport plugins list`.
    fn description(&self) -> RString;
    /// The selector's form.
    fn usage(&self) -> RString;
    /// The plugin's own version.
    fn version(&self) -> RString;
    /// The options it takes.
    fn options(&self) -> RVec<OptionRecord>;
    /// Makes a source; `selector` is the whole selector as typed
    /// (`KIND:REST`).
    fn make_source(
        &self,
        selector: RStr<'_>,
        options: OptionValues,
    ) -> Res<SourceObj_TO<'static, RBox<()>>>;
    /// Makes a transform.
    fn make_transform(
        &self,
        selector: RStr<'_>,
        options: OptionValues,
    ) -> Res<TransformObj_TO<'static, RBox<()>>>;
    /// Makes a sink.
    #[sabi(last_prefix_field)]
    fn make_sink(
        &self,
        selector: RStr<'_>,
        options: OptionValues,
    ) -> Res<SinkObj_TO<'static, RBox<()>>>;
}

/// A boxed [`PluginObj`].
pub type PluginBox = PluginObj_TO<'static, RBox<()>>;

/// The root module every plugin library exports.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(option))]
pub struct PluginMod {
    /// The interface version the library was built against: (major, minor).
    pub interface: extern "C" fn() -> Tuple2<u32, u32>,
    /// The library's plugins.
    #[sabi(last_prefix_field)]
    pub plugins: extern "C" fn() -> Res<RVec<PluginBox>>,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "treeport_plugin";
    const NAME: &'static str = "treeport_plugin";
    // The ABI family, not the crate's version: abi_stable refuses a library
    // whose version is older than the loader's, while a plugin built for
    // 1.N must load in every 1.M with M >= N. The minor versions are
    // compared by treeport itself (`interface`).
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}
