//! The layer encoder: tree entries -> tar -> compressor -> blob store, with
//! the `diff_id` hashed over the tar stream and the digest over the compressed
//! one as the bytes pass. Independent layers are encoded in parallel.

pub mod cache;
pub mod compress;
pub mod pgzip;
pub mod shared;
pub mod tar;
pub mod untar;

#[cfg(test)]
#[cfg(test)]
pub(crate) mod testdata;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use compress::Compression;

use crate::blobs::BlobStore;
use crate::digest::{Digest, HashWriter};
use crate::error::{Error, Result};
use crate::ports::{BlobStream, BlobTap};
use crate::progress::Task;
use crate::tree::{Entry, Tree, TreePath};
use compress::Compressor;
use tar::{TarError, TarWriter};

/// One encoded layer blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedLayer {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Size of the uncompressed tar stream.
    pub tar_size: u64,
    pub media_type: &'static str,
}

/// Appends `entries` (in tree order) to `tar`: the first name of an inode
/// carries its content, later ones link to it. `write_err` names what is
/// being written when writing fails.
fn write_tar<'a, W: std::io::Write>(
    entries: impl IntoIterator<Item = &'a Entry>,
    mut tar: TarWriter<W>,
    write_err: &dyn Fn(std::io::Error) -> Error,
    task: Option<&dyn Task>,
) -> Result<TarWriter<W>> {
    let mut first_of_inode: HashMap<u64, &TreePath> = HashMap::new();
    for entry in entries {
        let link_target = entry.link.and_then(|id| {
            if let Some(first) = first_of_inode.get(&id) {
                return Some(*first);
            }
            first_of_inode.insert(id, &entry.path);
            None
        });
        let mut reader = if entry.is_file() && link_target.is_none() && entry.size > 0 {
            Some(entry.content.open()?)
        } else {
            None
        };
        tar.append(
            entry,
            link_target,
            reader.as_mut().map(|r| r as &mut dyn std::io::Read),
        )
        .map_err(|e| match e {
            TarError::Write(e) => write_err(e),
            TarError::Read(e) => Error::invalid(format!(
                "reading '{}' from {}: {e}",
                entry.path,
                entry.content.describe()
            )),
            // A file on disk can change under a running export; stored
            // content (an object, a spooled member) cannot, so a wrong
            // length there means the store is damaged.
            TarError::SizeChanged { expected, found } => match &entry.content {
                crate::tree::Content::Path(_) => Error::invalid(format!(
                    "'{}' changed while being read: {found} than the {expected} recorded",
                    entry.path
                )),
                content => Error::invalid(format!(
                    "'{}' in {}: {found} than the {expected} recorded (the content is damaged)",
                    entry.path,
                    content.describe()
                )),
            },
        })?;
        if let (Some(task), None) = (task, link_target) {
            task.advance(entry.size);
        }
    }
    Ok(tar)
}

/// The `diff_id` and size of the tar stream `entries` make (what
/// [`encode_layer`] would hash), without compressing or storing it.
pub fn tar_digest<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<(Digest, u64)> {
    let write_err = |e: std::io::Error| Error::Other(format!("hashing a layer: {e}"));
    let tar = write_tar(
        entries,
        TarWriter::new(HashWriter::new(std::io::sink())),
        &write_err,
        None,
    )?;
    let (_, digest, size) = tar.finish().map_err(write_err)?.finish();
    Ok((digest, size))
}

/// Encodes one layer from `entries` (in tree order) into `store`.
///
/// # Errors
/// A file that cannot be read or changes size while being read, or a failure
/// to write the blob; the message names the file.
pub fn encode_layer<'a>(
    entries: impl IntoIterator<Item = &'a Entry>,
    compression: Compression,
    compressor_threads: usize,
    store: &BlobStore,
    taps: &[Arc<dyn BlobTap>],
    task: &dyn Task,
) -> Result<EncodedLayer> {
    let blob = store.create()?;
    let temp = blob.temp_path().to_path_buf();
    let write_err = |e: std::io::Error| Error::io(&temp, e);
    let out = Tee {
        blob,
        streams: taps.iter().filter_map(|t| t.open()).collect(),
    };
    let compressor = Compressor::new(compression, out, compressor_threads).map_err(write_err)?;
    let tar = write_tar(
        entries,
        TarWriter::new(HashWriter::new(compressor)),
        &write_err,
        Some(task),
    )?;
    let hashed = tar.finish().map_err(write_err)?;
    let (compressor, diff_id, tar_size) = hashed.finish();
    let Tee { blob, streams } = compressor.finish().map_err(write_err)?;
    let (digest, size) = blob.commit()?;
    for s in streams {
        s.finish(&digest, size);
    }
    Ok(EncodedLayer {
        digest,
        size,
        diff_id,
        tar_size,
        media_type: compression.media_type(),
    })
}

