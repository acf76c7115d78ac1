//! The layers of a bootc image, as ostree-ext writes them (tar format v1):
//!
//! - layer 0 holds the repository skeleton under `sysroot/ostree/repo`, the
//!   commit object (first of all objects: the importer expects it), its
//!   detached metadata, every dirtree and dirmeta object, every directory of
//!   the tree, and the content not planned into another layer;
//! - each further layer holds the content objects of its part of the plan.
//!
//! A content object is written as `objects/xx/rest.file` right after its
//! `.file-xattrs-link` (its xattrs), and each path of the tree is a hardlink
//! to it (an empty file stays a plain empty file). `/usr/etc` is shown at
//! `/etc`. Entries carry an explicit order ([`Entry::rank`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use ostree::{gio, glib};
use treeport_core::error::{Error, Result};
use treeport_core::image::LayerInfo;
use treeport_core::tree::{Content, Entry, EntryKind, Tree, TreePath};

use crate::commit::Committed;

const REPO: &str = "sysroot/ostree/repo";
const REPO_CONFIG: &[u8] = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n";

fn object_path(checksum: &str, suffix: &str) -> TreePath {
    let p = format!(
        "{REPO}/objects/{}/{}.{suffix}",
        &checksum[..2],
        &checksum[2..]
    );
    TreePath::parse(p.as_bytes()).expect("object paths are valid")
}

/// `usr/etc...` shown at `etc...`.
fn real_path(path: &TreePath) -> TreePath {
    let usr_etc = TreePath::parse(b"usr/etc").expect("valid");
    match path.strip_prefix(&usr_etc) {
        Some(rest) => {
            let etc = TreePath::parse(b"etc").expect("valid");
            if rest.is_root() {
                etc
            } else {
                etc.join(rest.as_bytes())
            }
        }
        None => path.clone(),
    }
}

fn gerr(what: &str) -> impl Fn(glib::Error) -> Error + '_ {
    move |e| Error::invalid(format!("{what}: {}", e.message()))
}

/// A file object and what a layer needs to write it.
struct FileObject {
    kind: EntryKind,
    uid: u32,
    gid: u32,
    mode: u32,
    size: u64,
    xattrs: Vec<u8>,
    /// Paths using it, in walk order.
    paths: Vec<TreePath>,
    layer: usize,
}

struct Builder {
    entries: Vec<Entry>,
    rank: u32,
    next_link: u64,
}

impl Builder {
    fn push(&mut self, mut e: Entry, layer: usize) {
        self.rank += 1;
        e.rank = self.rank;
        e.layer = layer;
        self.entries.push(e);
    }

    fn dir(&mut self, path: TreePath, uid: u32, gid: u32, mode: u32, layer: usize) {
        let mut e = Entry::new(path, EntryKind::Dir);
        e.uid = uid;
        e.gid = gid;
        e.mode = mode & 0o7777;
        self.push(e, layer);
    }

    fn bytes(&mut self, path: TreePath, bytes: &[u8], layer: usize) {
        let e = Entry::file(path, bytes.len() as u64, Content::Bytes(Arc::from(bytes)));
        self.push(e, layer);
    }
}

