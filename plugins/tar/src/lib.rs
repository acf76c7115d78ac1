//! Source `tar:FILE`: a tar archive, plain, gzip- or zstd-compressed
//! (recognised by its first bytes, whatever the file is called).
//!
//! A plain archive is read in place: each member's content is read from its
//! offset in the file when the encoder needs it. A compressed archive is
//! decompressed once and its members' content spooled to one temporary file,
//! removed when the run ends. Either way no member is held in memory.
//!
//! Members that would land outside the root (`../x`), or below a member that
//! is not a directory (`a -> /etc`, then `a/passwd`), are refused.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tar::EntryType;
use treeport_core::error::{Error, IoResultExt, Result};
use treeport_core::image::ImageDraft;
use treeport_core::plugin::{Builtin, BuiltinFactory, Options, Selector, Source};
use treeport_core::progress::Context;
use treeport_core::tree::{Content, ContentStore, Entry, EntryKind, Tree, TreePath};

treeport_core::inventory::submit! {
    Builtin {
        kind: "tar",
        description: "a tar archive (plain, gzip or zstd), members streamed or spooled, never held in memory",
        usage: "tar:FILE",
        options: &[],
        factory: BuiltinFactory::Source(TarSource::build),
    }
}

/// Reads a tar archive.
pub struct TarSource {
    file: PathBuf,
}

impl TarSource {
    #[must_use]
    pub fn new(file: impl Into<PathBuf>) -> Self {
        TarSource { file: file.into() }
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        options.check_keys("source tar", &[])?;
        Ok(Box::new(TarSource::new(selector.require_rest("an archive file")?)))
    }
}

impl Source for TarSource {
    fn read(&mut self, _ctx: &Context) -> Result<ImageDraft> {
        Ok(ImageDraft::new(read_archive(&self.file)?))
    }
}

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

/// Reads the archive at `path` into a tree.
///
/// # Errors
/// The archive is unreadable, truncated or corrupt, or a member escapes the
/// root; the message names the archive and the member.
pub fn read_archive(path: &Path) -> Result<Tree> {
    let file = File::open(path)
        .at(path)
        .map_err(|e| e.context("tar source"))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let format = sniff(reader.fill_buf().at(path)?);
    let in_archive = |e: Error| e.context(format!("tar source {}", path.display()));
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
            scan(decoder, path, Spool::Copy(spool, 0), content).map_err(in_archive)
        }
    }
}

/// Where member content goes while the archive is scanned.
enum Spool {
    /// The archive is a plain file: content stays where it is.
    InPlace { len: u64 },
    /// Content is appended to a spool file at the given offset.
    Copy(File, u64),
}

/// Member content: byte ranges of one file (the archive itself or a spool).
struct Members {
    file: File,
    describe_as: PathBuf,
    /// (offset, length) per key.
    members: Vec<(u64, u64, Vec<u8>)>,
}

impl ContentStore for Members {
    fn open(&self, key: u64) -> io::Result<Box<dyn Read + Send>> {
        let (offset, len, _) = self.members[key as usize];
        Ok(Box::new(Slice {
            file: self.file.try_clone()?,
            offset,
            left: len,
        }))
    }

    fn describe(&self, key: u64) -> String {
        let (_, _, name) = &self.members[key as usize];
        format!(
            "member '{}' of {}",
            String::from_utf8_lossy(name),
            self.describe_as.display()
        )
    }
}

/// Reads `left` bytes of `file` from `offset`, with positioned reads.
struct Slice {
    file: File,
    offset: u64,
    left: u64,
}

impl Read for Slice {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive ends inside the member",
            ));
        }
        self.offset += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads every member header, placing content per `spool`; `content` is the
