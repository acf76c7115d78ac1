//! Temporary files and directories, removed on every way out.
//!
//! Every temporary name treeport creates starts with
//! `.treeport-tmp-<pid>-`. A normal exit or an error removes them as their
//! guards drop; on SIGINT or SIGTERM the command line calls [`remove_all`]
//! before exiting; after a SIGKILL, the next run removes what a dead process
//! left ([`remove_stale`]) wherever it writes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Every temporary path created by this process.
static CREATED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The prefix of this process's temporary names.
#[must_use]
pub fn prefix() -> String {
    format!("{}{}-", crate::blobs::TEMP_PREFIX, std::process::id())
}

/// Records a temporary path so an interruption removes it.
pub fn register(path: &Path) {
    if let Ok(mut c) = CREATED.lock() {
        c.push(path.to_path_buf());
    }
}

/// Removes every temporary path this process created that still exists
/// (for a signal handler thread, right before exiting).
pub fn remove_all() {
    let paths = match CREATED.lock() {
        Ok(c) => c.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for p in paths.iter().rev() {
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
