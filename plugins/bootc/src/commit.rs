//! Writing a draft's tree as an OSTree commit, in a temporary repository,
//! with libostree. A tree that came from an OSTree commit and was not
//! changed gives back the very same objects, and then the original commit
//! object is kept, so the checksum is the source's.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

use ostree::gio::prelude::*;
use ostree::{gio, glib};
use treeport_core::error::{Error, Result};
use treeport_core::image::ImageDraft;
use treeport_core::image::attachments::{
    OSTREE_COMMIT, OSTREE_COMMITMETA, OSTREE_ROOT_DIRMETA, OSTREE_USR_ETC,
};
use treeport_core::progress::Context;
use treeport_core::tree::{Entry, EntryKind, TreePath, Xattrs};

/// A commit in a temporary repository.
pub struct Committed {
    pub repo: ostree::Repo,
    pub path: PathBuf,
    pub checksum: String,
    /// Layer of each file, by its path in the commit (with `/usr/etc`).
    pub layer_of: HashMap<Vec<u8>, usize>,
    /// True when the commit is the source's own, unchanged.
    pub reused: bool,
    /// Removed with the commit.
    pub dir: tempfile::TempDir,
}

fn gerr(what: &str) -> impl Fn(glib::Error) -> Error + '_ {
    move |e| Error::invalid(format!("{what}: {}", e.message()))
}

/// `a(ayay)` with NUL-terminated names, as OSTree stores them.
fn xattrs_variant(xattrs: &Xattrs) -> glib::Variant {
    let items: Vec<(Vec<u8>, Vec<u8>)> = xattrs
        .iter()
        .map(|(k, v)| {
            let mut name = k.clone();
            name.push(0);
            (name, v.clone())
        })
        .collect();
    glib::ToVariant::to_variant(&items)
}

fn dirmeta(repo: &ostree::Repo, uid: u32, gid: u32, mode: u32, xattrs: &Xattrs) -> Result<String> {
    let info = gio::FileInfo::new();
    info.set_attribute_uint32("unix::uid", uid);
    info.set_attribute_uint32("unix::gid", gid);
    info.set_attribute_uint32("unix::mode", libc::S_IFDIR | (mode & 0o7777));
    let v = ostree::create_directory_metadata(&info, Some(&xattrs_variant(xattrs)));
    Ok(repo
        .write_metadata(
            ostree::ObjectType::DirMeta,
            None,
            &v,
            gio::Cancellable::NONE,
        )
        .map_err(gerr("writing a dirmeta object"))?
        .to_hex())
}

/// The path a tree entry takes in the commit.
fn commit_path(path: &TreePath, etc_to_usr: bool) -> TreePath {
    let etc = TreePath::parse(b"etc").expect("valid");
    if etc_to_usr && path.starts_with(&etc) {
        let rest = path.strip_prefix(&etc).unwrap_or_default();
        let usr_etc = TreePath::parse(b"usr/etc").expect("valid");
        if rest.is_root() {
            usr_etc
        } else {
            usr_etc.join(rest.as_bytes())
        }
    } else {
        path.clone()
    }
}

fn utf8<'a>(bytes: &'a [u8], what: &TreePath) -> Result<&'a str> {
    std::str::from_utf8(bytes)
        .map_err(|_| Error::invalid(format!("{what}: not UTF-8, OSTree needs UTF-8 names")))
}

/// Writes objects for a tree's entries, remembering what it wrote.
struct Writer<'a> {
    repo: &'a ostree::Repo,
    /// Directory nodes by path in the commit.
    nodes: HashMap<Vec<u8>, ostree::MutableTree>,
    /// dirmeta checksums by (uid, gid, mode, xattrs).
    metas: HashMap<(u32, u32, u32, Xattrs), String>,
    /// file object checksums by hardlink group.
    linked: HashMap<u64, String>,
    buf: Vec<u8>,
}

