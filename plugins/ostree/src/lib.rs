//! Source `ostree:REPO:REF_OR_CHECKSUM`: an OSTree commit, read through
//! libostree (the `ostree` crate over Debian's libostree).
//!
//! Works on `archive`, `bare`, `bare-user` and `bare-user-only` repositories:
//! owner, mode and xattrs come from the OSTree metadata, never from the files
//! on disk. A file object shared by several paths becomes one inode with
//! several names, so a layer carries it once and hardlinks the rest. A commit
//! that keeps its configuration in `/usr/etc` is exported with it at `/etc`,
//! as ostree-ext does.
//!
//! Every object is checked against its checksum as it is read: metadata
//! objects when the tree is walked, file content as the encoder streams it. A
//! corrupted repository is an error naming the object, never a wrong image.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use gio::prelude::*;
use ostree::{ObjectType, gio, glib};
use sha2::{Digest as _, Sha256};
use treeport_core::error::{Error, Result};
use treeport_core::image::ImageDraft;
use treeport_core::plugin::{Builtin, BuiltinFactory, Options, Selector, Source};
use treeport_core::progress::Context;
use treeport_core::tree::{Content, ContentStore, Entry, EntryKind, Tree, TreePath, Xattrs};

treeport_core::inventory::submit! {
    Builtin {
        kind: "ostree",
        description: "an OSTree commit read through libostree (archive, bare, bare-user, bare-user-only)",
        usage: "ostree:REPO:REF_OR_CHECKSUM",
        options: &[],
        factory: BuiltinFactory::Source(OstreeSource::build),
    }
}

use treeport_core::image::attachments::{
    OSTREE_COMMIT as ATTACH_COMMIT, OSTREE_COMMITMETA as ATTACH_COMMITMETA,
    OSTREE_ROOT_DIRMETA as ATTACH_ROOT_DIRMETA, OSTREE_USR_ETC as ATTACH_USR_ETC,
};

/// Label carrying the exported commit's checksum.
pub const LABEL_COMMIT: &str = "ostree.commit";
/// Label carrying the commit's `version` metadata.
pub const LABEL_VERSION: &str = "org.opencontainers.image.version";

/// Reads one commit of a repository.
pub struct OstreeSource {
    repo: PathBuf,
    rev: String,
}

impl OstreeSource {
    /// A source for `rev` (a ref or a checksum) in the repository at `repo`.
    #[must_use]
    pub fn new(repo: impl Into<PathBuf>, rev: impl Into<String>) -> Self {
        OstreeSource {
            repo: repo.into(),
            rev: rev.into(),
        }
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        options.check_keys("source ostree", &[])?;
        let rest = selector.require_rest("REPO:REF")?;
        let (repo, rev) = rest.rsplit_once(':').ok_or_else(|| {
            Error::usage(format!(
                "selector '{selector}': expected ostree:REPO:REF_OR_CHECKSUM"
            ))
        })?;
        if repo.is_empty() || rev.is_empty() {
            return Err(Error::usage(format!(
                "selector '{selector}': expected ostree:REPO:REF_OR_CHECKSUM"
            )));
        }
        Ok(Box::new(OstreeSource::new(repo, rev)))
    }
}

impl Source for OstreeSource {
    fn read(&mut self, _ctx: &Context) -> Result<ImageDraft> {
        let commit = read_commit(&self.repo, &self.rev)?;
        let mut draft = ImageDraft::new(commit.tree);
        draft.source_time = Some(commit.timestamp);
        draft
            .config
            .labels
            .insert(LABEL_COMMIT.to_string(), commit.checksum.clone());
        if let Some(version) = commit.version {
            draft
                .config
                .labels
                .insert(LABEL_VERSION.to_string(), version);
        }
        draft.created_by = format!("treeport ostree commit {}", commit.checksum);
        // What a bootc transform needs to carry this very commit.
        draft
            .attachments
            .insert(ATTACH_COMMIT.into(), commit.commit_object.into());
        if let Some(meta) = commit.commitmeta_object {
            draft
                .attachments
                .insert(ATTACH_COMMITMETA.into(), meta.into());
        }
        draft
            .attachments
            .insert(ATTACH_ROOT_DIRMETA.into(), commit.root_dirmeta.into());
        if commit.usr_etc {
            draft
                .attachments
                .insert(ATTACH_USR_ETC.into(), Arc::from(&b"1"[..]));
        }
        Ok(draft)
    }
}

