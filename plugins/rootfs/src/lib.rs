//! Source `rootfs:DIR`: a root filesystem directory, read with `lstat`.
//!
//! Nothing is followed, and no path is ever resolved again from the root:
//! the walk holds each directory open and looks at its entries relative to
//! that handle, opening a subdirectory only if it still is one (`O_NOFOLLOW
//! | O_DIRECTORY`); file content is opened when the encoder reads it with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` from the root's handle
//! (or component by component with `O_NOFOLLOW` where the kernel lacks
//! `openat2`). A directory swapped for a symlink while an export runs makes
//! the export fail; it never puts what the link points to in the image.
//!
//! Owner, permission bits (setuid, setgid, sticky), extended attributes,
//! hardlinks and device numbers are kept. Sockets cannot go in a tar layer and
//! are skipped with a warning.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use treeport_core::error::{Error, Result};
use treeport_core::image::ImageDraft;
use treeport_core::plugin::{Builtin, BuiltinFactory, Options, Selector, Source};
use treeport_core::progress::Context;
use treeport_core::tree::{Content, ContentStore, Entry, EntryKind, Tree, TreePath};

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

fn io_err(path: &Path, e: impl Into<io::Error>) -> Error {
    Error::io(path, e.into())
}

/// Flags for opening a directory of the tree: never through a symlink.
fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Reads the tree under `root` into a [`Tree`] whose file content is read
/// from the files on disk, beneath `root`, when the encoder needs it.
///
/// # Errors
/// `root` is missing or not a directory, or an entry cannot be read; the
/// error names the path.
pub fn read_tree(root: &Path, ctx: &Context) -> Result<Tree> {
    let root_fd = rustix::fs::open(root, dir_flags(), Mode::empty()).map_err(|e| {
        if e == rustix::io::Errno::NOTDIR {
            Error::invalid(format!("{} is not a directory", root.display()))
        } else {
            io_err(root, e)
        }
    })?;
    let content_root = root_fd.try_clone().map_err(|e| io_err(root, e))?;
    let mut walker = Walker {
        tree: Tree::new(),
        inodes: HashMap::new(),
        ctx,
        root,
        paths: Vec::new(),
        contents: Vec::new(),
    };
    // Directories to read: the open parent, the name in it, the tree path.
    // A directory is opened when its turn comes, so at most one handle per
    // level of depth is open at a time.
    let root_fd = Arc::new(root_fd);
    let mut stack: Vec<(Arc<OwnedFd>, Option<OsString>, TreePath)> =
        vec![(root_fd, None, TreePath::root())];
    while let Some((parent, name, at)) = stack.pop() {
        let dir = match &name {
            None => parent,
            Some(name) => Arc::new(
                rustix::fs::openat(&*parent, name.as_os_str(), dir_flags(), Mode::empty())
                    .map_err(|e| {
                        if matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) {
                            Error::invalid(format!(
                                "{} is no longer a directory (it changed while being read)",
                                at.under(root).display()
                            ))
                        } else {
                            io_err(&at.under(root), e)
                        }
                    })?,
            ),
        };
        let disk_dir = at.under(root);
        let mut names: Vec<OsString> = Vec::new();
        for entry in rustix::fs::Dir::read_from(&*dir).map_err(|e| io_err(&disk_dir, e))? {
            let entry = entry.map_err(|e| io_err(&disk_dir, e))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(OsStr::from_bytes(name).to_os_string());
            }
        }
        names.sort();
        // Push in reverse so the walk visits names in order (the tree is
        // sorted again anyway; this keeps the I/O local).
        for name in names.into_iter().rev() {
            let path = at.join(name.as_bytes());
            if let Some(entry) = walker.entry(&dir, &name, path.clone())? {
                if entry.is_dir() {
                    stack.push((Arc::clone(&dir), Some(name), path));
                }
                walker.tree.push(entry);
            }
        }
    }
    let Walker {
        mut tree,
        contents,
        paths,
        ..
    } = walker;
    let store: Arc<dyn ContentStore> = Arc::new(Files {
        root: root.to_path_buf(),
        fd: content_root,
        paths,
    });
    for (at, key) in contents {
        tree.entries_mut()[at].content = Content::Stored(Arc::clone(&store), key);
    }
    Ok(tree)
}

