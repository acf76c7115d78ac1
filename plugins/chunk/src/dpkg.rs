//! Reading the dpkg database inside a tree: which packages are installed,
//! and which package owns each path.

use std::collections::{BTreeSet, HashMap};

use treeport_core::error::{Error, Result};
use treeport_core::tree::{EntryKind, Tree, TreePath};

/// Installed packages and path ownership.
pub struct Owners {
    pub packages: BTreeSet<String>,
    /// Path in the tree -> owning package.
    pub by_path: HashMap<Vec<u8>, String>,
}

/// A file of the dpkg database, which must be there.
fn read(tree: &Tree, path: &TreePath, limit: u64) -> Result<Vec<u8>> {
    treeport_core::dpkg::read_file(tree, &path.to_string(), limit)?
        .ok_or_else(|| Error::invalid(format!("{path} is missing")))
}

/// Installed package names from `var/lib/dpkg/status` (every package
/// present, as `dpkg-query -W` lists them).
fn installed(status: &str) -> BTreeSet<String> {
    treeport_core::dpkg::stanzas(status)
        .filter(treeport_core::dpkg::is_present)
        .filter_map(|f| f.get("Package").cloned())
        .collect()
}

/// Reads ownership from the tree's dpkg database. A path listed through a
/// symlinked top-level directory (`/bin` on a merged-/usr system) is mapped
/// to where it lives (`usr/bin`).
pub fn owners(tree: &Tree) -> Result<Owners> {
    let status_path = TreePath::parse(b"var/lib/dpkg/status")?;
    if tree.get(&status_path).is_none() {
        return Ok(Owners {
            packages: BTreeSet::new(),
            by_path: HashMap::new(),
        });
    }
    let status = String::from_utf8_lossy(&read(tree, &status_path, 256 << 20)?).into_owned();
    let packages = installed(&status);

    // Top-level symlinks to directories, for merged /usr.
    let mut top_links: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for e in tree.entries() {
        if let EntryKind::Symlink(target) = &e.kind
            && e.path.parent().is_some_and(|p| p.is_root())
        {
            let t = target.strip_prefix(b"/").unwrap_or(target);
            top_links.insert(e.path.as_bytes().to_vec(), t.to_vec());
        }
    }
    let info = TreePath::parse(b"var/lib/dpkg/info")?;
    let mut by_path = HashMap::new();
    for e in tree.entries() {
        let Some(dir) = e.path.parent() else { continue };
        let name = e.path.file_name();
        if dir != info || !e.is_file() || !name.ends_with(b".list") {
            continue;
        }
        let pkg = String::from_utf8_lossy(&name[..name.len() - 5]).into_owned();
        let pkg = pkg.split(':').next().unwrap_or(&pkg).to_string();
        if !packages.contains(&pkg) {
            continue;
        }
        let list = read(tree, &e.path, 64 << 20)?;
        for line in list.split(|&b| b == b'\n') {
            let rel = line.strip_prefix(b"/").unwrap_or(line);
            if rel.is_empty() || rel == b"." {
                continue;
            }
            let mut path = rel.to_vec();
            let first_end = rel.iter().position(|&b| b == b'/').unwrap_or(rel.len());
            if let Some(real) = top_links.get(&rel[..first_end]) {
                let mut p = real.clone();
                p.extend_from_slice(&rel[first_end..]);
                path = p;
            }
            by_path.entry(path).or_insert_with(|| pkg.clone());
        }
    }
    Ok(Owners { packages, by_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_stanzas_give_installed_packages() {
        let s = "Package: a\nStatus: install ok installed\n\nPackage: b\nStatus: deinstall ok config-files\n\nPackage: c\nStatus: install ok installed\nVersion: 1\n";
        assert_eq!(
            installed(s),
            BTreeSet::from(["a".to_string(), "c".to_string()])
        );
    }
}