/// A commit read from a repository.
pub struct Commit {
    pub checksum: String,
    pub tree: Tree,
    /// Seconds since the epoch.
    pub timestamp: i64,
    /// The `version` key of the commit metadata.
    pub version: Option<String>,
    /// The commit's subject line.
    pub subject: String,
    /// The commit object as stored.
    pub commit_object: Vec<u8>,
    /// The detached metadata object, if any.
    pub commitmeta_object: Option<Vec<u8>>,
    /// The commit kept `/etc` in `/usr/etc` (now moved to `/etc`).
    pub usr_etc: bool,
    /// The root directory's dirmeta object.
    pub root_dirmeta: Vec<u8>,
}

/// Opens `repo` and reads the commit `rev` names into a tree.
///
/// # Errors
/// The repository, the ref or an object is missing or corrupt; the message
/// names the repository and the ref or object.
pub fn read_commit(repo_path: &std::path::Path, rev: &str) -> Result<Commit> {
    let where_ = || format!("ostree repository {}", repo_path.display());
    if !repo_path.join("config").is_file() || !repo_path.join("objects").is_dir() {
        return Err(Error::invalid(format!(
            "{}: not an OSTree repository (no config and objects/)",
            where_()
        )));
    }
    let repo = ostree::Repo::new_for_path(repo_path);
    repo.open(gio::Cancellable::NONE)
        .map_err(|e| Error::invalid(format!("{}: {}", where_(), e.message())))?;
    let checksum = repo
        .resolve_rev(rev, true)
        .map_err(|e| Error::invalid(format!("{}: {}", where_(), e.message())))?
        .ok_or_else(|| Error::invalid(format!("{}: ref '{rev}' not found", where_())))?
        .to_string();

    let reader = Walker {
        repo: repo.clone(),
        path: repo_path.to_path_buf(),
        where_: where_(),
        dirmeta: HashMap::new(),
        objects: HashMap::new(),
        files: Vec::new(),
    };
    let commit = reader.load(ObjectType::Commit, &checksum).map_err(|e| {
        if checksum == rev {
            e
        } else {
            e.context(format!("ref '{rev}'"))
        }
    })?;
    // (a{sv} metadata, parent, related, subject, body, timestamp, root tree, root meta)
    let metadata = glib::VariantDict::new(Some(&commit.child_value(0)));
    let version = metadata
        .lookup_value("version", Some(glib::VariantTy::STRING))
        .and_then(|v| v.str().map(str::to_string));
    let subject = commit.child_value(3).str().unwrap_or_default().to_string();
    let timestamp = i64::try_from(ostree::commit_get_timestamp(&commit)).unwrap_or(i64::MAX);
    let root_tree = checksum_hex(&commit.child_value(6), &reader.where_)?;
    let root_meta = checksum_hex(&commit.child_value(7), &reader.where_)?;

    let commitmeta_object = repo
        .read_commit_detached_metadata(&checksum, gio::Cancellable::NONE)
        .map_err(|e| Error::invalid(format!("{}: {}", reader.where_, e.message())))?
        .map(|v| v.data().to_vec());
    let root_dirmeta = reader
        .load(ObjectType::DirMeta, &root_meta)?
        .data()
        .to_vec();
    let mut reader = reader;
    let mut tree = Tree::new();
    reader.walk(&root_tree, &root_meta, &mut tree)?;
    let usr_etc = move_usr_etc(&mut tree)?;

    let archive = repo.mode() == ostree::RepoMode::Archive;
    let store = Arc::new(Objects {
        path: repo_path.to_path_buf(),
        archive,
        where_: reader.where_.clone(),
        files: std::mem::take(&mut reader.files),
    });
    for entry in tree.entries_mut() {
        if let Content::Stored(_, key) = entry.content {
            entry.content = Content::Stored(Arc::clone(&store) as Arc<dyn ContentStore>, key);
        }
    }
    Ok(Commit {
        checksum,
        tree,
        timestamp,
        version,
        subject,
        commit_object: commit.data().to_vec(),
        commitmeta_object,
        usr_etc,
        root_dirmeta,
    })
}

