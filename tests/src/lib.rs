//! Helpers for treeport's integration tests: the real `treeport` binary, a
//! cached mmdebstrap tree, real consumers (skopeo, umoci, oci-image-tool), and
//! a tree comparison that checks what a layer must carry.

// Test helpers panic on failure by design, and their results are often
// dropped on purpose.
#![allow(
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    clippy::return_self_not_must_use
)]

pub mod crafted;
pub mod fixtures;
pub mod fuzzing;
pub mod registry;
pub mod trees;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The `target/<profile>` directory the tests were built into.
#[must_use]
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/it-<hash>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps")
        .to_path_buf()
}

/// The `treeport` binary built beside the tests.
#[must_use]
pub fn bin() -> PathBuf {
    let path = target_dir().join("treeport");
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (make test does)",
        path.display()
    );
    path
}

/// A `treeport` command with a clean environment for reproducible output.
#[must_use]
pub fn treeport() -> Command {
    let mut c = Command::new(bin());
    c.env_remove("SOURCE_DATE_EPOCH")
        .env_remove("TREEPORT_PLUGIN_PATH")
        .stdin(Stdio::null());
    c
}

/// `treeport export --source SOURCE` with a `--sink` for each of `sinks`;
/// callers add flags (`-q`, `--json`, ...).
#[must_use]
pub fn export_cmd(source: &str, sinks: &[&str]) -> Command {
    let mut c = treeport();
    c.args(["export", "--source", source]);
    for sink in sinks {
        c.args(["--sink", sink]);
    }
    c
}

/// A finished command's status and output, as text.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Panics with the output unless the command succeeded.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "command failed: {self:#?}");
        self
    }

    /// Panics unless the command failed with `code` and printed exactly one
    /// `error:` line; returns that line.
    #[track_caller]
    pub fn fails_with(self, code: i32) -> String {
        assert_eq!(self.code, Some(code), "unexpected status: {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        lines[0].to_string()
    }
}

/// Runs a command to completion (with a time limit) and captures its output.
#[track_caller]
pub fn run(cmd: &mut Command) -> Ran {
    run_for(cmd, Duration::from_secs(900))
}

/// Runs a command, killing it if it outlives `limit`.
#[track_caller]
pub fn run_for(cmd: &mut Command, limit: Duration) -> Ran {
    let out = wait_limited(cmd, limit);
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn wait_limited(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Ok(out) = rx.recv_timeout(limit) {
        return out.expect("waiting for a child works");
    }
    // SAFETY: kill(2) on a pid we started; at worst it has exited already.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    panic!("{cmd:?} did not finish within {limit:?}");
}

/// Runs an external tool; panics with its output if it fails.
#[track_caller]
pub fn tool<I, S>(name: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    require(name);
    let ran = run(Command::new(name).args(args).stdin(Stdio::null()));
    assert_eq!(ran.code, Some(0), "{name} failed: {ran:#?}");
    ran.stdout
}

/// Panics with an install hint unless `name` is on PATH.
#[track_caller]
pub fn require(name: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    assert!(
        found,
        "{name} is not installed: run `make test`, which installs the test tools"
    );
}

/// Panics unless the tests run as root (mknod, chown, chroot and umoci need it).
#[track_caller]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests need root (device nodes, ownership, chroot)"
    );
}

/// `skopeo inspect` of a reference, as JSON.
#[must_use]
pub fn skopeo_inspect(reference: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(reference);
    serde_json::from_str(&tool("skopeo", args)).expect("skopeo prints JSON")
}

/// Unpacks `layout:tag` with umoci into a new bundle and returns it (the tree
/// is in `rootfs/`).
#[must_use]
pub fn umoci_unpack(layout: &Path, tag: &str) -> tempfile::TempDir {
    let bundle = tempfile::tempdir().expect("temporary directory");
    let dest = bundle.path().join("b");
    tool(
        "umoci",
        [
            OsStr::new("unpack"),
            OsStr::new("--image"),
            format!("{}:{tag}", layout.display()).as_ref(),
            dest.as_os_str(),
        ],
    );
    bundle
}

/// `oci-image-tool validate` of a tagged image in a layout.
pub fn oci_validate(layout: &Path, tag: &str) {
    tool(
        "oci-image-tool",
        [
            OsStr::new("validate"),
            OsStr::new("--type"),
            OsStr::new("image"),
            OsStr::new("--ref"),
            format!("name={tag}").as_ref(),
            layout.as_os_str(),
        ],
    );
}

/// The manifest digest a layout's tag points to.
#[must_use]
pub fn layout_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index.json"))
            .expect("index.json is JSON");
    index["manifests"]
        .as_array()
        .expect("manifests array")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {}", layout.display()))["digest"]
        .as_str()
        .expect("digest string")
        .to_string()
}

/// Every file under `dir`, relative, for "nothing was left behind" checks.
#[must_use]
pub fn list_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            out.push(
                p.strip_prefix(dir)
                    .expect("below dir")
                    .display()
                    .to_string(),
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `treeport verify` of `reference` (with `--against SOURCE` when given) and
/// any extra flags; panics unless the image checks out.
#[track_caller]
pub fn verify(reference: &str, against: Option<&str>, extra: &[&str]) {
    let mut cmd = treeport();
    cmd.args(["verify", "-q", reference]).args(extra);
    if let Some(source) = against {
        cmd.args(["--against", source]);
    }
    run(&mut cmd).ok();
}

/// The Python of the virtual environment `make deps` makes (with the SBOM
/// validators, `cryptography` and `PyNaCl`).
pub fn python() -> PathBuf {
    let py = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("target/pyenv/bin/python");
    assert!(
        py.is_file(),
        "{} is missing: run make deps (it installs the test tools from PyPI)",
        py.display()
    );
    py
}
