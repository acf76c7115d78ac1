//! Reading a tar stream into a [`Tree`]: the `tar:` source and every source
//! that produces an archive (mmdebstrap writes one to stdout) use this.
//!
//! A plain archive file is read in place: each member's content is read from
//! its offset in the file when the encoder needs it. A compressed archive, or
//! a stream, is read once and its members' content spooled to one temporary
//! file, removed when the tree is dropped. Either way no member is held in
//! memory. Sparse members keep their holes.
//!
//! Members that would land outside the root (`../x`), or below a member that
//! is not a directory (`a -> /etc`, then `a/passwd`), are refused.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoResultExt, Result};
use crate::layer::untar::{Kind, Member, Segment, Untar, UntarError};
use crate::tree::{Content, ContentStore, Entry, Tree, TreePath};

/// Holes (zeros not stored) that sparse members of an archive may claim in
/// all: at least this many bytes, ...
const MAX_HOLES_FLOOR: u64 = 1 << 30;
/// ... or this many times the archive's size read so far. A real sparse
/// file this empty is rare; a 2 KB archive claiming a TiB is an attack on
/// whoever must encode the zeros.
const MAX_HOLES_RATIO: u64 = 1024;

/// Compression of an archive, told by its magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Plain,
    Gzip,
    Zstd,
}

fn sniff(head: &[u8]) -> Format {
    if head.starts_with(&[0x1f, 0x8b]) {
        Format::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::Zstd
    } else {
        Format::Plain
    }
}

/// Reads a tar stream (a pipe from another program) into a tree, spooling
/// member content to a temporary file. `describe_as` names the stream in
/// error messages.
///
/// # Errors
/// The stream is corrupt or truncated, or a member escapes the root.
pub fn read_stream(input: impl Read, describe_as: &Path) -> Result<Tree> {
    let spool = tempfile::tempfile().at(std::env::temp_dir())?;
    let content = spool.try_clone().at(std::env::temp_dir())?;
    scan(input, describe_as, Spool::Copy(spool, 0), content)
}

/// Reads the archive at `path` into a tree.
///
/// # Errors
/// The archive is unreadable, truncated or corrupt, or a member escapes the
/// root; the message names the archive and the member.
pub fn read_archive(path: &Path) -> Result<Tree> {
    read_archive_as(path, "archive")
}

/// [`read_archive`], its errors naming the archive as `what` (`archive`,
/// `docker archive`...).
///
/// # Errors
/// As [`read_archive`].
pub fn read_archive_as(path: &Path, what: &str) -> Result<Tree> {
    // An archive is a regular file (named by the user, so a symlink to one
    // is followed): a FIFO would block or stream, a device never end.
    if !std::fs::metadata(path)
        .at(path)
        .map_err(|e| e.context(what.to_string()))?
        .is_file()
    {
        return Err(Error::invalid(format!(
            "{}: not a regular file (an archive must be one)",
            path.display()
        )));
    }
    let file = File::open(path)
        .at(path)
        .map_err(|e| e.context(what.to_string()))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let format = sniff(reader.fill_buf().at(path)?);
    let in_archive = |e: Error| e.context(format!("{what} {}", path.display()));
    match format {
        Format::Plain => {
            // The sniffing buffer moved the file position: start over.
            let mut file = reader.into_inner();
            file.rewind().at(path)?;
            let len = file.metadata().at(path)?.len();
            let content = File::open(path).at(path)?;
            scan(file, path, Spool::InPlace { len }, content).map_err(in_archive)
        }
        Format::Gzip | Format::Zstd => {
            let decoder: Box<dyn Read> = if format == Format::Gzip {
                // MultiGzDecoder: `cat a.gz b.gz` is one valid gzip stream.
                Box::new(flate2::bufread::MultiGzDecoder::new(reader))
            } else {
                Box::new(zstd::stream::read::Decoder::with_buffer(reader).at(path)?)
            };
            let spool = tempfile::tempfile().at(std::env::temp_dir())?;
            let content = spool.try_clone().at(std::env::temp_dir())?;
            // This thread decompresses; a second one scans and spools.
            let mut decoder = decoder;
            read_beside(&mut decoder, |plain| {
                scan(plain, path, Spool::Copy(spool, 0), content)
            })
            .map_err(in_archive)
        }
    }
}