/// The hex of a checksum stored as `ay`.
fn checksum_hex(v: &glib::Variant, where_: &str) -> Result<String> {
    let bytes = v.fixed_array::<u8>().unwrap_or_default();
    if bytes.len() != 32 {
        return Err(Error::invalid(format!(
            "{where_}: malformed checksum in metadata"
        )));
    }
    Ok(hex::encode(bytes))
}

/// What a file object's metadata says about the file.
struct FileMeta {
    kind: EntryKind,
    /// Permission bits, setuid/setgid/sticky included.
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    xattrs: Xattrs,
}

/// A file object of the commit.
struct FileObject {
    meta: FileMeta,
    /// Key of the object in the content store (regular files only).
    key: Option<u64>,
    /// Hardlink group: one per file object shared by several paths.
    link: u64,
    /// How many paths use the object.
    uses: usize,
}

/// What a dirmeta object says about a directory.
#[derive(Clone)]
struct DirMeta {
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: Xattrs,
}

struct Walker {
    repo: ostree::Repo,
    path: PathBuf,
    where_: String,
    /// dirmeta checksum -> what it holds
    dirmeta: HashMap<String, DirMeta>,
    /// file object checksum -> what it holds
    objects: HashMap<String, FileObject>,
    /// content store keys -> the regular file objects
    files: Vec<StoredFile>,
}

/// A regular file object: its checksum and the header its checksum covers
/// before the data (read once, while the commit is walked).
struct StoredFile {
    checksum: String,
    header: Box<[u8]>,
    /// The data's length, as the object's header records it.
    size: u64,
}

/// The header of a file object as its checksum covers it: the content stream
/// of its metadata (owner, mode, symlink target, xattrs) without the data.
fn content_header(info: &gio::FileInfo, xattrs: &glib::Variant) -> io::Result<Vec<u8>> {
    // A zero size keeps the stream to the header itself.
    let info = info.dup();
    info.set_size(0);
    let (stream, _) = ostree::raw_file_to_content_stream(
        &gio::MemoryInputStream::new(),
        &info,
        Some(xattrs),
        gio::Cancellable::NONE,
    )
    .map_err(|e| io::Error::other(e.message().to_string()))?;
    let mut header = Vec::new();
    stream.into_read().read_to_end(&mut header)?;
    Ok(header)
}

/// Threads reading object headers while the commit is walked. Reading
/// headers waits on the disk more than it computes: with the repository out
/// of the page cache, 8 threads take the export of a minbase commit from
/// 1.63-1.83 s to 1.52-1.54 s on 2 cores, and cost nothing measurable when
/// it is cached.
const QUERY_THREADS: usize = 8;

impl Walker {
    /// Loads a metadata object and checks it against its checksum.
    fn load(&self, kind: ObjectType, checksum: &str) -> Result<glib::Variant> {
        let name = format!("{checksum}.{}", ostree::object_type_to_string(kind));
        let v = self.repo.load_variant(kind, checksum).map_err(|e| {
            Error::invalid(format!("{}: object {name}: {}", self.where_, e.message()))
        })?;
        if hex::encode(Sha256::digest(v.data())) != checksum {
            return Err(Error::invalid(format!(
                "{}: object {name} is corrupt (its content does not match its checksum)",
                self.where_
            )));
        }
        Ok(v)
    }

    fn dirmeta(&mut self, checksum: &str) -> Result<DirMeta> {
        if let Some(m) = self.dirmeta.get(checksum) {
            return Ok(m.clone());
        }
        let v = self.load(ObjectType::DirMeta, checksum)?;
        // (uuua(ayay)), big-endian
        let uid = u32::from_be(v.child_value(0).get::<u32>().unwrap_or_default());
        let gid = u32::from_be(v.child_value(1).get::<u32>().unwrap_or_default());
        let mode = u32::from_be(v.child_value(2).get::<u32>().unwrap_or_default());
        let meta = DirMeta {
            uid,
            gid,
            mode,
            xattrs: xattrs(&v.child_value(3)),
        };
        self.dirmeta.insert(checksum.to_string(), meta.clone());
        Ok(meta)
    }

