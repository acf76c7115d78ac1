//! Transform `os-release`: reads the tree's `/etc/os-release` (or
//! `/usr/lib/os-release`, following a symlink inside the tree) and turns it
//! into `org.opencontainers.image.*` labels: `title` from `PRETTY_NAME`,
//! `version` from `VERSION_ID`, `vendor` from `NAME`, `url` from `HOME_URL`.
//! Labels already set are kept unless `override=true`.

use treeport_plugin_api::{
    Draft, Made, OptionKind, OptionSpec, Options, Plugin, PluginError, PluginResult, Role,
    Transform, export_plugins,
};

const OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "override",
    OptionKind::Boolean,
    "replace labels already set",
)];

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Transform,
        kind: "os-release",
        description: "labels from the tree's os-release (title, version, vendor, url)",
        usage: "os-release[:override=true]",
        version: env!("CARGO_PKG_VERSION"),
        options: OPTIONS,
        make,
    }]
}

export_plugins!(plugins);

// treeport has parsed `os-release:override=true` (or a pipeline file's
// `override = true`) and checked it against the declaration above.
fn make(_selector: &str, options: &Options) -> PluginResult<Made> {
    Ok(Made::Transform(Box::new(OsRelease {
        replace: options.flag("override")?,
    })))
}

struct OsRelease {
    replace: bool,
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
    fn apply(&mut self, draft: &mut Draft) -> PluginResult<()> {
        // Symlinks inside the tree are followed (an /etc/os-release that
        // points to ../usr/lib/os-release).
        let text = match draft.read_file("etc/os-release", 1 << 20)? {
            Some(t) => t,
            None => draft
                .read_file("usr/lib/os-release", 1 << 20)?
                .ok_or_else(|| {
                    PluginError::new("the tree has no /etc/os-release or /usr/lib/os-release")
                })?,
        };
        let fields = parse(&String::from_utf8_lossy(&text));
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
                draft.set_label(label, &v)?;
            }
        }
        Ok(())
    }
}
