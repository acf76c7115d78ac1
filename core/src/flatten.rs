//! Images as sources: an image's layers applied in order into one tree, as
//! a container runtime unpacks them, so an existing image (a layout, an
//! archive, a registry's) can be exported again: rechunked, made bootable,
//! re-labelled.
//!
//! Each layer is read once, as a stream: its compressed bytes are hashed
//! (the digest and size its manifest gives), decompressed and hashed again
//! (the `diff_id` the config gives), and its members applied to the tree:
//! `.wh.NAME` removes NAME and what is below it, `.wh..wh..opq` hides what
//! lower layers put in its directory, a non-directory replacing a directory
//! removes the directory's contents, and a hardlink may name a file of a
//! lower layer. File content is copied to one temporary spool as it passes
//! (never held in memory); a layer whose digest or `diff_id` does not check
//! out stops the source before anything is written. Members that escape
//! the root, or that would be written through a symlink (of this layer or
//! a lower one), are refused with the layer and member named.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use crate::archive::{ContentSpool, HoleBudget, entry_of, read_beside};
use crate::digest::{Digest, HashReader};
use crate::error::{Error, Result};
use crate::image::{ImageConfig, ImageDraft};
use crate::layer::compress::decompressor;
use crate::layer::untar::{Kind, Untar};
use crate::plugin::{ImageReader, Options, Selector, Source};
use crate::progress::Context;
use crate::resolve::{self, Platform, ResolvedImage};
use crate::tree::{Content, ContentStore, Entry, EntryKind, Tree, TreePath};

/// The source for an image reference (`oci:`, `oci-archive:`,
/// `docker-archive:`, `docker://`, or a plugin's kind that can be read):
/// the image's layers flattened into one tree, its config carried over.
pub struct ImageSource {
    reader: Box<dyn ImageReader>,
    selector: Selector,
    platform: Option<Platform>,
}

impl ImageSource {
    /// A source reading the image `reader` names; from an index, the one
    /// for `platform` (the host's when `None`).
    #[must_use]
    pub fn new(
        reader: Box<dyn ImageReader>,
        selector: Selector,
        platform: Option<Platform>,
    ) -> Self {
        ImageSource {
            reader,
            selector,
            platform,
        }
    }

    /// The options an image source takes itself (the rest go to its
    /// reader): `platform=OS/ARCH[/VARIANT]`.
    ///
    /// # Errors
    /// A malformed platform.
    pub fn split_options(options: &Options) -> Result<(Option<Platform>, Options)> {
        let mut rest = Options::new();
        let mut platform = None;
        for (k, v) in options.iter() {
            if k == "platform" {
                platform = Some(Platform::parse(v)?);
            } else {
                rest.push(k, v);
            }
        }
        Ok((platform, rest))
    }
}

impl Source for ImageSource {
    fn read(&mut self, ctx: &Context) -> Result<ImageDraft> {
        let image = resolve::resolve(&mut *self.reader, self.platform.as_ref())
            .map_err(|e| e.context(format!("image {}", self.selector)))?;
        let tree = flatten(&mut *self.reader, &image, &self.selector.to_string(), ctx)?;
        let mut draft = ImageDraft::new(tree);
        draft.config = config_of(&image.config);
        draft.source_time = image
            .config
            .created()
            .as_deref()
            .and_then(crate::json::parse_rfc3339);
        draft.created_by = format!(
            "treeport from {} ({})",
            self.selector, image.manifest.digest
        );
        Ok(draft)
    }
}

