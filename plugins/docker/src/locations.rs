//! Where this machine has seen blobs: registry -> digest -> repositories. A
//! push consults it to mount a blob from another repository of the same
//! registry instead of uploading it again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use treeport_core::digest::Digest;

/// The most digests remembered per registry.
const MAX_PER_REGISTRY: usize = 20_000;

type Known = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// The cache file.
fn path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("TREEPORT_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("blob-locations.json"));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("treeport").join("blob-locations.json"))
}

/// Blob locations, loaded from and saved to the cache file. A missing or
/// unreadable cache is an empty one: it only saves uploads.
#[derive(Default)]
pub struct Locations {
    known: Known,
}

impl Locations {
    #[must_use]
    pub fn load() -> Self {
        let known = path()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Locations { known }
    }

    /// A repository of `registry` other than `except` known to hold `digest`.
    #[must_use]
    pub fn find(&self, registry: &str, digest: &Digest, except: &str) -> Option<String> {
        self.known
            .get(registry)?
            .get(&digest.to_string())?
            .iter()
            .find(|r| *r != except)
            .cloned()
    }

    /// Records that `repository` holds `digest`.
    pub fn add(&mut self, registry: &str, digest: &Digest, repository: &str) {
        let per = self.known.entry(registry.to_string()).or_default();
        if per.len() >= MAX_PER_REGISTRY
            && !per.contains_key(&digest.to_string())
            && let Some(first) = per.keys().next().cloned()
        {
            per.remove(&first);
        }
        let repos = per.entry(digest.to_string()).or_default();
        if !repos.iter().any(|r| r == repository) {
            repos.push(repository.to_string());
        }
    }

    /// Saves the cache; failures are ignored (the cache is an optimisation).
    pub fn save(&self) {
        let Some(p) = path() else { return };
        if let Some(dir) = p.parent()
            && std::fs::create_dir_all(dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec(&self.known)
        {
            let _ = treeport_core::blobs::write_atomic(&p, &bytes);
        }
    }
}
