//! A layer cache a fleet of builders shares through what they already
//! share: a registry repository (`--cache docker://HOST/REPO:TAG`) or a
//! directory (`--cache oci:DIR[:TAG]`), as `BuildKit`'s registry cache does.
//!
//! The cache is an OCI image: its config
//! (`application/vnd.treeport.layer-cache.v1+json`) maps the portable key of
//! each layer's input to the encoded layer (digest, size, `diff_id`); its
//! layers are those blobs, so the registry keeps them and a push to another
//! repository of the same registry mounts them. The key hashes what goes
//! into a layer (entries' paths, kinds, metadata and content digests) and the
//! encoding, never a machine's inode numbers or paths: two machines
//! exporting the same tree find the same keys. A hit is fetched and checked
//! against its digest and size before use; one that fails is encoded again.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::blobs::BlobStore;
use crate::digest::{Digest, Hasher};
use crate::error::{Error, Result};
use crate::layer::{Compression, EncodedLayer};
use crate::ports::{ImageReader, ImageSet, RawManifest, SetManifest};
use crate::tree::{Entry, EntryKind};

/// The config media type of a cache image.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.treeport.layer-cache.v1+json";
/// At most this many layers are kept (the most recently used first).
pub const MAX_RECORDS: usize = 2000;
/// At most this many image configs are kept beside the layers.
const MAX_CONFIGS: usize = 64;
/// The media type image configs are listed with.
const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Bump when the encoder's output for the same input changes.
const KEY_VERSION: &[u8] = b"treeport-shared-layer-v1";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Record {
    key: Digest,
    digest: Digest,
    size: u64,
    diff_id: Digest,
    tar_size: u64,
    media_type: String,
}

#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    layers: Vec<Record>,
}

/// The shared cache of one run.
pub struct SharedCache {
    /// The cache reference, for messages.
    what: String,
    reader: Mutex<Option<Box<dyn ImageReader>>>,
    known: HashMap<Digest, Record>,
    /// Keys in the order the cache listed them.
    order: Vec<Digest>,
    /// Keys this run used or added, in order.
    touched: Mutex<Vec<Record>>,
    /// Blobs taken from the cache.
    fetched: Mutex<Vec<Digest>>,
    /// Every blob the cache image lists (layers, and image configs).
    present: std::collections::HashSet<Digest>,
    /// Image configs the cache lists, most recent first, and this run's.
    configs: Mutex<Vec<(Digest, u64)>>,
    /// True when this run added a config.
    touch_config: std::sync::atomic::AtomicBool,
    warn: std::sync::Arc<crate::progress::WarnFn>,
}

impl SharedCache {
    /// The cache `what` as `reader` finds it at its tag `tag` (`None`: no
    /// cache there yet). A cache image that does not parse is an error:
    /// it is not overwritten unread.
    pub fn open(
        what: &str,
        reader: Option<Box<dyn ImageReader>>,
        tag: &str,
        warn: std::sync::Arc<crate::progress::WarnFn>,
    ) -> Result<Self> {
        let mut cache = SharedCache {
            what: what.to_string(),
            reader: Mutex::new(None),
            known: HashMap::new(),
            order: Vec::new(),
            touched: Mutex::new(Vec::new()),
            fetched: Mutex::new(Vec::new()),
            present: std::collections::HashSet::new(),
            configs: Mutex::new(Vec::new()),
            touch_config: std::sync::atomic::AtomicBool::new(false),
            warn,
        };
        let Some(mut reader) = reader else {
            return Ok(cache);
        };
        if let Some(raw) = reader.tagged(tag)? {
            let bad = |why: String| Error::invalid(format!("cache {what}: {why}"));
            let manifest: Value =
                serde_json::from_slice(&raw.bytes).map_err(|e| bad(e.to_string()))?;
            let config = &manifest["config"];
            if config["mediaType"] != CONFIG_MEDIA_TYPE {
                return Err(bad(format!(
                    "not a treeport layer cache (its config is {}); name another tag",
                    config["mediaType"]
                )));
            }
            let digest: Digest = config["digest"]
                .as_str()
                .unwrap_or("")
                .parse()
                .map_err(|_| bad("bad config digest".into()))?;
            let size = config["size"].as_u64().unwrap_or(u64::MAX);
            if size > crate::media::MAX_DOCUMENT {
                return Err(bad(format!("its config is {size} bytes")));
            }
            let mut bytes = Vec::new();
            reader
                .blob(&digest)?
                .take(size + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(e.to_string()))?;
            if bytes.len() as u64 != size || Digest::of(&bytes) != digest {
                return Err(bad("its config does not match its digest".into()));
            }
            let doc: Document = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
            let mut configs = Vec::new();
            for l in manifest["layers"].as_array().into_iter().flatten() {
                if let Some(d) = l["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) {
                    cache.present.insert(d);
                    if l["mediaType"] == IMAGE_CONFIG && configs.len() < MAX_CONFIGS {
                        configs.push((d, l["size"].as_u64().unwrap_or(0)));
                    }
                }
            }
            cache.configs = Mutex::new(configs);
            for r in doc.layers.into_iter().take(MAX_RECORDS) {
                if !cache.known.contains_key(&r.key) {
                    cache.order.push(r.key);
                    cache.known.insert(r.key, r);
                }
            }
        }
        cache.reader = Mutex::new(Some(reader));
        Ok(cache)
    }