/// An encoded layer, and whether it came from the cache.
/// The blob being written, with copies offered to the sinks' taps.
struct Tee {
    blob: crate::blobs::BlobWriter,
    streams: Vec<Box<dyn BlobStream>>,
}

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.blob.write(buf)?;
        for s in &mut self.streams {
            s.offer(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.blob.flush()
    }
}

type Encoded = (EncodedLayer, bool);

/// How layers are encoded.
#[derive(Clone, Copy)]
pub struct Encoding<'a> {
    pub compression: Compression,
    /// Worker threads, shared between layers or spent on one.
    pub threads: usize,
    /// Earlier layers to reuse when their input is unchanged.
    pub cache: Option<&'a cache::LayerCache>,
    /// Layers encoded elsewhere, shared through a registry or directory.
    pub shared: Option<&'a shared::SharedCache>,
    /// Sinks that take each layer while it is encoded.
    pub taps: &'a [Arc<dyn BlobTap>],
}

impl Encoding<'_> {
    /// `compression` on `threads` threads, without cache or taps.
    #[must_use]
    pub fn new(compression: Compression, threads: usize) -> Self {
        Encoding {
            compression,
            threads,
            cache: None,
            shared: None,
            taps: &[],
        }
    }
}

/// Encodes a layer, or takes it from a cache when its input is unchanged:
/// this machine's (keyed cheaply by file identity), then the shared one
/// (keyed by content digests).
fn encode_cached(
    members: &[&Entry],
    how: &Encoding<'_>,
    threads: usize,
    store: &BlobStore,
    task: &dyn Task,
) -> Result<Encoded> {
    let Encoding {
        compression,
        cache,
        shared,
        taps,
        ..
    } = *how;
    let advance = || task.advance(members.iter().map(|e| e.size).sum());
    let key = cache.and_then(|_| cache::layer_key(members, compression));
    if let (Some(cache), Some(key)) = (cache, &key)
        && let Some(layer) = cache.lookup(key)?
    {
        cache.place(&layer, store)?;
        if let Some(shared) = shared {
            shared.insert(compression, &layer);
        }
        advance();
        return Ok((layer, true));
    }
    // An empty shared cache cannot hit: the input is not hashed for it
    // (the key follows from the encoded layer's diff_id).
    if let Some(shared) = shared.filter(|s| !s.is_empty()) {
        let input = shared::input(members, compression)?;
        if let Some(layer) = shared.fetch(&input, compression, store)? {
            if let (Some(cache), Some(key)) = (cache, &key) {
                cache.insert(key, &layer, store)?;
            }
            advance();
            return Ok((layer, true));
        }
    }
    let layer = encode_layer(
        members.iter().copied(),
        compression,
        threads,
        store,
        taps,
        task,
    )?;
    if let (Some(cache), Some(key)) = (cache, &key) {
        cache.insert(key, &layer, store)?;
    }
    if let Some(shared) = shared {
        shared.insert(compression, &layer);
    }
    Ok((layer, false))
}

