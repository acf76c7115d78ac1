//! treeport-plugin-api: the interface of treeport plugins.
//!
//! A third-party plugin is a `cdylib` that depends on this crate (and on
//! `abi_stable`, whose attribute exports the library's root module),
//! implements [`Source`], [`Transform`] or [`Sink`], and lists its plugins
//! with [`export_plugins!`]. treeport loads it at run time, checks the
//! interface version and the layout of everything that crosses the
//! boundary, and runs each plugin exactly like a built-in one.
//!
//! The image stays with treeport. A plugin reads and edits it through a
//! [`Draft`] handle: entries by path or by number, a file's content as a
//! stream, entries added, replaced and removed, labels, annotations, config
//! and layers. What a plugin does not touch stays exactly as treeport had
//! it, including what this interface does not describe (the order an OSTree
//! commit gives its objects, data one built-in stage leaves for another).
//!
//! # Versions
//!
//! The interface is versioned `MAJOR.MINOR` ([`INTERFACE_MAJOR`],
//! [`INTERFACE_MINOR`]). A plugin built against 1.N loads and runs in every
//! treeport that speaks 1.M with M >= N. A minor version only adds: methods
//! to the handles, fields to the root module, codes to the enumerations
//! (which is why [`Kind`], [`ErrorKind`] and [`OptionKind`] are
//! `#[non_exhaustive]`), fields to the author's structs (also
//! `#[non_exhaustive]`: build them with their constructors). A major version
//! may change anything, and treeport refuses plugins of another major
//! version with a message naming both.

#![allow(clippy::must_use_candidate)]

pub mod ffi;
pub mod released;

use std::io::{self, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

pub use abi_stable;
use abi_stable::sabi_trait::prelude::TD_Opaque;
use abi_stable::std_types::{RBox, ROption, RResult, RSliceMut, RStr, RString, RVec, Tuple2};

use ffi::{
    DraftBox, EntryRecord, ErrorRecord, ImageObj_TO, LayerEntriesObj_TO, OptionRecord,
    OptionValues, PluginBox, PluginObj, PluginObj_TO, ReadObj, ReadObj_TO, ReaderBox, Res, SinkObj,
    SinkObj_TO, SourceObj, SourceObj_TO, TransformObj, TransformObj_TO, content,
};

/// The major version of this interface: plugins of another are refused.
pub const INTERFACE_MAJOR: u32 = 1;
/// The minor version of this interface: plugins built against a later minor
/// version are refused by an older treeport.
pub const INTERFACE_MINOR: u32 = 0;

// ---------------------------------------------------------------------------
// Errors

/// What kind of failure a [`PluginError`] is. treeport maps [`Usage`]
/// to exit status 2 and everything else to 1.
///
/// [`Usage`]: ErrorKind::Usage
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Anything else.
    Failed,
    /// The user's request is malformed (a bad option, a bad selector).
    Usage,
    /// Something named does not exist (a file, a path in the tree).
    NotFound,
    /// Input is damaged or inconsistent.
    Corrupt,
    /// Reading or writing failed.
    Io,
    /// A kind a later interface version added.
    Other(u8),
}

impl ErrorKind {
    fn code(self) -> u8 {
        match self {
            ErrorKind::Failed => 0,
            ErrorKind::Usage => 1,
            ErrorKind::NotFound => 2,
            ErrorKind::Corrupt => 3,
            ErrorKind::Io => 4,
            ErrorKind::Other(c) => c,
        }
    }

    /// The kind of a code (unknown codes are [`ErrorKind::Other`]).
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => ErrorKind::Failed,
            1 => ErrorKind::Usage,
            2 => ErrorKind::NotFound,
            3 => ErrorKind::Corrupt,
            4 => ErrorKind::Io,
            c => ErrorKind::Other(c),
        }
    }
}

/// An error a plugin returns: one line for the user and its kind. treeport
/// prefixes the plugin's file and stage; do not repeat them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    message: String,
    kind: ErrorKind,
}

impl PluginError {
    /// A failure (exit status 1).
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Failed, message)
    }

    /// A malformed request (exit status 2).
    #[must_use]
    pub fn usage(message: impl Into<String>) -> Self {
        Self::with_kind(ErrorKind::Usage, message)
    }

    /// An error of `kind`.
    #[must_use]
    pub fn with_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
            kind,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The error as it crosses the boundary.
    #[doc(hidden)]
    pub fn to_record(&self) -> ErrorRecord {
        ErrorRecord {
            message: self.message.as_str().into(),
            kind: self.kind.code(),
        }
    }

    /// The error a record describes.
    #[doc(hidden)]
    pub fn from_record(r: &ErrorRecord) -> Self {
        PluginError {
            message: r.message.to_string(),
            kind: ErrorKind::from_code(r.kind),
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
        let kind = if e.kind() == io::ErrorKind::NotFound {
            ErrorKind::NotFound
        } else {
            ErrorKind::Io
        };
        PluginError::with_kind(kind, e.to_string())
    }
}