    /// Reads the metadata of every file object in `checksums` (distinct),
    /// on several threads, each with its own handle on the repository
    /// (libostree's repository object is not shared between threads), and
    /// records them in the order given.
    fn query_all(&mut self, checksums: &[&str]) -> Result<()> {
        let per = checksums.len().div_ceil(QUERY_THREADS).max(1);
        let parts: Vec<Result<Vec<Queried>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = checksums
                .chunks(per)
                .map(|part| {
                    let (path, where_) = (&self.path, &self.where_);
                    scope.spawn(move || {
                        let repo = ostree::Repo::new_for_path(path);
                        repo.open(gio::Cancellable::NONE)
                            .map_err(|e| Error::invalid(format!("{where_}: {}", e.message())))?;
                        part.iter()
                            .map(|c| query_object(&repo, c, where_))
                            .collect::<Result<Vec<_>>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::Other("an object reader panicked".into())))
                })
                .collect()
        });
        let mut queried = checksums.iter();
        for part in parts {
            for (meta, header) in part? {
                let checksum = (*queried.next().expect("one result per object")).to_string();
                let key = header.map(|header| {
                    self.files.push(StoredFile {
                        checksum: checksum.clone(),
                        header,
                        size: meta.size,
                    });
                    self.files.len() as u64 - 1
                });
                let obj = FileObject {
                    meta,
                    key,
                    link: self.objects.len() as u64,
                    uses: 0,
                };
                self.objects.insert(checksum, obj);
            }
        }
        Ok(())
    }

    /// Walks the directory tree from the root's dirtree and dirmeta.
    fn walk(&mut self, root_tree: &str, root_meta: &str, tree: &mut Tree) -> Result<()> {
        let mut stack: Vec<(TreePath, String, String)> = vec![(
            TreePath::root(),
            root_tree.to_string(),
            root_meta.to_string(),
        )];
        let mut pending_files: Vec<(TreePath, String)> = Vec::new();
        while let Some((path, tree_csum, meta_csum)) = stack.pop() {
            let DirMeta {
                uid,
                gid,
                mode,
                xattrs: dir_xattrs,
            } = self.dirmeta(&meta_csum)?;
            if !path.is_root() {
                let mut dir = Entry::new(path.clone(), EntryKind::Dir);
                dir.uid = uid;
                dir.gid = gid;
                dir.mode = mode & 0o7777;
                dir.xattrs = dir_xattrs;
                tree.push(dir);
            }
            let v = self.load(ObjectType::DirTree, &tree_csum)?;
            // (a(say)a(sayay))
            let files = v.child_value(0);
            for i in 0..files.n_children() {
                let f = files.child_value(i);
                let name = f.child_value(0).str().unwrap_or_default().to_string();
                check_name(&name, &self.where_)?;
                pending_files.push((
                    path.join(name.as_bytes()),
                    checksum_hex(&f.child_value(1), &self.where_)?,
                ));
            }
            let dirs = v.child_value(1);
            for i in (0..dirs.n_children()).rev() {
                let d = dirs.child_value(i);
                let name = d.child_value(0).str().unwrap_or_default().to_string();
                check_name(&name, &self.where_)?;
                stack.push((
                    path.join(name.as_bytes()),
                    checksum_hex(&d.child_value(1), &self.where_)?,
                    checksum_hex(&d.child_value(2), &self.where_)?,
                ));
            }
        }
        let mut entries: Vec<(TreePath, String)> = pending_files;
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<&str> = entries
            .iter()
            .filter(|(_, c)| seen.insert(c.as_str()))
            .map(|(_, c)| c.as_str())
            .collect();
        self.query_all(&distinct).map_err(|e| {
            // Name the first path that uses the object.
            let message = e.to_string();
            match entries
                .iter()
                .find(|(_, c)| message.contains(&format!("object {c}.file")))
            {
                Some((path, _)) => e.context(format!("{path}")),
                None => e,
            }
        })?;
        for (_, checksum) in &entries {
            if let Some(obj) = self.objects.get_mut(checksum) {
                obj.uses += 1;
            }
        }
        for (path, checksum) in entries.drain(..) {
            let obj = &self.objects[&checksum];
            let meta = &obj.meta;
            let mut e = Entry::new(path, meta.kind.clone());
            e.mode = meta.mode;
            e.uid = meta.uid;
            e.gid = meta.gid;
            e.xattrs.clone_from(&meta.xattrs);
            e.size = meta.size;
            if let Some(key) = obj.key {
                // The real store replaces this placeholder once the walk is done.
                e.content = Content::Stored(Arc::new(Placeholder), key);
                if obj.uses > 1 {
                    e.link = Some(obj.link);
                }
            }
            tree.push(e);
        }
        Ok(())
    }
}