/// file the member table will read from afterwards.
fn scan<R: Read>(input: R, path: &Path, mut spool: Spool, content: File) -> Result<Tree> {
    let mut archive = tar::Archive::new(input);
    let mut tree = Tree::new();
    let mut hardlinks: Vec<(TreePath, TreePath, Vec<u8>)> = Vec::new();
    let mut pending: Vec<(u64, u64, Vec<u8>)> = Vec::new();
    // (index in the tree's entries, key in `pending`) of files with content.
    let mut with_content: Vec<(usize, u64)> = Vec::new();
    let corrupt = |e: io::Error| Error::invalid(format!("corrupt or truncated archive: {e}"));

    for member in archive.entries().map_err(corrupt)? {
        let mut member = member.map_err(corrupt)?;
        let raw_name = member.path_bytes().into_owned();
        let name_text = String::from_utf8_lossy(&raw_name).into_owned();
        let tree_path = TreePath::parse(&raw_name)
            .map_err(|_| Error::invalid(format!("member '{name_text}' escapes the root")))?;
        let header = member.header().clone();
        let entry_type = header.entry_type();
        let mut pax: HashMap<String, Vec<u8>> = HashMap::new();
        let mut xattrs = Vec::new();
        if let Some(exts) = member.pax_extensions().map_err(corrupt)? {
            for ext in exts {
                let ext = ext.map_err(corrupt)?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                } else if let Ok(key) = std::str::from_utf8(key) {
                    pax.insert(key.to_string(), ext.value_bytes().to_vec());
                }
            }
        }
        xattrs.sort();
        let number = |key: &str, fallback: io::Result<u64>| -> Result<u64> {
            match pax.get(key) {
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse().ok())
                    .ok_or_else(|| Error::invalid(format!("member '{name_text}': bad PAX {key}"))),
                None => fallback.map_err(|e| Error::invalid(format!("member '{name_text}': {e}"))),
            }
        };
        let link_target = || -> Result<Vec<u8>> {
            member
                .link_name_bytes()
                .map(std::borrow::Cow::into_owned)
                .ok_or_else(|| Error::invalid(format!("member '{name_text}' has no link target")))
        };

        let kind = match entry_type {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => EntryKind::File,
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink(link_target()?),
            EntryType::Link => {
                let target = TreePath::parse(&link_target()?).map_err(|_| {
                    Error::invalid(format!("hardlink '{name_text}' points outside the root"))
                })?;
                hardlinks.push((tree_path, target, raw_name));
                continue;
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if entry_type == EntryType::Char {
                    EntryKind::CharDevice { major, minor }
                } else {
                    EntryKind::BlockDevice { major, minor }
                }
            }
            EntryType::Fifo => EntryKind::Fifo,
            EntryType::XGlobalHeader => continue,
            other => {
                return Err(Error::invalid(format!(
                    "member '{name_text}' has unsupported type {other:?}"
                )));
            }
        };

        let mut entry = Entry::new(tree_path, kind);
        entry.mode = header
            .mode()
            .map_err(|e| Error::invalid(format!("member '{name_text}': {e}")))?
            & 0o7777;
        entry.uid = u32::try_from(number("uid", header.uid())?)
            .map_err(|_| Error::invalid(format!("member '{name_text}': uid out of range")))?;
        entry.gid = u32::try_from(number("gid", header.gid())?)
            .map_err(|_| Error::invalid(format!("member '{name_text}': gid out of range")))?;
        entry.mtime = match pax.get("mtime") {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
                .ok_or_else(|| Error::invalid(format!("member '{name_text}': bad PAX mtime")))?,
            None => header
                .mtime()
                .map_err(|e| Error::invalid(format!("member '{name_text}': {e}")))?
                as i64,
        };
        entry.xattrs = xattrs;

        if entry.is_file() {
            let size = member.size();
            entry.size = size;
            if size > 0 {
                let key = pending.len() as u64;
                let offset = match &mut spool {
                    Spool::InPlace { len }
                        if entry_type != EntryType::GNUSparse =>
                    {
                        let offset = member.raw_file_position();
                        if offset.checked_add(size).is_none_or(|end| end > *len) {
                            return Err(Error::invalid(format!(
                                "member '{name_text}' claims {size} bytes, past the end of the archive"
                            )));
                        }
                        offset
                    }
                    Spool::InPlace { .. } => {
                        return Err(Error::invalid(format!(
                            "member '{name_text}' is a sparse file; use a compressed archive or extract it first"
                        )));
                    }
                    Spool::Copy(file, at) => {
                        let offset = *at;
                        let copied = copy_member(&mut member, file).map_err(|e| {
                            Error::invalid(format!("member '{name_text}': {e}"))
                        })?;
                        if copied != size {
                            return Err(Error::invalid(format!(
                                "member '{name_text}' is truncated ({copied} of {size} bytes)"
                            )));
                        }
                        *at += size;
                        offset
                    }
                };
                pending.push((offset, size, raw_name));
                with_content.push((tree.len(), key));
            }
        }
        tree.push(entry);
    }
    if let Spool::Copy(file, _) = &mut spool {
        file.flush().at(path)?;
        file.rewind().at(path)?;
    }
    let store: Arc<dyn ContentStore> = Arc::new(Members {
        file: content,
        describe_as: path.to_path_buf(),
        members: pending,
    });
    let entries = tree.entries_mut();
    for (at, key) in with_content {
        entries[at].content = Content::Stored(Arc::clone(&store), key);
    }

    tree.normalize()?;
    resolve_hardlinks(&mut tree, hardlinks)?;
    Ok(tree)
}