/// Bytes handed from the reading thread to the consuming one at a time.
const PIECE: usize = 256 << 10;

/// Runs `consume` on a second thread, reading what this thread reads from
/// `input`, so that reading (checking digests, decompressing) and
/// consuming (taking a tar stream apart, spooling content) share two cores.
/// Pieces in flight are bounded (a few hundred KiB); buffers go back to
/// the reader to be filled again. `input` is read until its end or until
/// `consume` returns (what it did not read is left); `consume`'s result is
/// returned, and a read error reaches it after the bytes read before it.
pub(crate) fn read_beside<T: Send>(
    input: &mut (impl Read + ?Sized),
    consume: impl FnOnce(&mut dyn Read) -> Result<T> + Send,
) -> Result<T> {
    use std::sync::mpsc::sync_channel;
    let (full_tx, full_rx) = sync_channel::<io::Result<Vec<u8>>>(4);
    let (empty_tx, empty_rx) = sync_channel::<Vec<u8>>(8);
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let mut reader = PieceReader {
                pieces: full_rx,
                empty: empty_tx,
                piece: Vec::new(),
                at: 0,
            };
            consume(&mut reader)
        });
        loop {
            let mut buf = empty_rx.try_recv().unwrap_or_default();
            buf.resize(PIECE, 0);
            // What was read before an error goes first, so the consumer
            // sees the stream up to where it broke.
            let (n, failed) = read_full(input, &mut buf);
            if n > 0 {
                buf.truncate(n);
                // The consumer is gone: it stopped with an error, given below.
                if full_tx.send(Ok(buf)).is_err() {
                    break;
                }
            }
            if let Some(e) = failed {
                let _ = full_tx.send(Err(e));
                break;
            }
            if n < PIECE {
                break;
            }
        }
        drop(full_tx);
        worker.join().unwrap_or_else(|_| {
            Err(Error::invalid(
                "the thread reading the stream stopped unexpectedly",
            ))
        })
    })
}

/// Reads until `buf` is full, the input ends or a read fails: the count
/// read, and the error if one stopped it.
fn read_full(input: &mut (impl Read + ?Sized), buf: &mut [u8]) -> (usize, Option<io::Error>) {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (n, Some(e)),
        }
    }
    (n, None)
}

/// The consuming side of [`read_beside`].
struct PieceReader {
    pieces: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    empty: std::sync::mpsc::SyncSender<Vec<u8>>,
    piece: Vec<u8>,
    at: usize,
}