struct Walker<'a> {
    tree: Tree,
    /// (device, inode) of multiply-linked files -> hardlink group id.
    inodes: HashMap<(u64, u64), u64>,
    ctx: &'a Context,
    root: &'a Path,
    /// Paths (relative to the root) of regular files with content, by key.
    paths: Vec<Box<[u8]>>,
    /// (index in the tree, key) of regular files with content.
    contents: Vec<(usize, u64)>,
}

impl Walker<'_> {
    fn entry(&mut self, dir: &OwnedFd, name: &OsStr, path: TreePath) -> Result<Option<Entry>> {
        let disk = path.under(self.root);
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&disk, e))?;
        let rdev = st.st_rdev;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink(
                rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| io_err(&disk, e))?
                    .into_bytes(),
            ),
            FileType::CharacterDevice => EntryKind::CharDevice {
                major: rustix::fs::major(rdev),
                minor: rustix::fs::minor(rdev),
            },
            FileType::BlockDevice => EntryKind::BlockDevice {
                major: rustix::fs::major(rdev),
                minor: rustix::fs::minor(rdev),
            },
            FileType::Fifo => EntryKind::Fifo,
            _ => {
                self.ctx.warn(&format!(
                    "skipping socket {} (a tar layer cannot hold sockets)",
                    disk.display()
                ));
                return Ok(None);
            }
        };
        let mut entry = Entry::new(path, kind);
        entry.mode = st.st_mode & 0o7777;
        entry.uid = st.st_uid;
        entry.gid = st.st_gid;
        entry.mtime = st.st_mtime;
        entry.xattrs = read_xattrs(dir, name, &disk)?;
        if entry.is_file() {
            entry.size = st.st_size as u64;
            if entry.size > 0 {
                self.paths.push(entry.path.as_bytes().into());
                self.contents
                    .push((self.tree.len(), self.paths.len() as u64 - 1));
            }
            if st.st_nlink > 1 {
                let next = self.inodes.len() as u64;
                entry.link = Some(*self.inodes.entry((st.st_dev, st.st_ino)).or_insert(next));
            }
        }
        Ok(Some(entry))
    }
}

/// The extended attributes of `name` in `dir` (not following a symlink),
/// sorted. Read through `/proc/self/fd/N/NAME`, which the kernel resolves
/// to the open directory itself: nothing is looked up again from the root.
fn read_xattrs(dir: &OwnedFd, name: &OsStr, disk: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let proc_dir = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let path = if proc_dir.is_dir() {
        proc_dir.join(name)
    } else {
        // No /proc: the path on disk (the directory was checked a moment
        // ago; xattrs are metadata, never content).
        disk.to_path_buf()
    };
    let names = match xattr::list(&path) {
        Ok(names) => names,
        // Filesystems without xattr support have none to keep.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(disk, e)),
    };
    let mut out = Vec::new();
    for n in names {
        if let Some(value) = xattr::get(&path, &n).map_err(|e| Error::io(disk, e))? {
            out.push((n.as_bytes().to_vec(), value));
        }
    }
    out.sort();
    Ok(out)
}

/// The tree's regular files, opened beneath the root's handle when read.
struct Files {
    root: PathBuf,
    fd: OwnedFd,
    /// Paths relative to the root, by key.
    paths: Vec<Box<[u8]>>,
}

impl Files {
    fn relative(&self, key: u64) -> &[u8] {
        &self.paths[key as usize]
    }