/// Encodes every layer of `tree` (entries grouped by [`Entry::layer`]) on up to
/// `threads` worker threads. Layer `i` of the result holds the entries whose
/// `layer` is `i`; a layer with no entries is still written (an empty tar).
///
/// Returns the layers and how many of them came from the cache.
///
/// # Errors
/// The first layer that fails stops the others.
pub fn encode_layers(
    tree: &Tree,
    layer_count: usize,
    how: &Encoding<'_>,
    store: &BlobStore,
    task: &dyn Task,
) -> Result<(Vec<EncodedLayer>, usize)> {
    let threads = how.threads;
    let mut members: Vec<Vec<&Entry>> = vec![Vec::new(); layer_count];
    for entry in tree.entries() {
        let slot = members.get_mut(entry.layer).ok_or_else(|| {
            Error::invalid(format!(
                "'{}' is assigned to layer {} of {layer_count}",
                entry.path, entry.layer
            ))
        })?;
        slot.push(entry);
    }
    for m in &mut members {
        if m.iter().any(|e| e.rank != 0) {
            // Stable: equal ranks keep tree order.
            m.sort_by_key(|e| e.rank);
        }
    }
    // Largest layers first, so the longest job starts early.
    let mut order: Vec<usize> = (0..layer_count).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(members[i].iter().map(|e| e.size).sum::<u64>()));

    let workers = threads.clamp(1, layer_count.max(1));
    // A lone layer may use every thread inside its compressor.
    let per_layer = if layer_count == 1 { threads } else { 1 };
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<Result<Encoded>>>> =
        Mutex::new((0..layer_count).map(|_| None).collect());

    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&layer) = order.get(at) else { break };
                    let result = encode_cached(&members[layer], how, per_layer, store, task);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    results
                        .lock()
                        .expect("no thread panics while holding the lock")[layer] = Some(result);
                }
            });
        }
    });

    let results = results
        .into_inner()
        .expect("no thread panics while holding the lock");
    let mut out = Vec::with_capacity(layer_count);
    let mut cached = 0;
    let mut first_err = None;
    for result in results {
        match result {
            Some(Ok((layer, from_cache))) => {
                cached += usize::from(from_cache);
                out.push(layer);
            }
            Some(Err(e)) => {
                first_err.get_or_insert(e);
            }
            None => {}
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((out, cached)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Quiet;
    use crate::tree::{Content, EntryKind};
    use std::io::Read;
    use std::sync::Arc;

    fn sample_tree() -> Tree {
        let mut tree = Tree::new();
        let data: Arc<[u8]> = Arc::from(&b"shared content"[..]);
        for name in ["a", "b"] {
            let mut f = Entry::file(
                TreePath::parse(format!("d/{name}").as_bytes()).expect("the test literal parses"),
                data.len() as u64,
                Content::Bytes(Arc::clone(&data)),
            );
            f.link = Some(7);
            tree.push(f);
        }
        tree.push(Entry::new(
            TreePath::parse(b"d/s").expect("the test literal parses"),
            EntryKind::Symlink(b"a".to_vec()),
        ));
        tree.normalize().expect("the test fixture is valid");
        tree
    }

    #[test]
    fn a_layer_stores_hardlinked_content_once() {
        let tree = sample_tree();
        let store = BlobStore::temporary_in(None).expect("a temporary store can be made");
        let (layers, _) = encode_layers(
            &tree,
            1,
            &Encoding::new(Compression::default(), 2),
            &store,
            &Quiet,
        )
        .expect("the test fixture is valid");
        let layer = &layers[0];
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(
            store
                .open_blob(&layer.digest)
                .expect("the test fixture is valid"),
        )
        .read_to_end(&mut tar_bytes)
        .expect("the test fixture is valid");
        assert_eq!(Digest::of(&tar_bytes), layer.diff_id);
        assert_eq!(tar_bytes.len() as u64, layer.tar_size);
        let mut archive = ::tar::Archive::new(&tar_bytes[..]);
        let kinds: Vec<(String, ::tar::EntryType)> = archive
            .entries()
            .expect("the test fixture is valid")
            .map(|e| {
                let e = e.expect("the test fixture is valid");
                (
                    String::from_utf8(e.path_bytes().to_vec()).expect("the test fixture is valid"),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("d/".to_string(), ::tar::EntryType::Directory),
                ("d/a".to_string(), ::tar::EntryType::Regular),
                ("d/b".to_string(), ::tar::EntryType::Link),
                ("d/s".to_string(), ::tar::EntryType::Symlink),
            ]
        );
    }

    #[test]
    fn encoding_is_deterministic_and_layers_are_independent() {
        let mut tree = sample_tree();
        for e in tree.entries_mut() {
            if e.path.as_bytes() == b"d/b" {
                e.layer = 1;
            }
        }
        let store = BlobStore::temporary_in(None).expect("a temporary store can be made");
        let (a, _) = encode_layers(
            &tree,
            2,
            &Encoding::new(Compression::default(), 2),
            &store,
            &Quiet,
        )
        .expect("the test fixture is valid");
        let (b, _) = encode_layers(
            &tree,
            2,
            &Encoding::new(Compression::default(), 1),
            &store,
            &Quiet,
        )
        .expect("the test fixture is valid");
        assert_eq!(a, b);
        assert_ne!(a[0].digest, a[1].digest);
        // Layer 1 holds d/b with its content: the hardlink target is in another layer.
        let mut tar_bytes = Vec::new();
        flate2::read::GzDecoder::new(
            store
                .open_blob(&a[1].digest)
                .expect("the test fixture is valid"),
        )
        .read_to_end(&mut tar_bytes)
        .expect("the test fixture is valid");
        let mut archive = ::tar::Archive::new(&tar_bytes[..]);
        let e = archive
            .entries()
            .expect("the test fixture is valid")
            .next()
            .expect("the test fixture is valid")
            .expect("the test fixture is valid");
        assert_eq!(e.header().entry_type(), ::tar::EntryType::Regular);
        assert_eq!(e.size(), 14);
    }
}
