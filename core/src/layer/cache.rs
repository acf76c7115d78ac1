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
    /// The store's `sha256`, held open: blobs are checked and written
    /// relative to it.
    blobs: blobs::BlobDir,
}

#[derive(Serialize, Deserialize)]
struct Record {
    digest: Digest,
    size: u64,
    diff_id: Digest,
    tar_size: u64,
    media_type: String,
    /// The blob's file as it was when last found to hold `digest`: while
    /// it still looks so, it is not hashed again.
    #[serde(default)]
    verified: Option<blobs::StatSignature>,
}

impl LayerCache {
    /// Opens (creating) a cache at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let index = dir.join("index");
        fs::create_dir_all(&index).at(&index)?;
        let blobs = blobs::BlobDir::open(&dir, &["blobs", "sha256"], true)?;
        Ok(LayerCache { dir, blobs })
    }

    fn record_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("index").join(key.hex())
    }

    /// The layer encoded earlier from the same input, if its blob is still
    /// here and still holds what its digest says (checked by hashing unless
    /// the file is unchanged since it last was). An entry that fails is
    /// dropped, so the layer is encoded again and the entry replaced.
    ///
    /// # Errors
    /// The cache cannot be read or its entry updated.
    pub fn lookup(&self, key: &Digest) -> Result<Option<EncodedLayer>> {
        let path = self.record_path(key);
        let Ok(file) = blobs::open_regular(&path) else {
            return Ok(None);
        };
        let Ok(bytes) = crate::media::read_limited(file, &path.display().to_string()) else {
            return Ok(None);
        };
        let Ok(mut r) = serde_json::from_slice::<Record>(&bytes) else {
            return Ok(None);
        };
        let Some(media_type) = [
            crate::media::OCI_LAYER_GZIP,
            crate::media::OCI_LAYER_ZSTD,
            crate::media::OCI_LAYER_TAR,
        ]
        .into_iter()
        .find(|m| *m == r.media_type) else {
            return Ok(None);
        };
        match self
            .blobs
            .check(&r.digest.hex(), &r.digest, r.size, r.verified)?
        {
            None => {
                let _ = fs::remove_file(&path);
                return Ok(None);
            }
            Some(signature) if r.verified != Some(signature) => {
                r.verified = Some(signature);
                blobs::write_atomic(&path, &serde_json::to_vec(&r)?)?;
            }
            Some(_) => {}
        }
        Ok(Some(EncodedLayer {
            digest: r.digest,
            size: r.size,
            diff_id: r.diff_id,
            tar_size: r.tar_size,
            media_type,
        }))
    }

    /// Keeps a layer encoded into `from`.
    pub fn insert(&self, key: &Digest, layer: &EncodedLayer, from: &BlobStore) -> Result<()> {
        let signature = self.blobs.place(
            &from.path(&layer.digest),
            &layer.digest.hex(),
            &layer.digest,
            layer.size,
            None,
            &self.dir,
        )?;
        let record = Record {
            digest: layer.digest,
            size: layer.size,
            diff_id: layer.diff_id,
            tar_size: layer.tar_size,
            media_type: layer.media_type.to_string(),
            verified: Some(signature),
        };
        blobs::write_atomic(&self.record_path(key), &serde_json::to_vec(&record)?)
    }

    /// Places a cached layer's blob (just found right by
    /// [`LayerCache::lookup`]) in the run's store.
    pub fn place(&self, layer: &EncodedLayer, into: &BlobStore) -> Result<()> {
        into.link_from(&self.blobs, &layer.digest)
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
