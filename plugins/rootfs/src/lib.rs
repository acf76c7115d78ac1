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

use std::collections::{BinaryHeap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

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
/// Directories are read by a few threads at once (`lstat` and xattrs are
/// most of a walk, and they wait on the kernel, not on each other); the
/// entries are put in path order afterwards, and hardlink groups and
/// content keys numbered in that order, so the tree does not depend on
/// which thread read what.
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
    let walk = Walk {
        root,
        ctx,
        // Extended attributes are read through /proc/self/fd when the
        // kernel lacks listxattrat and there is a /proc (checked once).
        proc_fd: Path::new("/proc/self/fd").is_dir(),
        queue: Mutex::new(Queue {
            dirs: BinaryHeap::from([DirTask::new(Arc::new(root_fd), None, TreePath::root())]),
            seq: 0,
            busy: 0,
            failed: None,
        }),
        changed: Condvar::new(),
        sockets: Mutex::new(Vec::new()),
    };
    let parts = walk.run(ctx.threads().clamp(1, 4))?;
    // Each walker's entries move into the tree (a part's memory goes as it
    // is taken); what only the walk knows of an entry waits in `side`,
    // its index held in the entry's link until the tree is in path order.
    let total = parts.iter().map(|p| p.len).sum();
    let mut tree = Tree::with_capacity(total);
    let mut side: Vec<Aside> = Vec::with_capacity(total);
    for w in parts.into_iter().flat_map(|p| p.chunks).flatten() {
        let mut entry = w.entry;
        if w.inode.is_some() || w.fingerprint.is_some() {
            entry.link = Some(side.len() as u64);
            side.push((w.inode, w.fingerprint));
        }
        tree.push(entry);
    }
    // Hardlink groups and content keys are numbered in path order, so the
    // tree does not depend on which walker read what.
    tree.normalize()?;
    let mut inodes: HashMap<(u64, u64), u64> = HashMap::new();
    let mut paths: Vec<Box<[u8]>> = Vec::new();
    let mut fingerprints: Vec<[u64; 7]> = Vec::new();
    let mut contents: Vec<(usize, u64)> = Vec::new();
    for (at, entry) in tree.entries_mut().iter_mut().enumerate() {
        let Some(index) = entry.link.take() else {
            continue;
        };
        let (inode, fingerprint) = side[index as usize];
        if let Some(inode) = inode {
            let next = inodes.len() as u64;
            entry.link = Some(*inodes.entry(inode).or_insert(next));
        }
        if let Some(fingerprint) = fingerprint {
            contents.push((at, paths.len() as u64));
            paths.push(entry.path.as_bytes().into());
            fingerprints.push(fingerprint);
        }
    }
    drop(side);
    let store: Arc<dyn ContentStore> = Arc::new(Files {
        root: root.to_path_buf(),
        fd: content_root,
        paths,
        fingerprints,
    });
    for (at, key) in contents {
        tree.entries_mut()[at].content = Content::Stored(Arc::clone(&store), key);
    }
    Ok(tree)
}

/// What the walk alone knows of an entry: the (device, inode) of a file
/// with several links, the fingerprint of a file with content.
type Aside = (Option<(u64, u64)>, Option<[u64; 7]>);

/// A directory to read: the open parent, the name in it (`None`: the
/// parent itself, the root), its path in the tree. A directory is opened
/// when its turn comes, so handles stay few.
struct DirTask {
    parent: Arc<OwnedFd>,
    name: Option<OsString>,
    at: TreePath,
    /// Components in `at`: the deepest directory waiting is read first.
    depth: usize,
    /// Order of queueing, among directories of one depth (the latest
    /// first).
    seq: u64,
}

impl DirTask {
    fn new(parent: Arc<OwnedFd>, name: Option<OsString>, at: TreePath) -> Self {
        let depth = if at.is_root() {
            0
        } else {
            at.as_bytes().split(|&b| b == b'/').count()
        };
        DirTask {
            parent,
            name,
            at,
            depth,
            seq: 0,
        }
    }
}

impl PartialEq for DirTask {
    fn eq(&self, other: &Self) -> bool {
        (self.depth, self.seq) == (other.depth, other.seq)
    }
}

