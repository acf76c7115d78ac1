//! The host's side of the boundary: the draft a plugin edits in place
//! ([`DraftHandle`]), the finished image a loaded sink reads
//! ([`HostImage`]), and a loaded source's content.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use abi_stable::sabi_trait::prelude::TD_Opaque;
use abi_stable::std_types::{
    RBox, ROption, RResult, RSlice, RSliceMut, RStr, RString, RVec, Tuple2,
};
use treeport_plugin_api::ffi::{
    self, DraftBox, DraftObj, DraftObj_TO, EntryRecord, ErrorRecord, ImageObj, LayerEntriesObj,
    LayerEntriesObj_TO, LayerRecord, ReaderBox, Res, content as code,
};
use treeport_plugin_api::{ErrorKind, Kind as ApiKind, PluginError, reader_box};

use crate::digest::Digest;
use crate::error::Error;
use crate::image::{BuiltImage, ImageConfig, ImageDraft, LayerInfo};
use crate::layer::untar::{Kind as TarKind, Untar};
use crate::tree::{Content, ContentStore, Entry, EntryKind, Tree, TreePath};

fn fail<T>(kind: ErrorKind, message: impl Into<String>) -> Res<T> {
    RResult::RErr(PluginError::with_kind(kind, message).to_record())
}

fn usage<T>(message: impl Into<String>) -> Res<T> {
    fail(ErrorKind::Usage, message)
}

/// An error of ours as the boundary carries it.
fn record(e: &Error) -> ErrorRecord {
    let kind = if e.is_usage() {
        ErrorKind::Usage
    } else {
        ErrorKind::Failed
    };
    PluginError::with_kind(kind, e.to_string()).to_record()
}

fn pairs(map: &BTreeMap<String, String>) -> ffi::Pairs {
    map.iter()
        .map(|(k, v)| Tuple2(RString::from(k.as_str()), RString::from(v.as_str())))
        .collect()
}

fn set_pair(map: &mut BTreeMap<String, String>, key: RStr<'_>, value: ROption<RStr<'_>>) {
    match value {
        ROption::RSome(v) => {
            map.insert(key.to_string(), v.to_string());
        }
        ROption::RNone => {
            map.remove(key.as_str());
        }
    }
}

/// The draft and what the handle keeps beside it while a plugin runs.
struct State {
    draft: ImageDraft,
    /// Entry numbers removed during the call.
    removed: Vec<bool>,
    /// Paths added during the call, by entry number (the entries before
    /// `sorted` are in tree order and found by binary search).
    added: HashMap<Vec<u8>, usize>,
    sorted: usize,
    read_only: bool,
    /// Content of a loaded source, for its keys.
    source: Option<Arc<dyn ContentStore>>,
}

impl State {
    fn live(&self, i: usize) -> bool {
        i < self.draft.tree.len() && !self.removed.get(i).copied().unwrap_or(false)
    }

    fn find(&self, path: &[u8]) -> Option<usize> {
        if let Some(&i) = self.added.get(path) {
            return self.live(i).then_some(i);
        }
        let path = TreePath::parse(path).ok()?;
        let entries = &self.draft.tree.entries()[..self.sorted];
        let i = entries.binary_search_by(|e| e.path.tree_cmp(&path)).ok()?;
        self.live(i).then_some(i)
    }

    fn mark_removed(&mut self, i: usize) {
        if self.removed.len() < self.draft.tree.len() {
            self.removed.resize(self.draft.tree.len(), false);
        }
        self.removed[i] = true;
    }

    fn check_writable(&self) -> Res<()> {
        if self.read_only {
            usage("this draft is read-only (a sink reads the finished image)")
        } else {
            RResult::ROk(())
        }
    }

    fn layer(&self, layer: u32) -> std::result::Result<usize, ErrorRecord> {
        let n = self.draft.layers.len();
        if (layer as usize) < n {
            Ok(layer as usize)
        } else {
            Err(PluginError::usage(format!(
                "layer {layer} does not exist (the plan has {n}; add_layer makes more)"
            ))
            .to_record())
        }
    }

