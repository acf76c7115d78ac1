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

pub use crate::cleanup::TEMP_PREFIX;

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
                    "{}: is a symlink; refused, as it must be a regular file of its own",
                    path.display()
                ))
            } else {
                Error::io(path, e)
            }
        })?;
    let meta = file.metadata().at(path)?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{}: is not a regular file; refused, as it must be one",
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

/// Opens a file a user names (a key, a configuration file), following
/// symlinks, if it is a regular file: never a FIFO (opening one does not
/// wait for a writer) or a device.
pub fn open_user_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .at(path)?;
    if !file.metadata().at(path)?.is_file() {
        return Err(Error::invalid(format!(
            "{}: is not a regular file",
            path.display()
        )));
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

    /// Adds the blob `digest` from `dir` (opened there as a regular file):
    /// a hardlink of that file, or a copy of it.
    pub fn link_from(&self, dir: &BlobDir, digest: &Digest) -> Result<()> {
        let dest = self.path(digest);
        if dest.is_file() {
            return Ok(());
        }
        let from = dir.open_regular(&digest.hex())?;
        // Linking the open file itself: what was opened is what lands.
        let proc_path = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&from)
        ));
        let linked = rustix::fs::linkat(
            rustix::fs::CWD,
            &proc_path,
            rustix::fs::CWD,
            &dest,
            rustix::fs::AtFlags::SYMLINK_FOLLOW,
        );
        if linked.is_ok() {
            return Ok(());
        }
        let mut w = self.create()?;
        io::copy(&mut &from, &mut w).at(&dest)?;
        let (got, _) = w.commit()?;
        if got != *digest {
            return Err(Error::invalid(format!(
                "{}: does not hold {digest}",
                dir.path(&digest.hex()).display()
            )));
        }
        Ok(())
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
///
/// The change time stays in, although every layout or archive that links
/// a cached blob (or drops its link) moves it and so costs a hash on the
/// next run: a layout's blob *is* the cached blob (one inode), so a writer
/// of the layout could otherwise rewrite the cache's copy and set its
/// modification time back.
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

/// Hashes what `file` holds and checks it is the blob `digest` of `size`
/// bytes, unless its metadata is `trusted` (a signature recorded when it
/// was last found right). Returns its signature when it checks out.
fn check_open_blob(
    mut file: File,
    what: &Path,
    digest: &Digest,
    size: u64,
    trusted: Option<StatSignature>,
) -> Result<Option<StatSignature>> {
    let meta = file.metadata().at(what)?;
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
            Err(e) => return Err(Error::io(what, e)),
        };
        h.update(&buf[..n]);
    }
    let (got, len) = h.finish();
    Ok((got == *digest && len == size).then_some(signature))
}

/// A directory of blobs (`sha256/<hex>` names) held open: it was reached
/// without following a symlink below its root, and every read and write
/// is made relative to the handle, so a path component swapped for a
/// symlink afterwards cannot send a blob elsewhere.
#[derive(Debug)]
pub struct BlobDir {
    path: PathBuf,
    fd: std::os::fd::OwnedFd,
}

