//! Transform `os-release`: reads the tree's `/etc/os-release` (or
//! `/usr/lib/os-release`, following a symlink inside the tree) and turns it
//! into `org.opencontainers.image.*` labels: `title` from `PRETTY_NAME`,
//! `version` from `VERSION_ID`, `vendor` from `NAME`, `url` from `HOME_URL`.
//! Labels already set are kept unless `override=true`.

use std::io::Read;

use treeport_plugin_api::{
    Content, Draft, HostContent, Kind, Made, Plugin, PluginError, PluginResult, Role, Transform,
    check_options, export_plugins, option,
};

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Transform,
        kind: "os-release",
        description: "labels from the tree's os-release (title, version, vendor, url)",
        usage: "os-release[:override=true]",
        version: env!("CARGO_PKG_VERSION"),
        options: &[("override", "true: replace labels already set")],
        make,
    }]
}

export_plugins!(plugins);

fn make(selector: &str, options: &[(String, String)]) -> PluginResult<Made> {
    let mut all: Vec<(String, String)> = options.to_vec();
    if let Some((_, rest)) = selector.split_once(':') {
        for pair in rest.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, "true"));
            all.push((k.to_string(), v.to_string()));
        }
    }
    check_options("transform os-release", &all, &["override"])?;
    let replace = match option(&all, "override") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(PluginError::usage(format!(
                "override={other}: expected true or false"
            )));
        }
    };
    Ok(Made::Transform(Box::new(OsRelease { replace })))
}

struct OsRelease {
    replace: bool,
}

/// Follows symlinks inside the draft from `path` to a regular file.
fn resolve<'a>(draft: &'a Draft, path: &str) -> Option<&'a treeport_plugin_api::Entry> {
    let mut current = path.trim_start_matches('/').to_string();
    for _ in 0..16 {
        let entry = draft.entry(current.as_bytes())?;
        match entry.kind {
            Kind::File => return Some(entry),
            Kind::Symlink => {
                let target = String::from_utf8_lossy(&entry.target).into_owned();
                current = if target.starts_with('/') {
                    target.trim_start_matches('/').to_string()
                } else {
                    let dir = current.rsplit_once('/').map_or("", |(d, _)| d);
                    normalize(&format!("{dir}/{target}"))
                };
            }
            _ => return None,
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

/// `KEY=value` lines, values unquoted.
fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with('#') {
                return None;
            }
            let (k, v) = l.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

impl Transform for OsRelease {
    fn apply(&mut self, draft: &mut Draft, content: &HostContent) -> PluginResult<()> {
        let entry = resolve(draft, "etc/os-release")
            .or_else(|| resolve(draft, "usr/lib/os-release"))
            .ok_or_else(|| {
                PluginError::new("the tree has no /etc/os-release or /usr/lib/os-release")
            })?;
        let text = match &entry.content {
            Content::Key(k) => {
                let mut s = String::new();
                content.open(*k)?.take(1 << 20).read_to_string(&mut s)?;
                s
            }
            Content::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            Content::None => String::new(),
        };
        let fields = parse(&text);
        let get = |k: &str| {
            fields
                .iter()
                .rev()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        for (label, key) in [
            ("org.opencontainers.image.title", "PRETTY_NAME"),
            ("org.opencontainers.image.version", "VERSION_ID"),
            ("org.opencontainers.image.vendor", "NAME"),
            ("org.opencontainers.image.url", "HOME_URL"),
        ] {
            if let Some(v) = get(key)
                && (self.replace || draft.label(label).is_none())
            {
                draft.set_label(label, &v);
            }
        }
        Ok(())
    }
}
