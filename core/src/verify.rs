//! Checking an image the way a strict consumer would: every digest and size,
//! media types, the config's `diff_ids` against the layers, and every tar header
//! (no member escaping the root or going through a non-directory, hardlinks
//! to members that exist). What the layers unpack to is kept as a tree of
//! metadata and content hashes, so it can be compared with a source.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufReader, Read};

use crate::digest::{Digest, HashReader, Hasher};
use crate::error::{Error, Result};
use crate::layer::compress::decompressor;
use crate::layer::untar::{Kind, Untar};
use crate::media;
use crate::plugin::ImageReader;
use crate::resolve;
use crate::tree::{EntryKind, Tree, TreePath};

/// One path of an unpacked image (or of a source tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: EntryKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// sha256 of a regular file's content.
    pub content: Option<Digest>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a hardlink: the path of the inode's first name.
    pub inode: Option<Vec<u8>>,
}

/// What verification found.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Image manifests checked.
    pub manifests: usize,
    /// Other manifests (attestations, SBOMs) whose blobs were checked.
    pub artifacts: usize,
    pub layers: usize,
    pub members: u64,
    pub bytes: u64,
    /// The unpacked tree of the (last) image checked.
    pub tree: BTreeMap<Vec<u8>, Node>,
    /// Manifests and indexes checked already, by digest.
    seen: std::collections::HashSet<Digest>,
}

fn bad(what: &str) -> Error {
    Error::invalid(what.to_string())
}

/// How deep indexes may nest (an index of indexes of images).
const MAX_INDEX_DEPTH: usize = 4;

/// Verifies the image (or every image of the index, and of indexes it
/// names) `reader` names. An index that leads to no image is an error, not
/// an empty success.
pub fn verify(reader: &mut dyn ImageReader) -> Result<Report> {
    let top = reader.top()?;
    let mut report = Report::default();
    verify_document(reader, &top, 0, &mut report)?;
    if report.manifests == 0 {
        return Err(bad(&if media::is_index(&top.media_type) {
            format!("index {} leads to no image manifest", top.digest)
        } else {
            format!(
                "manifest {} is not an image (its config is not an image config)",
                top.digest
            )
        }));
    }
    Ok(report)
}

/// The most manifests and indexes one verification reads (each once,
/// however many indexes name it).
const MAX_DOCUMENTS: usize = 10_000;

fn verify_document(
    reader: &mut dyn ImageReader,
    raw: &crate::plugin::RawManifest,
    depth: usize,
    report: &mut Report,
) -> Result<()> {
    if !report.seen.insert(raw.digest) {
        return Ok(());
    }
    if report.seen.len() > MAX_DOCUMENTS {
        return Err(bad(&format!(
            "index {}: more than {MAX_DOCUMENTS} manifests and indexes to check",
            raw.digest
        )));
    }
    if !media::is_index(&raw.media_type) {
        return verify_manifest(reader, raw, report);
    }
    if depth >= MAX_INDEX_DEPTH {
        return Err(bad(&format!(
            "index {}: indexes nest deeper than {MAX_INDEX_DEPTH}",
            raw.digest
        )));
    }
    let index = resolve::parse_index(raw)?;
    if index.manifests().is_empty() {
        return Err(bad(&format!("index {} lists no manifest", raw.digest)));
    }
    for d in index.manifests() {
        let digest: Digest = d.digest().to_string().parse()?;
        let child = reader.manifest(&digest)?;
        if child.bytes.len() as u64 != d.size() {
            return Err(bad(&format!(
                "manifest {digest}: {} bytes, the index says {}",
                child.bytes.len(),
                d.size()
            )));
        }
        if media::is_index(&child.media_type) || media::is_manifest(&child.media_type) {
            verify_document(reader, &child, depth + 1, report)?;
        } else {
            return Err(bad(&format!(
                "index {}: {digest} has media type '{}', neither an image nor an index",
                raw.digest, child.media_type
            )));
        }
    }
    Ok(())
}