impl Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.piece.len() {
            let Ok(next) = self.pieces.recv() else {
                return Ok(0);
            };
            let done = std::mem::replace(&mut self.piece, next?);
            // The reader allocates a new one if this is not back in time.
            let _ = self.empty.try_send(done);
            self.at = 0;
        }
        let n = buf.len().min(self.piece.len() - self.at);
        buf[..n].copy_from_slice(&self.piece[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Where member content goes while the archive is scanned.
enum Spool {
    /// The archive is a plain file: content stays where it is.
    InPlace { len: u64 },
    /// Content is appended to a spool file at the given offset.
    Copy(File, u64),
}

/// Where one member's bytes are in the content file.
struct Stored {
    /// The file's logical size.
    size: u64,
    /// Offset of the stored data in the content file.
    base: u64,
    /// For a sparse member, its pieces; holes read as zeros.
    sparse: Option<Box<[Segment]>>,
}

/// Member content: byte ranges of one file (the archive itself or a spool).
struct Members {
    file: File,
    describe_as: PathBuf,
    stored: Vec<Stored>,
}

impl ContentStore for Members {
    fn open(&self, key: u64) -> io::Result<Box<dyn Read + Send>> {
        let m = &self.stored[key as usize];
        let segments = match &m.sparse {
            Some(s) => s.to_vec(),
            None => vec![Segment {
                offset: 0,
                len: m.size,
                data: 0,
            }],
        };
        Ok(Box::new(Pieces {
            file: self.file.try_clone()?,
            base: m.base,
            segments,
            next: 0,
            pos: 0,
            size: m.size,
        }))
    }

    fn describe(&self, key: u64) -> String {
        format!("member #{key} of {}", self.describe_as.display())
    }

    fn fingerprint(&self, key: u64) -> Option<Vec<u8>> {
        // The archive's identity and times, and where the member is in it.
        let m = self.file.metadata().ok()?;
        let s = &self.stored[key as usize];
        Some(crate::tree::file_fingerprint(
            b"archive",
            &m,
            &[s.base, s.size],
        ))
    }
}

/// Reads a member from its stored pieces with positioned reads, zeros in holes.
struct Pieces {
    file: File,
    base: u64,
    segments: Vec<Segment>,
    /// The first segment not wholly read.
    next: usize,
    /// Logical position in the file.
    pos: u64,
    size: u64,
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        while self
            .segments
            .get(self.next)
            .is_some_and(|s| s.offset + s.len <= self.pos)
        {
            self.next += 1;
        }
        let limit = |end: u64| {
            buf.len()
                .min(usize::try_from(end - self.pos).unwrap_or(usize::MAX))
        };
        let n = match self.segments.get(self.next) {
            Some(s) if s.offset <= self.pos => {
                let want = limit(s.offset + s.len);
                let at = self.base + s.data + (self.pos - s.offset);
                let n = self.file.read_at(&mut buf[..want], at)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "archive ends inside the member",
                    ));
                }
                n
            }
            // A hole up to the next piece or the end of the file.
            next => {
                let want = limit(next.map_or(self.size, |s| s.offset));
                buf[..want].fill(0);
                want
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Bytes of holes in sparse members so far: each costs work to encode
/// (zeros to compress) but nothing in the archive, so how many an archive
/// may claim is bounded by how large it really is.
#[derive(Default)]
pub struct HoleBudget {
    holes: u64,
}

impl HoleBudget {
    /// Counts a member's holes, `read` bytes into the archive.
    ///
    /// # Errors
    /// The archive claims more holes than its size allows.
    pub fn charge(&mut self, m: &Member, name: &str, read: u64) -> Result<()> {
        let Some(segments) = &m.sparse else {
            return Ok(());
        };
        let data: u64 = segments.iter().map(|s| s.len).sum();
        self.holes = self.holes.saturating_add(m.size.saturating_sub(data));
        let allowed = MAX_HOLES_FLOOR.max(read.saturating_mul(MAX_HOLES_RATIO));
        if self.holes > allowed {
            return Err(Error::invalid(format!(
                "member '{name}' is a sparse file of {} bytes with {data} bytes of data; \
                 an archive of {read} bytes may hold at most {allowed} bytes of holes",
                m.size
            )));
        }
        Ok(())
    }
}

/// An entry for a tar member, with its kind and metadata (not its
/// content); `None` for a hardlink, which names another member.
///
/// # Errors
/// An unknown member type, or ids out of range; the message names `name`.
pub fn entry_of(m: &Member, path: TreePath, name: &str) -> Result<Option<Entry>> {
    let Some(kind) = m.entry_kind() else {
        if let Kind::Other(flag) = m.kind {
            return Err(Error::invalid(format!(
                "member '{name}' has unsupported type '{}'",
                char::from(flag).escape_default()
            )));
        }
        return Ok(None);
    };
    let mut entry = Entry::new(path, kind);
    entry.mode = m.mode;
    entry.uid = u32::try_from(m.uid)
        .map_err(|_| Error::invalid(format!("member '{name}': uid {} out of range", m.uid)))?;
    entry.gid = u32::try_from(m.gid)
        .map_err(|_| Error::invalid(format!("member '{name}': gid {} out of range", m.gid)))?;
    entry.mtime = m.mtime;
    entry.xattrs.clone_from(&m.xattrs);
    entry.xattrs.sort();
    Ok(Some(entry))
}

/// Member content copied, as it is read, to one temporary file of its own
/// (unnamed, gone when the last reader closes it); holes of sparse members
/// are not stored. What a tree keeps of it is a [`ContentStore`].
pub struct ContentSpool {
    file: File,
    at: u64,
    stored: Vec<Stored>,
}

impl ContentSpool {
    /// A spool in the system's temporary directory.
    ///
    /// # Errors
    /// The temporary file cannot be made.
    pub fn new() -> Result<Self> {
        Ok(ContentSpool {
            file: tempfile::tempfile().at(std::env::temp_dir())?,
            at: 0,
            stored: Vec::new(),
        })
    }

    /// Copies a member's stored data (`data`, as [`Untar::data`] yields it)
    /// and returns its key.
    ///
    /// # Errors
    /// The data cannot be read or written; the message names `name`.
    pub fn add(&mut self, data: &mut impl Read, m: &Member, name: &str) -> Result<u64> {
        let base = self.at;
        let copied = copy_member(data, &mut self.file)
            .map_err(|e| Error::invalid(format!("member '{name}': {e}")))?;
        self.at += copied;
        self.stored.push(Stored {
            size: m.size,
            base,
            sparse: m.sparse.clone().map(Vec::into_boxed_slice),
        });
        Ok(self.stored.len() as u64 - 1)
    }

    /// The spooled content, for the tree's entries; `describe_as` names
    /// where it came from in messages.
    ///
    /// # Errors
    /// The spool cannot be flushed or reopened.
    pub fn into_store(mut self, describe_as: &Path) -> Result<Arc<dyn ContentStore>> {
        self.file.flush().at(describe_as)?;
        Ok(Arc::new(Members {
            file: self.file,
            describe_as: describe_as.to_path_buf(),
            stored: self.stored,
        }))
    }
}

/// Reads every member header, placing content per `spool`; `content` is the
/// file the member table will read from afterwards.
fn scan<R: Read>(input: R, path: &Path, mut spool: Spool, content: File) -> Result<Tree> {
    let mut untar = Untar::new(input);
    let mut tree = Tree::new();
    let mut hardlinks: Vec<(TreePath, TreePath, Vec<u8>)> = Vec::new();
    let mut stored: Vec<Stored> = Vec::new();
    // (index in the tree's entries, key in `stored`) of files with content.
    let mut with_content: Vec<(usize, u64)> = Vec::new();
    let corrupt = |e: UntarError| Error::invalid(format!("corrupt archive: {e}"));
    let mut holes = HoleBudget::default();

    while let Some(m) = untar.next_member().map_err(corrupt)? {
        let name = String::from_utf8_lossy(&m.path).into_owned();
        let tree_path = TreePath::parse(&m.path)
            .map_err(|_| Error::invalid(format!("member '{name}' escapes the root")))?;
        let Some(mut entry) = entry_of(&m, tree_path.clone(), &name)? else {
            let target = TreePath::parse(&m.link).map_err(|_| {
                Error::invalid(format!("hardlink '{name}' points outside the root"))
            })?;
            hardlinks.push((tree_path, target, m.path));
            continue;
        };

        holes.charge(&m, &name, untar.position())?;
        if entry.is_file() && m.size > 0 {
            entry.size = m.size;
            let base = match &mut spool {
                Spool::InPlace { len } => {
                    if m.data_offset
                        .checked_add(m.data_len)
                        .is_none_or(|end| end > *len)
                    {
                        return Err(Error::invalid(format!(
                            "member '{name}' claims {} bytes, past the end of the archive",
                            m.data_len
                        )));
                    }
                    m.data_offset
                }
                Spool::Copy(file, at) => {
                    let base = *at;
                    let copied = copy_member(&mut untar.data(), file)
                        .map_err(|e| Error::invalid(format!("member '{name}': {e}")))?;
                    *at += copied;
                    base
                }
            };
            with_content.push((tree.len(), stored.len() as u64));
            stored.push(Stored {
                size: m.size,
                base,
                sparse: m.sparse.map(Vec::into_boxed_slice),
            });
        }
        tree.push(entry);
    }
    if let Spool::Copy(file, _) = &mut spool {
        file.flush().at(path)?;
    }
    let store: Arc<dyn ContentStore> = Arc::new(Members {
        file: content,
        describe_as: path.to_path_buf(),
        stored,
    });
    let entries = tree.entries_mut();
    for (at, key) in with_content {
        entries[at].content = Content::Stored(Arc::clone(&store), key);
    }

    tree.normalize()?;
    resolve_hardlinks(&mut tree, hardlinks)?;
    Ok(tree)
}

/// Copies one member to the spool. The buffer is per member, so it is
/// small: a MiB each, mapped and unmapped per file, cost a rechunk seconds.
fn copy_member(member: &mut impl Read, out: &mut File) -> io::Result<u64> {
    let mut w = io::BufWriter::with_capacity(64 << 10, out);
    let n = io::copy(member, &mut w)?;
    w.flush()?;
    Ok(n)
}

/// Turns hardlink members into entries sharing their target's content and
/// inode metadata.
fn resolve_hardlinks(tree: &mut Tree, links: Vec<(TreePath, TreePath, Vec<u8>)>) -> Result<()> {
    if links.is_empty() {
        return Ok(());
    }
    let mut next_group = 0u64;
    let mut added = Vec::with_capacity(links.len());
    for (path, target, raw) in links {
        let Some(at) = tree.position(&target) else {
            return Err(Error::invalid(format!(
                "hardlink '{}' points to '{target}', which is not in the archive",
                String::from_utf8_lossy(&raw)
            )));
        };
        let entries = tree.entries_mut();
        if !entries[at].is_file() {
            return Err(Error::invalid(format!(
                "hardlink '{}' points to '{target}', which is a {}, not a regular file",
                String::from_utf8_lossy(&raw),
                entries[at].kind.name()
            )));
        }
        let group = *entries[at].link.get_or_insert_with(|| {
            next_group += 1;
            next_group
        });
        let mut link = entries[at].clone();
        link.path = path;
        link.link = Some(group);
        added.push(link);
    }
    for entry in added {
        tree.push(entry);
    }
    tree.normalize()
}

/// A file to put in an archive written by [`write_archive`].
pub struct ArchiveFile {
    pub path: String,
    pub size: u64,
    pub content: Content,
}

impl ArchiveFile {
    /// A file whose bytes are in memory.
    #[must_use]
    pub fn bytes(path: impl Into<String>, bytes: &[u8]) -> Self {
        ArchiveFile {
            path: path.into(),
            size: bytes.len() as u64,
            content: Content::Bytes(Arc::from(bytes)),
        }
    }

    /// A file on disk (a blob).
    pub fn disk(path: impl Into<String>, file: &Path) -> Result<Self> {
        let size = std::fs::metadata(file).at(file)?.len();
        Ok(ArchiveFile {
            path: path.into(),
            size,
            content: Content::Path(file.to_path_buf()),
        })
    }
}

/// Writes `files` as an uncompressed tar archive at `dest`: under a temporary
/// name in the same directory, renamed into place once complete. Parent
/// directories are added; every entry is owned by root with time `mtime`.
///
/// # Errors
/// A file cannot be read, or `dest` cannot be written.
pub fn write_archive(dest: &Path, files: Vec<ArchiveFile>, mtime: i64) -> Result<()> {
    let mut tree = Tree::with_capacity(files.len());
    for f in files {
        let mut e = Entry::file(TreePath::parse(f.path.as_bytes())?, f.size, f.content);
        e.mtime = mtime;
        tree.push(e);
    }
    tree.normalize()?;
    tree.clamp_mtimes(mtime);
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = crate::blobs::Writeback::new(crate::blobs::temp_file_in(parent)?);
    let mut tar = crate::layer::tar::TarWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
    for e in tree.entries() {
        let mut reader = if e.is_file() {
            Some(e.content.open()?)
        } else {
            None
        };
        tar.append(e, None, reader.as_mut().map(|r| r as &mut dyn Read))
            .map_err(|err| match err {
                crate::layer::tar::TarError::Write(io) => Error::io(dest, io),
                other => Error::invalid(format!("{}: {other:?}", e.content.describe())),
            })?;
    }
    let tmp = tar
        .finish()
        .at(dest)?
        .into_inner()
        .map_err(|e| Error::io(dest, e.into_error()))?
        .into_inner();
    tmp.as_file().sync_all().at(dest)?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// The files of a plain tar archive, read in place, for image readers.
pub struct ArchiveFiles {
    tree: Tree,
    what: String,
}

impl ArchiveFiles {
    /// Indexes the archive at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(ArchiveFiles {
            tree: read_archive_as(path, "archive")?,
            what: path.display().to_string(),
        })
    }

    /// True when the archive has a regular file at `name`.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        TreePath::parse(name.as_bytes())
            .ok()
            .and_then(|p| self.tree.get(&p).map(Entry::is_file))
            .unwrap_or(false)
    }

    /// Opens the file at `name`.
    pub fn open_file(&self, name: &str) -> Result<Box<dyn Read + Send>> {
        let path = TreePath::parse(name.as_bytes())?;
        match self.tree.get(&path) {
            Some(e) if e.is_file() => e.content.open(),
            _ => Err(Error::invalid(format!(
                "{}: no file '{name}' in the archive",
                self.what
            ))),
        }
    }

    /// Reads a small document (JSON) at `name`.
    pub fn read_document(&self, name: &str) -> Result<Vec<u8>> {
        crate::media::read_limited(self.open_file(name)?, &format!("{}: {name}", self.what))
    }

    /// The archive's name, for messages.
    #[must_use]
    pub fn what(&self) -> &str {
        &self.what
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads in uneven steps, as decoders do.
    struct Uneven<R> {
        inner: R,
        step: usize,
    }

    impl<R: Read> Read for Uneven<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.step = self.step % 7919 + 1;
            let n = buf.len().min(self.step * 37);
            self.inner.read(&mut buf[..n])
        }
    }

    #[test]
    fn reading_beside_hands_over_every_byte_in_order() {
        // Several pieces' worth, read unevenly on both sides.
        let data: Vec<u8> = (0..5 * PIECE as u32 + 12_345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut input = Uneven {
            inner: &data[..],
            step: 3,
        };
        let got = read_beside(&mut input, |plain| {
            let mut r = Uneven {
                inner: plain,
                step: 11,
            };
            let mut out = Vec::new();
            r.read_to_end(&mut out)
                .map_err(|e| Error::invalid(e.to_string()))?;
            Ok(out)
        })
        .expect("reading from memory works");
        assert!(got == data, "the bytes arrive whole and in order");
    }

    /// Gives `.0` bytes, then fails.
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "corrupt deflate stream",
                ));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(1);
            self.0 -= n;
            Ok(n)
        }
    }

    #[test]
    fn reading_beside_ends_on_either_sides_error() {
        // The consumer stops early: the reader stops too, and its error is
        // the one returned (no hang on a full queue).
        let endless = io::repeat(7);
        let err = read_beside(&mut endless.take(1 << 40), |plain| {
            let mut first = [0u8; 10];
            plain
                .read_exact(&mut first)
                .map_err(|e| Error::invalid(e.to_string()))?;
            Err::<(), _>(Error::invalid("member 'x': refused"))
        })
        .expect_err("the consumer's error");
        assert_eq!(err.to_string(), "member 'x': refused");
        // The reader fails: the consumer sees the error after what came
        // before it.
        let err = read_beside(&mut Failing(PIECE + 5), |plain| {
            let mut out = Vec::new();
            match plain.read_to_end(&mut out) {
                Ok(_) => Ok(out.len()),
                Err(e) => Err(Error::invalid(format!("after {} bytes: {e}", out.len()))),
            }
        })
        .expect_err("the reader's error");
        assert_eq!(
            err.to_string(),
            format!("after {} bytes: corrupt deflate stream", PIECE + 5)
        );
    }

    /// A ustar member with a raw name (the `tar` crate's builder refuses `..`).
    fn member(name: &[u8], kind: u8, link: &[u8], data: &[u8]) -> Vec<u8> {
        crate::layer::testdata::tar_member(name, kind, link, data)
    }

    fn archive(members: &[Vec<u8>]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("the test fixture is valid");
        for m in members {
            f.write_all(m).expect("writing to memory works");
        }
        f.write_all(&[0u8; 1024]).expect("writing to memory works");
        f
    }

    fn read_all(tree: &Tree, path: &str) -> Vec<u8> {
        let e = tree
            .get(&TreePath::parse(path.as_bytes()).expect("the test literal parses"))
            .expect("the test fixture is valid");
        let mut out = Vec::new();
        e.content
            .open()
            .expect("reading from memory works")
            .read_to_end(&mut out)
            .expect("reading from memory works");
        out
    }

    #[test]
    fn plain_archives_are_read_in_place_with_hardlinks() {
        let f = archive(&[
            member(b"./etc/", b'5', b"", b""),
            member(b"./etc/a", b'0', b"", b"alpha"),
            member(b"./etc/b", b'1', b"./etc/a", b""),
        ]);
        let tree = read_archive(f.path()).expect("the test fixture is valid");
        assert_eq!(read_all(&tree, "etc/a"), b"alpha");
        assert_eq!(read_all(&tree, "etc/b"), b"alpha");
        let a = tree
            .get(&TreePath::parse(b"etc/a").expect("the test literal parses"))
            .expect("the test literal parses");
        let b = tree
            .get(&TreePath::parse(b"etc/b").expect("the test literal parses"))
            .expect("the test literal parses");
        assert!(a.link.is_some() && a.link == b.link);
    }

    #[test]
    fn what_follows_a_gzip_tarball_is_judged_the_same_at_any_size() {
        // After the end marker nothing is read, whether the stream's end
        // falls in the piece that holds the marker or in a later one: a
        // tarball with zeros after its gzip member is taken at every size.
        for size in [10, 200_000, 257_000, 600_000] {
            let data: Vec<u8> = (0..size)
                .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            let plain = archive(&[member(b"f", b'0', b"", &data)]);
            let bytes = std::fs::read(plain.path()).expect("the test reads what it wrote");
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&bytes).expect("writing to memory works");
            let mut gz = enc.finish().expect("finishing the in-memory stream works");
            gz.extend_from_slice(&[0u8; 512]);
            let mut g = tempfile::NamedTempFile::new().expect("the test fixture is valid");
            g.write_all(&gz).expect("the test fixture is valid");
            let tree = read_archive(g.path()).unwrap_or_else(|e| panic!("{size} bytes: {e}"));
            assert!(read_all(&tree, "f") == data, "{size} bytes");
        }
    }

    #[test]
    fn compressed_archives_are_spooled() {
        let plain = archive(&[member(b"f", b'0', b"", b"zstd data")]);
        let bytes = std::fs::read(plain.path()).expect("the test reads what it wrote");
        let mut z = tempfile::NamedTempFile::new().expect("the test fixture is valid");
        z.write_all(&zstd::encode_all(&bytes[..], 3).expect("the test data encodes"))
            .expect("the test fixture is valid");
        assert_eq!(
            read_all(
                &read_archive(z.path()).expect("the test fixture is valid"),
                "f"
            ),
            b"zstd data"
        );
        let mut g = tempfile::NamedTempFile::new().expect("the test fixture is valid");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).expect("writing to memory works");
        g.write_all(&enc.finish().expect("finishing the in-memory stream works"))
            .expect("finishing the in-memory stream works");
        assert_eq!(
            read_all(
                &read_archive(g.path()).expect("the test fixture is valid"),
                "f"
            ),
            b"zstd data"
        );
    }

    #[test]
    fn escaping_members_are_refused_with_their_name() {
        let f = archive(&[member(b"../x", b'0', b"", b"x")]);
        let err = read_archive(f.path()).unwrap_err().to_string();
        assert!(err.contains("member '../x' escapes the root"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn members_through_a_symlink_are_refused() {
        let f = archive(&[
            member(b"a", b'2', b"/etc", b""),
            member(b"a/passwd", b'0', b"", b"root::0:0"),
        ]);
        let err = read_archive(f.path()).unwrap_err().to_string();
        assert!(
            err.contains("'/a/passwd' lies below '/a', which is a symlink"),
            "{err}"
        );
    }

    #[test]
    fn truncated_archives_are_refused() {
        let mut m = member(b"big", b'0', b"", &[7u8; 2000]);
        m.truncate(1024);
        let mut f = tempfile::NamedTempFile::new().expect("the test fixture is valid");
        f.write_all(&m).expect("writing to memory works");
        let err = read_archive(f.path()).unwrap_err().to_string();
        assert!(err.contains("big"), "{err}");
    }
}