/// Builds the bootc layers of a committed tree. `layers` is the plan (at
/// least one); a file goes to the layer its first path was planned in.
pub fn build(c: &Committed, layers: usize) -> Result<Tree> {
    let repo = &c.repo;
    let mut b = Builder {
        entries: Vec::new(),
        rank: 0,
        next_link: 0,
    };
    // The repository skeleton.
    for d in [
        "sysroot",
        "sysroot/ostree",
        REPO,
        &format!("{REPO}/objects"),
    ] {
        b.dir(TreePath::parse(d.as_bytes())?, 0, 0, 0o755, 0);
    }
    for i in 0..=0xffu32 {
        b.dir(
            TreePath::parse(format!("{REPO}/objects/{i:02x}").as_bytes())?,
            0,
            0,
            0o755,
            0,
        );
    }
    for d in [
        "extensions",
        "refs",
        "refs/heads",
        "refs/mirrors",
        "refs/remotes",
        "state",
        "tmp",
        "tmp/cache",
    ] {
        b.dir(
            TreePath::parse(format!("{REPO}/{d}").as_bytes())?,
            0,
            0,
            0o755,
            0,
        );
    }
    b.bytes(
        TreePath::parse(format!("{REPO}/config").as_bytes())?,
        REPO_CONFIG,
        0,
    );

    // The commit, its detached metadata, the root's dirmeta.
    let commit = repo
        .load_variant(ostree::ObjectType::Commit, &c.checksum)
        .map_err(gerr("reading the commit"))?;
    b.bytes(object_path(&c.checksum, "commit"), commit.data(), 0);
    if let Some(meta) = repo
        .read_commit_detached_metadata(&c.checksum, gio::Cancellable::NONE)
        .map_err(gerr("reading the detached metadata"))?
    {
        b.bytes(object_path(&c.checksum, "commitmeta"), meta.data(), 0);
    }
    let root_tree = hex::encode(commit.child_value(6).data());
    let root_meta = hex::encode(commit.child_value(7).data());
    let mut written: HashSet<String> = HashSet::new();
    let meta_v = repo
        .load_variant(ostree::ObjectType::DirMeta, &root_meta)
        .map_err(gerr("reading the root dirmeta"))?;
    b.bytes(object_path(&root_meta, "dirmeta"), meta_v.data(), 0);
    written.insert(root_meta);

    // Walk the structure; gather file objects in walk order.
    let mut objects: Vec<(String, FileObject)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut has_var_tmp = false;
    let mut stack = vec![(TreePath::root(), root_tree)];
    while let Some((dir, tree_csum)) = stack.pop() {
        let v = repo
            .load_variant(ostree::ObjectType::DirTree, &tree_csum)
            .map_err(gerr("reading a dirtree"))?;
        if written.insert(tree_csum.clone()) {
            b.bytes(object_path(&tree_csum, "dirtree"), v.data(), 0);
        }
        let files = v.child_value(0);
        for i in 0..files.n_children() {
            let f = files.child_value(i);
            let name = f.child_value(0).str().unwrap_or_default().to_string();
            let csum = hex::encode(f.child_value(1).data());
            let path = dir.join(name.as_bytes());
            let at = if let Some(&at) = index.get(&csum) {
                at
            } else {
                let (info, xattrs) = repo
                    .query_file(&csum, gio::Cancellable::NONE)
                    .map_err(gerr("reading a file object"))?;
                let kind = if info.file_type() == gio::FileType::SymbolicLink {
                    use std::os::unix::ffi::OsStrExt;
                    EntryKind::Symlink(
                        info.symlink_target()
                            .map(|t| t.as_os_str().as_bytes().to_vec())
                            .unwrap_or_default(),
                    )
                } else {
                    EntryKind::File
                };
                let layer = c
                    .layer_of
                    .get(path.as_bytes())
                    .copied()
                    .unwrap_or(0)
                    .min(layers - 1);
                objects.push((
                    csum.clone(),
                    FileObject {
                        kind,
                        uid: info.attribute_uint32("unix::uid"),
                        gid: info.attribute_uint32("unix::gid"),
                        mode: info.attribute_uint32("unix::mode") & 0o7777,
                        size: u64::try_from(info.size()).unwrap_or(0),
                        xattrs: xattrs.data().to_vec(),
                        paths: Vec::new(),
                        layer,
                    },
                ));
                index.insert(csum, objects.len() - 1);
                objects.len() - 1
            };
            objects[at].1.paths.push(path);
        }
        let dirs = v.child_value(1);
        let mut subdirs = Vec::new();
        for i in 0..dirs.n_children() {
            let d = dirs.child_value(i);
            let name = d.child_value(0).str().unwrap_or_default().to_string();
            let tree = hex::encode(d.child_value(1).data());
            let meta = hex::encode(d.child_value(2).data());
            let mv = repo
                .load_variant(ostree::ObjectType::DirMeta, &meta)
                .map_err(gerr("reading a dirmeta"))?;
            if written.insert(meta.clone()) {
                b.bytes(object_path(&meta, "dirmeta"), mv.data(), 0);
            }
            let path = dir.join(name.as_bytes());
            if dir.is_root() && name == "sysroot" {
                // The tree's own /sysroot would clash with the repository.
                continue;
            }
            if path.as_bytes() == b"var/tmp" {
                has_var_tmp = true;
            }
            let uid = u32::from_be(mv.child_value(0).get::<u32>().unwrap_or_default());
            let gid = u32::from_be(mv.child_value(1).get::<u32>().unwrap_or_default());
            let mode = u32::from_be(mv.child_value(2).get::<u32>().unwrap_or_default());
            b.dir(real_path(&path), uid, gid, mode, 0);
            subdirs.push((path, tree));
        }
        // Depth first, in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    if !has_var_tmp {
        b.dir(TreePath::parse(b"var/tmp")?, 0, 0, 0o1777, 0);
    }

    // Content, layer by layer.
    for layer in 0..layers {
        for (csum, obj) in objects.iter().filter(|(_, o)| o.layer == layer) {
            b.bytes(object_path(csum, "file-xattrs-link"), &obj.xattrs, layer);
            let object = object_path(csum, "file");
            let shared = obj.size > 0 || matches!(obj.kind, EntryKind::Symlink(_));
            let link = shared.then(|| {
                b.next_link += 1;
                b.next_link
            });
            let make = |path: TreePath| {
                let mut e = Entry::new(path, obj.kind.clone());
                e.uid = obj.uid;
                e.gid = obj.gid;
                e.mode = obj.mode;
                if obj.kind == EntryKind::File {
                    e.size = obj.size;
                    if obj.size > 0 {
                        e.content = Content::Path(
                            c.path
                                .join("objects")
                                .join(&csum[..2])
                                .join(format!("{}.file", &csum[2..])),
                        );
                    }
                }
                e.link = link;
                e
            };
            b.push(make(object), layer);
            for p in &obj.paths {
                b.push(make(real_path(p)), layer);
            }
        }
    }

    let mut tree = Tree::with_capacity(b.entries.len());
    for e in b.entries {
        tree.push(e);
    }
    tree.normalize()?;
    Ok(tree)
}

/// The layer plan of the bootc image: the draft's, with the commit layer first.
#[must_use]
pub fn infos(plan: &[LayerInfo]) -> Vec<LayerInfo> {
    let mut out: Vec<LayerInfo> = plan.to_vec();
    if out.is_empty() {
        out.push(LayerInfo::default());
    }
    out[0].created_by = "ostree commit".to_string();
    out
}