    /// How many layers the cache lists.
    #[must_use]
    pub fn len(&self) -> usize {
        self.known.len()
    }

    /// True when the cache lists no layer.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The layer encoded elsewhere from the input `key` names, fetched
    /// into `store` and checked; `None` when the cache has none, or its
    /// blob is missing or does not check out (then it is encoded again).
    pub fn fetch(&self, key: &Digest, store: &BlobStore) -> Result<Option<EncodedLayer>> {
        let warn = &*self.warn;
        let Some(record) = self.known.get(key) else {
            return Ok(None);
        };
        let Some(media_type) = [
            crate::media::OCI_LAYER_GZIP,
            crate::media::OCI_LAYER_ZSTD,
            crate::media::OCI_LAYER_TAR,
        ]
        .into_iter()
        .find(|m| *m == record.media_type) else {
            return Ok(None);
        };
        if !store.contains(&record.digest) {
            let mut guard = self
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(reader) = guard.as_mut() else {
                return Ok(None);
            };
            let fetched = (|| -> Result<bool> {
                let mut w = store.create()?;
                let mut src = reader.blob(&record.digest)?.take(record.size + 1);
                std::io::copy(&mut src, &mut w)
                    .map_err(|e| Error::invalid(format!("{}: {e}", record.digest)))?;
                w.flush().map_err(|e| Error::invalid(e.to_string()))?;
                let (digest, size) = w.commit()?;
                Ok(digest == record.digest && size == record.size)
            })();
            match fetched {
                Ok(true) => {}
                Ok(false) => {
                    warn(&format!(
                        "cache {}: blob {} does not match its digest or size; encoding the layer again",
                        self.what, record.digest
                    ));
                    return Ok(None);
                }
                Err(e) => {
                    warn(&format!(
                        "cache {}: blob {}: {e}; encoding the layer again",
                        self.what, record.digest
                    ));
                    return Ok(None);
                }
            }
        }
        self.lock_fetched().push(record.digest);
        self.touch(record.clone());
        Ok(Some(EncodedLayer {
            digest: record.digest,
            size: record.size,
            diff_id: record.diff_id,
            tar_size: record.tar_size,
            media_type,
        }))
    }

