//! A content-addressed blob store: `sha256/<hex>` files under one directory.
//!
//! Blobs are written to a temporary name in the store, hashed as the bytes
//! pass, and renamed into place, so a reader never sees a partial blob and an
//! interrupted write leaves nothing under `sha256/`. The encoder writes every
//! blob of an image (layers, config, manifest) into one store; each sink then
//! links or copies them to its destination: compress once, write many.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, HashWriter};
use crate::error::{Error, IoResultExt, Result};

/// Prefix of the temporary files and directories treeport creates.
pub const TEMP_PREFIX: &str = ".treeport-tmp-";

/// Opens `path` for reading only if it is a regular file itself: never
/// through a symlink in its last component (a blob that points at
/// `/etc/shadow`), never a FIFO or device (which would block or never end).
///
/// # Errors
/// The file is missing, unreadable, a symlink or not a regular file; the
/// error names it.
pub fn open_regular(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        // Non-blocking so opening a FIFO does not wait for a writer.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::invalid(format!(
                    "{}: is a symlink; blobs must be regular files inside their store",
                    path.display()
                ))
            } else {
                Error::io(path, e)
            }
        })?;
    let meta = file.metadata().at(path)?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{}: is not a regular file; blobs must be regular files inside their store",
            path.display()
        )));
    }
    // Back to blocking reads for a regular file (O_NONBLOCK does not
    // change them, but say what is meant).
    {
        use std::os::fd::AsRawFd;
        // SAFETY: fcntl on a descriptor owned by `file`, which outlives the
        // calls.
        #[allow(unsafe_code)]
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
        }
    }
    Ok(file)
}

/// A new temporary file in `dir` (mode 0644 less the umask), removed unless
/// persisted.
pub fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    crate::cleanup::create(
        dir,
        || {
            tempfile::Builder::new()
                .prefix(&crate::cleanup::prefix())
                .permissions(fs::Permissions::from_mode(0o644))
                .tempfile_in(dir)
        },
        tempfile::NamedTempFile::path,
    )
    .at(dir)
}

/// A new temporary directory in `dir` (mode 0755 less the umask), removed
/// unless kept.
pub fn temp_dir_in(dir: &Path) -> Result<tempfile::TempDir> {
    crate::cleanup::create(
        dir,
        || {
            tempfile::Builder::new()
                .prefix(&crate::cleanup::prefix())
                .permissions(fs::Permissions::from_mode(0o755))
                .tempdir_in(dir)
        },
        tempfile::TempDir::path,
    )
    .at(dir)
}

/// A temporary file being written whose pages go to disk as they come:
/// every [`Writeback::STEP`] bytes, the kernel is asked to start writing
/// them back (without waiting), so the `sync_all` that ends the file waits
/// for the last step only, and does not stall other writers' syncs behind a
/// large flush.
pub struct Writeback {
    file: tempfile::NamedTempFile,
    written: u64,
    started: u64,
}

impl Writeback {
    const STEP: u64 = 8 << 20;

    #[must_use]
    pub fn new(file: tempfile::NamedTempFile) -> Self {
        Writeback {
            file,
            written: 0,
            started: 0,
        }
    }

    /// The file, for its final sync and rename.
    #[must_use]
    pub fn into_inner(self) -> tempfile::NamedTempFile {
        self.file
    }
}

