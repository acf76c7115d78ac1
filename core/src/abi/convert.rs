//! Conversions between treeport's own types and the interface's stable ones,
//! and the host objects a plugin calls back into (content, blobs).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use abi_stable::std_types::{RBox, ROption, RResult, RStr, RString, RVec, Tuple2};
use treeport_plugin_api::{self as api, PluginError, ReaderBox, reader_box};

use crate::error::{Error, Result};
use crate::image::{BuiltImage, ImageConfig, ImageDraft, LayerInfo};
use crate::tree::{Content, ContentStore, Entry, EntryKind, Tree, TreePath};

type Pairs = RVec<Tuple2<RString, RString>>;

fn pairs(map: &BTreeMap<String, String>) -> Pairs {
    map.iter()
        .map(|(k, v)| Tuple2(RString::from(k.as_str()), RString::from(v.as_str())))
        .collect()
}

fn map(pairs: &Pairs) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|Tuple2(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn ropt(o: Option<&String>) -> ROption<RString> {
    o.map(|s| RString::from(s.as_str())).into()
}

fn rlist(v: &[String]) -> RVec<RString> {
    v.iter().map(|s| RString::from(s.as_str())).collect()
}

fn list(v: &RVec<RString>) -> Vec<String> {
    v.iter().map(ToString::to_string).collect()
}

fn config_to_api(c: &ImageConfig) -> api::Config {
    api::Config {
        architecture: c.architecture.as_str().into(),
        os: c.os.as_str().into(),
        variant: ropt(c.variant.as_ref()),
        author: ropt(c.author.as_ref()),
        user: ropt(c.user.as_ref()),
        env: rlist(&c.env),
        entrypoint: c.entrypoint.as_deref().map(rlist).into(),
        cmd: c.cmd.as_deref().map(rlist).into(),
        working_dir: ropt(c.working_dir.as_ref()),
        labels: pairs(&c.labels),
        exposed_ports: c
            .exposed_ports
            .iter()
            .map(|s| RString::from(s.as_str()))
            .collect(),
        volumes: c
            .volumes
            .iter()
            .map(|s| RString::from(s.as_str()))
            .collect(),
        stop_signal: ropt(c.stop_signal.as_ref()),
    }
}

fn config_from_api(c: &api::Config) -> ImageConfig {
    let default = ImageConfig::default();
    let text = |s: &RString, d: &String| {
        if s.is_empty() {
            d.clone()
        } else {
            s.to_string()
        }
    };
    let opt = |o: &ROption<RString>| o.as_ref().into_option().map(ToString::to_string);
    ImageConfig {
        architecture: text(&c.architecture, &default.architecture),
        os: text(&c.os, &default.os),
        variant: opt(&c.variant),
        author: opt(&c.author),
        user: opt(&c.user),
        env: list(&c.env),
        entrypoint: c.entrypoint.as_ref().into_option().map(list),
        cmd: c.cmd.as_ref().into_option().map(list),
        working_dir: opt(&c.working_dir),
        labels: map(&c.labels),
        exposed_ports: list(&c.exposed_ports).into_iter().collect(),
        volumes: list(&c.volumes).into_iter().collect(),
        stop_signal: opt(&c.stop_signal),
    }
}

/// The host side of a draft handed to a transform: content by key.
pub struct HostContent {
    pub contents: Arc<Vec<Content>>,
}

impl api::ContentObj for HostContent {
    fn open(&self, key: u64) -> RResult<ReaderBox, PluginError> {
        let Some(content) = self.contents.get(key as usize) else {
            return RResult::RErr(PluginError::new(format!("no content with key {key}")));
        };
        match content.open() {
            Ok(r) => RResult::ROk(reader_box(r)),
            Err(e) => RResult::RErr(PluginError::new(e.to_string())),
        }
    }
}

/// Converts a draft for a transform. Entries' content becomes keys into the
/// returned host content list.
pub fn draft_to_api(image: &ImageDraft) -> (api::Draft, HostContent) {
    let mut contents = Vec::new();
    let entries = image
        .tree
        .entries()
        .iter()
        .map(|e| {
            let content = match &e.content {
                Content::None => api::Content::None,
                other => {
                    contents.push(other.clone());
                    api::Content::Key(contents.len() as u64 - 1)
                }
            };
            entry_to_api(e, content)
        })
        .collect();
    let draft = api::Draft {
        entries,
        layers: image
            .layers
            .iter()
            .map(|l| api::LayerInfo {
                annotations: pairs(&l.annotations),
                created_by: l.created_by.as_str().into(),
            })
            .collect(),
        config: config_to_api(&image.config),
        annotations: pairs(&image.annotations),
        source_time: image.source_time.into(),
        created_by: image.created_by.as_str().into(),
    };
    (
        draft,
        HostContent {
            contents: Arc::new(contents),
        },
    )
}

fn entry_to_api(e: &Entry, content: api::Content) -> api::Entry {
    let (kind, target, major, minor) = match &e.kind {
        EntryKind::File => (api::Kind::File, Vec::new(), 0, 0),
        EntryKind::Dir => (api::Kind::Dir, Vec::new(), 0, 0),
        EntryKind::Symlink(t) => (api::Kind::Symlink, t.clone(), 0, 0),
        EntryKind::CharDevice { major, minor } => {
            (api::Kind::CharDevice, Vec::new(), *major, *minor)
        }
        EntryKind::BlockDevice { major, minor } => {
            (api::Kind::BlockDevice, Vec::new(), *major, *minor)
        }
        EntryKind::Fifo => (api::Kind::Fifo, Vec::new(), 0, 0),
    };
    api::Entry {
        path: e.path.as_bytes().to_vec().into(),
        kind,
        target: target.into(),
        major,
        minor,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        mtime: e.mtime,
        xattrs: e
            .xattrs
            .iter()
            .map(|(k, v)| Tuple2(RVec::from(k.clone()), RVec::from(v.clone())))
            .collect(),
        size: e.size,
        content,
        link: e.link.into(),
        layer: u32::try_from(e.layer).unwrap_or(u32::MAX),
    }
}

/// How keys of a draft coming back from a plugin are resolved.
pub enum Keys {
    /// A source's own keys, opened through it.
    Source(Arc<SourceContent>),
    /// The host content list handed to a transform.
    Host(Arc<Vec<Content>>),
}

/// Converts a draft from a plugin, checking every path.
pub fn draft_from_api(d: api::Draft, keys: &Keys) -> Result<ImageDraft> {
    let mut tree = Tree::with_capacity(d.entries.len());
    for e in d.entries {
        let path = TreePath::parse(&e.path)?;
        let kind = match e.kind {
            api::Kind::File => EntryKind::File,
            api::Kind::Dir => EntryKind::Dir,
            api::Kind::Symlink => EntryKind::Symlink(e.target.to_vec()),
            api::Kind::CharDevice => EntryKind::CharDevice {
                major: e.major,
                minor: e.minor,
            },
            api::Kind::BlockDevice => EntryKind::BlockDevice {
                major: e.major,
                minor: e.minor,
            },
            api::Kind::Fifo => EntryKind::Fifo,
        };
        let mut entry = Entry::new(path, kind);
        entry.mode = e.mode & 0o7777;
        entry.uid = e.uid;
        entry.gid = e.gid;
        entry.mtime = e.mtime;
        entry.xattrs = e
            .xattrs
            .iter()
            .map(|Tuple2(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        entry.xattrs.sort();
        entry.link = e.link.into_option();
        entry.layer = e.layer as usize;
        if entry.is_file() {
            entry.size = e.size;
            entry.content = match e.content {
                api::Content::None => Content::None,
                api::Content::Bytes(b) => {
                    entry.size = b.len() as u64;
                    Content::Bytes(Arc::from(b.as_slice()))
                }
                api::Content::Key(k) => match keys {
                    Keys::Source(store) => {
                        Content::Stored(Arc::clone(store) as Arc<dyn ContentStore>, k)
                    }
                    Keys::Host(list) => list.get(k as usize).cloned().ok_or_else(|| {
                        Error::invalid(format!(
                            "'{}' names content key {k}, which the host never gave",
                            entry.path
                        ))
                    })?,
                },
            };
        }
        tree.push(entry);
    }
    let mut layers: Vec<LayerInfo> = d
        .layers
        .iter()
        .map(|l| LayerInfo {
            annotations: map(&l.annotations),
            created_by: l.created_by.to_string(),
        })
        .collect();
    if layers.is_empty() {
        layers.push(LayerInfo::default());
    }
    let mut draft = ImageDraft::new(tree);
    draft.layers = layers;
    draft.config = config_from_api(&d.config);
    draft.annotations = map(&d.annotations);
    draft.source_time = d.source_time.into_option();
    if !d.created_by.is_empty() {
        draft.created_by = d.created_by.to_string();
    }
    Ok(draft)
}

/// A dynamic source's content, opened through the source.
pub struct SourceContent {
    pub obj: Arc<Mutex<api::SourceObj_TO<'static, RBox<()>>>>,
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
            RResult::ROk(r) => Ok(Box::new(api::StreamRead(r))),
            RResult::RErr(e) => Err(std::io::Error::other(e.message.to_string())),
        }
    }

    fn describe(&self, key: u64) -> String {
        format!("{} content #{key}", self.describe)
    }
}

/// Converts a finished image for a sink.
pub fn built_to_api(image: &BuiltImage) -> api::BuiltImage {
    api::BuiltImage {
        manifest: image.manifest.clone().into(),
        manifest_digest: image.manifest_digest.to_string().into(),
        config: image.config.clone().into(),
        config_digest: image.config_digest.to_string().into(),
        layers: image
            .layers
            .iter()
            .map(|l| api::LayerDesc {
                digest: l.encoded.digest.to_string().into(),
                diff_id: l.encoded.diff_id.to_string().into(),
                size: l.encoded.size,
                tar_size: l.encoded.tar_size,
                media_type: l.encoded.media_type.into(),
                annotations: pairs(&l.annotations),
            })
            .collect(),
        architecture: image.architecture.as_str().into(),
        os: image.os.as_str().into(),
        created: image.created,
    }
}

/// The run's blob store, for a sink.
pub struct HostBlobs {
    pub dir: PathBuf,
}

impl HostBlobs {
    fn file(&self, digest: &str) -> Option<PathBuf> {
        let d: crate::digest::Digest = digest.parse().ok()?;
        let path = self.dir.join("sha256").join(d.hex());
        path.is_file().then_some(path)
    }
}

impl api::BlobsObj for HostBlobs {
    fn path(&self, digest: RStr<'_>) -> ROption<RString> {
        self.file(digest.as_str())
            .map(|p| RString::from(p.display().to_string()))
            .into()
    }

    fn open(&self, digest: RStr<'_>) -> RResult<ReaderBox, PluginError> {
        match self.file(digest.as_str()).map(std::fs::File::open) {
            Some(Ok(f)) => RResult::ROk(reader_box(f)),
            Some(Err(e)) => RResult::RErr(PluginError::new(e.to_string())),
            None => RResult::RErr(PluginError::new(format!("no blob {digest}"))),
        }
    }
}