impl BlobDir {
    /// Opens `root/below[0]/below[1]...`: `root` as named (the user's own
    /// path), every component below it without following a symlink, and
    /// created when `create` is set and it is missing.
    ///
    /// # Errors
    /// A component is a symlink or not a directory, or cannot be opened.
    pub fn open(root: &Path, below: &[&str], create: bool) -> Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut fd =
            rustix::fs::open(root, flags, Mode::empty()).map_err(|e| Error::io(root, e.into()))?;
        let mut path = root.to_path_buf();
        for part in below {
            path.push(part);
            let opened = rustix::fs::openat(&fd, *part, flags | OFlags::NOFOLLOW, Mode::empty());
            let next = match opened {
                Err(rustix::io::Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&fd, *part, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(Error::io(&path, e.into())),
                    }
                    rustix::fs::openat(&fd, *part, flags | OFlags::NOFOLLOW, Mode::empty())
                }
                other => other,
            };
            fd = next.map_err(|e| match e {
                rustix::io::Errno::LOOP => Error::invalid(format!(
                    "{}: is a symlink; refused, as it must be a directory of its own",
                    path.display()
                )),
                rustix::io::Errno::NOTDIR => {
                    Error::invalid(format!("{}: is not a directory", path.display()))
                }
                e => Error::io(&path, e.into()),
            })?;
        }
        Ok(BlobDir { path, fd })
    }

    /// The path of `name` in the directory, for messages.
    #[must_use]
    pub fn path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` if it is a regular file itself (not a symlink, FIFO or
    /// device).
    ///
    /// # Errors
    /// It is missing, unreadable, or not a regular file.
    pub fn open_regular(&self, name: &str) -> Result<File> {
        use rustix::fs::{Mode, OFlags};
        let path = self.path(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                Error::invalid(format!(
                    "{}: is a symlink; refused, as it must be a regular file of its own",
                    path.display()
                ))
            } else {
                Error::io(&path, e.into())
            }
        })?;
        let file = File::from(fd);
        if !file.metadata().at(&path)?.is_file() {
            return Err(Error::invalid(format!(
                "{}: is not a regular file; refused, as it must be one",
                path.display()
            )));
        }
        Ok(file)
    }

    /// Checks that `name` holds the blob `digest` of `size` bytes (see
    /// [`check_open_blob`]); `None` when it is missing or wrong.
    ///
    /// # Errors
    /// Reading it fails for another reason than its absence.
    pub fn check(
        &self,
        name: &str,
        digest: &Digest,
        size: u64,
        trusted: Option<StatSignature>,
    ) -> Result<Option<StatSignature>> {
        // Missing, a symlink, a FIFO, a directory: not the blob.
        let Ok(file) = self.open_regular(name) else {
            return Ok(None);
        };
        check_open_blob(file, &self.path(name), digest, size, trusted)
    }

    /// Moves the file at `from` (a temporary of this run) to `name`,
    /// replacing whatever is there.
    fn rename_in(&self, from: &Path, name: &str) -> Result<()> {
        rustix::fs::renameat(rustix::fs::CWD, from, &self.fd, name)
            .map_err(|e| Error::io(self.path(name), e.into()))
    }

    /// Places the blob `digest` (`size` bytes), whose right copy is `src`
    /// in a store of this run, as `name`. What is there already is kept
    /// only when it is `src` itself (the same inode) or checks out (see
    /// [`BlobDir::check`]); anything else (wrong bytes, a symlink, a FIFO)
    /// is replaced atomically: a hardlink of `src` when both are on one
    /// filesystem, else a copy, made under a temporary name in `tmp_dir`
    /// (on the same filesystem, trusted) and renamed over `name`. Returns
    /// the signature of what is there afterwards.
    ///
    /// # Errors
    /// The blob cannot be written.
    pub fn place(
        &self,
        src: &Path,
        name: &str,
        digest: &Digest,
        size: u64,
        trusted: Option<StatSignature>,
        tmp_dir: &Path,
    ) -> Result<StatSignature> {
        use std::os::unix::fs::MetadataExt;
        let here = rustix::fs::statat(&self.fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        if let (Ok(d), Ok(s)) = (here, fs::metadata(src))
            && rustix::fs::FileType::from_raw_mode(d.st_mode) == rustix::fs::FileType::RegularFile
            && d.st_dev == s.dev()
            && d.st_ino == s.ino()
        {
            let file = self.open_regular(name)?;
            return Ok(StatSignature::of(&file.metadata().at(self.path(name))?));
        }
        if let Some(signature) = self.check(name, digest, size, trusted)? {
            return Ok(signature);
        }
        let tmp_name = tmp_dir.join(format!("{}{}", crate::cleanup::prefix(), digest.hex()));
        let linked = crate::cleanup::create(
            tmp_dir,
            || fs::hard_link(src, &tmp_name).map(|()| tmp_name.clone()),
            |p: &PathBuf| p.as_path(),
        );
        if let Ok(tmp) = linked {
            if let Err(e) = self.rename_in(&tmp, name) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        } else {
            // Another filesystem: a copy.
            let mut tmp = temp_file_in(tmp_dir)?;
            let mut from = open_regular(src)?;
            io::copy(&mut from, tmp.as_file_mut()).at(self.path(name))?;
            let (_, tmp_path) = tmp
                .keep()
                .map_err(|e| Error::io(self.path(name), e.error))?;
            if let Err(e) = self.rename_in(&tmp_path, name) {
                let _ = fs::remove_file(&tmp_path);
                return Err(e);
            }
        }
        let file = self.open_regular(name)?;
        Ok(StatSignature::of(&file.metadata().at(self.path(name))?))
    }

    /// Writes `bytes` as `name` (a temporary in `tmp_dir`, synced, renamed
    /// into place), unless the right bytes are there already.
    ///
    /// # Errors
    /// It cannot be written.
    pub fn put_bytes(
        &self,
        name: &str,
        digest: &Digest,
        bytes: &[u8],
        tmp_dir: &Path,
    ) -> Result<()> {
        if self
            .check(name, digest, bytes.len() as u64, None)?
            .is_some()
        {
            return Ok(());
        }
        let mut tmp = temp_file_in(tmp_dir)?;
        tmp.write_all(bytes).at(self.path(name))?;
        tmp.as_file().sync_all().at(self.path(name))?;
        let (_, tmp_path) = tmp
            .keep()
            .map_err(|e| Error::io(self.path(name), e.error))?;
        if let Err(e) = self.rename_in(&tmp_path, name) {
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        Ok(())
    }
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
        let store = BlobStore::temporary_in(None).expect("a temporary store can be made");
        let d = store.put(b"abc").expect("the test fixture is valid");
        assert_eq!(d, Digest::of(b"abc"));
        assert_eq!(
            fs::read(store.path(&d)).expect("the test reads what it wrote"),
            b"abc"
        );
        {
            let mut w = store.create().expect("the test fixture is valid");
            w.write_all(b"dropped").expect("writing to memory works");
        }
        // What is left: the blobs, and the lock file this process holds
        // while it runs.
        let names: Vec<_> = fs::read_dir(store.dir())
            .expect("the test fixture is valid")
            .map(|e| e.expect("the test fixture is valid").file_name())
            .filter(|n| !n.to_string_lossy().ends_with(".lock"))
            .collect();
        assert_eq!(names, ["sha256"]);
    }

    /// A store holding the 5-byte blob `layer`, and an empty blob
    /// directory (in a temporary directory) to place it in.
    fn placing() -> (BlobStore, Digest, tempfile::TempDir, BlobDir) {
        let store = BlobStore::temporary_in(None).expect("a temporary store can be made");
        let d = store.put(b"layer").expect("the test fixture is valid");
        let root = tempfile::tempdir().expect("a temporary directory can be made");
        let dir = BlobDir::open(root.path(), &["blobs", "sha256"], true)
            .expect("the test fixture is valid");
        (store, d, root, dir)
    }

    /// Places the blob `d` of `store` in `dir`.
    fn place_blob(store: &BlobStore, d: &Digest, dir: &BlobDir, tmp: &Path) -> StatSignature {
        dir.place(&store.path(d), &d.hex(), d, 5, None, tmp)
            .expect("the test fixture is valid")
    }

    #[test]
    fn a_blob_rewritten_through_another_link_is_hashed_again() {
        let (store, d, root, dir) = placing();
        let dest = dir.path(&d.hex());
        let place = || place_blob(&store, &d, &dir, root.path());
        // Rewritten through another link to the same inode (as a layout
        // holds a cached blob), its modification time set back: the
        // change time still tells.
        let sig = place();
        let other = root.path().join("layout-link");
        fs::hard_link(&dest, &other).expect("the test fixture is valid");
        let sig_linked = dir
            .check(&d.hex(), &d, 5, None)
            .expect("the test fixture is valid")
            .expect("still the blob");
        assert_ne!(sig, sig_linked, "linking moves the change time");
        let mtime = fs::metadata(&other)
            .expect("the test fixture is valid")
            .modified()
            .expect("the test fixture is valid");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&other)
            .expect("the test fixture is valid");
        io::Write::write_all(&mut &f, b"LAYER").expect("the test writes its fixture");
        f.set_modified(mtime).expect("the test fixture is valid");
        drop(f);
        assert_eq!(
            dir.check(&d.hex(), &d, 5, Some(sig_linked))
                .expect("the test fixture is valid"),
            None
        );
    }

    #[test]
    fn a_placed_blob_is_kept_only_when_it_checks_out() {
        let (store, d, root, dir) = placing();
        let dest = dir.path(&d.hex());
        let place = || place_blob(&store, &d, &dir, root.path());
        place();
        place();
        assert_eq!(
            fs::read(&dest).expect("the test reads what it wrote"),
            b"layer"
        );
        // The right name with the wrong bytes (of the right size) is replaced.
        fs::remove_file(&dest).expect("the test fixture is valid");
        fs::write(&dest, b"LAYER").expect("the test writes its fixture");
        place();
        assert_eq!(
            fs::read(&dest).expect("the test reads what it wrote"),
            b"layer"
        );
        // So is a symlink to elsewhere, which is never written through.
        let outside = root.path().join("outside");
        fs::write(&outside, b"other").expect("the test writes its fixture");
        fs::remove_file(&dest).expect("the test fixture is valid");
        std::os::unix::fs::symlink(&outside, &dest).expect("the test makes its symlink");
        place();
        assert!(
            fs::symlink_metadata(&dest)
                .expect("the test makes its symlink")
                .is_file()
        );
        assert_eq!(
            fs::read(&outside).expect("the test reads what it wrote"),
            b"other"
        );
        // A trusted signature spares the hashing, and stops being trusted
        // once the file changes.
        let sig = place();
        assert_eq!(
            dir.check(&d.hex(), &d, 5, Some(sig))
                .expect("the test fixture is valid"),
            Some(sig)
        );
        fs::write(&dest, b"LAYER").expect("the test writes its fixture");
        assert_eq!(
            dir.check(&d.hex(), &d, 5, Some(sig))
                .expect("the test fixture is valid"),
            None
        );
        // The directory swapped for a symlink after it was opened: blobs
        // still go where the handle points, not through the link.
        let elsewhere = root.path().join("elsewhere");
        fs::create_dir(&elsewhere).expect("the test makes its directories");
        let sha = root.path().join("blobs/sha256");
        fs::rename(&sha, root.path().join("moved")).expect("the test fixture is valid");
        std::os::unix::fs::symlink(&elsewhere, &sha).expect("the test makes its symlink");
        let e = store
            .put(b"other layer")
            .expect("the test fixture is valid");
        dir.place(&store.path(&e), &e.hex(), &e, 11, None, root.path())
            .expect("the test fixture is valid");
        assert_eq!(
            fs::read_dir(&elsewhere)
                .expect("the test reads what it wrote")
                .count(),
            0
        );
        assert!(root.path().join("moved").join(e.hex()).is_file());
        assert!(BlobDir::open(root.path(), &["blobs", "sha256"], true).is_err());
    }
}