    fn lock_fetched(&self) -> std::sync::MutexGuard<'_, Vec<Digest>> {
        self.fetched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self, record: Record) {
        self.touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(record);
    }

    /// Records a layer this run encoded from the input `key`.
    pub fn insert(&self, key: &Digest, layer: &EncodedLayer) {
        self.touch(Record {
            key: *key,
            digest: layer.digest,
            size: layer.size,
            diff_id: layer.diff_id,
            tar_size: layer.tar_size,
            media_type: layer.media_type.to_string(),
        });
    }

    /// True when the cache image lists the blob `digest`.
    #[must_use]
    pub fn holds(&self, digest: &Digest) -> bool {
        self.present.contains(digest)
    }

    /// Keeps the image config `digest` (in the run's store) beside the
    /// layers, so a registry sink elsewhere mounts it too.
    pub fn keep_config(&self, digest: Digest, size: u64) {
        let mut configs = self
            .configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if configs.first().map(|(d, _)| d) != Some(&digest) {
            configs.retain(|(d, _)| *d != digest);
            configs.insert(0, (digest, size));
            configs.truncate(MAX_CONFIGS);
            self.touch_config
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Blobs this run took from the cache.
    #[must_use]
    pub fn fetched(&self) -> Vec<Digest> {
        self.lock_fetched().clone()
    }

    /// True when this run changes what the cache lists.
    #[must_use]
    pub fn changed(&self) -> bool {
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // What this run used goes first: a cache already in that order
        // stays as it is.
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<Digest> = touched
            .iter()
            .map(|r| r.key)
            .filter(|k| seen.insert(*k))
            .collect();
        self.touch_config.load(std::sync::atomic::Ordering::Relaxed)
            || touched.iter().any(|r| self.known.get(&r.key) != Some(r))
            || self.order.iter().take(fresh.len()).ne(fresh.iter())
    }

    /// The cache image to write back: the layers this run used or made
    /// first, then the others the cache listed, at most [`MAX_RECORDS`].
    /// Its config and manifest go into `store`; the blobs of layers this
    /// run neither made nor fetched are already where the cache is.
    pub fn image(&self, store: &BlobStore) -> Result<ImageSet> {
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records: Vec<Record> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in touched
            .iter()
            .cloned()
            .chain(self.order.iter().filter_map(|k| self.known.get(k).cloned()))
        {
            if records.len() < MAX_RECORDS && seen.insert(r.key) {
                records.push(r);
            }
        }
        let config = crate::json::to_canonical_vec(&Document {
            version: 1,
            layers: records.clone(),
        })?;
        let config_digest = store.put(&config)?;
        // Each blob once, in the order the records name them.
        let mut blobs: BTreeMap<Digest, (u64, String)> = BTreeMap::new();
        let mut layers = Vec::new();
        let mut set_blobs = vec![(config_digest, config.len() as u64)];
        for r in &records {
            if blobs
                .insert(r.digest, (r.size, r.media_type.clone()))
                .is_none()
            {
                layers.push(json!({
                    "mediaType": r.media_type,
                    "digest": r.digest.to_string(),
                    "size": r.size,
                }));
                set_blobs.push((r.digest, r.size));
            }
        }
        for (d, size) in self
            .configs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            if blobs
                .insert(*d, (*size, IMAGE_CONFIG.to_string()))
                .is_none()
            {
                layers.push(json!({
                    "mediaType": IMAGE_CONFIG,
                    "digest": d.to_string(),
                    "size": size,
                }));
                set_blobs.push((*d, *size));
            }
        }
        let manifest = crate::json::to_canonical_vec(&json!({
            "schemaVersion": 2,
            "mediaType": crate::media::OCI_MANIFEST,
            "artifactType": CONFIG_MEDIA_TYPE,
            "config": {
                "mediaType": CONFIG_MEDIA_TYPE,
                "digest": config_digest.to_string(),
                "size": config.len(),
            },
            "layers": layers,
        }))?;
        let digest = store.put(&manifest)?;
        Ok(ImageSet {
            index: None,
            manifests: vec![SetManifest {
                raw: RawManifest {
                    bytes: manifest,
                    media_type: crate::media::OCI_MANIFEST.to_string(),
                    digest,
                },
                blobs: set_blobs,
                platform: None,
            }],
        })
    }
}

/// The portable key of a layer made of `entries` (in encoding order) with
/// `compression`: what goes into the layer, never where it sits on this
/// machine. Content is named by its digest: the store's own where it has
/// one (an OSTree object's checksum), else the SHA-256 of its bytes.
pub fn portable_key(entries: &[&Entry], compression: Compression) -> Result<Digest> {
    let mut h = Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(KEY_VERSION);
    field(compression.to_string().as_bytes());
    let mut first_of_link: HashMap<u64, &[u8]> = HashMap::new();
    for e in entries {
        field(e.path.as_bytes());
        let kind: Vec<u8> = match &e.kind {
            EntryKind::File => b"f".to_vec(),
            EntryKind::Dir => b"d".to_vec(),
            EntryKind::Symlink(t) => [b"l".as_slice(), t].concat(),
            EntryKind::CharDevice { major, minor } => format!("c{major}:{minor}").into_bytes(),
            EntryKind::BlockDevice { major, minor } => format!("b{major}:{minor}").into_bytes(),
            EntryKind::Fifo => b"p".to_vec(),
        };
        field(&kind);
        field(
            &[
                e.mode.to_le_bytes(),
                e.uid.to_le_bytes(),
                e.gid.to_le_bytes(),
            ]
            .concat(),
        );
        field(&e.mtime.to_le_bytes());
        field(&e.size.to_le_bytes());
        for (k, v) in &e.xattrs {
            field(k);
            field(v);
        }
        // Hardlinks by the name they point to; content once, at the first.
        let (link, first): (&[u8], bool) = match e.link {
            Some(l) => {
                let to = *first_of_link.entry(l).or_insert(e.path.as_bytes());
                (to, to == e.path.as_bytes())
            }
            None => (b"", true),
        };
        field(link);
        if matches!(e.kind, EntryKind::File) && first {
            field(&content_digest(e)?);
        }
    }
    Ok(h.finish().0)
}

/// The digest of a file's content: the store's own, else hashed.
fn content_digest(e: &Entry) -> Result<Vec<u8>> {
    if let crate::tree::Content::Stored(store, key) = &e.content
        && let Some(d) = store.content_digest(*key)
    {
        return Ok(d);
    }
    let mut h = Hasher::new();
    let mut r = e.content.open()?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|err| Error::invalid(format!("{}: {err}", e.path)))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().0.as_bytes().to_vec())
}