impl Eq for DirTask {}

impl PartialOrd for DirTask {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DirTask {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.depth, self.seq).cmp(&(other.depth, other.seq))
    }
}

/// The walk's shared state.
struct Queue {
    /// Directories waiting to be read, the deepest on top: the walk goes
    /// down before it goes across, on every thread, so the parents held
    /// open by waiting directories stay along a few paths.
    dirs: BinaryHeap<DirTask>,
    /// The next [`DirTask::seq`].
    seq: u64,
    /// Directories being read now.
    busy: usize,
    /// The first error; every walker stops when it is set.
    failed: Option<Error>,
}

/// One entry as a walker found it.
struct Walked {
    entry: Entry,
    /// (device, inode) of a file with more than one link.
    inode: Option<(u64, u64)>,
    /// A regular file with content: what its `lstat` said (see
    /// [`Files::fingerprints`]).
    fingerprint: Option<[u64; 7]>,
}

/// A walker's entries, in chunks of a fixed size: growing never copies
/// what is held (a single vector doubling from 64 Ki to 128 Ki entries held
/// both, 16 and 32 MiB, on the 10x tree with one walker), and each chunk's
/// memory goes as soon as its entries have moved into the tree.
#[derive(Default)]
struct Found {
    chunks: Vec<Vec<Walked>>,
    len: usize,
}

impl Found {
    /// Entries per chunk.
    const CHUNK: usize = 4096;

    fn push(&mut self, walked: Walked) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < Self::CHUNK => last.push(walked),
            _ => {
                let mut chunk = Vec::with_capacity(Self::CHUNK);
                chunk.push(walked);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }
}

struct Walk<'a> {
    root: &'a Path,
    ctx: &'a Context,
    /// Whether `/proc/self/fd` can name the directory being read.
    proc_fd: bool,
    queue: Mutex<Queue>,
    /// Signalled whenever `queue` changes.
    changed: Condvar,
    /// Sockets found (skipped: a tar layer cannot hold them).
    sockets: Mutex<Vec<PathBuf>>,
}