/// The result type of plugin calls.
pub type PluginResult<T> = Result<T, PluginError>;

fn lift<T>(r: Res<T>) -> PluginResult<T> {
    r.into_result().map_err(|e| PluginError::from_record(&e))
}

// ---------------------------------------------------------------------------
// Entries

/// Which stage a plugin fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Yields a tree (`--source`).
    Source,
    /// Edits an image (`--transform`).
    Transform,
    /// Writes an image (`--sink`).
    Sink,
}

impl Role {
    /// The code that crosses the boundary.
    #[doc(hidden)]
    pub fn code(self) -> u8 {
        match self {
            Role::Source => 0,
            Role::Transform => 1,
            Role::Sink => 2,
        }
    }

    /// The role of a code.
    #[doc(hidden)]
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Role::Source),
            1 => Some(Role::Transform),
            2 => Some(Role::Sink),
            _ => None,
        }
    }
}

/// What a tree entry is.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// The target is [`Entry::target`].
    Symlink,
    /// The device number is [`Entry::major`] and [`Entry::minor`].
    CharDevice,
    /// A block device ([`Entry::major`], [`Entry::minor`]).
    BlockDevice,
    /// A named pipe.
    Fifo,
    /// A kind a later interface version added; written back unchanged.
    Other(u8),
}

impl Kind {
    /// The code that crosses the boundary.
    #[doc(hidden)]
    pub fn code(self) -> u8 {
        match self {
            Kind::File => 0,
            Kind::Dir => 1,
            Kind::Symlink => 2,
            Kind::CharDevice => 3,
            Kind::BlockDevice => 4,
            Kind::Fifo => 5,
            Kind::Other(c) => c,
        }
    }

    /// The kind of a code.
    #[doc(hidden)]
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => Kind::File,
            1 => Kind::Dir,
            2 => Kind::Symlink,
            3 => Kind::CharDevice,
            4 => Kind::BlockDevice,
            5 => Kind::Fifo,
            c => Kind::Other(c),
        }
    }
}

/// Where a regular file's bytes come from.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    /// None: not a file, or an empty file.
    None,
    /// The content treeport holds for the entry this one was read as
    /// (entry number `n` of the draft). Keeping it on an entry moved to
    /// another path moves the content with it; opening it streams it.
    Host(u64),
    /// A source's own content: opened later with [`Source::open`].
    Key(u64),
    /// Small generated content, held in memory. The entry's size is taken
    /// from it.
    Bytes(Vec<u8>),
}

/// One node of a tree.
///
/// Build one with [`Entry::new`], [`Entry::file`], [`Entry::dir`] or
/// [`Entry::symlink`] and set fields; the struct may gain fields in a minor
/// version.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Relative, `/`-separated, no `.` or `..` components and no leading
    /// slash; bytes, maybe not UTF-8.
    pub path: Vec<u8>,
    /// What the entry is.
    pub kind: Kind,
    /// A symlink's target.
    pub target: Vec<u8>,
    /// A device's major number.
    pub major: u32,
    /// A device's minor number.
    pub minor: u32,
    /// Permission bits including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    /// The owner.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes (treeport sorts them by name).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A regular file's size. For [`Content::Host`] and [`Content::Bytes`]
    /// treeport takes it from the content; for [`Content::Key`] the source
    /// must give it.
    pub size: u64,
    /// Where a regular file's bytes come from.
    pub content: Content,
    /// Regular files with the same id are one inode with several names.
    pub link: Option<u64>,
    /// The layer the entry goes to (0 unless a transform plans layers).
    pub layer: u32,
}

impl Entry {
    /// An entry of `kind` at `path`: owned by root, mtime 0, mode 0755 for
    /// a directory, 0777 for a symlink, 0644 otherwise.
    #[must_use]
    pub fn new(path: impl Into<Vec<u8>>, kind: Kind) -> Self {
        Entry {
            path: path.into(),
            kind,
            target: Vec::new(),
            major: 0,
            minor: 0,
            mode: match kind {
                Kind::Dir => 0o755,
                Kind::Symlink => 0o777,
                _ => 0o644,
            },
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
            size: 0,
            content: Content::None,
            link: None,
            layer: 0,
        }
    }