    /// Opens `rel` beneath the root, through no symlink at all.
    fn open_beneath(&self, rel: &[u8]) -> io::Result<File> {
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        let fd = match rustix::fs::openat2(
            &self.fd,
            OsStr::from_bytes(rel),
            flags,
            Mode::empty(),
            resolve,
        ) {
            Ok(fd) => fd,
            // No openat2 here (Linux before 5.6, or a seccomp filter): walk
            // the components, each opened without following a symlink.
            Err(rustix::io::Errno::NOSYS | rustix::io::Errno::PERM) => {
                self.open_by_components(rel)?
            }
            Err(e) => return Err(e.into()),
        };
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "is no longer a regular file (it changed while being read)",
            ));
        }
        // Reads from a regular file ignore O_NONBLOCK; it was there so a
        // FIFO put in the file's place could not block the open.
        Ok(file)
    }

    fn open_by_components(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        let mut parts: Vec<&[u8]> = rel.split(|&b| b == b'/').collect();
        let last = parts.pop().unwrap_or_default();
        let mut dir: Option<OwnedFd> = None;
        for part in parts {
            let base = dir.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            dir = Some(rustix::fs::openat(
                base,
                OsStr::from_bytes(part),
                dir_flags(),
                Mode::empty(),
            )?);
        }
        let base = dir.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
        Ok(rustix::fs::openat(
            base,
            OsStr::from_bytes(last),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )?)
    }
}

impl ContentStore for Files {
    fn open(&self, key: u64) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(self.open_beneath(self.relative(key))?))
    }

    fn describe(&self, key: u64) -> String {
        self.root
            .join(OsStr::from_bytes(self.relative(key)))
            .display()
            .to_string()
    }

    fn fingerprint(&self, key: u64) -> Option<Vec<u8>> {
        // The file as it is now, found beneath the root: its identity,
        // size and times change whenever its content may have.
        let file = self.open_beneath(self.relative(key)).ok()?;
        let m = file.metadata().ok()?;
        Some(treeport_core::tree::file_fingerprint_of(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_kinds_links_and_modes_without_following() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let root = dir.path();
        fs::create_dir(root.join("etc")).expect("the test makes its directories");
        fs::write(root.join("etc/a"), b"hello").expect("the test writes its fixture");
        fs::hard_link(root.join("etc/a"), root.join("etc/b")).expect("the test fixture is valid");
        symlink("/etc/passwd", root.join("escape")).expect("the test makes its symlink");
        symlink("/", root.join("rootlink")).expect("the test makes its symlink");
        let mut tree = read_tree(root, &Context::quiet()).expect("the test fixture is valid");
        tree.normalize().expect("the test fixture is valid");
        let names: Vec<String> = tree.entries().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["/escape", "/etc", "/etc/a", "/etc/b", "/rootlink"]);
        let a = tree
            .get(&TreePath::parse(b"etc/a").expect("the test literal parses"))
            .expect("the test literal parses");
        let b = tree
            .get(&TreePath::parse(b"etc/b").expect("the test literal parses"))
            .expect("the test literal parses");
        assert!(a.link.is_some());
        assert_eq!(a.link, b.link);
        let link = tree
            .get(&TreePath::parse(b"rootlink").expect("the test literal parses"))
            .expect("the test literal parses");
        assert_eq!(link.kind, EntryKind::Symlink(b"/".to_vec()));
        let mut content = Vec::new();
        a.content
            .open()
            .expect("reading from memory works")
            .read_to_end(&mut content)
            .expect("reading from memory works");
        assert_eq!(content, b"hello");
    }

    #[test]
    fn content_is_never_read_through_a_directory_swapped_for_a_symlink() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("etc")).expect("the test makes its directories");
        fs::write(root.join("etc/passwd"), b"inside").expect("the test writes its fixture");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).expect("the test makes its directories");
        fs::write(outside.join("passwd"), b"SECRET").expect("the test writes its fixture");
        let tree = read_tree(&root, &Context::quiet()).expect("the test fixture is valid");
        // After the walk, before the encoder reads: etc becomes a link out.
        fs::rename(root.join("etc"), dir.path().join("old-etc"))
            .expect("the test fixture is valid");
        symlink(&outside, root.join("etc")).expect("the test makes its symlink");
        let entry = tree
            .entries()
            .iter()
            .find(|e| e.path.as_bytes() == b"etc/passwd")
            .expect("the test fixture is valid");
        let err = entry.content.open().err().expect("refused").to_string();
        assert!(err.contains("etc/passwd"), "{err}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = read_tree(Path::new("/nonexistent/tree"), &Context::quiet())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "/nonexistent/tree: No such file or directory");
    }
}