impl Walk<'_> {
    /// Reads every directory in the queue, and those below them, on
    /// `threads` threads; the entries each thread found, in no particular
    /// order.
    fn run(self, threads: usize) -> Result<Vec<Found>> {
        let parts: Vec<Found> = std::thread::scope(|scope| {
            let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(|| self.work())).collect();
            let mut parts = vec![self.work()];
            for h in helpers {
                // A walker that panicked left the queue marked failed.
                parts.push(h.join().unwrap_or_default());
            }
            parts
        });
        let queue = self
            .queue
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        // A walker that panicked failed the queue (see `BusyGuard`).
        if let Some(e) = queue.failed {
            return Err(e);
        }
        let mut sockets = self
            .sockets
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        sockets.sort();
        for socket in sockets {
            self.ctx.warn(&format!(
                "skipping socket {} (a tar layer cannot hold sockets)",
                socket.display()
            ));
        }
        Ok(parts)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads directories from the queue until none is left and none is
    /// being read (or one failed); returns the entries it found.
    fn work(&self) -> Found {
        let mut found = Found::default();
        let mut dirent_buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
        loop {
            let task = {
                let mut q = self.lock();
                loop {
                    if q.failed.is_some() {
                        return found;
                    }
                    if let Some(task) = q.dirs.pop() {
                        q.busy += 1;
                        break task;
                    }
                    if q.busy == 0 {
                        return found;
                    }
                    q = self.changed.wait(q).unwrap_or_else(PoisonError::into_inner);
                }
            };
            // Marks the queue failed should reading the directory panic,
            // so the other walkers stop instead of waiting for it.
            let mut guard = BusyGuard {
                walk: self,
                done: false,
            };
            let result = self.read_dir(task, &mut found, &mut dirent_buf);
            guard.done = true;
            let mut q = self.lock();
            q.busy -= 1;
            match result {
                Ok(subdirs) => {
                    for mut dir in subdirs {
                        q.seq += 1;
                        dir.seq = q.seq;
                        q.dirs.push(dir);
                    }
                }
                Err(e) => {
                    q.failed.get_or_insert(e);
                }
            }
            drop(q);
            self.changed.notify_all();
        }
    }

    /// Reads one directory: its entries go to `found`; its subdirectories
    /// are returned, to be read in turn.
    fn read_dir(
        &self,
        task: DirTask,
        found: &mut Found,
        dirent_buf: &mut [std::mem::MaybeUninit<u8>],
    ) -> Result<Vec<DirTask>> {
        let DirTask {
            parent, name, at, ..
        } = task;
        let dir = match name {
            None => parent,
            Some(name) => {
                let fd = rustix::fs::openat(&*parent, name.as_os_str(), dir_flags(), Mode::empty())
                    .map_err(|e| {
                        if matches!(e, rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) {
                            Error::invalid(format!(
                                "{} is no longer a directory (it changed while being read)",
                                at.under(self.root).display()
                            ))
                        } else {
                            io_err(&at.under(self.root), e)
                        }
                    })?;
                // The parent's handle is let go as soon as this one is
                // open: with the deepest directory read first, handles
                // held stay near one per level of the deepest path.
                drop(parent);
                Arc::new(fd)
            }
        };
        let disk_dir = at.under(self.root);
        let mut subdirs = Vec::new();
        // Read straight from the handle: each directory is opened fresh,
        // at offset 0, and read once; each name is looked at as it comes.
        let mut entries = rustix::fs::RawDir::new(&*dir, dirent_buf);
        while let Some(entry) = entries.next() {
            let entry = entry.map_err(|e| io_err(&disk_dir, e))?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let path = at.join(name.as_bytes());
            if let Some(walked) = self.entry(&dir, name, path.clone())? {
                if walked.entry.is_dir() {
                    subdirs.push(DirTask::new(Arc::clone(&dir), Some(name.into()), path));
                }
                found.push(walked);
            }
        }
        Ok(subdirs)
    }

    fn entry(&self, dir: &OwnedFd, name: &OsStr, path: TreePath) -> Result<Option<Walked>> {
        let disk = path.under(self.root);
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err(&disk, e))?;
        let rdev = st.st_rdev;
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => EntryKind::File,
            FileType::Directory => EntryKind::Dir,
            FileType::Symlink => EntryKind::Symlink(
                rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| {
                        // Replaced by a non-symlink since the lstat.
                        if e == rustix::io::Errno::INVAL {
                            Error::invalid(format!(
                                "{} is no longer a symlink (it changed while being read)",
                                disk.display()
                            ))
                        } else {
                            io_err(&disk, e)
                        }
                    })?
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
                // Warned of in path order once the walk is done.
                self.sockets
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(disk);
                return Ok(None);
            }
        };
        let mut entry = Entry::new(path, kind);
        entry.mode = st.st_mode & 0o7777;
        entry.uid = st.st_uid;
        entry.gid = st.st_gid;
        entry.mtime = st.st_mtime;
        entry.xattrs = read_xattrs(dir, name, &disk, self.proc_fd)?;
        let mut walked = Walked {
            entry,
            inode: None,
            fingerprint: None,
        };
        if walked.entry.is_file() {
            let size = st.st_size as u64;
            walked.entry.size = size;
            if size > 0 {
                // Times before 1970 only need to differ, not to sort.
                #[allow(clippy::cast_sign_loss)]
                let fingerprint = [
                    st.st_dev,
                    st.st_ino,
                    size,
                    st.st_mtime as u64,
                    st.st_mtime_nsec as u64,
                    st.st_ctime as u64,
                    st.st_ctime_nsec as u64,
                ];
                walked.fingerprint = Some(fingerprint);
            }
            if st.st_nlink > 1 {
                walked.inode = Some((st.st_dev, st.st_ino));
            }
        }
        Ok(Some(walked))
    }
}

/// Fails the walk if the directory being read is left by a panic.
struct BusyGuard<'a, 'b> {
    walk: &'a Walk<'b>,
    done: bool,
}