    /// The entry a record describes, from `base` (the entry at the same
    /// path, whose fields the record does not name stay).
    fn entry_from(
        &self,
        r: &EntryRecord,
        base: Option<&Entry>,
    ) -> std::result::Result<Entry, String> {
        let name = String::from_utf8_lossy(&r.path).into_owned();
        let path = TreePath::parse(&r.path).map_err(|e| e.to_string())?;
        let kind = match ApiKind::from_code(r.kind) {
            ApiKind::File => EntryKind::File,
            ApiKind::Dir => EntryKind::Dir,
            ApiKind::Symlink => EntryKind::Symlink(r.target.to_vec()),
            ApiKind::CharDevice => EntryKind::CharDevice {
                major: r.major,
                minor: r.minor,
            },
            ApiKind::BlockDevice => EntryKind::BlockDevice {
                major: r.major,
                minor: r.minor,
            },
            ApiKind::Fifo => EntryKind::Fifo,
            _ => {
                return Err(format!(
                    "'{name}': entry kind {} is unknown to this treeport",
                    r.kind
                ));
            }
        };
        let mut entry = base
            .cloned()
            .unwrap_or_else(|| Entry::new(path, kind.clone()));
        entry.kind = kind;
        entry.mode = r.mode & 0o7777;
        entry.uid = r.uid;
        entry.gid = r.gid;
        entry.mtime = r.mtime;
        entry.xattrs = r
            .xattrs
            .iter()
            .map(|Tuple2(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        entry.xattrs.sort();
        entry.link = r.link.into_option();
        entry.layer = self
            .layer(r.layer)
            .map_err(|e| format!("'{name}': {}", e.message))?;
        (entry.size, entry.content) = if entry.is_file() {
            match r.content {
                code::NONE => (0, Content::None),
                code::HOST => {
                    let from = usize::try_from(r.key)
                        .ok()
                        .and_then(|k| self.draft.tree.entries().get(k))
                        .filter(|e| e.is_file())
                        .ok_or_else(|| {
                            format!(
                                "'{name}' takes the content of entry {}, which is no file",
                                r.key
                            )
                        })?;
                    (from.size, from.content.clone())
                }
                code::SOURCE => match &self.source {
                    Some(store) => (r.size, Content::Stored(Arc::clone(store), r.key)),
                    None => {
                        return Err(format!(
                            "'{name}' names a source's content key, but this is no source"
                        ));
                    }
                },
                code::BYTES => (
                    r.bytes.len() as u64,
                    Content::Bytes(Arc::from(r.bytes.as_slice())),
                ),
                other => return Err(format!("'{name}': content code {other} is unknown")),
            }
        } else {
            (0, Content::None)
        };
        Ok(entry)
    }
}

fn kind_code(kind: &EntryKind) -> (u8, &[u8], u32, u32) {
    match kind {
        EntryKind::File => (ApiKind::File.code(), &[], 0, 0),
        EntryKind::Dir => (ApiKind::Dir.code(), &[], 0, 0),
        EntryKind::Symlink(t) => (ApiKind::Symlink.code(), t, 0, 0),
        EntryKind::CharDevice { major, minor } => (ApiKind::CharDevice.code(), &[], *major, *minor),
        EntryKind::BlockDevice { major, minor } => {
            (ApiKind::BlockDevice.code(), &[], *major, *minor)
        }
        EntryKind::Fifo => (ApiKind::Fifo.code(), &[], 0, 0),
    }
}

/// An entry as the boundary carries it; its content is the host's, under
/// the entry's own number.
fn entry_record(e: &Entry, number: u64) -> EntryRecord {
    let (kind, target, major, minor) = kind_code(&e.kind);
    let has_content = !matches!(e.content, Content::None);
    EntryRecord {
        path: RVec::from(e.path.as_bytes()),
        kind,
        target: RVec::from(target),
        major,
        minor,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        xattrs: e
            .xattrs
            .iter()
            .map(|(k, v)| Tuple2(RVec::from(k.as_slice()), RVec::from(v.as_slice())))
            .collect(),
        size: e.size,
        link: e.link.into(),
        layer: u32::try_from(e.layer).unwrap_or(u32::MAX),
        content: if has_content { code::HOST } else { code::NONE },
        key: number,
        bytes: RVec::new(),
    }
}

/// A draft shared with a plugin for one call. The plugin's handle and the
/// host's refer to the same state; [`DraftHandle::finish`] takes the draft
/// back (a handle a plugin kept reads as empty from then on).
#[derive(Clone)]
pub struct DraftHandle(Arc<Mutex<State>>);

impl DraftHandle {
    /// Hands `draft` out for editing (`source`: a loaded source's content,
    /// for its keys).
    #[must_use]
    pub fn new(draft: ImageDraft, source: Option<Arc<dyn ContentStore>>, read_only: bool) -> Self {
        let sorted = draft.tree.len();
        DraftHandle(Arc::new(Mutex::new(State {
            draft,
            removed: Vec::new(),
            added: HashMap::new(),
            sorted,
            read_only,
            source,
        })))
    }

    /// The handle as the boundary carries it.
    #[must_use]
    pub fn to_box(&self) -> DraftBox {
        DraftObj_TO::from_value(self.clone(), TD_Opaque)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic inside a plugin is caught at its side; a poisoned lock
        // would be a host bug, and the state is still consistent then.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the draft back with removed entries dropped. The pipeline puts
    /// the tree in order (and adds missing parents) after every stage.
    #[must_use]
    pub fn finish(&self) -> ImageDraft {
        let mut state = self.state();
        let mut draft = std::mem::replace(&mut state.draft, ImageDraft::new(Tree::new()));
        let removed = std::mem::take(&mut state.removed);
        state.added.clear();
        state.sorted = 0;
        state.read_only = true;
        drop(state);
        if removed.contains(&true) {
            let mut i = 0;
            draft.tree.entries_mut().retain(|_| {
                let keep = !removed.get(i).copied().unwrap_or(false);
                i += 1;
                keep
            });
        }
        draft
    }
}

impl DraftObj for DraftHandle {
    fn len(&self) -> u64 {
        self.state().draft.tree.len() as u64
    }

    fn find(&self, path: RSlice<'_, u8>) -> ROption<u64> {
        self.state().find(path.as_slice()).map(|i| i as u64).into()
    }

    fn get(&self, index: u64) -> ROption<EntryRecord> {
        let state = self.state();
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if !state.live(i) {
            return ROption::RNone;
        }
        ROption::RSome(entry_record(&state.draft.tree.entries()[i], index))
    }

    fn open(&self, index: u64) -> Res<ReaderBox> {
        let content = {
            let state = self.state();
            match usize::try_from(index)
                .ok()
                .and_then(|i| state.draft.tree.entries().get(i))
            {
                Some(e) => e.content.clone(),
                None => return fail(ErrorKind::NotFound, format!("there is no entry {index}")),
            }
        };
        match content.open() {
            Ok(r) => RResult::ROk(reader_box(r)),
            Err(e) => RResult::RErr(record(&e)),
        }
    }

    fn put(&mut self, entry: EntryRecord) -> Res<u64> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        let existing = state.find(&entry.path);
        let base = existing.map(|i| &state.draft.tree.entries()[i]);
        let made = match state.entry_from(&entry, base) {
            Ok(e) => e,
            Err(message) => return usage(message),
        };
        if let Some(i) = existing {
            state.draft.tree.entries_mut()[i] = made;
            return RResult::ROk(i as u64);
        }
        let i = state.draft.tree.len();
        state.added.insert(made.path.as_bytes().to_vec(), i);
        state.draft.tree.push(made);
        RResult::ROk(i as u64)
    }

    fn remove(&mut self, index: u64) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if !state.live(i) {
            return fail(ErrorKind::NotFound, format!("there is no entry {index}"));
        }
        state.mark_removed(i);
        let (dir, is_dir) = {
            let e = &state.draft.tree.entries()[i];
            (e.path.clone(), e.is_dir())
        };
        if is_dir {
            // Sorted order puts a directory's subtree right after it.
            if i < state.sorted {
                let mut j = i + 1;
                while j < state.sorted && state.draft.tree.entries()[j].path.starts_with(&dir) {
                    state.mark_removed(j);
                    j += 1;
                }
            }
            let below: Vec<usize> = state
                .added
                .values()
                .copied()
                .filter(|&j| state.draft.tree.entries()[j].path.starts_with(&dir))
                .collect();
            for j in below {
                state.mark_removed(j);
            }
        }
        RResult::ROk(())
    }

    fn labels(&self) -> ffi::Pairs {
        pairs(&self.state().draft.config.labels)
    }

    fn set_label(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        set_pair(&mut state.draft.config.labels, key, value);
        RResult::ROk(())
    }

    fn annotations(&self) -> ffi::Pairs {
        pairs(&self.state().draft.annotations)
    }

    fn set_annotation(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        set_pair(&mut state.draft.annotations, key, value);
        RResult::ROk(())
    }

    fn config(&self, field: RStr<'_>) -> Res<ROption<RVec<RString>>> {
        match get_config(&self.state().draft.config, field.as_str()) {
            Ok(v) => RResult::ROk(
                v.map(|v| v.into_iter().map(RString::from).collect::<RVec<_>>())
                    .into(),
            ),
            Err(m) => usage(m),
        }
    }

    fn set_config(&mut self, field: RStr<'_>, value: ROption<RVec<RString>>) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        let value = value
            .into_option()
            .map(|v| v.into_iter().map(String::from).collect());
        match put_config(&mut state.draft.config, field.as_str(), value) {
            Ok(()) => RResult::ROk(()),
            Err(m) => usage(m),
        }
    }

    fn layer_count(&self) -> u32 {
        u32::try_from(self.state().draft.layers.len()).unwrap_or(u32::MAX)
    }

    fn add_layer(&mut self) -> Res<u32> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        state.draft.layers.push(LayerInfo::default());
        RResult::ROk(u32::try_from(state.draft.layers.len() - 1).unwrap_or(u32::MAX))
    }