/// A file object's metadata and, for a regular file, the header its checksum
/// covers.
type Queried = (FileMeta, Option<Box<[u8]>>);

/// Reads a file object's metadata and, for a regular file, the header its
/// checksum covers; a symlink object, all header, is checked against its
/// checksum here.
fn query_object(repo: &ostree::Repo, checksum: &str, where_: &str) -> Result<Queried> {
    let name = format!("{checksum}.file");
    let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("{where_}: object {name}: {e}"));
    let (info, xattr_v) = repo
        .query_file(checksum, gio::Cancellable::NONE)
        .map_err(|e| bad(&e.message()))?;
    let header = content_header(&info, &xattr_v).map_err(|e| bad(&e))?;
    let (kind, size, header) = match info.file_type() {
        gio::FileType::SymbolicLink => {
            if hex::encode(Sha256::digest(&header)) != checksum {
                return Err(Error::invalid(format!(
                    "{where_}: object {name} is corrupt (its content does not match its checksum)"
                )));
            }
            let target = info
                .symlink_target()
                .map(|t| {
                    use std::os::unix::ffi::OsStrExt;
                    t.as_os_str().as_bytes().to_vec()
                })
                .unwrap_or_default();
            (EntryKind::Symlink(target), 0, None)
        }
        gio::FileType::Regular => (
            EntryKind::File,
            u64::try_from(info.size()).unwrap_or(0),
            Some(header.into_boxed_slice()),
        ),
        other => {
            return Err(Error::invalid(format!(
                "{where_}: object {name} has unsupported type {other:?}"
            )));
        }
    };
    let meta = FileMeta {
        kind,
        mode: info.attribute_uint32("unix::mode") & 0o7777,
        uid: info.attribute_uint32("unix::uid"),
        gid: info.attribute_uint32("unix::gid"),
        size,
        xattrs: xattrs(&xattr_v),
    };
    Ok((meta, header))
}

/// Refuses names that would escape a directory.
fn check_name(name: &str, where_: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::invalid(format!(
            "{where_}: invalid file name '{name}' in a dirtree object"
        )));
    }
    Ok(())
}

/// `a(ayay)` extended attributes; names lose their trailing NUL.
fn xattrs(v: &glib::Variant) -> Xattrs {
    let mut out: Xattrs = (0..v.n_children())
        .map(|i| {
            let pair = v.child_value(i);
            let mut name = pair.child_value(0).data().to_vec();
            while name.last() == Some(&0) {
                name.pop();
            }
            (name, pair.child_value(1).data().to_vec())
        })
        .collect();
    out.sort();
    out
}

/// Moves `/usr/etc` to `/etc`, as ostree-ext exports a commit. Returns
/// whether there was a `/usr/etc`.
fn move_usr_etc(tree: &mut Tree) -> Result<bool> {
    let usr_etc = TreePath::parse(b"usr/etc")?;
    let etc = TreePath::parse(b"etc")?;
    if tree.get(&usr_etc).is_none() {
        return Ok(false);
    }
    if tree.get(&etc).is_some() {
        return Err(Error::invalid(
            "the commit has both /etc and /usr/etc; ostree keeps configuration in /usr/etc only",
        ));
    }
    for entry in tree.entries_mut() {
        if let Some(rest) = entry.path.strip_prefix(&usr_etc) {
            entry.path = if rest.is_root() {
                etc.clone()
            } else {
                etc.join(rest.as_bytes())
            };
        }
    }
    tree.normalize()?;
    Ok(true)
}