impl Drop for BusyGuard<'_, '_> {
    fn drop(&mut self) {
        if !self.done {
            let mut q = self.walk.lock();
            q.busy -= 1;
            q.failed.get_or_insert(Error::invalid(format!(
                "{}: the walk stopped unexpectedly",
                self.walk.root.display()
            )));
            drop(q);
            self.walk.changed.notify_all();
        }
    }
}

/// Extended attributes: (name, value) pairs, sorted by name.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The extended attributes of `name` in `dir` (not following a symlink),
/// sorted. Read relative to the open directory with `listxattrat` and
/// `getxattrat` (Linux 6.13), or else through `/proc/self/fd/N/NAME` when
/// `proc_fd`, which the kernel resolves to the open directory itself:
/// either way nothing is looked up again from the root.
fn read_xattrs(dir: &OwnedFd, name: &OsStr, disk: &Path, proc_fd: bool) -> Result<Xattrs> {
    if let Some(list) = xattr_at::read(dir.as_fd(), name).map_err(|e| Error::io(disk, e))? {
        return Ok(list);
    }
    let path = if proc_fd {
        PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
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

/// `listxattrat` and `getxattrat` (Linux 6.13): extended attributes of a
/// name in an open directory, without a path walk through `/proc`. A
/// walk of 8,743 entries spent a quarter of its time resolving
/// `/proc/self/fd/N/NAME`.
mod xattr_at {
    use std::ffi::{CString, OsStr};
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// The system call numbers: the same on every architecture, as all
    /// calls added since Linux 5.1 are.
    const SYS_GETXATTRAT: libc::c_long = 464;
    const SYS_LISTXATTRAT: libc::c_long = 465;
    /// The kernel's bounds on a name list and on a value.
    const LIST_MAX: usize = 64 * 1024;
    const VALUE_MAX: usize = 64 * 1024;

    /// Cleared once the kernel (or a seccomp filter) refuses the calls.
    static AVAILABLE: AtomicBool = AtomicBool::new(true);

    #[repr(C)]
    struct XattrArgs {
        value: u64,
        size: u32,
        flags: u32,
    }

    /// Whether `e` says the calls cannot be used here (a kernel before
    /// 6.13, a seccomp filter); if so, they are not tried again.
    fn refused(e: &io::Error) -> bool {
        let refused = matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM));
        if refused {
            AVAILABLE.store(false, Ordering::Relaxed);
        }
        refused
    }

    /// Runs `call` with a buffer that grows up to `max` while the kernel
    /// says `ERANGE`; returns the bytes it wrote.
    fn sized(max: usize, mut call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 256];
        loop {
            let n = call(&mut buf);
            if let Ok(n) = usize::try_from(n) {
                buf.truncate(n);
                return Ok(buf);
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= max {
                return Err(e);
            }
            buf.resize((buf.len() * 4).min(max), 0);
        }
    }

    /// The attributes of `name` in `dir`, sorted; `None` when the kernel
    /// lacks the calls (the caller reads them another way).
    #[allow(unsafe_code)]
    pub(super) fn read(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<super::Xattrs>> {
        if !AVAILABLE.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let name = CString::new(name.as_bytes()).map_err(io::Error::other)?;
        let fd = libc::c_long::from(dir.as_raw_fd());
        let flags = libc::c_long::from(libc::AT_SYMLINK_NOFOLLOW);
        let list = sized(LIST_MAX, |buf| {
            // SAFETY: `name` is a NUL-terminated string and `buf` is
            // writable for `buf.len()` bytes; both outlive the call.
            unsafe {
                libc::syscall(
                    SYS_LISTXATTRAT,
                    fd,
                    name.as_ptr(),
                    flags,
                    buf.as_mut_ptr(),
                    buf.len(),
                ) as isize
            }
        });
        let list = match list {
            Ok(list) => list,
            // Filesystems without xattr support have none to keep.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Some(Vec::new())),
            Err(e) if refused(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for key in list.split(|&b| b == 0).filter(|k| !k.is_empty()) {
            let key_c = CString::new(key).map_err(io::Error::other)?;
            let value = sized(VALUE_MAX, |buf| {
                let mut args = XattrArgs {
                    value: buf.as_mut_ptr() as u64,
                    size: u32::try_from(buf.len()).unwrap_or(u32::MAX),
                    flags: 0,
                };
                // SAFETY: the strings are NUL-terminated, `args` points
                // at `buf`, writable for `args.size` bytes; all outlive
                // the call.
                unsafe {
                    libc::syscall(
                        SYS_GETXATTRAT,
                        fd,
                        name.as_ptr(),
                        flags,
                        key_c.as_ptr(),
                        std::ptr::addr_of_mut!(args),
                        std::mem::size_of::<XattrArgs>(),
                    ) as isize
                }
            });
            match value {
                Ok(value) => out.push((key.to_vec(), value)),
                // Removed between the list and the read.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                // getxattrat refused where listxattrat was not (a filter
                // that knows one call only): all of it the other way.
                Err(e) if refused(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        out.sort();
        Ok(Some(out))
    }
}

/// The tree's regular files, opened beneath the root's handle when read.
struct Files {
    root: PathBuf,
    fd: OwnedFd,
    /// Paths relative to the root, by key.
    paths: Vec<Box<[u8]>>,
    /// Device, inode, size, modification and change times of each file as
    /// the walk found them, by key: the layer cache's fingerprint. Taken
    /// from the walk's own `lstat`, so a cache check costs no system call;
    /// a file written after the walk is read as it is then, as without a
    /// cache.
    fingerprints: Vec<[u64; 7]>,
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
        // Its identity, size and times change whenever its content may have.
        let values = self.fingerprints.get(usize::try_from(key).ok()?)?;
        Some(treeport_core::tree::file_fingerprint_from(values))
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
    fn extended_attributes_are_read_relative_to_the_directory() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let root = dir.path();
        fs::create_dir(root.join("d")).expect("the test makes its directories");
        fs::write(root.join("d/f"), b"x").expect("the test writes its fixture");
        symlink("f", root.join("d/link")).expect("the test makes its symlink");
        // A value longer than the first buffer, and names past it too.
        let long = vec![b'v'; 5000];
        let f = root.join("d/f");
        if xattr::set(&f, "user.long", &long).is_err() {
            eprintln!("skipped: no user xattrs on {}", root.display());
            return;
        }
        for i in 0..40 {
            xattr::set(&f, format!("user.name-{i:02}-{}", "n".repeat(40)), b"1")
                .expect("the filesystem took user xattrs above");
        }
        xattr::set(root.join("d"), "user.dir", b"on a directory")
            .expect("the filesystem took user xattrs above");
        let tree = read_tree(root, &Context::quiet()).expect("the test fixture is valid");
        let get = |p: &[u8]| {
            tree.entries()
                .iter()
                .find(|e| e.path.as_bytes() == p)
                .expect("the walk found the fixture")
                .xattrs
                .clone()
        };
        let file = get(b"d/f");
        assert_eq!(file.len(), 41);
        assert!(file.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert!(file.contains(&(b"user.long".to_vec(), long)));
        assert_eq!(
            get(b"d"),
            [(b"user.dir".to_vec(), b"on a directory".to_vec())]
        );
        // The link itself has none; what it points to is not followed.
        assert!(get(b"d/link").is_empty());
        // The fallback through /proc reads the same.
        let d = rustix::fs::open(root.join("d"), dir_flags(), Mode::empty())
            .expect("the test fixture is valid");
        for proc_fd in [true, false] {
            let disk = root.join("d/f");
            let name = OsStr::new("f");
            let via_path = {
                let path = if proc_fd {
                    PathBuf::from(format!("/proc/self/fd/{}", d.as_raw_fd())).join(name)
                } else {
                    disk.clone()
                };
                let mut out: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(&path)
                    .expect("the test fixture is valid")
                    .map(|n| {
                        let v = xattr::get(&path, &n)
                            .expect("the test fixture is valid")
                            .expect("listed");
                        (n.as_bytes().to_vec(), v)
                    })
                    .collect();
                out.sort();
                out
            };
            assert_eq!(via_path, file);
            assert_eq!(
                read_xattrs(&d, name, &disk, proc_fd).expect("the test fixture is valid"),
                file
            );
        }
    }

    #[test]
    fn a_files_fingerprint_follows_its_walk_and_changes_with_it() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let root = dir.path();
        fs::write(root.join("f"), b"one").expect("the test writes its fixture");
        let fingerprint = || {
            let tree = read_tree(root, &Context::quiet()).expect("the test fixture is valid");
            let e = tree
                .entries()
                .iter()
                .find(|e| e.path.as_bytes() == b"f")
                .expect("the walk found the fixture");
            (
                e.content.fingerprint().expect("a file has one"),
                treeport_core::tree::file_fingerprint_of(
                    &fs::symlink_metadata(root.join("f")).expect("the fixture exists"),
                ),
            )
        };
        let (first, now) = fingerprint();
        assert_eq!(first, now, "the walk's lstat gives what metadata gives");
        fs::write(root.join("f"), b"two, longer").expect("the test writes its fixture");
        let (second, _) = fingerprint();
        assert_ne!(first, second);
    }

    #[test]
    fn the_tree_is_the_same_whichever_thread_reads_what() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let root = dir.path();
        // Enough directories that several walkers take part, hardlinks
        // across them, names that sort differently as paths and as names.
        for d in 0..60 {
            let sub = root.join(format!("d{d}")).join("inner");
            fs::create_dir_all(&sub).expect("the test makes its directories");
            fs::create_dir_all(root.join(format!("d{d}-x")))
                .expect("the test makes its directories");
            for f in 0..5 {
                fs::write(sub.join(format!("f{f}")), format!("{d}/{f}"))
                    .expect("the test writes its fixture");
            }
            fs::hard_link(sub.join("f0"), root.join(format!("d{d}-x/link")))
                .expect("the test fixture is valid");
        }
        let shape = |threads: usize| {
            let tree = read_tree(root, &Context::quiet().with_threads(threads))
                .expect("the test fixture is valid");
            tree.entries()
                .iter()
                .map(|e| {
                    let mut content = Vec::new();
                    e.content
                        .open()
                        .expect("the fixture is readable")
                        .read_to_end(&mut content)
                        .expect("the fixture is readable");
                    (e.path.to_string(), e.link, e.size, content)
                })
                .collect::<Vec<_>>()
        };
        let one = shape(1);
        assert_eq!(one.len(), 60 * (3 + 5 + 1));
        assert_eq!(one.iter().filter(|e| e.1.is_some()).count(), 120);
        for threads in [2, 3, 4, 8] {
            for _ in 0..5 {
                assert!(shape(threads) == one, "{threads} threads read another tree");
            }
        }
    }

    #[test]
    fn a_directory_gone_before_its_turn_stops_every_walker_with_its_name() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let root = dir.path();
        for d in 0..40 {
            fs::create_dir_all(root.join(format!("d{d:02}/a/b")))
                .expect("the test makes its directories");
        }
        let root_fd = Arc::new(
            rustix::fs::open(root, dir_flags(), Mode::empty()).expect("the fixture opens"),
        );
        let task = |name: &str| {
            DirTask::new(
                Arc::clone(&root_fd),
                Some(name.into()),
                TreePath::parse(name.as_bytes()).expect("the test literal parses"),
            )
        };
        let ctx = Context::quiet();
        for threads in [1, 2, 4] {
            // Listed, then removed before a walker opened it.
            let mut dirs: Vec<DirTask> = (0..40).map(|d| task(&format!("d{d:02}"))).collect();
            dirs.insert(20, task("gone"));
            let walk = Walk {
                root,
                ctx: &ctx,
                proc_fd: true,
                queue: Mutex::new(Queue {
                    dirs: dirs.into(),
                    seq: 0,
                    busy: 0,
                    failed: None,
                }),
                changed: Condvar::new(),
                sockets: Mutex::new(Vec::new()),
            };
            let err = walk.run(threads).err().expect("the walk fails").to_string();
            assert!(err.contains("/gone: No such file"), "{err}");
        }
    }

    #[test]
    fn a_missing_directory_is_named() {
        let err = read_tree(Path::new("/nonexistent/tree"), &Context::quiet())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "/nonexistent/tree: No such file or directory");
    }
}