impl Write for Writeback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= Self::STEP {
            use std::os::fd::AsRawFd;
            // Offsets of a file written from its start fit in i64.
            #[allow(clippy::cast_possible_wrap)]
            let (from, len) = (self.started as i64, (self.written - self.started) as i64);
            // SAFETY: the descriptor is open for the life of `self.file`;
            // the call only schedules writeback. A failure is harmless: the
            // final sync reports real I/O errors.
            #[allow(unsafe_code)]
            unsafe {
                libc::sync_file_range(
                    self.file.as_file().as_raw_fd(),
                    from,
                    len,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The directory a file destination is written in (`.` for a bare name).
#[must_use]
pub fn parent_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks, before any work, that a file can be written at `file`: its
/// directory exists and is writable, and `file` is not a directory. `what`
/// names the sink in errors.
pub fn check_file_destination(file: &Path, what: &str) -> Result<()> {
    let context = |e: Error| e.context(format!("{what} destination {}", file.display()));
    if file.is_dir() {
        return Err(Error::invalid(format!(
            "{what} destination {}: is a directory",
            file.display()
        )));
    }
    let parent = parent_dir(file);
    if !parent.is_dir() {
        return Err(Error::invalid(format!(
            "{what} destination {}: directory {} does not exist",
            file.display(),
            parent.display()
        )));
    }
    temp_file_in(&parent).map(drop).map_err(context)
}

/// A directory of blobs.
#[derive(Debug)]
pub struct BlobStore {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl BlobStore {
    /// Opens (creating if needed) a persistent store at `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let sha = dir.join("sha256");
        fs::create_dir_all(&sha).at(&sha)?;
        Ok(BlobStore { dir, _temp: None })
    }

    /// A store in a new temporary directory under `parent` (the system's
    /// temporary directory when `None`), removed when the store is dropped.
    pub fn temporary_in(parent: Option<&Path>) -> Result<Self> {
        let temp = temp_dir_in(&parent.map_or_else(std::env::temp_dir, Path::to_path_buf))?;
        let dir = temp.path().to_path_buf();
        fs::create_dir(dir.join("sha256")).at(&dir)?;
        Ok(BlobStore {
            dir,
            _temp: Some(temp),
        })
    }

    /// The store's directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    #[must_use]
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    #[must_use]
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Opens a stored blob (a regular file, never through a symlink).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        open_regular(&self.path(digest))
    }

    /// The size of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        Ok(fs::metadata(&path).at(&path)?.len())
    }

    /// Starts writing a new blob.
    pub fn create(&self) -> Result<BlobWriter> {
        let file = temp_file_in(&self.dir)?;
        let path = file.path().to_path_buf();
        Ok(BlobWriter {
            inner: HashWriter::new(BufWriter::with_capacity(1 << 20, file)),
            path,
            sha_dir: self.dir.join("sha256"),
        })
    }

    /// Stores `bytes` as a blob and returns its digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        if self.contains(&digest) {
            return Ok(digest);
        }
        let mut w = self.create()?;
        w.write_all(bytes).at(&w.path)?;
        Ok(w.commit()?.0)
    }
}

/// A blob being written: hashed as it goes, renamed to its digest on commit,
/// removed if dropped before.
pub struct BlobWriter {
    inner: HashWriter<BufWriter<tempfile::NamedTempFile>>,
    path: PathBuf,
    sha_dir: PathBuf,
}

impl BlobWriter {
    /// The temporary file's path, for error messages.
    #[must_use]
    pub fn temp_path(&self) -> &Path {
        &self.path
    }