    /// A regular file holding `bytes`.
    #[must_use]
    pub fn file(path: impl Into<Vec<u8>>, bytes: impl Into<Vec<u8>>) -> Self {
        let bytes = bytes.into();
        let mut e = Entry::new(path, Kind::File);
        e.size = bytes.len() as u64;
        e.content = Content::Bytes(bytes);
        e
    }

    /// A directory.
    #[must_use]
    pub fn dir(path: impl Into<Vec<u8>>) -> Self {
        Entry::new(path, Kind::Dir)
    }

    /// A symlink to `target`.
    #[must_use]
    pub fn symlink(path: impl Into<Vec<u8>>, target: impl Into<Vec<u8>>) -> Self {
        let mut e = Entry::new(path, Kind::Symlink);
        e.target = target.into();
        e
    }

    /// The path as text (lossy for paths that are not UTF-8).
    pub fn path_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.path)
    }

    fn from_record(r: EntryRecord) -> Self {
        let content = match r.content {
            content::HOST => Content::Host(r.key),
            content::SOURCE => Content::Key(r.key),
            content::BYTES => Content::Bytes(r.bytes.into_vec()),
            _ => Content::None,
        };
        Entry {
            path: r.path.into_vec(),
            kind: Kind::from_code(r.kind),
            target: r.target.into_vec(),
            major: r.major,
            minor: r.minor,
            mode: r.mode,
            uid: r.uid,
            gid: r.gid,
            mtime: r.mtime,
            xattrs: r
                .xattrs
                .into_iter()
                .map(|Tuple2(k, v)| (k.into_vec(), v.into_vec()))
                .collect(),
            size: r.size,
            content,
            link: r.link.into_option(),
            layer: r.layer,
        }
    }

    fn to_record(&self) -> EntryRecord {
        let (code, key, bytes) = match &self.content {
            Content::None => (content::NONE, 0, RVec::new()),
            Content::Host(n) => (content::HOST, *n, RVec::new()),
            Content::Key(k) => (content::SOURCE, *k, RVec::new()),
            Content::Bytes(b) => (content::BYTES, 0, RVec::from(b.as_slice())),
        };
        EntryRecord {
            path: RVec::from(self.path.as_slice()),
            kind: self.kind.code(),
            target: RVec::from(self.target.as_slice()),
            major: self.major,
            minor: self.minor,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            xattrs: self
                .xattrs
                .iter()
                .map(|(k, v)| Tuple2(RVec::from(k.as_slice()), RVec::from(v.as_slice())))
                .collect(),
            size: self.size,
            link: self.link.into(),
            layer: self.layer,
            content: code,
            key,
            bytes,
        }
    }
}

// ---------------------------------------------------------------------------
// The draft handle

/// The image being assembled, kept by treeport: a source fills it, a
/// transform edits it, a sink reads the finished tree through
/// [`Image::layer_entries`].
///
/// What the host does, so nothing is a surprise:
/// - Entries are numbered `0..len()`; numbers stay valid for the whole
///   call. A removed entry reads as `None`; [`Draft::put`] of a new path
///   gets the next number. After the call treeport sorts the tree.
/// - [`Draft::put`] of a path that exists replaces that entry's fields;
///   anything treeport keeps that [`Entry`] does not show (an entry's place
///   in an OSTree commit's object order) stays.
/// - Missing parent directories are added after the call (mode 0755, owned
///   by root, the child's mtime); an entry below a symlink or a file is an
///   error.
/// - A file's size is taken from [`Content::Host`] and [`Content::Bytes`]
///   content; modes are masked to `0o7777`; xattrs are sorted.
/// - mtimes are kept as given; `--timestamp` and `SOURCE_DATE_EPOCH`
///   clamp them when the image is encoded.
/// - Removing a directory removes everything below it.
pub struct Draft(DraftBox);

impl Draft {
    /// Wraps the host's handle.
    #[doc(hidden)]
    pub fn from_box(b: DraftBox) -> Self {
        Draft(b)
    }

    /// How many entry numbers there are (removed entries included).
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// True when the draft has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// False when the draft can only be read (a sink's finished tree).
    pub fn is_writable(&self) -> bool {
        !self.0.read_only()
    }

    /// Entry number `n`, unless removed.
    pub fn entry(&self, n: u64) -> Option<Entry> {
        self.0.get(n).into_option().map(Entry::from_record)
    }

    /// The number of the entry at `path` (no leading slash).
    pub fn find(&self, path: &[u8]) -> Option<u64> {
        self.0.find(trim(path).into()).into_option()
    }

    /// The entry at `path` (a leading slash is ignored).
    pub fn get(&self, path: impl AsRef<[u8]>) -> Option<Entry> {
        self.find(path.as_ref()).and_then(|n| self.entry(n))
    }

