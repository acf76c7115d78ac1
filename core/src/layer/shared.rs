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
use crate::tree::Entry;

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
    /// True when a listed layer failed its checks (the cache is rewritten
    /// with what this run encoded instead).
    failed: std::sync::atomic::AtomicBool,
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
            failed: std::sync::atomic::AtomicBool::new(false),
            warn,
        };
        let Some(mut reader) = reader else {
            return Ok(cache);
        };
        if let Some(raw) = reader.tagged(tag)? {
            let (records, configs, present) = read_cache(&mut *reader, &raw)?;
            for r in records {
                if !cache.known.contains_key(&r.key) {
                    cache.order.push(r.key);
                    cache.known.insert(r.key, r);
                }
            }
            cache.present = present;
            cache.configs = Mutex::new(configs);
        }
        cache.reader = Mutex::new(Some(reader));
        Ok(cache)
    }

    /// True when the cache lists no layer.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }

    /// The layer encoded elsewhere from `input`, fetched into `store` and
    /// checked: the record must name this input's `diff_id` and the
    /// compression's media type, the blob must match its digest and size,
    /// and it must decompress to exactly this input's tar stream. A cache
    /// writer can therefore make a builder do work again, never produce
    /// other bytes. `None` (with a warning when something failed): encode.
    pub fn fetch(
        &self,
        input: &LayerInput,
        compression: Compression,
        store: &BlobStore,
    ) -> Result<Option<EncodedLayer>> {
        let Some(record) = self.known.get(&input.key) else {
            return Ok(None);
        };
        match self.check_hit(record, input, compression, store) {
            Ok(layer) => {
                self.lock_fetched().push(record.digest);
                self.touch(record.clone());
                Ok(Some(layer))
            }
            Err(why) => {
                (self.warn)(&format!(
                    "cache {}: layer {}: {why}; encoding it again",
                    self.what, record.digest
                ));
                self.failed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    fn check_hit(
        &self,
        record: &Record,
        input: &LayerInput,
        compression: Compression,
        store: &BlobStore,
    ) -> std::result::Result<EncodedLayer, String> {
        let media_type = compression.media_type();
        if record.media_type != media_type
            || record.diff_id != input.diff_id
            || record.tar_size != input.tar_size
        {
            return Err("its record does not match this input".to_string());
        }
        if !store.contains(&record.digest) {
            let mut guard = self
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let reader = guard.as_mut().ok_or("the cache cannot be read")?;
            let mut w = store.create().map_err(|e| e.to_string())?;
            let mut src = reader
                .blob(&record.digest)
                .map_err(|e| e.to_string())?
                .take(record.size.saturating_add(1));
            std::io::copy(&mut src, &mut w).map_err(|e| e.to_string())?;
            w.flush().map_err(|e| e.to_string())?;
            let (digest, _) = w.commit().map_err(|e| e.to_string())?;
            if digest != record.digest {
                return Err("the blob does not match its digest".to_string());
            }
        }
        // The blob in the store is named by its digest; its size and what
        // it decompresses to are checked here.
        let file = store.open_blob(&record.digest).map_err(|e| e.to_string())?;
        let size = file.metadata().map_err(|e| e.to_string())?.len();
        if size != record.size {
            return Err(format!("the blob has {size} bytes, not {}", record.size));
        }
        let mut plain = crate::layer::compress::decompressor(
            media_type,
            std::io::BufReader::with_capacity(256 * 1024, file),
        )
        .map_err(|e| e.to_string())?;
        let mut hashed = crate::digest::HashWriter::new(std::io::sink());
        std::io::copy(
            &mut plain.by_ref().take(input.tar_size.saturating_add(1)),
            &mut hashed,
        )
        .map_err(|e| format!("it does not decompress: {e}"))?;
        let (_, diff_id, tar_size) = hashed.finish();
        if diff_id != input.diff_id || tar_size != input.tar_size {
            return Err("it does not decompress to this input".to_string());
        }
        Ok(EncodedLayer {
            digest: record.digest,
            size: record.size,
            diff_id: record.diff_id,
            tar_size: record.tar_size,
            media_type,
        })
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

    /// Records a layer this run encoded (or took from this machine's
    /// cache) with `compression`; its key follows from its `diff_id`, so
    /// nothing is hashed again.
    pub fn insert(&self, compression: Compression, layer: &EncodedLayer) {
        self.touch(Record {
            key: key(compression, &layer.diff_id),
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
        if !configs.iter().any(|(d, _)| *d == digest) {
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

    /// True when this run changes what the cache lists: a layer or an
    /// image config it did not list, or a listed layer that failed its
    /// checks. Using what is there changes nothing (no write).
    #[must_use]
    pub fn changed(&self) -> bool {
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.touch_config.load(std::sync::atomic::Ordering::Relaxed)
            || self.failed.load(std::sync::atomic::Ordering::Relaxed)
            || touched.iter().any(|r| self.known.get(&r.key) != Some(r))
    }

    /// The cache image to write back: the layers this run used or made
    /// first, then the others the cache listed, at most [`MAX_RECORDS`].
    /// Its config and manifest go into `store`; the blobs of layers this
    /// run neither made nor fetched are already where the cache is.
    pub fn image(&self, store: &BlobStore, tag: &str) -> Result<ImageSet> {
        // What other builders wrote since this run read the cache is kept
        // too (read again now; a race in between loses only cache entries).
        let mut latest: Vec<Record> = Vec::new();
        {
            let mut guard = self
                .reader
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(reader) = guard.as_mut()
                && let Ok(Some(raw)) = reader.tagged(tag)
                && let Ok((records, _, _)) = read_cache(&mut **reader, &raw)
            {
                latest = records;
            }
        }
        let touched = self
            .touched
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut records: Vec<Record> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in touched
            .iter()
            .cloned()
            .chain(latest)
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
                if store.contains(&r.digest) {
                    set_blobs.push((r.digest, r.size));
                }
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
                if store.contains(d) {
                    set_blobs.push((*d, *size));
                }
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
            referrers: Vec::new(),
        })
    }
}

/// The records, image configs and blobs a cache image lists.
type Listed = (
    Vec<Record>,
    Vec<(Digest, u64)>,
    std::collections::HashSet<Digest>,
);

/// Reads the cache image `raw` (its config through `reader`), checking what
/// it reads.
fn read_cache(reader: &mut dyn ImageReader, raw: &RawManifest) -> Result<Listed> {
    let bad = |why: String| Error::invalid(why);
    let manifest: Value = serde_json::from_slice(&raw.bytes).map_err(|e| bad(e.to_string()))?;
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
    if doc.version != 1 {
        return Err(bad(format!(
            "version {} of the cache format; this treeport reads version 1",
            doc.version
        )));
    }
    let mut configs = Vec::new();
    let mut present = std::collections::HashSet::new();
    for l in manifest["layers"].as_array().into_iter().flatten() {
        if let Some(d) = l["digest"].as_str().and_then(|d| d.parse::<Digest>().ok()) {
            present.insert(d);
            if l["mediaType"] == IMAGE_CONFIG && configs.len() < MAX_CONFIGS {
                configs.push((d, l["size"].as_u64().unwrap_or(0)));
            }
        }
    }
    let records = doc.layers.into_iter().take(MAX_RECORDS).collect();
    Ok((records, configs, present))
}

/// What a layer's input is, portably: the digest and size of the tar
/// stream its entries make (hashed here, never compressed), and the key
/// the cache files it under with the compression. Nothing of the machine
/// (inodes, host paths) goes into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerInput {
    pub key: Digest,
    pub diff_id: Digest,
    pub tar_size: u64,
}

/// The [`LayerInput`] of a layer made of `entries` (in encoding order)
/// with `compression`.
pub fn input(entries: &[&Entry], compression: Compression) -> Result<LayerInput> {
    let (diff_id, tar_size) = crate::layer::tar_digest(entries.iter().copied())?;
    Ok(LayerInput {
        key: key(compression, &diff_id),
        diff_id,
        tar_size,
    })
}

/// The key of a layer whose tar stream is `diff_id`, encoded with
/// `compression`.
fn key(compression: Compression, diff_id: &Digest) -> Digest {
    let mut h = Hasher::new();
    for field in [
        KEY_VERSION,
        compression.to_string().as_bytes(),
        diff_id.as_bytes(),
    ] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field);
    }
    h.finish().0
}