    /// Finishes the blob: flushes it and moves it to `sha256/<hex>`.
    pub fn commit(self) -> Result<(Digest, u64)> {
        let (buf, digest, len) = self.inner.finish();
        let file = buf
            .into_inner()
            .map_err(|e| Error::io(&self.path, e.into_error()))?;
        let dest = self.sha_dir.join(digest.hex());
        file.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        Ok((digest, len))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What a file's metadata says about its content: it changes whenever the
/// file is written, truncated, replaced or has its times set (the ctime
/// cannot be set back). A blob whose signature is the one recorded when it
/// was last hashed needs no hashing again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StatSignature {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl StatSignature {
    #[must_use]
    pub fn of(m: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        StatSignature {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

/// Checks that the regular file at `path` holds the blob `digest` of
/// `size` bytes, reading it whole unless its metadata is `trusted` (a
/// signature recorded when it was last found right). Returns its signature
/// when it checks out, `None` when it is missing or wrong.
///
/// # Errors
/// Reading it fails for another reason than its absence.
pub fn check_blob(
    path: &Path,
    digest: &Digest,
    size: u64,
    trusted: Option<StatSignature>,
) -> Result<Option<StatSignature>> {
    // Missing, a symlink, a FIFO, a directory: not the blob.
    let Ok(mut file) = open_regular(path) else {
        return Ok(None);
    };
    let meta = file.metadata().at(path)?;
    if meta.len() != size {
        return Ok(None);
    }
    let signature = StatSignature::of(&meta);
    if trusted == Some(signature) {
        return Ok(Some(signature));
    }
    let mut h = crate::digest::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match io::Read::read(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        h.update(&buf[..n]);
    }
    let (got, len) = h.finish();
    Ok((got == *digest && len == size).then_some(signature))
}

/// Places the blob `digest` (`size` bytes), whose right copy is `src` in a
/// store of this run, at `dest` (a layout's or a cache's blob path). An
/// existing `dest` is kept only when it is `src` itself (the same inode) or
/// checks out (see [`check_blob`]); anything else there (wrong bytes, a
/// symlink, a FIFO) is replaced, atomically: a hardlink of `src` when both
/// are on one filesystem, else a copy, under a temporary name renamed over
/// `dest`. Returns the signature of what is at `dest` afterwards.
///
/// # Errors
/// `dest` cannot be written.
pub fn place_blob(
    src: &Path,
    dest: &Path,
    digest: &Digest,
    size: u64,
    trusted: Option<StatSignature>,
) -> Result<StatSignature> {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(d), Ok(s)) = (fs::symlink_metadata(dest), fs::metadata(src))
        && d.is_file()
        && d.dev() == s.dev()
        && d.ino() == s.ino()
    {
        return Ok(StatSignature::of(&d));
    }
    if let Some(signature) = check_blob(dest, digest, size, trusted)? {
        return Ok(signature);
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    // Linked under a temporary name, then renamed over whatever is there.
    let tmp_name = parent.join(format!("{}{}", crate::cleanup::prefix(), digest.hex()));
    let linked = crate::cleanup::create(
        parent,
        || fs::hard_link(src, &tmp_name).map(|()| tmp_name.clone()),
        |p: &PathBuf| p.as_path(),
    );
    if let Ok(tmp) = linked {
        if let Err(e) = fs::rename(&tmp, dest) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(dest, e));
        }
    } else {
        // Another filesystem: a copy.
        let mut tmp = temp_file_in(parent)?;
        let mut from = open_regular(src)?;
        io::copy(&mut from, tmp.as_file_mut()).at(dest)?;
        tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    }
    let meta = fs::symlink_metadata(dest).at(dest)?;
    Ok(StatSignature::of(&meta))
}

/// Writes `bytes` to `dest` through a temporary file in the same directory and
/// an atomic rename, so readers see the old or the new content, never a mix.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = temp_file_in(parent)?;
    tmp.write_all(bytes).at(dest)?;
    tmp.as_file().sync_all().at(dest)?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_named_by_digest_and_temporaries_vanish() {
        let store = BlobStore::temporary_in(None).unwrap();
        let d = store.put(b"abc").unwrap();
        assert_eq!(d, Digest::of(b"abc"));
        assert_eq!(fs::read(store.path(&d)).unwrap(), b"abc");
        {
            let mut w = store.create().unwrap();
            w.write_all(b"dropped").unwrap();
        }
        // What is left: the blobs, and the lock file this process holds
        // while it runs.
        let names: Vec<_> = fs::read_dir(store.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".lock"))
            .collect();
        assert_eq!(names, ["sha256"]);
    }

    #[test]
    fn a_placed_blob_is_kept_only_when_it_checks_out() {
        let store = BlobStore::temporary_in(None).unwrap();
        let d = store.put(b"layer").unwrap();
        let dest_dir = tempfile::tempdir().unwrap();
        let dest = dest_dir.path().join(d.hex());
        let place = || place_blob(&store.path(&d), &dest, &d, 5, None).unwrap();
        place();
        place();
        assert_eq!(fs::read(&dest).unwrap(), b"layer");
        // The right name with the wrong bytes (of the right size) is replaced.
        fs::remove_file(&dest).unwrap();
        fs::write(&dest, b"LAYER").unwrap();
        place();
        assert_eq!(fs::read(&dest).unwrap(), b"layer");
        // So is a symlink to elsewhere, which is never written through.
        let outside = dest_dir.path().join("outside");
        fs::write(&outside, b"other").unwrap();
        fs::remove_file(&dest).unwrap();
        std::os::unix::fs::symlink(&outside, &dest).unwrap();
        place();
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(fs::read(&outside).unwrap(), b"other");
        // A trusted signature spares the hashing, and stops being trusted
        // once the file changes.
        let sig = place();
        assert_eq!(check_blob(&dest, &d, 5, Some(sig)).unwrap(), Some(sig));
        fs::write(&dest, b"LAYER").unwrap();
        assert_eq!(check_blob(&dest, &d, 5, Some(sig)).unwrap(), None);
    }
}