    /// Every entry, in the order of their numbers (tree order for what the
    /// host gave, then what was added).
    pub fn entries(&self) -> impl Iterator<Item = Entry> + '_ {
        (0..self.len()).filter_map(|n| self.entry(n))
    }

    /// Streams the content of `entry` ([`Content::Host`] and
    /// [`Content::Bytes`]; a source opens its own keys).
    pub fn open(&self, entry: &Entry) -> PluginResult<Box<dyn Read + Send>> {
        match &entry.content {
            Content::Host(n) => lift(self.0.open(*n)).map(|r| Box::new(StreamRead(r)) as _),
            Content::Bytes(b) => Ok(Box::new(io::Cursor::new(b.clone()))),
            Content::None => Ok(Box::new(io::empty())),
            Content::Key(_) => Err(PluginError::new(format!(
                "'{}': a source's key is opened by the source",
                entry.path_str()
            ))),
        }
    }

    /// Reads the regular file at `path`, following symlinks inside the tree
    /// (at most 40), at most `limit` bytes. `None` when there is no such
    /// file.
    pub fn read_file(&self, path: impl AsRef<[u8]>, limit: u64) -> PluginResult<Option<Vec<u8>>> {
        let Some(entry) = self.resolve(path.as_ref()) else {
            return Ok(None);
        };
        if entry.size > limit {
            return Err(PluginError::new(format!(
                "'{}' is {} bytes, more than the {limit} asked for",
                entry.path_str(),
                entry.size
            )));
        }
        let mut out = Vec::new();
        self.open(&entry)?.take(limit).read_to_end(&mut out)?;
        Ok(Some(out))
    }

    /// The regular file `path` names, with symlinks inside the tree
    /// followed (absolute targets from the tree's root).
    pub fn resolve(&self, path: &[u8]) -> Option<Entry> {
        let mut current = normalize(trim(path));
        for _ in 0..40 {
            let entry = self.get(&current)?;
            match entry.kind {
                Kind::Symlink => {
                    current = if entry.target.starts_with(b"/") {
                        normalize(&entry.target)
                    } else {
                        let dir = current
                            .iter()
                            .rposition(|&b| b == b'/')
                            .map_or(&[][..], |i| &current[..i]);
                        let mut joined = dir.to_vec();
                        joined.push(b'/');
                        joined.extend_from_slice(&entry.target);
                        normalize(&joined)
                    };
                }
                Kind::File => return Some(entry),
                _ => return None,
            }
        }
        None
    }

    /// Adds `entry`, or replaces the entry at its path. Returns its number.
    pub fn put(&mut self, entry: &Entry) -> PluginResult<u64> {
        lift(self.0.put(entry.to_record()))
    }

    /// Adds (or replaces) a regular file holding `bytes`, mode `mode`.
    pub fn add_file(
        &mut self,
        path: impl Into<Vec<u8>>,
        bytes: impl Into<Vec<u8>>,
        mode: u32,
    ) -> PluginResult<u64> {
        let mut e = Entry::file(path, bytes);
        e.mode = mode;
        self.put(&e)
    }

    /// Removes the entry at `path` (a directory with everything below it).
    /// False when there was none.
    pub fn remove(&mut self, path: impl AsRef<[u8]>) -> PluginResult<bool> {
        match self.find(path.as_ref()) {
            Some(n) => lift(self.0.remove(n)).map(|()| true),
            None => Ok(false),
        }
    }

    /// Every label of the image config.
    pub fn labels(&self) -> Vec<(String, String)> {
        pairs(self.0.labels())
    }

    /// The value of a label.
    pub fn label(&self, key: &str) -> Option<String> {
        self.labels()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// Sets a label, replacing an earlier value.
    pub fn set_label(&mut self, key: &str, value: &str) -> PluginResult<()> {
        lift(self.0.set_label(key.into(), ROption::RSome(value.into())))
    }

    /// Removes a label.
    pub fn remove_label(&mut self, key: &str) -> PluginResult<()> {
        lift(self.0.set_label(key.into(), ROption::RNone))
    }

    /// Every annotation of the manifest.
    pub fn annotations(&self) -> Vec<(String, String)> {
        pairs(self.0.annotations())
    }

    /// Sets (`Some`) or removes (`None`) a manifest annotation.
    pub fn set_annotation(&mut self, key: &str, value: Option<&str>) -> PluginResult<()> {
        lift(
            self.0
                .set_annotation(key.into(), value.map(RStr::from).into()),
        )
    }

    /// A config field by name: `architecture`, `os`, `variant`, `author`,
    /// `user`, `env`, `entrypoint`, `cmd`, `working-dir`, `exposed-ports`,
    /// `volumes`, `stop-signal`. Single values are one-element lists.
    pub fn config(&self, field: &str) -> PluginResult<Option<Vec<String>>> {
        lift(self.0.config(field.into())).map(|o| {
            o.into_option()
                .map(|v| v.into_iter().map(String::from).collect())
        })
    }

    /// Sets (`Some`) or clears (`None`) a config field (see
    /// [`Draft::config`]).
    pub fn set_config(&mut self, field: &str, value: Option<&[&str]>) -> PluginResult<()> {
        let value = value.map(|v| v.iter().map(|s| RString::from(*s)).collect::<RVec<_>>());
        lift(self.0.set_config(field.into(), value.into()))
    }

    /// How many layers the plan has (at least one).
    pub fn layer_count(&self) -> u32 {
        self.0.layer_count()
    }

    /// Appends a layer to the plan; returns its number.
    pub fn add_layer(&mut self) -> PluginResult<u32> {
        lift(self.0.add_layer())
    }

    /// A layer's annotations.
    pub fn layer_annotations(&self, layer: u32) -> Vec<(String, String)> {
        pairs(self.0.layer_annotations(layer))
    }

    /// Sets (`Some`) or removes (`None`) an annotation of a layer.
    pub fn set_layer_annotation(
        &mut self,
        layer: u32,
        key: &str,
        value: Option<&str>,
    ) -> PluginResult<()> {
        lift(
            self.0
                .set_layer_annotation(layer, key.into(), value.map(RStr::from).into()),
        )
    }

    /// A layer's history text.
    pub fn layer_created_by(&self, layer: u32) -> String {
        self.0.layer_created_by(layer).into()
    }

    /// Sets a layer's history text.
    pub fn set_layer_created_by(&mut self, layer: u32, text: &str) -> PluginResult<()> {
        lift(self.0.set_layer_created_by(layer, text.into()))
    }

    /// The source's own time (an OSTree commit's), if any.
    pub fn source_time(&self) -> Option<i64> {
        self.0.source_time().into_option()
    }

    /// Sets the source's own time (the image time unless `--timestamp`).
    pub fn set_source_time(&mut self, time: Option<i64>) -> PluginResult<()> {
        lift(self.0.set_source_time(time.into()))
    }
}

