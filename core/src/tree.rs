//! The filesystem tree a source yields and transforms reshape.
//!
//! A [`Tree`] is a flat list of [`Entry`]s in a canonical order: parents
//! before children, siblings by name. Entries carry metadata only; file content
//! is opened lazily through [`Content`], so a tree of any size costs memory in
//! proportion to its number of entries, never to its bytes.

use std::cmp::Ordering;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A path inside a tree: relative, `/`-separated, without `.` or `..`
/// components, without a leading or trailing slash. The root is the empty path.
/// Names are bytes; they need not be UTF-8.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct TreePath(Vec<u8>);

impl TreePath {
    /// The root of the tree.
    #[must_use]
    pub fn root() -> Self {
        TreePath(Vec::new())
    }

    /// Normalises a path as archives spell it (`./a/b/`, `/a//b`) and checks
    /// that it stays inside the tree.
    ///
    /// # Errors
    /// A `..` component, or a NUL byte, is refused.
    pub fn parse(raw: &[u8]) -> Result<Self> {
        let mut out = Vec::with_capacity(raw.len());
        for component in raw.split(|&b| b == b'/') {
            match component {
                b"" | b"." => {}
                b".." => {
                    return Err(Error::invalid(format!(
                        "path '{}' escapes the root",
                        String::from_utf8_lossy(raw)
                    )));
                }
                name => {
                    if name.contains(&0) {
                        return Err(Error::invalid(format!(
                            "path '{}' contains a NUL byte",
                            String::from_utf8_lossy(raw)
                        )));
                    }
                    if !out.is_empty() {
                        out.push(b'/');
                    }
                    out.extend_from_slice(name);
                }
            }
        }
        Ok(TreePath(out))
    }

    /// The path's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for the root.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The parent directory; the root's parent is `None`.
    #[must_use]
    pub fn parent(&self) -> Option<TreePath> {
        if self.0.is_empty() {
            return None;
        }
        Some(match self.0.iter().rposition(|&b| b == b'/') {
            Some(at) => TreePath(self.0[..at].to_vec()),
            None => TreePath::root(),
        })
    }

    /// The last component.
    #[must_use]
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|&b| b == b'/') {
            Some(at) => &self.0[at + 1..],
            None => &self.0,
        }
    }

    /// This path with `name` appended.
    #[must_use]
    pub fn join(&self, name: &[u8]) -> TreePath {
        let mut out = Vec::with_capacity(self.0.len() + 1 + name.len());
        out.extend_from_slice(&self.0);
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(name);
        TreePath(out)
    }

    /// True when `self` is `other` or lies below it.
    #[must_use]
    pub fn starts_with(&self, other: &TreePath) -> bool {
        other.0.is_empty()
            || (self.0.starts_with(&other.0)
                && (self.0.len() == other.0.len() || self.0[other.0.len()] == b'/'))
    }

    /// The path below `prefix`, if it lies there.
    #[must_use]
    pub fn strip_prefix(&self, prefix: &TreePath) -> Option<TreePath> {
        if !self.starts_with(prefix) {
            return None;
        }
        if prefix.0.is_empty() {
            return Some(self.clone());
        }
        let rest = &self.0[prefix.0.len()..];
        Some(TreePath(rest.strip_prefix(b"/").unwrap_or(rest).to_vec()))
    }

    /// The path under a directory on the local disk.
    #[must_use]
    pub fn under(&self, dir: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        if self.0.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(std::ffi::OsStr::from_bytes(&self.0))
        }
    }

    /// Canonical tree order: component by component, so a directory's whole
    /// subtree follows it before any sibling that sorts after it.
    #[must_use]
    pub fn tree_cmp(&self, other: &TreePath) -> Ordering {
        let key = |b: u8| if b == b'/' { 0 } else { u16::from(b) + 1 };
        self.0
            .iter()
            .map(|&b| key(b))
            .cmp(other.0.iter().map(|&b| key(b)))
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

/// Extended attributes: (name, value) pairs, sorted by name.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file; its bytes come from [`Entry::content`].
    File,
    Dir,
    /// A symbolic link and its target, as stored (never followed).
    Symlink(Vec<u8>),
    CharDevice {
        major: u32,
        minor: u32,
    },
    BlockDevice {
        major: u32,
        minor: u32,
    },
    Fifo,
}

impl EntryKind {
    /// A short name for messages.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink(_) => "symlink",
            EntryKind::CharDevice { .. } => "character device",
            EntryKind::BlockDevice { .. } => "block device",
            EntryKind::Fifo => "fifo",
        }
    }
}

/// A content store a source keeps open for as long as its tree lives: a spool
/// file, an `OSTree` repository, an archive.
pub trait ContentStore: Send + Sync {
    /// Opens the content stored under `key`.
    fn open(&self, key: u64) -> io::Result<Box<dyn Read + Send>>;

