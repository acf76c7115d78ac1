//! A cache of encoded layers, keyed by what went into them, so a re-export
//! encodes only the layers whose input changed.
//!
//! The key of a layer hashes, in order, every entry's path, kind, metadata
//! and content fingerprint (a file's identity and times, an OSTree object's
//! checksum), with the compression. The cache directory holds
//! `index/<key>` (the encoded layer's digests) and `blobs/sha256/<hex>`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blobs::{self, BlobStore};
use crate::digest::{Digest, Hasher};
use crate::error::{IoResultExt, Result};
use crate::layer::{Compression, EncodedLayer};
use crate::tree::{Entry, EntryKind};

/// Bump when the encoder's output for the same input changes.
const ENCODER_VERSION: &[u8] = b"treeport-layer-v1";

/// The cache directory.
pub struct LayerCache {
    dir: PathBuf,
    store: BlobStore,
}

#[derive(Serialize, Deserialize)]
struct Record {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    tar_size: u64,
    media_type: String,
}

impl LayerCache {
    /// Opens (creating) a cache at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let index = dir.join("index");
        fs::create_dir_all(&index).at(&index)?;
        let store = BlobStore::open(dir.join("blobs"))?;
        Ok(LayerCache { dir, store })
    }

    fn record_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("index").join(key.hex())
    }

    /// The layer encoded earlier from the same input, if its blob is still here.
    #[must_use]
    pub fn lookup(&self, key: &Digest) -> Option<EncodedLayer> {
        let bytes = fs::read(self.record_path(key)).ok()?;
        let r: Record = serde_json::from_slice(&bytes).ok()?;
        let media_type = [
            crate::media::OCI_LAYER_GZIP,
            crate::media::OCI_LAYER_ZSTD,
            crate::media::OCI_LAYER_TAR,
        ]
        .into_iter()
        .find(|m| *m == r.media_type)?;
        (self.store.size(&r.digest).ok()? == r.size).then_some(EncodedLayer {
            digest: r.digest,
            size: r.size,
            diff_id: r.diff_id,
            tar_size: r.tar_size,
            media_type,
        })
    }

    /// Keeps a layer encoded into `from`.
    pub fn insert(&self, key: &Digest, layer: &EncodedLayer, from: &BlobStore) -> Result<()> {
        blobs::link_or_copy(&from.path(&layer.digest), &self.store.path(&layer.digest))?;
        let record = Record {
            digest: layer.digest,
            size: layer.size,
            diff_id: layer.diff_id,
            tar_size: layer.tar_size,
            media_type: layer.media_type.to_string(),
        };
        blobs::write_atomic(&self.record_path(key), &serde_json::to_vec(&record)?)
    }

    /// Places a cached layer's blob in the run's store.
    pub fn place(&self, layer: &EncodedLayer, into: &BlobStore) -> Result<()> {
        blobs::link_or_copy(&self.store.path(&layer.digest), &into.path(&layer.digest))
    }

    /// The cache's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The key of a layer made of `entries` (in encoding order), or `None` when
/// some content cannot be fingerprinted.
#[must_use]
pub fn layer_key(entries: &[&Entry], compression: Compression) -> Option<Digest> {
    let mut h = Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(ENCODER_VERSION);
    field(compression.to_string().as_bytes());
    let mut first_of_link: std::collections::HashMap<u64, &[u8]> = std::collections::HashMap::new();
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
        // Hardlinks by the name they point to, not by a run's group number.
        let link: &[u8] = match e.link {
            Some(l) => first_of_link.entry(l).or_insert(e.path.as_bytes()),
            None => b"",
        };
        field(link);
        field(&e.content.fingerprint()?);
    }
    Some(h.finish().0)
}