fn trim(path: &[u8]) -> &[u8] {
    let mut p = path;
    while let [b'/', rest @ ..] = p {
        p = rest;
    }
    p
}

/// Resolves `.` and `..` lexically, never above the root.
fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for p in path.split(|&b| b == b'/') {
        match p {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join(&b'/')
}

fn pairs(p: ffi::Pairs) -> Vec<(String, String)> {
    p.into_iter()
        .map(|Tuple2(k, v)| (k.into_string(), v.into_string()))
        .collect()
}

// ---------------------------------------------------------------------------
// The finished image, for sinks

/// A layer of a finished image.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:...` of the blob.
    pub digest: String,
    /// `sha256:...` of the uncompressed tar.
    pub diff_id: String,
    /// The blob's size.
    pub size: u64,
    /// The uncompressed tar's size.
    pub tar_size: u64,
    /// The OCI media type (`...tar+gzip`, `...tar+zstd`, `...tar`).
    pub media_type: String,
    /// The layer descriptor's annotations.
    pub annotations: Vec<(String, String)>,
}

/// A finished image, as a sink receives it: manifest, config, layers, the
/// blobs, and each layer's members decoded.
pub struct Image(ImageObj_TO<'static, RBox<()>>);

impl Image {
    #[doc(hidden)]
    pub fn from_box(b: ImageObj_TO<'static, RBox<()>>) -> Self {
        Image(b)
    }

    /// The manifest's bytes, exactly as stored and pushed.
    pub fn manifest(&self) -> Vec<u8> {
        self.0.manifest().into_vec()
    }

    /// `sha256:...` of the manifest.
    pub fn manifest_digest(&self) -> String {
        self.0.manifest_digest().into()
    }

    /// The config's bytes.
    pub fn config(&self) -> Vec<u8> {
        self.0.config().into_vec()
    }

    /// `sha256:...` of the config.
    pub fn config_digest(&self) -> String {
        self.0.config_digest().into()
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> Vec<Layer> {
        self.0
            .layers()
            .into_iter()
            .map(|l| Layer {
                digest: l.digest.into(),
                diff_id: l.diff_id.into(),
                size: l.size,
                tar_size: l.tar_size,
                media_type: l.media_type.into(),
                annotations: pairs(l.annotations),
            })
            .collect()
    }

    /// The image's architecture.
    pub fn architecture(&self) -> String {
        self.0.architecture().into()
    }

    /// The image's OS.
    pub fn os(&self) -> String {
        self.0.os().into()
    }

    /// The image time, seconds since the epoch.
    pub fn created(&self) -> i64 {
        self.0.created()
    }

    /// A local file holding the blob, when there is one (to hardlink or
    /// copy it).
    pub fn blob_path(&self, digest: &str) -> Option<String> {
        self.0
            .blob_path(digest.into())
            .into_option()
            .map(String::from)
    }

    /// Streams a blob (compressed, as stored).
    pub fn open_blob(&self, digest: &str) -> PluginResult<impl Read + use<>> {
        lift(self.0.open_blob(digest.into())).map(StreamRead)
    }

    /// The members of layer `layer` (0 is the bottom), decompressed and
    /// decoded by treeport: no tar, gzip or zstd code needed in the plugin.
    pub fn layer_entries(&self, layer: u32) -> PluginResult<LayerEntries> {
        lift(self.0.layer_entries(layer)).map(LayerEntries)
    }
}

/// The members of one layer, in the order the layer stores them. Paths are
/// relative, without `./`. A hardlink member is a [`Kind::File`] with no
/// content, size 0 and [`Entry::target`] naming the member it shares its
/// inode with. Whiteouts (`.wh.NAME`) are members like any other.
pub struct LayerEntries(LayerEntriesObj_TO<'static, RBox<()>>);

impl LayerEntries {
    /// The next member, or `None` at the end. A file's bytes are read with
    /// `Read` on `self` before the next call (what is not read is skipped).
    pub fn next_entry(&mut self) -> PluginResult<Option<Entry>> {
        lift(self.0.next()).map(|o| o.into_option().map(Entry::from_record))
    }
}

impl Read for LayerEntries {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(RSliceMut::from_mut_slice(buf))
            .into_result()
            .map_err(|e| io::Error::other(e.message.to_string()))
    }
}

// ---------------------------------------------------------------------------
// Options

/// The type of an option's value; the host checks values before the plugin
/// sees them.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionKind {
    /// Any text.
    String,
    /// A decimal integer (`i64`).
    Integer,
    /// `true` or `false` (a bare `KEY` means true).
    Boolean,
    /// Text that may be given several times; every value is kept, in order.
    List,
    /// A kind a later interface version added.
    Other(u8),
}

impl OptionKind {
    /// The code that crosses the boundary.
    #[doc(hidden)]
    pub fn code(self) -> u8 {
        match self {
            OptionKind::String => 0,
            OptionKind::Integer => 1,
            OptionKind::Boolean => 2,
            OptionKind::List => 3,
            OptionKind::Other(c) => c,
        }
    }

    /// The kind of a code.
    #[doc(hidden)]
    pub fn from_code(code: u8) -> Self {
        match code {
            0 => OptionKind::String,
            1 => OptionKind::Integer,
            2 => OptionKind::Boolean,
            3 => OptionKind::List,
            c => OptionKind::Other(c),
        }
    }

    /// How the kind is named in help and errors.
    pub fn name(self) -> &'static str {
        match self {
            OptionKind::String => "string",
            OptionKind::Integer => "integer",
            OptionKind::Boolean => "boolean",
            OptionKind::List => "list",
            OptionKind::Other(_) => "value",
        }
    }
}

