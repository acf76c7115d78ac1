//! The checks of `bootc container lint` that apply to a tree, by name. Fatal
//! ones fail the export; the others warn.

use treeport_core::error::{Error, Result};
use treeport_core::progress::Context;
use treeport_core::tree::{EntryKind, Tree, TreePath};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub name: &'static str,
    pub fatal: bool,
    pub message: String,
}

fn path(s: &str) -> TreePath {
    TreePath::parse(s.as_bytes()).expect("lint paths are valid")
}

/// Kernel versions: directories under `/usr/lib/modules` holding a `vmlinuz`.
#[must_use]
pub fn kernels(tree: &Tree) -> Vec<String> {
    let modules = path("usr/lib/modules");
    let mut out: Vec<String> = tree
        .entries()
        .iter()
        .filter(|e| e.is_file() && e.path.file_name() == b"vmlinuz")
        .filter_map(|e| {
            let dir = e.path.parent()?;
            (dir.parent()? == modules)
                .then(|| String::from_utf8_lossy(dir.file_name()).into_owned())
        })
        .collect();
    out.sort();
    out
}

/// Runs every check on `tree`.
#[must_use]
pub fn check(tree: &Tree) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut fatal = |name, message: String| {
        out.push(Finding {
            name,
            fatal: true,
            message,
        });
    };
    if let Some(e) = tree.get(&path("var/run"))
        && !matches!(e.kind, EntryKind::Symlink(_))
    {
        fatal(
            "var-run",
            format!(
                "/var/run is a {}; it must be a symlink to ../run",
                e.kind.name()
            ),
        );
    }
    let k = kernels(tree);
    if k.len() > 1 {
        fatal(
            "kernel",
            format!(
                "{} kernels in /usr/lib/modules ({}); bootc needs at most one",
                k.len(),
                k.join(", ")
            ),
        );
    }
    if tree.get(&path("etc")).is_some() && tree.get(&path("usr/etc")).is_some() {
        fatal(
            "etc-usretc",
            "both /etc and /usr/etc exist; keep configuration in one".to_string(),
        );
    }
    let bad_name = tree.entries().iter().find(|e| {
        std::str::from_utf8(e.path.as_bytes()).is_err()
            || matches!(&e.kind, EntryKind::Symlink(t) if std::str::from_utf8(t).is_err())
    });
    if let Some(e) = bad_name {
        fatal(
            "utf8",
            format!(
                "{} (or its link target) is not UTF-8; OSTree needs UTF-8 names",
                e.path
            ),
        );
    }
    let mut warn = |name, message: String| {
        out.push(Finding {
            name,
            fatal: false,
            message,
        });
    };
    if k.is_empty() {
        warn(
            "no-kernel",
            "no kernel in /usr/lib/modules/*/vmlinuz; the image cannot boot".to_string(),
        );
    }
    let boot = path("boot");
    if tree
        .entries()
        .iter()
        .any(|e| e.path != boot && e.path.starts_with(&boot) && !e.is_dir())
    {
        warn(
            "nonempty-boot",
            "/boot is not empty; bootc installs kernels from /usr/lib/modules".to_string(),
        );
    }
    let log = path("var/log");
    let logs = tree
        .entries()
        .iter()
        .filter(|e| e.is_file() && e.path.starts_with(&log) && e.size > 0)
        .count();
    if logs > 0 {
        warn(
            "var-log",
            format!("{logs} files in /var/log; /var is not updated by later images"),
        );
    }
    let devices = tree
        .entries()
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EntryKind::CharDevice { .. } | EntryKind::BlockDevice { .. } | EntryKind::Fifo
            )
        })
        .count();
    if devices > 0 {
        warn(
            "devices",
            format!("{devices} device nodes or fifos are left out: OSTree cannot hold them"),
        );
    }
    out
}

/// Reports the findings: warnings through the context, the first fatal one
/// as an error.
pub fn run(tree: &Tree, ctx: &Context) -> Result<()> {
    let findings = check(tree);
    for f in findings.iter().filter(|f| !f.fatal) {
        ctx.warn(&format!("bootc lint {}: {}", f.name, f.message));
    }
    match findings.iter().find(|f| f.fatal) {
        Some(f) => Err(Error::invalid(format!(
            "bootc lint {}: {}",
            f.name, f.message
        ))),
        None => Ok(()),
    }
}