    /// What `key` is, for error messages (an object name, an archive member).
    fn describe(&self, key: u64) -> String;

    /// Bytes that change whenever the content under `key` may have changed
    /// (an object checksum, a file's identity and times), for the layer
    /// cache. `None`: the content cannot be fingerprinted, so layers holding
    /// it are always encoded.
    fn fingerprint(&self, _key: u64) -> Option<Vec<u8>> {
        None
    }

    /// A digest of the content under `key` itself, the same on every
    /// machine (an `OSTree` object's checksum), for the shared layer cache.
    /// `None`: the content is hashed when the shared cache needs it.
    fn content_digest(&self, _key: u64) -> Option<Vec<u8>> {
        None
    }
}

/// Where a regular file's bytes come from. Opened only when the encoder
/// writes the file.
#[derive(Clone, Default)]
pub enum Content {
    /// Not a regular file, or an empty one.
    #[default]
    None,
    /// A file on the local disk. Opened without following a symlink.
    Path(PathBuf),
    /// Small content held in memory (generated files such as metadata).
    Bytes(Arc<[u8]>),
    /// Content in a source's store.
    Stored(Arc<dyn ContentStore>, u64),
}

impl Content {
    /// Opens the content for reading.
    ///
    /// # Errors
    /// The file or store object cannot be opened; the error names it.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match self {
            Content::None => Ok(Box::new(io::empty())),
            Content::Path(path) => {
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?;
                Ok(Box::new(file))
            }
            Content::Bytes(bytes) => Ok(Box::new(io::Cursor::new(Arc::clone(bytes)))),
            Content::Stored(store, key) => store
                .open(*key)
                .map_err(|e| Error::invalid(format!("{}: {e}", store.describe(*key)))),
        }
    }

    /// Bytes that identify the content cheaply without reading it (see
    /// [`ContentStore::fingerprint`]): a local file's device, inode, size
    /// and times; a hash of in-memory bytes; the store's own fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> Option<Vec<u8>> {
        match self {
            Content::None => Some(b"none".to_vec()),
            Content::Path(path) => Some(file_fingerprint_of(&fs::symlink_metadata(path).ok()?)),
            Content::Bytes(bytes) => {
                let mut out = b"bytes".to_vec();
                out.extend_from_slice(crate::digest::Digest::of(bytes).as_bytes());
                Some(out)
            }
            Content::Stored(store, key) => store.fingerprint(*key),
        }
    }

    /// What the content is, for messages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Content::None => "no content".to_string(),
            Content::Path(path) => path.display().to_string(),
            Content::Bytes(bytes) => format!("{} bytes in memory", bytes.len()),
            Content::Stored(store, key) => store.describe(*key),
        }
    }
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// One node of a tree, with everything a layer records about it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub path: TreePath,
    pub kind: EntryKind,
    /// Permission bits, including setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: Xattrs,
    /// Size of a regular file's content; 0 otherwise.
    pub size: u64,
    pub content: Content,
    /// Regular files (or symlinks) with the same `link` id are one inode
    /// under several names: a layer stores the first and hardlinks the others.
    pub link: Option<u64>,
    /// The layer the entry goes to (an index into the image's layer list).
    pub layer: usize,
    /// Order within its layer: entries are written by rank, then in tree
    /// order. Formats with an order of their own (an OSTree commit's objects)
    /// set it; everything else leaves it 0.
    pub rank: u32,
}

impl Entry {
    /// An entry of the given kind with root ownership and default mode.
    #[must_use]
    pub fn new(path: TreePath, kind: EntryKind) -> Self {
        let mode = match kind {
            EntryKind::Dir => 0o755,
            EntryKind::Symlink(_) => 0o777,
            _ => 0o644,
        };
        Entry {
            path,
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
            size: 0,
            content: Content::None,
            link: None,
            layer: 0,
            rank: 0,
        }
    }

    /// A regular file with its content.
    #[must_use]
    pub fn file(path: TreePath, size: u64, content: Content) -> Self {
        let mut entry = Entry::new(path, EntryKind::File);
        entry.size = size;
        entry.content = content;
        entry
    }

    #[must_use]
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }

    #[must_use]
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }
}

/// A whole filesystem tree.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    entries: Vec<Entry>,
}

impl Tree {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn with_capacity(n: usize) -> Self {
        Tree {
            entries: Vec::with_capacity(n),
        }
    }