/// One option a plugin takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    /// The key (`KEY=VALUE`).
    pub name: &'static str,
    /// The value's type.
    pub kind: OptionKind,
    /// One line for `treeport plugins list`.
    pub help: &'static str,
}

impl OptionSpec {
    /// An option.
    #[must_use]
    pub const fn new(name: &'static str, kind: OptionKind, help: &'static str) -> Self {
        OptionSpec { name, kind, help }
    }
}

/// The options a stage was given, parsed and checked by treeport against
/// the plugin's [`OptionSpec`]s: every key is declared, integers parse,
/// booleans are `true` or `false`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options(Vec<(String, Vec<String>)>);

impl Options {
    /// Options from name and values.
    pub fn new(items: Vec<(String, Vec<String>)>) -> Self {
        Options(items)
    }

    /// The last value of a string (or any) option.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.last())
            .map(String::as_str)
    }

    /// An integer option.
    pub fn integer(&self, name: &str) -> PluginResult<Option<i64>> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| PluginError::usage(format!("{name}={v}: expected an integer")))
            })
            .transpose()
    }

    /// A boolean option (false when not given).
    pub fn flag(&self, name: &str) -> PluginResult<bool> {
        match self.get(name) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(PluginError::usage(format!(
                "{name}={v}: expected true or false"
            ))),
        }
    }

    /// Every value of a list option, in order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| v.iter().map(String::as_str))
            .collect()
    }

    /// Every option given, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    fn from_values(v: OptionValues) -> Self {
        Options(
            v.into_iter()
                .map(|Tuple2(k, vs)| (k.into_string(), vs.into_iter().map(String::from).collect()))
                .collect(),
        )
    }
}