fn copy_member(member: &mut impl Read, out: &mut File) -> io::Result<u64> {
    let mut w = io::BufWriter::with_capacity(1 << 20, out);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A ustar member with a raw name (the `tar` crate's builder refuses `..`).
    fn member(name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(1000);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn archive(members: &[Vec<u8>]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for m in members {
            f.write_all(m).unwrap();
        }
        f.write_all(&[0u8; 1024]).unwrap();
        f
    }

    fn read_all(tree: &Tree, path: &str) -> Vec<u8> {
        let e = tree.get(&TreePath::parse(path.as_bytes()).unwrap()).unwrap();
        let mut out = Vec::new();
        e.content.open().unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn plain_archives_are_read_in_place_with_hardlinks() {
        let f = archive(&[
            member(b"./etc/", EntryType::Directory, b"", b""),
            member(b"./etc/a", EntryType::Regular, b"", b"alpha"),
            member(b"./etc/b", EntryType::Link, b"./etc/a", b""),
        ]);
        let tree = read_archive(f.path()).unwrap();
        assert_eq!(read_all(&tree, "etc/a"), b"alpha");
        assert_eq!(read_all(&tree, "etc/b"), b"alpha");
        let a = tree.get(&TreePath::parse(b"etc/a").unwrap()).unwrap();
        let b = tree.get(&TreePath::parse(b"etc/b").unwrap()).unwrap();
        assert!(a.link.is_some() && a.link == b.link);
    }

    #[test]
    fn compressed_archives_are_spooled() {
        let plain = archive(&[member(b"f", EntryType::Regular, b"", b"zstd data")]);
        let bytes = std::fs::read(plain.path()).unwrap();
        let mut z = tempfile::NamedTempFile::new().unwrap();
        z.write_all(&zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
        assert_eq!(read_all(&read_archive(z.path()).unwrap(), "f"), b"zstd data");
        let mut g = tempfile::NamedTempFile::new().unwrap();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes).unwrap();
        g.write_all(&enc.finish().unwrap()).unwrap();
        assert_eq!(read_all(&read_archive(g.path()).unwrap(), "f"), b"zstd data");
    }

    #[test]
    fn escaping_members_are_refused_with_their_name() {
        let f = archive(&[member(b"../x", EntryType::Regular, b"", b"x")]);
        let err = read_archive(f.path()).unwrap_err().to_string();
        assert!(err.contains("member '../x' escapes the root"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn members_through_a_symlink_are_refused() {
        let f = archive(&[
            member(b"a", EntryType::Symlink, b"/etc", b""),
            member(b"a/passwd", EntryType::Regular, b"", b"root::0:0"),
        ]);
        let err = read_archive(f.path()).unwrap_err().to_string();
        assert!(err.contains("'/a/passwd' lies below '/a', which is a symlink"), "{err}");
    }

    #[test]
    fn truncated_archives_are_refused() {
        let mut m = member(b"big", EntryType::Regular, b"", &[7u8; 2000]);
        m.truncate(1024);
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&m).unwrap();
        let err = read_archive(f.path()).unwrap_err().to_string();
        assert!(err.contains("big"), "{err}");
    }
}
