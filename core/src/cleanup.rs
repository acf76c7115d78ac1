//! Temporary files and directories: removed on every way out by the run that
//! made them, and by a later run only once they are provably abandoned.
//!
//! Every temporary name is `.treeport-tmp-<run>-<rest>`, where `<run>` is a
//! random id this process picks when it starts. Before its first temporary
//! in a directory, the process creates `.treeport-tmp-<run>.lock` there and
//! holds an `flock` on it for as long as it lives; the kernel drops the lock
//! when the process ends, however it ends and in whatever PID namespace it
//! runs. [`remove_stale`] removes `.treeport-tmp-<id>-*` only when
//! `.treeport-tmp-<id>.lock` exists, is a regular file of this user, and can
//! be locked: then nobody holds it, and its creator is gone. A temporary
//! without its lock file (another program's, or one whose run is starting)
//! is never touched, and no process id is ever guessed at.
//!
//! A normal exit or an error removes temporaries as their guards drop; on
//! SIGINT or SIGTERM the command line calls [`remove_all`] before exiting;
//! after a SIGKILL, the next run that writes in the same place removes what
//! the dead process left.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

/// Prefix of the temporary files and directories treeport creates.
pub const TEMP_PREFIX: &str = ".treeport-tmp-";

/// Every temporary path created by this process, the lock files it holds
/// (by directory), and whether the process is on its way out (no more may
/// be created).
static CREATED: Mutex<Created> = Mutex::new(Created {
    paths: Vec::new(),
    locks: None,
    closed: false,
});

struct Created {
    paths: Vec<PathBuf>,
    locks: Option<HashMap<PathBuf, (PathBuf, File)>>,
    closed: bool,
}

/// This process's run id: 16 hex digits, random.
fn run_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS's random source per process.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        format!("{:016x}", h.finish())
    })
}

/// The prefix of this process's temporary names.
#[must_use]
pub fn prefix() -> String {
    format!("{}{}-", TEMP_PREFIX, run_id())
}

fn lock() -> MutexGuard<'static, Created> {
    CREATED.lock().unwrap_or_else(PoisonError::into_inner)
}

fn flock(file: &File, how: libc::c_int) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function borrows; no memory is
    // involved.
    #[allow(unsafe_code)]
    let r = unsafe { libc::flock(file.as_raw_fd(), how) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes sure this process holds its lock file in `dir`. Inside one of
/// this process's own temporary directories there is none to hold: the
/// directory is covered by the lock beside it, and may be renamed into
/// place whole (a new layout), lock files and all.
fn hold_lock_in(created: &mut Created, dir: &Path) -> io::Result<()> {
    let locks = created.locks.get_or_insert_with(HashMap::new);
    let key = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    if locks.contains_key(&key) {
        return Ok(());
    }
    let own = prefix();
    if key
        .components()
        .any(|c| c.as_os_str().to_str().is_some_and(|c| c.starts_with(&own)))
    {
        return Ok(());
    }
    let path = dir.join(format!("{}{}.lock", TEMP_PREFIX, run_id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)?;
    flock(&file, libc::LOCK_EX)?;
    locks.insert(key, (path, file));
    Ok(())
}

/// Creates a temporary in `dir` with `make` and records its path, both
/// under one lock, so an interruption either comes first (and nothing is
/// created) or sees the path and removes it. The directory's lock file is
/// taken first.
pub fn create<T>(
    dir: &Path,
    make: impl FnOnce() -> io::Result<T>,
    path: impl Fn(&T) -> &Path,
) -> io::Result<T> {
    let mut created = lock();
    if created.closed {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    hold_lock_in(&mut created, dir)?;
    let temporary = make()?;
    created.paths.push(path(&temporary).to_path_buf());
    Ok(temporary)
}

/// Removes every temporary path this process created that still exists and
/// its lock files, and refuses new temporaries from then on (for a signal
/// handler thread, right before exiting).
pub fn remove_all() {
    let mut created = lock();
    created.closed = true;
    for p in created.paths.iter().rev() {
        remove(p);
    }
    release_locks(&mut created);
}

/// Removes this process's lock files (at the end of a run: its temporaries
/// are gone by then).
pub fn finish() {
    release_locks(&mut lock());
}

fn release_locks(created: &mut Created) {
    if let Some(locks) = created.locks.take() {
        for (_, (path, _file)) in locks {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn remove(p: &Path) {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(p);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(p);
        }
        Err(_) => {}
    }
}

/// Removes what runs that no longer exist left in `dir`: the temporaries of
/// every run whose lock file there nobody holds.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = rustix::process::geteuid().as_raw();
    let mine = run_id();
    let mut names: Vec<String> = Vec::new();
    let mut runs: Vec<String> = Vec::new();
    for e in entries.flatten() {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        if let Some(id) = rest.strip_suffix(".lock") {
            if id != mine {
                runs.push(id.to_string());
            }
        } else {
            names.push(name);
        }
    }
    for id in runs {
        let lock_path = dir.join(format!("{TEMP_PREFIX}{id}.lock"));
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
            .open(&lock_path)
        else {
            continue;
        };
        let Ok(meta) = file.metadata() else { continue };
        if !meta.is_file() || meta.uid() != me {
            continue;
        }
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            // Its run is alive.
            continue;
        }
        let owned = format!("{TEMP_PREFIX}{id}-");
        for name in names.iter().filter(|n| n.starts_with(&owned)) {
            remove(&dir.join(name));
        }
        let _ = std::fs::remove_file(&lock_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_temporaries_of_runs_that_hold_no_lock_are_removed() {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let d = dir.path();
        let name = |s: &str| format!("{TEMP_PREFIX}{s}");
        // A dead run: its lock file, unlocked, and its temporaries.
        std::fs::write(d.join(name("dead.lock")), b"").expect("the test writes its fixture");
        std::fs::write(d.join(name("dead-file")), b"x").expect("the test writes its fixture");
        std::fs::create_dir(d.join(name("dead-dir"))).expect("the test makes its directories");
        std::fs::write(d.join(name("dead-dir/inner")), b"x").expect("the test writes its fixture");
        // A live run: its lock file is held.
        let live = File::create(d.join(name("live.lock"))).expect("the test fixture is valid");
        flock(&live, libc::LOCK_EX).expect("the test fixture is valid");
        std::fs::write(d.join(name("live-file")), b"x").expect("the test writes its fixture");
        // Something named like a temporary that no run's lock file covers.
        std::fs::create_dir(d.join(name("1234-someone-elses")))
            .expect("the test makes its directories");
        remove_stale(d);
        let mut left: Vec<String> = std::fs::read_dir(d)
            .expect("the test fixture is valid")
            .map(|e| {
                e.expect("the test fixture is valid")
                    .file_name()
                    .into_string()
                    .expect("the test fixture is valid")
            })
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                name("1234-someone-elses"),
                name("live-file"),
                name("live.lock")
            ]
        );
    }
}