// ---------------------------------------------------------------------------
// What plugin authors implement

/// A source: fills a draft with a tree.
pub trait Source: Send + 'static {
    /// Reads the tree into `draft`. File entries name their content with
    /// [`Content::Key`] (opened later with [`Source::open`]; give the
    /// [`Entry::size`]) or carry small content as [`Content::Bytes`].
    fn read(&mut self, draft: &mut Draft) -> PluginResult<()>;

    /// Opens the content stored under `key`. Called from encoder threads,
    /// one stream per call, possibly several at once.
    fn open(&self, key: u64) -> PluginResult<Box<dyn Read + Send>>;
}

/// A transform: edits the image through its draft.
pub trait Transform: Send + 'static {
    /// Edits the image. What is not touched stays as it was.
    fn apply(&mut self, draft: &mut Draft) -> PluginResult<()>;
}

/// A sink: writes a finished image.
pub trait Sink: Send + 'static {
    /// Checks the destination before any work is done.
    fn prepare(&mut self) -> PluginResult<()> {
        Ok(())
    }

    /// Writes the image and says where it went.
    fn write(&mut self, image: &Image) -> PluginResult<String>;
}

/// A plugin instance, as a factory makes it.
pub enum Made {
    /// A source.
    Source(Box<dyn Source>),
    /// A transform.
    Transform(Box<dyn Transform>),
    /// A sink.
    Sink(Box<dyn Sink>),
}

/// Makes a plugin instance from the whole selector (`KIND:REST`) and the
/// options.
pub type MakeFn = fn(&str, &Options) -> PluginResult<Made>;

/// One plugin a library provides.
#[derive(Clone, Copy)]
pub struct Plugin {
    /// Which stage it fills.
    pub role: Role,
    /// The selector's kind (`KIND:` or a bare `KIND` for transforms).
    pub kind: &'static str,
    /// One line for `treeport plugins list`.
    pub description: &'static str,
    /// The selector's form, e.g. `cpio:FILE`.
    pub usage: &'static str,
    /// Its own version, shown by `treeport plugins list`.
    pub version: &'static str,
    /// The options it takes. For a transform, `--transform KIND:KEY=VALUE,...`
    /// gives them; for sources and sinks `--source-opt`/`--sink-opt`; a
    /// pipeline file gives typed values.
    pub options: &'static [OptionSpec],
    /// Makes an instance.
    pub make: MakeFn,
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
struct ReadAdapter<R>(R);

impl<R: Read + Send> ReadObj for ReadAdapter<R> {
    fn read(&mut self, mut buf: RSliceMut<'_, u8>) -> Res<usize> {
        guard(|| self.0.read(buf.as_mut_slice()).map_err(PluginError::from))
    }
}

/// Boxes a reader for the boundary.
#[doc(hidden)]
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
#[doc(hidden)]
pub fn guard<T>(f: impl FnOnce() -> PluginResult<T>) -> Res<T> {
    quiet_panics();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.to_record()),
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
            RResult::RErr(PluginError::new(format!("panicked: {msg}{at}")).to_record())
        }
    }
}

// ---------------------------------------------------------------------------
// Glue: the author's traits behind the boundary's objects.

#[doc(hidden)]
pub mod glue {
    use super::{
        Draft, DraftBox, Image, ImageObj_TO, Made, OptionRecord, OptionValues, Options, Plugin,
        PluginBox, PluginError, PluginObj, PluginObj_TO, RBox, RStr, RString, RVec, ReaderBox, Res,
        Sink, SinkObj, SinkObj_TO, Source, SourceObj, SourceObj_TO, TD_Opaque, Transform,
        TransformObj, TransformObj_TO, guard, reader_box,
    };

    struct SourceGlue(Box<dyn Source>);

    impl SourceObj for SourceGlue {
        fn read(&mut self, draft: DraftBox) -> Res<()> {
            let mut draft = Draft(draft);
            guard(|| self.0.read(&mut draft))
        }

        fn open(&self, key: u64) -> Res<ReaderBox> {
            guard(|| self.0.open(key).map(reader_box))
        }
    }

    struct TransformGlue(Box<dyn Transform>);

    impl TransformObj for TransformGlue {
        fn apply(&mut self, draft: DraftBox) -> Res<()> {
            let mut draft = Draft(draft);
            guard(|| self.0.apply(&mut draft))
        }
    }

    struct SinkGlue(Box<dyn Sink>);