impl Writer<'_> {
    /// The node for a directory, made (with its parents) if missing.
    fn node(&mut self, dir: &TreePath) -> Result<ostree::MutableTree> {
        if let Some(n) = self.nodes.get(dir.as_bytes()) {
            return Ok(n.clone());
        }
        let parent = self.node(&dir.parent().unwrap_or_default())?;
        let name = utf8(dir.file_name(), dir)?;
        let n = parent
            .ensure_dir(name)
            .map_err(|e| Error::invalid(format!("{dir}: {}", e.message())))?;
        self.nodes.insert(dir.as_bytes().to_vec(), n.clone());
        Ok(n)
    }

    fn dir_meta(&mut self, entry: &Entry) -> Result<String> {
        let key = (entry.uid, entry.gid, entry.mode, entry.xattrs.clone());
        if let Some(m) = self.metas.get(&key) {
            return Ok(m.clone());
        }
        let m = dirmeta(self.repo, entry.uid, entry.gid, entry.mode, &entry.xattrs)?;
        self.metas.insert(key, m.clone());
        Ok(m)
    }

    /// Writes a regular file's object, streaming its content.
    fn file_object(&mut self, entry: &Entry) -> Result<String> {
        if let Some(c) = entry.link.and_then(|l| self.linked.get(&l)) {
            return Ok(c.clone());
        }
        let writer = self
            .repo
            .write_regfile(
                None,
                entry.uid,
                entry.gid,
                libc::S_IFREG | entry.mode,
                entry.size,
                Some(&xattrs_variant(&entry.xattrs)),
            )
            .map_err(gerr("writing a file object"))?;
        let mut reader = entry.content.open()?;
        let mut left = entry.size;
        while left > 0 {
            let want = self
                .buf
                .len()
                .min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = reader
                .read(&mut self.buf[..want])
                .map_err(|e| Error::invalid(format!("reading {}: {e}", entry.path)))?;
            if n == 0 {
                return Err(Error::invalid(format!(
                    "'{}' changed while being read: fewer bytes than the {} recorded",
                    entry.path, entry.size
                )));
            }
            writer
                .write_all(&self.buf[..n], gio::Cancellable::NONE)
                .map_err(gerr("writing a file object"))?;
            left -= n as u64;
        }
        let c = writer
            .finish(gio::Cancellable::NONE)
            .map_err(gerr("writing a file object"))?
            .to_string();
        if let Some(l) = entry.link {
            self.linked.insert(l, c.clone());
        }
        Ok(c)
    }
}

/// A commit of the tree with treeport's metadata: the version label, and
/// what `ostree commit --bootable` records for a tree with one kernel.
fn write_new_commit(
    repo: &ostree::Repo,
    image: &ImageDraft,
    root: &ostree::RepoFile,
) -> Result<String> {
    let dict = glib::VariantDict::new(None);
    if let Some(v) = image.config.labels.get("org.opencontainers.image.version") {
        dict.insert("version", v.as_str());
    }
    if let [kernel] = crate::lint::kernels(&image.tree).as_slice() {
        dict.insert("ostree.bootable", true);
        dict.insert("ostree.linux", kernel.as_str());
    }
    let time = u64::try_from(image.source_time.unwrap_or(0)).unwrap_or(0);
    Ok(repo
        .write_commit_with_time(
            None,
            Some("treeport"),
            None,
            Some(&dict.end()),
            root,
            time,
            gio::Cancellable::NONE,
        )
        .map_err(gerr("writing the commit"))?
        .to_string())
}