/// Checks every blob of a manifest that is not an image (an attestation,
/// an SBOM): present, of its size, with its digest.
fn verify_artifact(
    reader: &mut dyn ImageReader,
    raw: &crate::plugin::RawManifest,
    manifest: &oci_spec::image::ImageManifest,
    report: &mut Report,
) -> Result<()> {
    let descriptors = std::iter::once(manifest.config()).chain(manifest.layers());
    for d in descriptors {
        let digest: Digest = d.digest().to_string().parse()?;
        let mut hashed = HashReader::new(Counted {
            inner: reader.blob(&digest)?,
            n: 0,
        });
        io::copy(&mut (&mut hashed).take(d.size() + 1), &mut io::sink())
            .map_err(|e| bad(&format!("{}: blob {digest}: {e}", raw.digest)))?;
        let (counted, got, _) = hashed.finish();
        if got != digest || counted.n != d.size() {
            return Err(bad(&format!(
                "{}: blob {digest} does not match its descriptor (got {got}, {} bytes)",
                raw.digest, counted.n
            )));
        }
        report.bytes += d.size();
    }
    report.artifacts += 1;
    Ok(())
}

fn verify_manifest(
    reader: &mut dyn ImageReader,
    raw: &crate::plugin::RawManifest,
    report: &mut Report,
) -> Result<()> {
    if !media::is_manifest(&raw.media_type) {
        return Err(bad(&format!(
            "{}: unknown manifest media type '{}'",
            raw.digest, raw.media_type
        )));
    }
    let manifest = resolve::parse_manifest(raw)?;
    let config_type = manifest.config().media_type().to_string();
    if config_type != media::OCI_CONFIG && config_type != media::DOCKER_CONFIG {
        // An artifact (attestation, SBOM) in an index: its blobs are checked.
        return verify_artifact(reader, raw, &manifest, report);
    }
    let config_digest: Digest = manifest.config().digest().to_string().parse()?;
    let config_bytes = resolve::read_document(reader, &config_digest, manifest.config().size())?;
    let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
        .map_err(|e| bad(&format!("config {config_digest}: {e}")))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(bad(&format!(
            "{}: {} layers but {} diff_ids in the config",
            raw.digest,
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    let mut tree: BTreeMap<Vec<u8>, Node> = BTreeMap::new();
    for (i, layer) in manifest.layers().iter().enumerate() {
        let media_type = layer.media_type().to_string();
        if !crate::image::is_layer_media_type(&media_type) {
            return Err(bad(&format!(
                "layer {}: media type '{media_type}' is not a layer",
                layer.digest()
            )));
        }
        let digest: Digest = layer.digest().to_string().parse()?;
        let diff_id: Digest = diff_ids[i].parse()?;
        let stats = verify_layer(
            reader,
            &digest,
            layer.size(),
            &media_type,
            &diff_id,
            &mut tree,
        )?;
        report.members += stats;
        report.bytes += layer.size();
        report.layers += 1;
    }
    report.manifests += 1;
    report.tree = tree;
    Ok(())
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

/// Checks one layer and applies it to `tree`. Returns its member count.
fn verify_layer(
    reader: &mut dyn ImageReader,
    digest: &Digest,
    size: u64,
    media_type: &str,
    diff_id: &Digest,
    tree: &mut BTreeMap<Vec<u8>, Node>,
) -> Result<u64> {
    let blob = reader.blob(digest)?;
    let mut compressed = HashReader::new(Counted { inner: blob, n: 0 });
    let mut members = 0u64;
    let (got_diff, tar_len) = {
        let plain = decompressor(
            media_type,
            BufReader::with_capacity(1 << 20, &mut compressed),
        )?;
        let mut hashed = HashReader::new(plain);
        {
            let mut untar = Untar::new(&mut hashed);
            let mut buf = vec![0u8; 256 * 1024];
            while let Some(m) = untar
                .next_member()
                .map_err(|e| bad(&format!("layer {digest}: {e}")))?
            {
                members += 1;
                apply_member(&mut untar, &m, &mut buf, tree)
                    .map_err(|e| e.context(format!("layer {digest}")))?;
            }
        }
        // Whatever follows the end marker is part of the stream too.
        io::copy(&mut hashed, &mut io::sink()).map_err(|e| bad(&format!("layer {digest}: {e}")))?;
        let (_, d, n) = hashed.finish();
        (d, n)
    };
    io::copy(&mut compressed, &mut io::sink()).map_err(|e| bad(&format!("layer {digest}: {e}")))?;
    let (counted, got_digest, _) = compressed.finish();
    if got_digest != *digest {
        return Err(bad(&format!(
            "layer {digest}: the blob's digest is {got_digest}"
        )));
    }
    if counted.n != size {
        return Err(bad(&format!(
            "layer {digest}: {} bytes, the manifest says {size}",
            counted.n
        )));
    }
    if got_diff != *diff_id {
        return Err(bad(&format!(
            "layer {digest}: uncompressed digest {got_diff} ({tar_len} bytes), the config says {diff_id}"
        )));
    }
    Ok(members)
}

fn apply_member<R: Read>(
    untar: &mut Untar<R>,
    m: &crate::layer::untar::Member,
    buf: &mut [u8],
    tree: &mut BTreeMap<Vec<u8>, Node>,
) -> Result<()> {
    let name = String::from_utf8_lossy(&m.path).into_owned();
    let path =
        TreePath::parse(&m.path).map_err(|_| bad(&format!("member '{name}' escapes the root")))?;
    if path.is_root() {
        return Ok(());
    }
    // A member below something that is not a directory would be written
    // through it by an extractor.
    let mut parent = path.parent();
    while let Some(p) = parent {
        if p.is_root() {
            break;
        }
        if let Some(n) = tree.get(p.as_bytes())
            && n.kind != EntryKind::Dir
        {
            return Err(bad(&format!(
                "member '{name}' lies below '{p}', which is not a directory"
            )));
        }
        parent = p.parent();
    }
    let file_name = path.file_name();
    if let Some(hidden) = file_name.strip_prefix(b".wh.") {
        let dir = path.parent().unwrap_or_default();
        if hidden == b".wh..opq" {
            // An opaque directory hides what lower layers put in it.
            remove_below(tree, dir.as_bytes());
        } else {
            let victim = dir.join(hidden);
            tree.remove(victim.as_bytes());
            remove_below(tree, victim.as_bytes());
        }
        return Ok(());
    }
    let Some(kind) = m.entry_kind() else {
        if let Kind::Other(flag) = m.kind {
            return Err(bad(&format!(
                "member '{name}' has unknown type '{}'",
                char::from(flag).escape_default()
            )));
        }
        // A hardlink.
        let target = TreePath::parse(&m.link)
            .map_err(|_| bad(&format!("hardlink '{name}' points outside the root")))?;
        let node = tree.get(target.as_bytes()).cloned().ok_or_else(|| {
            bad(&format!(
                "hardlink '{name}' points to '{target}', which is not there"
            ))
        })?;
        if !matches!(node.kind, EntryKind::File | EntryKind::Symlink(_)) {
            return Err(bad(&format!(
                "hardlink '{name}' points to '{target}', a {}",
                node.kind.name()
            )));
        }
        let first = node
            .inode
            .clone()
            .unwrap_or_else(|| target.as_bytes().to_vec());
        if let Some(t) = tree.get_mut(target.as_bytes()) {
            t.inode = Some(first.clone());
        }
        let mut linked = node;
        linked.inode = Some(first);
        tree.insert(path.as_bytes().to_vec(), linked);
        return Ok(());
    };
    let content = if kind == EntryKind::File {
        let mut h = Hasher::new();
        let mut data = untar.data();
        loop {
            let n = data
                .read(buf)
                .map_err(|e| bad(&format!("member '{name}': {e}")))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let (d, n) = h.finish();
        if m.sparse.is_none() && n != m.size {
            return Err(bad(&format!(
                "member '{name}': {n} bytes of data, the header says {}",
                m.size
            )));
        }
        Some(d)
    } else {
        None
    };
    let uid =
        u32::try_from(m.uid).map_err(|_| bad(&format!("member '{name}': uid out of range")))?;
    let gid =
        u32::try_from(m.gid).map_err(|_| bad(&format!("member '{name}': gid out of range")))?;
    let mut xattrs = m.xattrs.clone();
    xattrs.sort();
    // A non-directory replacing a directory removes what was below it (a
    // directory given again keeps it).
    if kind != EntryKind::Dir
        && tree
            .get(path.as_bytes())
            .is_some_and(|n| n.kind == EntryKind::Dir)
    {
        remove_below(tree, path.as_bytes());
    }
    tree.insert(
        path.as_bytes().to_vec(),
        Node {
            kind,
            mode: m.mode,
            uid,
            gid,
            size: m.size,
            content,
            xattrs,
            inode: None,
        },
    );
    Ok(())
}

/// Removes every path below `dir` (not `dir` itself). Paths below it are
/// `dir/...`: one range of the ordered map, found without a scan.
fn remove_below(tree: &mut BTreeMap<Vec<u8>, Node>, dir: &[u8]) {
    if dir.is_empty() {
        tree.clear();
        return;
    }
    let mut from = dir.to_vec();
    from.push(b'/');
    let mut to = dir.to_vec();
    to.push(b'/' + 1);
    let below: Vec<Vec<u8>> = tree.range(from..to).map(|(k, _)| k.clone()).collect();
    for k in below {
        tree.remove(&k);
    }
}

/// The same view of a source tree, reading its content to hash it.
pub fn tree_nodes(tree: &Tree) -> Result<BTreeMap<Vec<u8>, Node>> {
    let mut out = BTreeMap::new();
    let mut first: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 256 * 1024];
    for e in tree.entries() {
        let content = if e.is_file() {
            let mut h = Hasher::new();
            let mut r = e.content.open()?;
            loop {
                let n = r
                    .read(&mut buf)
                    .map_err(|err| bad(&format!("reading {}: {err}", e.path)))?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            Some(h.finish().0)
        } else {
            None
        };
        let inode = e.link.map(|l| {
            first
                .entry(l)
                .or_insert_with(|| e.path.as_bytes().to_vec())
                .clone()
        });
        out.insert(
            e.path.as_bytes().to_vec(),
            Node {
                kind: e.kind.clone(),
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                size: e.size,
                content,
                xattrs: e.xattrs.clone(),
                inode,
            },
        );
    }
    // A hardlink group of one name is no hardlink.
    let mut counts: HashMap<Vec<u8>, usize> = HashMap::new();
    for n in out.values() {
        if let Some(i) = &n.inode {
            *counts.entry(i.clone()).or_default() += 1;
        }
    }
    for n in out.values_mut() {
        if n.inode.as_ref().is_some_and(|i| counts[i] < 2) {
            n.inode = None;
        }
    }
    Ok(out)
}

/// The differences between an unpacked image and a source, one line each.
#[must_use]
pub fn differences(
    image: &BTreeMap<Vec<u8>, Node>,
    source: &BTreeMap<Vec<u8>, Node>,
) -> Vec<String> {
    let show = |p: &[u8]| format!("/{}", String::from_utf8_lossy(p));
    let mut out = Vec::new();
    for (p, s) in source {
        match image.get(p) {
            None => out.push(format!("{}: missing from the image", show(p))),
            Some(i) => {
                let mut what = Vec::new();
                if i.kind == s.kind {
                    if i.mode != s.mode {
                        what.push(format!("mode {:o} vs {:o}", i.mode, s.mode));
                    }
                    if (i.uid, i.gid) != (s.uid, s.gid) {
                        what.push(format!("owner {}:{} vs {}:{}", i.uid, i.gid, s.uid, s.gid));
                    }
                    if i.content != s.content {
                        what.push("content differs".into());
                    }
                    if i.xattrs != s.xattrs {
                        what.push("xattrs differ".into());
                    }
                    if i.inode.is_some() != s.inode.is_some() {
                        what.push("hardlinks differ".into());
                    }
                } else {
                    what.push(format!(
                        "{} in the image, {} in the source",
                        i.kind.name(),
                        s.kind.name()
                    ));
                }
                if !what.is_empty() {
                    out.push(format!("{}: {}", show(p), what.join(", ")));
                }
            }
        }
    }
    for p in image.keys() {
        if !source.contains_key(p) {
            out.push(format!("{}: only in the image", show(p)));
        }
    }
    out
}