/// The runtime settings of an image config, as an image draft holds them.
#[must_use]
pub fn config_of(config: &oci_spec::image::ImageConfiguration) -> ImageConfig {
    let mut out = ImageConfig {
        architecture: config.architecture().to_string(),
        os: config.os().to_string(),
        variant: config.variant().clone(),
        author: config.author().clone(),
        ..ImageConfig::default()
    };
    if let Some(c) = config.config() {
        out.user.clone_from(c.user());
        out.env = c.env().clone().unwrap_or_default();
        out.entrypoint.clone_from(c.entrypoint());
        out.cmd.clone_from(c.cmd());
        out.working_dir.clone_from(c.working_dir());
        out.stop_signal.clone_from(c.stop_signal());
        if let Some(labels) = c.labels() {
            out.labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        if let Some(ports) = c.exposed_ports() {
            out.exposed_ports = ports.iter().cloned().collect();
        }
        if let Some(volumes) = c.volumes() {
            out.volumes = volumes.iter().cloned().collect();
        }
    }
    out
}

/// Counts bytes read through it.
struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// The tree being built: entries by path (`a/b`), so that a subtree is one
/// range of keys (`a/b/` to `a/b0`).
struct Flat {
    entries: BTreeMap<Vec<u8>, Entry>,
    next_link: u64,
}

impl Flat {
    /// Removes everything below `dir` (not `dir` itself), except what
    /// `keep` says to keep.
    fn remove_below(&mut self, dir: &[u8], keep: impl Fn(&[u8]) -> bool) {
        let below: Vec<Vec<u8>> = if dir.is_empty() {
            self.entries.keys().cloned().collect()
        } else {
            let mut from = dir.to_vec();
            from.push(b'/');
            let mut to = dir.to_vec();
            to.push(b'/' + 1);
            self.entries
                .range(from..to)
                .map(|(k, _)| k.clone())
                .collect()
        };
        for k in below {
            if !keep(&k) {
                self.entries.remove(&k);
            }
        }
    }

    /// Refuses a path below something that is not a directory: an
    /// extractor would write through it.
    fn check_parents(&self, path: &TreePath, what: &str) -> Result<()> {
        let mut parent = path.parent();
        while let Some(p) = parent {
            if p.is_root() {
                break;
            }
            if let Some(e) = self.entries.get(p.as_bytes())
                && !e.is_dir()
            {
                return Err(Error::invalid(format!(
                    "{what}: '{path}' lies below '{p}', which is a {}, not a directory",
                    e.kind.name()
                )));
            }
            parent = p.parent();
        }
        Ok(())
    }
}

/// Applies every layer of `image` (read through `reader`) in order into
/// one tree. `what` names the image in messages.
///
/// # Errors
/// A layer that is not there, is of a kind treeport does not fetch
/// (foreign), does not match its digest, size or `diff_id`, or holds a
/// member that escapes the root or goes through a non-directory.
pub fn flatten(
    reader: &mut dyn ImageReader,
    image: &ResolvedImage,
    what: &str,
    ctx: &Context,
) -> Result<Tree> {
    let layers = image.parsed.layers();
    let diff_ids = image.config.rootfs().diff_ids();
    if diff_ids.len() != layers.len() {
        return Err(Error::invalid(format!(
            "image {what}: {} layers but {} diff_ids in its config",
            layers.len(),
            diff_ids.len()
        )));
    }
    let mut flat = Flat {
        entries: BTreeMap::new(),
        next_link: 0,
    };
    let mut spool = ContentSpool::new()?;
    // Content keys of the spool, by the entry path that holds them, filled
    // as members are read; resolved into content once the spool is done.
    let mut keys: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let total: u64 = layers.iter().map(oci_spec::image::Descriptor::size).sum();
    let task = ctx.progress().task("reading layers", Some(total));
    for (i, layer) in layers.iter().enumerate() {
        let media_type = layer.media_type().to_string();
        let digest: Digest = layer.digest().to_string().parse()?;
        let name = format!("image {what}: layer {} ({digest})", i + 1);
        if media_type.contains("nondistributable") || media_type.contains("foreign") {
            return Err(Error::invalid(format!(
                "{name}: a non-distributable (foreign) layer, {media_type}; treeport does not fetch those"
            )));
        }
        if !crate::image::is_layer_media_type(&media_type) {
            return Err(Error::invalid(format!(
                "{name}: media type '{media_type}' is not a layer"
            )));
        }
        let diff_id: Digest = diff_ids[i].parse()?;
        let blob = reader.blob(&digest).map_err(|e| e.context(name.clone()))?;
        let mut compressed = HashReader::new(Counted {
            inner: blob.take(layer.size().saturating_add(1)),
            n: 0,
        });
        let got_diff = {
            let mut plain = decompressor(
                &media_type,
                BufReader::with_capacity(1 << 20, &mut compressed),
            )?;
            // This thread reads, checks and decompresses; a second one
            // hashes the tar stream, takes its members apart and spools
            // their content.
            let (flat, spool, keys, name) = (&mut flat, &mut spool, &mut keys, &name);
            read_beside(&mut plain, move |plain| {
                let mut hashed = HashReader::new(plain);
                apply_layer(&mut hashed, flat, spool, keys, name)?;
                // Whatever follows the end marker is part of the stream too.
                io::copy(&mut hashed, &mut io::sink())
                    .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
                Ok(hashed.finish().1)
            })?
        };
        io::copy(&mut compressed, &mut io::sink())
            .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
        let (counted, got, _) = compressed.finish();
        if got != digest || counted.n != layer.size() {
            return Err(Error::invalid(format!(
                "{name}: the blob does not match its descriptor (got {got}, {} bytes, not {})",
                counted.n,
                layer.size()
            )));
        }
        if got_diff != diff_id {
            return Err(Error::invalid(format!(
                "{name}: its uncompressed digest is {got_diff}, the config says {diff_id}"
            )));
        }
        task.advance(layer.size());
    }
    task.finish();
    let store: Arc<dyn ContentStore> = spool.into_store(Path::new(what))?;
    let mut tree = Tree::with_capacity(flat.entries.len());
    for (path, mut entry) in flat.entries {
        if let Some(key) = keys.get(&path) {
            entry.content = Content::Stored(Arc::clone(&store), *key);
        }
        tree.push(entry);
    }
    tree.normalize()?;
    Ok(tree)
}

/// Applies one layer's members to `flat`.
fn apply_layer(
    input: &mut impl Read,
    flat: &mut Flat,
    spool: &mut ContentSpool,
    keys: &mut BTreeMap<Vec<u8>, u64>,
    what: &str,
) -> Result<()> {
    let mut untar = Untar::new(input);
    let mut holes = HoleBudget::default();
    // Paths this layer has put in place: an opaque directory hides only
    // what lower layers left.
    let mut added: HashSet<Vec<u8>> = HashSet::new();
    while let Some(m) = untar
        .next_member()
        .map_err(|e| Error::invalid(format!("{what}: {e}")))?
    {
        let name = String::from_utf8_lossy(&m.path).into_owned();
        let path = TreePath::parse(&m.path)
            .map_err(|_| Error::invalid(format!("{what}: member '{name}' escapes the root")))?;
        if path.is_root() {
            continue;
        }
        let dir = path.parent().unwrap_or_default();
        // A whiteout only removes entries (umoci writes them even below a
        // directory it turned into a file); anything else must not land
        // below a non-directory.
        if let Some(hidden) = path.file_name().strip_prefix(b".wh.") {
            if hidden == b".wh..opq" {
                flat.remove_below(dir.as_bytes(), |k| added.contains(k));
            } else {
                let victim = dir.join(hidden);
                flat.entries.remove(victim.as_bytes());
                keys.remove(victim.as_bytes());
                flat.remove_below(victim.as_bytes(), |_| false);
            }
            continue;
        }
        flat.check_parents(&path, what)?;
        let key = path.as_bytes().to_vec();
        let Some(mut entry) =
            entry_of(&m, path.clone(), &name).map_err(|e| e.context(what.to_string()))?
        else {
            // A hardlink: to a file or symlink of this layer or a lower one.
            if let Kind::Hardlink = m.kind {
                let target = TreePath::parse(&m.link).map_err(|_| {
                    Error::invalid(format!("{what}: hardlink '{name}' points outside the root"))
                })?;
                let Some(t) = flat.entries.get_mut(target.as_bytes()) else {
                    return Err(Error::invalid(format!(
                        "{what}: hardlink '{name}' points to '{target}', which is not there"
                    )));
                };
                if !(t.is_file() || matches!(t.kind, EntryKind::Symlink(_))) {
                    return Err(Error::invalid(format!(
                        "{what}: hardlink '{name}' points to '{target}', a {}",
                        t.kind.name()
                    )));
                }
                let group = *t.link.get_or_insert_with(|| {
                    flat.next_link += 1;
                    flat.next_link
                });
                let mut linked = t.clone();
                linked.path = path;
                linked.link = Some(group);
                if let Some(k) = keys.get(target.as_bytes()).copied() {
                    keys.insert(key.clone(), k);
                } else {
                    keys.remove(&key);
                }
                replace(flat, keys, &key, linked);
                added.insert(key);
            }
            continue;
        };
        holes.charge(&m, &name, untar.position())?;
        keys.remove(&key);
        if entry.is_file() && m.size > 0 {
            entry.size = m.size;
            let k = spool
                .add(&mut untar.data(), &m, &name)
                .map_err(|e| e.context(what.to_string()))?;
            keys.insert(key.clone(), k);
        }
        replace(flat, keys, &key, entry);
        added.insert(key);
    }
    Ok(())
}

/// Puts `entry` at `key`: a non-directory replacing a directory takes the
/// directory's contents with it; a directory given again keeps them.
fn replace(flat: &mut Flat, keys: &mut BTreeMap<Vec<u8>, u64>, key: &[u8], entry: Entry) {
    if !entry.is_dir() && flat.entries.get(key).is_some_and(Entry::is_dir) {
        flat.remove_below(key, |_| false);
        let mut from = key.to_vec();
        from.push(b'/');
        let mut to = key.to_vec();
        to.push(b'/' + 1);
        let stale: Vec<Vec<u8>> = keys.range(from..to).map(|(k, _)| k.clone()).collect();
        for k in stale {
            keys.remove(&k);
        }
    }
    flat.entries.insert(key.to_vec(), entry);
}
