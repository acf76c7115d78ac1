//! Temporary files and directories, removed on every way out.
//!
//! Every temporary name treeport creates starts with
//! `.treeport-tmp-<pid>-`. A normal exit or an error removes them as their
//! guards drop; on SIGINT or SIGTERM the command line calls [`remove_all`]
//! before exiting; after a SIGKILL, the next run removes what a dead process
//! left ([`remove_stale`]) wherever it writes.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Every temporary path created by this process, and whether the process
/// is on its way out (no more may be created).
static CREATED: Mutex<Created> = Mutex::new(Created {
    paths: Vec::new(),
    closed: false,
});

struct Created {
    paths: Vec<PathBuf>,
    closed: bool,
}

/// The prefix of this process's temporary names.
#[must_use]
pub fn prefix() -> String {
    format!("{}{}-", crate::blobs::TEMP_PREFIX, std::process::id())
}

fn lock() -> MutexGuard<'static, Created> {
    CREATED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Creates a temporary with `make` and records its path, both under one
/// lock, so an interruption either comes first (and nothing is created) or
/// sees the path and removes it.
pub fn create<T>(
    make: impl FnOnce() -> io::Result<T>,
    path: impl Fn(&T) -> &Path,
) -> io::Result<T> {
    let mut created = lock();
    if created.closed {
        return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
    }
    let temporary = make()?;
    created.paths.push(path(&temporary).to_path_buf());
    Ok(temporary)
}

/// Removes every temporary path this process created that still exists,
/// and refuses new ones from then on (for a signal handler thread, right
/// before exiting).
pub fn remove_all() {
    let mut created = lock();
    created.closed = true;
    for p in created.paths.iter().rev() {
        remove(p);
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

/// True when `pid` names a running process.
fn alive(pid: i32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    #[allow(unsafe_code)]
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes what processes that no longer run left in `dir`.
pub fn remove_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix(crate::blobs::TEMP_PREFIX))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if pid > 0 && pid != std::process::id() as i32 && !alive(pid) {
            remove(&e.path());
        }
    }
}