    /// Adds an entry; [`Tree::normalize`] puts it in place.
    pub fn push(&mut self, entry: Entry) {
        self.entries.push(entry);
    }

    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entries_mut(&mut self) -> &mut Vec<Entry> {
        &mut self.entries
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `path`, if present (the tree must be normalised).
    #[must_use]
    pub fn get(&self, path: &TreePath) -> Option<&Entry> {
        self.position(path).map(|i| &self.entries[i])
    }

    /// The index of the entry at `path` (the tree must be normalised).
    #[must_use]
    pub fn position(&self, path: &TreePath) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.path.tree_cmp(path))
            .ok()
    }

    /// Total bytes of regular-file content.
    #[must_use]
    pub fn content_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }

    /// The newest modification time in the tree.
    #[must_use]
    pub fn max_mtime(&self) -> Option<i64> {
        self.entries.iter().map(|e| e.mtime).max()
    }

    /// Clamps every modification time to at most `epoch`.
    pub fn clamp_mtimes(&mut self, epoch: i64) {
        for entry in &mut self.entries {
            entry.mtime = entry.mtime.min(epoch);
        }
    }

    /// Puts the tree in canonical order and checks that it is a tree.
    ///
    /// Later entries replace earlier ones at the same path, as when an archive
    /// is extracted. A missing parent directory is added (mode 0755, root,
    /// the child's mtime). The root entry itself is dropped: layers do not
    /// carry it.
    ///
    /// # Errors
    /// An entry whose parent is not a directory (for instance a member below a
    /// symlink, which would make an extractor write through the link), or
    /// with an extended attribute name a tar layer cannot carry.
    pub fn normalize(&mut self) -> Result<()> {
        self.entries.retain(|e| !e.path.is_root());
        // Stable: among equal paths, the later entry stays last.
        self.entries.sort_by(|a, b| a.path.tree_cmp(&b.path));
        // In place, keeping the later of two entries at one path.
        self.entries.dedup_by(|later, kept| {
            if later.path == kept.path {
                std::mem::swap(later, kept);
                true
            } else {
                false
            }
        });

        // Sorted order puts every entry's subtree right after it, so the
        // chain of open directories and the last non-directory are enough to
        // check each parent. Missing directories are collected (with the
        // index they go before) and merged in at the end: most trees have
        // none, and the entries are not copied then.
        let mut missing: Vec<(usize, Entry)> = Vec::new();
        let mut dirs: Vec<TreePath> = Vec::new();
        let mut last_leaf: Option<(TreePath, &'static str)> = None;
        for (i, entry) in self.entries.iter().enumerate() {
            // A PAX record is `KEY=VALUE`: a name holding '=' (or NUL) would
            // be read back as another name and value.
            if let Some((name, _)) = entry
                .xattrs
                .iter()
                .find(|(name, _)| name.is_empty() || name.iter().any(|&b| b == b'=' || b == 0))
            {
                return Err(Error::invalid(format!(
                    "'{}': extended attribute name '{}' cannot go in a tar layer (it is empty or holds '=')",
                    entry.path,
                    String::from_utf8_lossy(name).escape_debug()
                )));
            }
            if let Some((leaf, kind)) = &last_leaf
                && entry.path.starts_with(leaf)
            {
                return Err(Error::invalid(format!(
                    "'{}' lies below '{leaf}', which is a {kind}, not a directory",
                    entry.path
                )));
            }
            let parent = entry.path.parent().unwrap_or_default();
            while let Some(top) = dirs.last() {
                if parent.starts_with(top) {
                    break;
                }
                dirs.pop();
            }
            let known = dirs.last().cloned().unwrap_or_default();
            if parent != known {
                let rest = parent.strip_prefix(&known).unwrap_or_default();
                let mut cur = known;
                for name in rest.as_bytes().split(|&b| b == b'/') {
                    cur = cur.join(name);
                    let mut dir = Entry::new(cur.clone(), EntryKind::Dir);
                    dir.mtime = entry.mtime;
                    missing.push((i, dir));
                    dirs.push(cur.clone());
                }
            }
            if entry.is_dir() {
                dirs.push(entry.path.clone());
            } else {
                last_leaf = Some((entry.path.clone(), entry.kind.name()));
            }
        }
        if !missing.is_empty() {
            let old = std::mem::take(&mut self.entries);
            self.entries.reserve(old.len() + missing.len());
            let mut missing = missing.into_iter().peekable();
            for (i, entry) in old.into_iter().enumerate() {
                while missing.peek().is_some_and(|(at, _)| *at == i) {
                    let (_, dir) = missing.next().expect("peeked");
                    self.entries.push(dir);
                }
                self.entries.push(entry);
            }
        }
        self.check_links()
    }

    /// Hardlink groups may only join regular files and symlinks.
    fn check_links(&self) -> Result<()> {
        for entry in &self.entries {
            if entry.link.is_some()
                && !entry.is_file()
                && !matches!(entry.kind, EntryKind::Symlink(_))
            {
                return Err(Error::invalid(format!(
                    "'{}' is a {} and cannot be a hardlink",
                    entry.path,
                    entry.kind.name()
                )));
            }
        }
        Ok(())
    }
}