    impl SinkObj for SinkGlue {
        fn prepare(&mut self) -> Res<()> {
            guard(|| self.0.prepare())
        }

        fn write(&mut self, image: ImageObj_TO<'static, RBox<()>>) -> Res<RString> {
            let image = Image(image);
            guard(|| self.0.write(&image).map(RString::from))
        }
    }

    struct PluginGlue(Plugin);

    impl PluginGlue {
        fn made(&self, selector: RStr<'_>, options: OptionValues) -> Result<Made, PluginError> {
            (self.0.make)(selector.as_str(), &Options::from_values(options))
        }

        fn wrong_role(&self) -> PluginError {
            PluginError::new(format!(
                "'{}' made a plugin of another role than it declared",
                self.0.kind
            ))
        }
    }

    impl PluginObj for PluginGlue {
        fn role(&self) -> u8 {
            self.0.role.code()
        }

        fn kind(&self) -> RString {
            self.0.kind.into()
        }

        fn description(&self) -> RString {
            self.0.description.into()
        }

        fn usage(&self) -> RString {
            self.0.usage.into()
        }

        fn version(&self) -> RString {
            self.0.version.into()
        }

        fn options(&self) -> RVec<OptionRecord> {
            self.0
                .options
                .iter()
                .map(|o| OptionRecord {
                    name: o.name.into(),
                    kind: o.kind.code(),
                    help: o.help.into(),
                })
                .collect()
        }

        fn make_source(
            &self,
            selector: RStr<'_>,
            options: OptionValues,
        ) -> Res<SourceObj_TO<'static, RBox<()>>> {
            guard(|| match self.made(selector, options)? {
                Made::Source(s) => Ok(SourceObj_TO::from_value(SourceGlue(s), TD_Opaque)),
                _ => Err(self.wrong_role()),
            })
        }

        fn make_transform(
            &self,
            selector: RStr<'_>,
            options: OptionValues,
        ) -> Res<TransformObj_TO<'static, RBox<()>>> {
            guard(|| match self.made(selector, options)? {
                Made::Transform(t) => Ok(TransformObj_TO::from_value(TransformGlue(t), TD_Opaque)),
                _ => Err(self.wrong_role()),
            })
        }

        fn make_sink(
            &self,
            selector: RStr<'_>,
            options: OptionValues,
        ) -> Res<SinkObj_TO<'static, RBox<()>>> {
            guard(|| match self.made(selector, options)? {
                Made::Sink(s) => Ok(SinkObj_TO::from_value(SinkGlue(s), TD_Opaque)),
                _ => Err(self.wrong_role()),
            })
        }
    }

    /// The plugins of a library, for the root module.
    pub fn plugins(list: fn() -> Vec<Plugin>) -> Res<RVec<PluginBox>> {
        guard(|| {
            Ok(list()
                .into_iter()
                .map(|p| PluginObj_TO::from_value(PluginGlue(p), TD_Opaque))
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
        $crate::export_plugins!(
            $plugins,
            version = ($crate::INTERFACE_MAJOR, $crate::INTERFACE_MINOR)
        );
    };
    ($plugins:path, version = ($major:expr, $minor:expr)) => {
        extern "C" fn __treeport_interface() -> $crate::abi_stable::std_types::Tuple2<u32, u32> {
            $crate::abi_stable::std_types::Tuple2($major, $minor)
        }

        extern "C" fn __treeport_plugins() -> $crate::abi_stable::std_types::RResult<
            $crate::abi_stable::std_types::RVec<$crate::ffi::PluginBox>,
            $crate::ffi::ErrorRecord,
        > {
            $crate::glue::plugins($plugins)
        }

        /// The root module treeport loads.
        #[$crate::abi_stable::export_root_module]
        pub fn __treeport_root_module() -> $crate::ffi::PluginModRef {
            use $crate::abi_stable::prefix_type::PrefixTypeTrait;
            $crate::ffi::PluginMod {
                interface: __treeport_interface,
                plugins: __treeport_plugins,
            }
            .leak_into_prefix()
        }
    };
}

#[cfg(test)]
mod tests {
    use abi_stable::StableAbi;
    use abi_stable::abi_stability::abi_checking::check_layout_compatibility;

    /// What a plugin built today exports must load where 1.0's layout is
    /// expected: the current boundary only ever extends the released one.
    #[test]
    fn the_boundary_extends_the_released_1_0_layout() {
        check_layout_compatibility(
            <crate::released::v1_0::PluginModRef as StableAbi>::LAYOUT,
            <crate::ffi::PluginModRef as StableAbi>::LAYOUT,
        )
        .unwrap_or_else(|e| panic!("the boundary no longer extends 1.0:\n{e}"));
    }
}