    fn layer_annotations(&self, layer: u32) -> ffi::Pairs {
        let state = self.state();
        state
            .draft
            .layers
            .get(layer as usize)
            .map(|l| pairs(&l.annotations))
            .unwrap_or_default()
    }

    fn set_layer_annotation(
        &mut self,
        layer: u32,
        key: RStr<'_>,
        value: ROption<RStr<'_>>,
    ) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        match state.layer(layer) {
            Ok(i) => {
                set_pair(&mut state.draft.layers[i].annotations, key, value);
                RResult::ROk(())
            }
            Err(e) => RResult::RErr(e),
        }
    }

    fn layer_created_by(&self, layer: u32) -> RString {
        let state = self.state();
        state
            .draft
            .layers
            .get(layer as usize)
            .map(|l| RString::from(l.created_by.as_str()))
            .unwrap_or_default()
    }

    fn set_layer_created_by(&mut self, layer: u32, text: RStr<'_>) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        match state.layer(layer) {
            Ok(i) => {
                state.draft.layers[i].created_by = text.to_string();
                RResult::ROk(())
            }
            Err(e) => RResult::RErr(e),
        }
    }

    fn source_time(&self) -> ROption<i64> {
        self.state().draft.source_time.into()
    }

    fn set_source_time(&mut self, time: ROption<i64>) -> Res<()> {
        let mut state = self.state();
        if let RResult::RErr(e) = state.check_writable() {
            return RResult::RErr(e);
        }
        state.draft.source_time = time.into_option();
        RResult::ROk(())
    }

    fn read_only(&self) -> bool {
        self.state().read_only
    }
}