/// The fingerprint of a file on disk from its metadata: its device, inode,
/// size and times (the ctime included, which nobody can set back).
#[must_use]
pub fn file_fingerprint_of(m: &fs::Metadata) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    file_fingerprint(b"file", m, &[m.ctime() as u64, m.ctime_nsec() as u64])
}

/// The fingerprint [`file_fingerprint_of`] gives, from the numbers of an
/// `lstat` a source already made: device, inode, size, modification time
/// (seconds, nanoseconds), change time (seconds, nanoseconds).
#[must_use]
pub fn file_fingerprint_from(values: &[u64; 7]) -> Vec<u8> {
    fingerprint_bytes(b"file", values)
}

/// A fingerprint of a file from what its metadata says: `tag`, then the
/// device, inode, size and modification time, then `extra`; it changes when
/// the file is replaced or written.
#[must_use]
pub(crate) fn file_fingerprint(tag: &[u8], m: &fs::Metadata, extra: &[u64]) -> Vec<u8> {
    use std::os::unix::fs::MetadataExt;
    // Times before 1970 only need to differ, not to sort.
    #[allow(clippy::cast_sign_loss)]
    let head = [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ];
    let values: Vec<u64> = head.iter().chain(extra).copied().collect();
    fingerprint_bytes(tag, &values)
}

/// `tag`, then each value in little-endian bytes.
fn fingerprint_bytes(tag: &[u8], values: &[u64]) -> Vec<u8> {
    let mut out = tag.to_vec();
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TreePath {
        TreePath::parse(s.as_bytes()).expect("the test literal parses")
    }

    #[test]
    fn parse_normalises_and_refuses_escapes() {
        assert_eq!(p("./a//b/").as_bytes(), b"a/b");
        assert_eq!(p("/etc/passwd").as_bytes(), b"etc/passwd");
        assert!(p(".").is_root());
        assert!(TreePath::parse(b"../x").is_err());
        assert!(TreePath::parse(b"a/../../x").is_err());
        assert!(TreePath::parse(b"a\0b").is_err());
    }

    #[test]
    fn tree_order_puts_subtrees_together() {
        let mut v = [p("a-b"), p("a/c"), p("a"), p("a.b"), p("b")];
        v.sort_by(TreePath::tree_cmp);
        let names: Vec<_> = v.iter().map(ToString::to_string).collect();
        assert_eq!(names, ["/a", "/a/c", "/a-b", "/a.b", "/b"]);
    }

    #[test]
    fn xattr_names_a_pax_record_cannot_carry_are_refused_by_path() {
        for bad in [&b"user.a=b"[..], b"", b"user.\0x"] {
            let mut t = Tree::new();
            let mut e = Entry::new(p("etc/f"), EntryKind::File);
            e.xattrs = vec![
                (b"user.fine".to_vec(), b"1".to_vec()),
                (bad.to_vec(), b"v".to_vec()),
            ];
            t.push(e);
            let err = t.normalize().expect_err("refused").to_string();
            assert!(
                err.starts_with("'/etc/f': extended attribute name"),
                "{err}"
            );
        }
    }

    #[test]
    fn normalize_sorts_dedupes_and_adds_parents() {
        let mut t = Tree::new();
        t.push(Entry::file(p("x/y/z"), 0, Content::None));
        t.push(Entry::new(p("a"), EntryKind::Dir));
        let mut again = Entry::new(p("a"), EntryKind::Dir);
        again.mode = 0o700;
        t.push(again);
        t.normalize().expect("the test fixture is valid");
        let names: Vec<_> = t.entries().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(names, ["/a", "/x", "/x/y", "/x/y/z"]);
        assert_eq!(
            t.get(&p("a")).expect("the test fixture is valid").mode,
            0o700
        );
    }

    #[test]
    fn normalize_refuses_members_below_a_symlink() {
        let mut t = Tree::new();
        t.push(Entry::new(p("a"), EntryKind::Symlink(b"/etc".to_vec())));
        t.push(Entry::file(p("a/passwd"), 0, Content::None));
        let err = t.normalize().unwrap_err().to_string();
        assert!(
            err.contains("'/a/passwd' lies below '/a', which is a symlink"),
            "{err}"
        );
    }

    #[test]
    fn normalize_refuses_members_deep_below_a_file() {
        let mut t = Tree::new();
        t.push(Entry::file(p("a"), 0, Content::None));
        t.push(Entry::file(p("a/b/c"), 0, Content::None));
        assert!(t.normalize().is_err());
    }
}
