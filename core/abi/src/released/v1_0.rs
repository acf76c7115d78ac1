//! The boundary exactly as interface 1.0 released it. Never edit this
//! file: treeport checks every plugin library's layout against it (a plugin
//! built for any 1.N has at least these fields and methods), then uses the
//! current [`ffi`](crate::ffi) types, which only ever extend it.
// abi_stable's derives and `#[sabi_trait]` expand to unsafe code (layouts,
// vtables); the code written here has no unsafe block of its own.
#![allow(
    unsafe_code,
    non_local_definitions,
    clippy::used_underscore_binding,
    clippy::expl_impl_clone_on_copy,
    clippy::len_without_is_empty,
    missing_docs
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
    pub message: RString,
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
    pub path: RVec<u8>,
    pub kind: u8,
    pub target: RVec<u8>,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub xattrs: RVec<Pair<RVec<u8>, RVec<u8>>>,
    pub size: u64,
    pub link: ROption<u64>,
    pub layer: u32,
    /// A [`content`] code.
    pub content: u8,
    pub key: u64,
    pub bytes: RVec<u8>,
}

/// One layer of a finished image (interface 1.0 fields; frozen).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct LayerRecord {
    pub digest: RString,
    pub diff_id: RString,
    pub size: u64,
    pub tar_size: u64,
    pub media_type: RString,
    pub annotations: Pairs,
}

/// One option a plugin declares (interface 1.0 fields; frozen).
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct OptionRecord {
    pub name: RString,
    /// An [`OptionKind`](crate::OptionKind) code.
    pub kind: u8,
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
    fn labels(&self) -> Pairs;
    fn set_label(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
    fn annotations(&self) -> Pairs;
    fn set_annotation(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
    /// A config field by its name (`architecture`, `os`, `variant`,
    /// `author`, `user`, `env`, `entrypoint`, `cmd`, `working-dir`,
    /// `exposed-ports`, `volumes`, `stop-signal`), as a list of strings.
    fn config(&self, field: RStr<'_>) -> Res<ROption<RVec<RString>>>;
    fn set_config(&mut self, field: RStr<'_>, value: ROption<RVec<RString>>) -> Res<()>;
    fn layer_count(&self) -> u32;
    /// Appends a layer; returns its number.
    fn add_layer(&mut self) -> Res<u32>;
    fn layer_annotations(&self, layer: u32) -> Pairs;
    fn set_layer_annotation(
        &mut self,
        layer: u32,
        key: RStr<'_>,
        value: ROption<RStr<'_>>,
    ) -> Res<()>;
    fn layer_created_by(&self, layer: u32) -> RString;
    fn set_layer_created_by(&mut self, layer: u32, text: RStr<'_>) -> Res<()>;
    fn source_time(&self) -> ROption<i64>;
    fn set_source_time(&mut self, time: ROption<i64>) -> Res<()>;
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
    fn manifest(&self) -> RVec<u8>;
    fn manifest_digest(&self) -> RString;
    fn config(&self) -> RVec<u8>;
    fn config_digest(&self) -> RString;
    fn layers(&self) -> RVec<LayerRecord>;
    fn architecture(&self) -> RString;
    fn os(&self) -> RString;
    fn created(&self) -> i64;
    /// A local file holding the blob, when there is one.
    fn blob_path(&self, digest: RStr<'_>) -> ROption<RString>;
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
    #[sabi(last_prefix_field)]
    fn open(&self, key: u64) -> Res<ReaderBox>;
}

/// A transform.
#[sabi_trait]
pub trait TransformObj: Send {
    #[sabi(last_prefix_field)]
    fn apply(&mut self, draft: DraftBox) -> Res<()>;
}

/// A sink.
#[sabi_trait]
pub trait SinkObj: Send {
    fn prepare(&mut self) -> Res<()>;
    #[sabi(last_prefix_field)]
    fn write(&mut self, image: ImageObj_TO<'static, RBox<()>>) -> Res<RString>;
}

/// One plugin of a library: its description and its constructors.
#[sabi_trait]
pub trait PluginObj: Send + Sync {
    /// A [`Role`](crate::Role) code.
    fn role(&self) -> u8;
    fn kind(&self) -> RString;
    fn description(&self) -> RString;
    fn usage(&self) -> RString;
    fn version(&self) -> RString;
    fn options(&self) -> RVec<OptionRecord>;
    /// `selector` is the whole selector as typed (`KIND:REST`).
    fn make_source(
        &self,
        selector: RStr<'_>,
        options: OptionValues,
    ) -> Res<SourceObj_TO<'static, RBox<()>>>;
    fn make_transform(
        &self,
        selector: RStr<'_>,
        options: OptionValues,
    ) -> Res<TransformObj_TO<'static, RBox<()>>>;
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