/// Commits the draft's tree into a new temporary repository.
pub fn commit(image: &ImageDraft, ctx: &Context) -> Result<Committed> {
    let dir = treeport_core::blobs::temp_dir_in(&std::env::temp_dir())?;
    let path = dir.path().join("repo");
    let repo = ostree::Repo::new_for_path(&path);
    repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE)
        .map_err(gerr("creating the temporary OSTree repository"))?;

    let original = image.attachments.get(OSTREE_COMMIT);
    let etc = TreePath::parse(b"etc")?;
    let usr_etc = TreePath::parse(b"usr/etc")?;
    let etc_to_usr = match original {
        Some(_) => image.attachments.contains_key(OSTREE_USR_ETC),
        None => image.tree.get(&etc).is_some() && image.tree.get(&usr_etc).is_none(),
    };

    repo.prepare_transaction(gio::Cancellable::NONE)
        .map_err(gerr("starting a transaction"))?;
    let root = ostree::MutableTree::new();
    let root_meta = match image.attachments.get(OSTREE_ROOT_DIRMETA) {
        Some(bytes) => {
            let v = glib::Variant::from_bytes_with_type(
                &glib::Bytes::from(&bytes[..]),
                glib::VariantTy::new("(uuua(ayay))").expect("valid type"),
            );
            repo.write_metadata(
                ostree::ObjectType::DirMeta,
                None,
                &v,
                gio::Cancellable::NONE,
            )
            .map_err(gerr("writing the root dirmeta"))?
            .to_hex()
        }
        None => dirmeta(&repo, 0, 0, 0o755, &Vec::new())?,
    };
    root.set_metadata_checksum(&root_meta);

    let mut w = Writer {
        repo: &repo,
        nodes: HashMap::from([(Vec::new(), root.clone())]),
        metas: HashMap::new(),
        linked: HashMap::new(),
        buf: vec![0u8; 256 * 1024],
    };
    let mut layer_of: HashMap<Vec<u8>, usize> = HashMap::new();
    for entry in image.tree.entries() {
        let target = commit_path(&entry.path, etc_to_usr);
        let name = utf8(target.file_name(), &entry.path)?.to_string();
        let parent = target.parent().unwrap_or_default();
        let checksum = match &entry.kind {
            EntryKind::Dir => {
                let meta = w.dir_meta(entry)?;
                w.node(&target)?.set_metadata_checksum(&meta);
                continue;
            }
            EntryKind::File => w.file_object(entry)?,
            EntryKind::Symlink(t) => repo
                .write_symlink(
                    None,
                    entry.uid,
                    entry.gid,
                    Some(&xattrs_variant(&entry.xattrs)),
                    utf8(t, &entry.path)?,
                    gio::Cancellable::NONE,
                )
                .map_err(gerr("writing a symlink object"))?
                .to_string(),
            // Reported by the "devices" lint.
            EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo => {
                continue;
            }
        };
        layer_of.insert(target.as_bytes().to_vec(), entry.layer);
        w.node(&parent)?
            .replace_file(&name, &checksum)
            .map_err(|e| Error::invalid(format!("{}: {}", entry.path, e.message())))?;
    }

    let root_file = repo
        .write_mtree(&root, gio::Cancellable::NONE)
        .map_err(gerr("writing the directory tree"))?
        .downcast::<ostree::RepoFile>()
        .map_err(|_| Error::invalid("libostree returned no repository file for the tree"))?;
    let contents = root.contents_checksum().to_string();

    // The source's commit, when the tree is exactly its tree.
    let mut reused = false;
    let mut checksum = None;
    if let Some(bytes) = original {
        let v = glib::Variant::from_bytes_with_type(
            &glib::Bytes::from(&bytes[..]),
            glib::VariantTy::new("(a{sv}aya(say)sstayay)").expect("valid type"),
        );
        let same = hex::encode(v.child_value(6).data()) == contents
            && hex::encode(v.child_value(7).data()) == root_meta;
        if same {
            let c = repo
                .write_metadata(ostree::ObjectType::Commit, None, &v, gio::Cancellable::NONE)
                .map_err(gerr("writing the commit object"))?
                .to_hex();
            if let Some(meta) = image.attachments.get(OSTREE_COMMITMETA) {
                let m = glib::Variant::from_bytes_with_type(
                    &glib::Bytes::from(&meta[..]),
                    glib::VariantTy::VARDICT,
                );
                repo.write_commit_detached_metadata(&c, Some(&m), gio::Cancellable::NONE)
                    .map_err(gerr("writing the detached metadata"))?;
            }
            checksum = Some(c);
            reused = true;
        } else {
            ctx.warn("the tree differs from its OSTree commit; committing it anew");
        }
    }
    let checksum = if let Some(c) = checksum {
        c
    } else {
        write_new_commit(&repo, image, &root_file)?
    };
    repo.commit_transaction(gio::Cancellable::NONE)
        .map_err(gerr("finishing the transaction"))?;
    Ok(Committed {
        repo,
        path,
        checksum,
        layer_of,
        reused,
        dir,
    })
}