/// The config fields a plugin reads and sets by name.
pub const CONFIG_FIELDS: &[&str] = &[
    "architecture",
    "os",
    "variant",
    "author",
    "user",
    "env",
    "entrypoint",
    "cmd",
    "working-dir",
    "exposed-ports",
    "volumes",
    "stop-signal",
];

fn unknown_field(field: &str) -> String {
    format!(
        "config has no field '{field}' (valid: {})",
        CONFIG_FIELDS.join(", ")
    )
}

fn get_config(c: &ImageConfig, field: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let opt = |s: &Option<String>| s.as_ref().map(|s| vec![s.clone()]);
    Ok(match field {
        "architecture" => one(&c.architecture),
        "os" => one(&c.os),
        "variant" => opt(&c.variant),
        "author" => opt(&c.author),
        "user" => opt(&c.user),
        "env" => Some(c.env.clone()),
        "entrypoint" => c.entrypoint.clone(),
        "cmd" => c.cmd.clone(),
        "working-dir" => opt(&c.working_dir),
        "exposed-ports" => Some(c.exposed_ports.iter().cloned().collect()),
        "volumes" => Some(c.volumes.iter().cloned().collect()),
        "stop-signal" => opt(&c.stop_signal),
        other => return Err(unknown_field(other)),
    })
}