struct Placeholder;

impl ContentStore for Placeholder {
    fn open(&self, _key: u64) -> io::Result<Box<dyn Read + Send>> {
        Err(io::Error::other(
            "the OSTree content store is not attached yet",
        ))
    }

    fn describe(&self, key: u64) -> String {
        format!("ostree file #{key}")
    }
}

/// File content of a repository. Each object's header (what its checksum
/// covers besides the data) came from libostree during the walk; the data
/// is read straight from the object file: as is in `bare*` repositories,
/// inflated in `archive` ones. No libostree call is made while encoding, so
/// encoder threads read objects side by side.
struct Objects {
    path: PathBuf,
    archive: bool,
    where_: String,
    files: Vec<StoredFile>,
}

impl ContentStore for Objects {
    fn open(&self, key: u64) -> io::Result<Box<dyn Read + Send>> {
        let StoredFile {
            checksum,
            header,
            size,
        } = &self.files[key as usize];
        let ext = if self.archive { "filez" } else { "file" };
        let object = self
            .path
            .join("objects")
            .join(&checksum[..2])
            .join(format!("{}.{ext}", &checksum[2..]));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&object)?;
        let data: Box<dyn Read + Send> = if self.archive {
            // .filez: a big-endian u32 header length, 4 reserved bytes, the
            // header, then the data as a raw deflate stream.
            // The buffer stays below the allocator's mapping threshold: one
            // made per object must not cost a mapping (256 KiB buffers took
            // 0.33-0.38 s of system time for the minbase commit, 64 KiB ones
            // 0.18-0.22 s).
            let mut reader = io::BufReader::with_capacity(64 * 1024, file);
            let mut prefix = [0u8; 8];
            reader.read_exact(&mut prefix)?;
            let len = u64::from(u32::from_be_bytes([
                prefix[0], prefix[1], prefix[2], prefix[3],
            ]));
            io::copy(&mut (&mut reader).take(len), &mut io::sink())?;
            Box::new(flate2::bufread::DeflateDecoder::new(reader))
        } else {
            Box::new(file)
        };
        let mut hasher = Sha256::new();
        hasher.update(header);
        Ok(Box::new(Verified {
            inner: data,
            hasher,
            expected: checksum.clone(),
            size: *size,
            read: 0,
            checked: false,
        }))
    }

    fn describe(&self, key: u64) -> String {
        format!(
            "{}: object {}.file",
            self.where_, self.files[key as usize].checksum
        )
    }

    fn fingerprint(&self, key: u64) -> Option<Vec<u8>> {
        // A content object is named by the checksum of what it holds.
        Some(format!("ostree:{}", self.files[key as usize].checksum).into_bytes())
    }

    fn content_digest(&self, key: u64) -> Option<Vec<u8>> {
        // The same checksum on every machine holding the object.
        self.fingerprint(key)
    }
}

/// Streams an object's content while hashing the whole object. The data
/// must be as long as the object's header says, and the whole object must
/// match its checksum; anything else (a short or long object, a broken
/// deflate stream) is the repository's corruption, reported as such.
struct Verified<R> {
    inner: R,
    hasher: Sha256,
    expected: String,
    /// The data's length as the header records it, and how much was read.
    size: u64,
    read: u64,
    checked: bool,
}

fn corrupt(why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("object is corrupt ({why})"),
    )
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            // Inflating an archive-mode object fails only on bad data.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidData
                        | io::ErrorKind::InvalidInput
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(corrupt(format_args!("its data cannot be read: {e}")));
            }
            Err(e) => return Err(e),
        };
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.size {
            return Err(corrupt(format_args!(
                "it holds more than the {} bytes its header records",
                self.size
            )));
        }
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            if self.read < self.size {
                return Err(corrupt(format_args!(
                    "it ends after {} of the {} bytes its header records",
                    self.read, self.size
                )));
            }
            let got = hex::encode(self.hasher.clone().finalize());
            if got != self.expected {
                return Err(corrupt("its content does not match its checksum"));
            }
        }
        Ok(n)
    }
}
