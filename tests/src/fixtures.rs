//! Trees built once per test run (and kept in `target/treeport-test-cache`
//! across runs): real mmdebstrap builds of Debian.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::PathBuf;
use std::process::Command;

use crate::{require, require_root, run, target_dir};

/// The Debian mirror the test builds use.
#[must_use]
pub fn mirror() -> String {
    std::env::var("TREEPORT_TEST_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into())
}

/// The directory of cached fixtures.
#[must_use]
pub fn cache_dir() -> PathBuf {
    let dir = target_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("treeport-test-cache");
    fs::create_dir_all(&dir).expect("create the test cache");
    dir
}

/// Builds `name` once with `build(tmp_path)`, under a lock so parallel tests
/// wait for one build; later calls return the cached path.
pub fn cached(name: &str, build: impl FnOnce(&std::path::Path)) -> PathBuf {
    let dir = cache_dir();
    let path = dir.join(name);
    let lock = File::create(dir.join(format!("{name}.lock"))).expect("lock file");
    lock.lock().expect("lock the cache entry");
    if !path.exists() {
        let tmp = dir.join(format!("{name}.tmp"));
        let _ = fs::remove_dir_all(&tmp);
        let _ = fs::remove_file(&tmp);
        build(&tmp);
        fs::rename(&tmp, &path).expect("move the fixture into place");
    }
    path
}

/// Runs mmdebstrap for `suite` into `dest` (a directory or a `.tar` file).
pub fn mmdebstrap(suite: &str, variant: &str, include: &[&str], dest: &std::path::Path) {
    require("mmdebstrap");
    require_root();
    let mut cmd = Command::new("mmdebstrap");
    cmd.arg(format!("--variant={variant}"))
        .arg("--mode=root")
        .arg("--quiet");
    if !include.is_empty() {
        cmd.arg(format!("--include={}", include.join(",")));
    }
    cmd.arg(suite).arg(dest).arg(mirror());
    let ran = run(&mut cmd);
    assert_eq!(ran.code, Some(0), "mmdebstrap failed: {ran:#?}");
}

/// A minbase bookworm root filesystem, as a directory.
#[must_use]
pub fn minbase() -> PathBuf {
    cached("bookworm-minbase", |tmp| {
        mmdebstrap("bookworm", "minbase", &[], tmp);
    })
}

/// A minbase bookworm tree plus `hello`, as a directory.
#[must_use]
pub fn minbase_hello() -> PathBuf {
    cached("bookworm-minbase-hello", |tmp| {
        mmdebstrap("bookworm", "minbase", &["hello"], tmp);
    })
}

/// The minbase tree without the device nodes under `/dev`, which OSTree
/// cannot store.
#[must_use]
pub fn minbase_nodev() -> PathBuf {
    let source = minbase();
    cached("bookworm-minbase-nodev", |tmp| {
        crate::tool(
            "cp",
            [OsStr::new("-a"), source.as_os_str(), tmp.as_os_str()],
        );
        for entry in fs::read_dir(tmp.join("dev")).expect("dev exists") {
            let path = entry.expect("dev entry").path();
            if path.is_dir() && !path.is_symlink() {
                fs::remove_dir_all(&path).expect("remove a dev directory");
            } else {
                fs::remove_file(&path).expect("remove a dev node");
            }
        }
    })
}

/// An OSTree repository of `mode` holding the minbase tree as
/// `debian/bookworm`, with `version=12` in its metadata.
#[must_use]
pub fn ostree_repo(mode: &str) -> PathBuf {
    let tree = minbase_nodev();
    cached(&format!("ostree-{mode}"), |tmp| {
        ostree_commit(tmp, mode, &tree, "debian/bookworm");
    })
}

/// Initialises a repository of `mode` at `repo` (if needed) and commits `tree`
/// to `branch` with a fixed timestamp and `version=12`.
pub fn ostree_commit(repo: &std::path::Path, mode: &str, tree: &std::path::Path, branch: &str) {
    require("ostree");
    if !repo.join("config").exists() {
        crate::tool(
            "ostree",
            [
                OsStr::new("init"),
                OsStr::new(&format!("--mode={mode}")),
                OsStr::new(&format!("--repo={}", repo.display())),
            ],
        );
    }
    crate::tool(
        "ostree",
        [
            OsStr::new("commit"),
            OsStr::new(&format!("--repo={}", repo.display())),
            OsStr::new(&format!("--branch={branch}")),
            OsStr::new("--subject=treeport test"),
            OsStr::new("--timestamp=2024-01-02T03:04:05Z"),
            OsStr::new("--add-metadata-string=version=12"),
            OsStr::new(&format!("--tree=dir={}", tree.display())),
        ],
    );
}