fn put_config(
    c: &mut ImageConfig,
    field: &str,
    value: Option<Vec<String>>,
) -> std::result::Result<(), String> {
    let single = |v: Option<Vec<String>>| -> std::result::Result<Option<String>, String> {
        match v {
            None => Ok(None),
            Some(v) if v.len() == 1 => Ok(v.into_iter().next()),
            Some(v) => Err(format!(
                "config field '{field}' takes one value, not {}",
                v.len()
            )),
        }
    };
    let required = |v: Option<String>| {
        v.filter(|s| !s.is_empty())
            .ok_or_else(|| format!("config field '{field}' cannot be cleared"))
    };
    match field {
        "architecture" => {
            let (arch, variant) = crate::image::parse_architecture(&required(single(value)?)?)
                .map_err(|e| e.to_string())?;
            c.architecture = arch;
            c.variant = variant;
        }
        "os" => {
            let os = required(single(value)?)?;
            crate::image::check_os(&os).map_err(|e| e.to_string())?;
            c.os = os;
        }
        "variant" => c.variant = single(value)?,
        "author" => c.author = single(value)?,
        "user" => c.user = single(value)?,
        "env" => c.env = value.unwrap_or_default(),
        "entrypoint" => c.entrypoint = value,
        "cmd" => c.cmd = value,
        "working-dir" => c.working_dir = single(value)?,
        "exposed-ports" => c.exposed_ports = value.unwrap_or_default().into_iter().collect(),
        "volumes" => c.volumes = value.unwrap_or_default().into_iter().collect(),
        "stop-signal" => c.stop_signal = single(value)?,
        other => return Err(unknown_field(other)),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The finished image, for a loaded sink

/// A finished image and the store holding its blobs, for a loaded sink.
pub struct HostImage {
    pub image: Arc<BuiltImage>,
    pub dir: PathBuf,
}

impl HostImage {
    fn file(&self, digest: &str) -> Option<PathBuf> {
        let d: Digest = digest.parse().ok()?;
        let path = self.dir.join("sha256").join(d.hex());
        path.is_file().then_some(path)
    }

    fn open_file(&self, digest: &str) -> std::result::Result<std::fs::File, ErrorRecord> {
        let Some(path) = self.file(digest) else {
            return Err(
                PluginError::with_kind(ErrorKind::NotFound, format!("no blob {digest}"))
                    .to_record(),
            );
        };
        std::fs::File::open(&path).map_err(|e| PluginError::from(e).to_record())
    }
}

impl ImageObj for HostImage {
    fn manifest(&self) -> RVec<u8> {
        RVec::from(self.image.manifest.as_slice())
    }

    fn manifest_digest(&self) -> RString {
        self.image.manifest_digest.to_string().into()
    }

    fn config(&self) -> RVec<u8> {
        RVec::from(self.image.config.as_slice())
    }

    fn config_digest(&self) -> RString {
        self.image.config_digest.to_string().into()
    }

    fn layers(&self) -> RVec<LayerRecord> {
        self.image
            .layers
            .iter()
            .map(|l| LayerRecord {
                digest: l.encoded.digest.to_string().into(),
                diff_id: l.encoded.diff_id.to_string().into(),
                size: l.encoded.size,
                tar_size: l.encoded.tar_size,
                media_type: l.encoded.media_type.into(),
                annotations: pairs(&l.annotations),
            })
            .collect()
    }

    fn architecture(&self) -> RString {
        self.image.architecture.as_str().into()
    }

    fn os(&self) -> RString {
        self.image.os.as_str().into()
    }

    fn created(&self) -> i64 {
        self.image.created
    }

    fn blob_path(&self, digest: RStr<'_>) -> ROption<RString> {
        self.file(digest.as_str())
            .map(|p| RString::from(p.display().to_string()))
            .into()
    }

    fn open_blob(&self, digest: RStr<'_>) -> Res<ReaderBox> {
        self.open_file(digest.as_str()).map(reader_box).into()
    }

    fn layer_entries(&self, layer: u32) -> Res<LayerEntriesObj_TO<'static, RBox<()>>> {
        let Some(l) = self.image.layers.get(layer as usize) else {
            return fail(
                ErrorKind::NotFound,
                format!(
                    "the image has {} layers, no layer {layer}",
                    self.image.layers.len()
                ),
            );
        };
        let file = match self.open_file(&l.encoded.digest.to_string()) {
            Ok(f) => f,
            Err(e) => return RResult::RErr(e),
        };
        let input = std::io::BufReader::with_capacity(256 * 1024, file);
        // As layer::compress::decompressor, but Send, as the boundary needs.
        let media_type = l.encoded.media_type;
        let stream: Box<dyn Read + Send> = if media_type.ends_with("gzip") {
            Box::new(flate2::bufread::GzDecoder::new(input))
        } else if media_type.ends_with("zstd") {
            match zstd::stream::read::Decoder::with_buffer(input) {
                Ok(d) => Box::new(d),
                Err(e) => return fail(ErrorKind::Corrupt, format!("layer {layer}: zstd: {e}")),
            }
        } else {
            Box::new(input)
        };
        RResult::ROk(LayerEntriesObj_TO::from_value(
            Members {
                untar: Untar::new(stream),
                layer,
            },
            TD_Opaque,
        ))
    }
}

/// A layer's members, decoded as a sink reads them.
struct Members {
    untar: Untar<Box<dyn Read + Send>>,
    layer: u32,
}

impl LayerEntriesObj for Members {
    fn next(&mut self) -> Res<ROption<EntryRecord>> {
        let m = match self.untar.next_member() {
            Ok(Some(m)) => m,
            Ok(None) => return RResult::ROk(ROption::RNone),
            Err(e) => return fail(ErrorKind::Corrupt, format!("layer {}: {e}", self.layer)),
        };
        let (kind, target) = match m.kind {
            TarKind::File => (ApiKind::File, Vec::new()),
            // A hardlink reads as a file whose target names the member it
            // shares its inode with.
            TarKind::Hardlink => (ApiKind::File, m.link.clone()),
            TarKind::Dir => (ApiKind::Dir, Vec::new()),
            TarKind::Symlink => (ApiKind::Symlink, m.link.clone()),
            TarKind::CharDevice => (ApiKind::CharDevice, Vec::new()),
            TarKind::BlockDevice => (ApiKind::BlockDevice, Vec::new()),
            TarKind::Fifo => (ApiKind::Fifo, Vec::new()),
            TarKind::Other(c) => (ApiKind::Other(c), Vec::new()),
        };
        let mut path = m.path.clone();
        while path.last() == Some(&b'/') {
            path.pop();
        }
        let is_data = m.kind == TarKind::File;
        RResult::ROk(ROption::RSome(EntryRecord {
            path: path.into(),
            kind: kind.code(),
            target: target.into(),
            major: m.dev_major,
            minor: m.dev_minor,
            mode: m.mode & 0o7777,
            uid: u32::try_from(m.uid).unwrap_or(u32::MAX),
            gid: u32::try_from(m.gid).unwrap_or(u32::MAX),
            mtime: m.mtime,
            xattrs: m
                .xattrs
                .iter()
                .map(|(k, v)| Tuple2(RVec::from(k.as_slice()), RVec::from(v.as_slice())))
                .collect(),
            size: if is_data { m.size } else { 0 },
            link: ROption::RNone,
            layer: self.layer,
            content: if is_data { code::HOST } else { code::NONE },
            key: 0,
            bytes: RVec::new(),
        }))
    }

    fn read(&mut self, mut buf: RSliceMut<'_, u8>) -> Res<usize> {
        match self.untar.data().read(buf.as_mut_slice()) {
            Ok(n) => RResult::ROk(n),
            Err(e) => fail(ErrorKind::Corrupt, format!("layer {}: {e}", self.layer)),
        }
    }
}

/// A loaded source's content, opened through the source.
pub struct SourceContent {
    pub obj: Arc<Mutex<ffi::SourceObj_TO<'static, RBox<()>>>>,
    pub describe: String,
}

impl ContentStore for SourceContent {
    fn open(&self, key: u64) -> std::io::Result<Box<dyn Read + Send>> {
        let reader = {
            let obj = self
                .obj
                .lock()
                .map_err(|_| std::io::Error::other("the plugin lock is poisoned"))?;
            obj.open(key)
        };
        match reader {
            RResult::ROk(r) => Ok(Box::new(treeport_plugin_api::StreamRead(r))),
            RResult::RErr(e) => Err(std::io::Error::other(e.message.to_string())),
        }
    }

    fn describe(&self, key: u64) -> String {
        format!("{} content #{key}", self.describe)
    }
}
