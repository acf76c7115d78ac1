//! The dpkg database inside a tree: its files (read through the tree, with
//! symlinks inside it followed) and the stanzas of `var/lib/dpkg/status`.
//! The chunk and sbom transforms both read it from here.

use std::collections::BTreeMap;
use std::io::Read;

use crate::error::{Error, Result};
use crate::tree::{EntryKind, Tree, TreePath};

/// Reads a regular file of the tree, following symlinks inside it (in the
/// file's name and in its directories; 40 links at most, as the kernel
/// allows, so a loop ends).
pub fn read_file(tree: &Tree, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let mut current = normalize(path);
    for _ in 0..40 {
        let Ok(p) = TreePath::parse(current.as_bytes()) else {
            return Ok(None);
        };
        let Some(entry) = tree.get(&p) else {
            // A directory above may be a symlink (usr/share/doc/PKG -> other).
            match resolve_parent(tree, &current) {
                Some(next) if next != current => {
                    current = next;
                    continue;
                }
                _ => return Ok(None),
            }
        };
        match &entry.kind {
            EntryKind::File => {
                if entry.size > limit {
                    return Err(Error::invalid(format!(
                        "{path}: {} bytes, more than {limit}",
                        entry.size
                    )));
                }
                let mut out = Vec::new();
                entry
                    .content
                    .open()?
                    .take(limit)
                    .read_to_end(&mut out)
                    .map_err(|e| Error::invalid(format!("reading {path}: {e}")))?;
                return Ok(Some(out));
            }
            EntryKind::Symlink(target) => {
                let target = String::from_utf8_lossy(target);
                current = if let Some(abs) = target.strip_prefix('/') {
                    normalize(abs)
                } else {
                    let dir = current.rsplit_once('/').map_or("", |(d, _)| d);
                    normalize(&format!("{dir}/{target}"))
                };
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// `path` with its first symlinked ancestor replaced by the link's target.
fn resolve_parent(tree: &Tree, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.split('/').collect();
    for i in 1..parts.len() {
        let dir = parts[..i].join("/");
        let p = TreePath::parse(dir.as_bytes()).ok()?;
        if let EntryKind::Symlink(target) = &tree.get(&p)?.kind {
            let target = String::from_utf8_lossy(target);
            let base = if let Some(abs) = target.strip_prefix('/') {
                abs.to_string()
            } else {
                let up = parts[..i - 1].join("/");
                format!("{up}/{target}")
            };
            return Some(normalize(&format!("{base}/{}", parts[i..].join("/"))));
        }
    }
    None
}

fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// Fields of one status stanza, continuation lines joined.
#[must_use]
pub fn fields(stanza: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in stanza.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(k) = &last
                && let Some(v) = out.get_mut(k)
            {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.insert(k.trim().to_string(), v.trim().to_string());
            last = Some(k.trim().to_string());
        }
    }
    out
}

/// True for a package present on the system, whatever is wanted of it
/// (hold, deinstall): every status but not-installed and config-files, as
/// `dpkg-query -W` lists them.
#[must_use]
pub fn is_present(fields: &BTreeMap<String, String>) -> bool {
    fields
        .get("Status")
        .and_then(|s| s.split_whitespace().nth(2))
        .is_some_and(|state| !matches!(state, "not-installed" | "config-files"))
}

/// The stanzas of a status file, each as its fields.
pub fn stanzas(status: &str) -> impl Iterator<Item = BTreeMap<String, String>> + '_ {
    status.split("\n\n").map(fields)
}
