//! Source `rootfs:DIR`: a root filesystem directory, read with `lstat`.
//!
//! Nothing is followed: a symlink is recorded as a symlink, whatever it points
//! to, and files are opened with `O_NOFOLLOW` when the encoder reads them.
//! Owner, permission bits (setuid, setgid, sticky), extended attributes,
//! hardlinks and device numbers are kept. Sockets cannot go in a tar layer and
//! are skipped with a warning.

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use treeport_core::error::{Error, IoResultExt, Result};
use treeport_core::image::ImageDraft;
use treeport_core::plugin::{Builtin, BuiltinFactory, Options, Selector, Source};
use treeport_core::progress::Context;
use treeport_core::tree::{Content, Entry, EntryKind, Tree, TreePath};

treeport_core::inventory::submit! {
    Builtin {
        kind: "rootfs",
        description: "a root filesystem directory, read with lstat (owners, modes, xattrs, hardlinks, devices)",
        usage: "rootfs:DIR",
        options: &[],
        factory: BuiltinFactory::Source(RootfsSource::build),
    }
}

/// Reads a directory tree.
pub struct RootfsSource {
    root: PathBuf,
}

impl RootfsSource {
    /// A source reading the tree at `root`.
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RootfsSource { root: root.into() }
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        options.check_keys("source rootfs", &[])?;
        let dir = selector.require_rest("a directory")?;
        Ok(Box::new(RootfsSource::new(dir)))
    }
}

impl Source for RootfsSource {
    fn read(&mut self, ctx: &Context) -> Result<ImageDraft> {
        let tree = read_tree(&self.root, ctx)?;
        Ok(ImageDraft::new(tree))
    }
}

/// Reads the tree under `root` into a [`Tree`] whose file content refers to
/// the files on disk.
///
/// # Errors
/// `root` is missing or not a directory, or an entry cannot be read; the
/// error names the path.
pub fn read_tree(root: &Path, ctx: &Context) -> Result<Tree> {
    let meta = fs::symlink_metadata(root)
        .at(root)
        .map_err(|e| e.context("rootfs source"))?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "rootfs source: {} is not a directory",
            root.display()
        )));
    }
    let mut walker = Walker {
        tree: Tree::new(),
        inodes: HashMap::new(),
        ctx,
    };
    let mut stack: Vec<(PathBuf, TreePath)> = vec![(root.to_path_buf(), TreePath::root())];
    while let Some((dir, at)) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)
            .at(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .at(&dir)?;
        names.sort();
        // Push in reverse so the walk visits names in order (the tree is
        // sorted again anyway; this keeps the stack small and the I/O local).
        for name in names.into_iter().rev() {
            let disk = dir.join(&name);
            let path = at.join(name.as_bytes());
            if let Some(entry) = walker.entry(&disk, path.clone())? {
                if entry.is_dir() {
                    stack.push((disk, path));
                }
                walker.tree.push(entry);
            }
        }
    }
    Ok(walker.tree)
}

struct Walker<'a> {
    tree: Tree,
    /// (device, inode) of multiply-linked files -> hardlink group id.
    inodes: HashMap<(u64, u64), u64>,
    ctx: &'a Context,
}

impl Walker<'_> {
    fn entry(&mut self, disk: &Path, path: TreePath) -> Result<Option<Entry>> {
        let meta = fs::symlink_metadata(disk).at(disk)?;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            EntryKind::File
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_symlink() {
            EntryKind::Symlink(
                fs::read_link(disk)
                    .at(disk)?
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        } else if ft.is_char_device() {
            EntryKind::CharDevice {
                major: libc::major(meta.rdev()),
                minor: libc::minor(meta.rdev()),
            }
        } else if ft.is_block_device() {
            EntryKind::BlockDevice {
                major: libc::major(meta.rdev()),
                minor: libc::minor(meta.rdev()),
            }
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else {
            self.ctx.warn(&format!(
                "skipping socket {} (a tar layer cannot hold sockets)",
                disk.display()
            ));
            return Ok(None);
        };
        let mut entry = Entry::new(path, kind);
        entry.mode = meta.mode() & 0o7777;
        entry.uid = meta.uid();
        entry.gid = meta.gid();
        entry.mtime = meta.mtime();
        entry.xattrs = read_xattrs(disk)?;
        if entry.is_file() {
            entry.size = meta.len();
            entry.content = Content::Path(disk.to_path_buf());
            if meta.nlink() > 1 {
                let next = self.inodes.len() as u64;
                entry.link = Some(*self.inodes.entry((meta.dev(), meta.ino())).or_insert(next));
            }
        }
        Ok(Some(entry))
    }
}

/// The extended attributes of `path` (not following a symlink), sorted.
fn read_xattrs(path: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        // Filesystems without xattr support have none to keep.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        if let Some(value) = xattr::get(path, &name).at(path)? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_kinds_links_and_modes_without_following() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("etc")).unwrap();
        fs::write(root.join("etc/a"), b"hello").unwrap();
        fs::hard_link(root.join("etc/a"), root.join("etc/b")).unwrap();
        symlink("/etc/passwd", root.join("escape")).unwrap();
        symlink("/", root.join("rootlink")).unwrap();
        let mut tree = read_tree(root, &Context::quiet()).unwrap();
        tree.normalize().unwrap();
        let names: Vec<String> = tree.entries().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["/escape", "/etc", "/etc/a", "/etc/b", "/rootlink"]);
        let a = tree.get(&TreePath::parse(b"etc/a").unwrap()).unwrap();
        let b = tree.get(&TreePath::parse(b"etc/b").unwrap()).unwrap();
        assert!(a.link.is_some());
        assert_eq!(a.link, b.link);
        let link = tree.get(&TreePath::parse(b"rootlink").unwrap()).unwrap();
        assert_eq!(link.kind, EntryKind::Symlink(b"/".to_vec()));
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = read_tree(Path::new("/nonexistent/tree"), &Context::quiet())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "rootfs source: /nonexistent/tree: No such file or directory"
        );
    }
}
