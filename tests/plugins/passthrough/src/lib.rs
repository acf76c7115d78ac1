//! Transforms that change nothing, the hard way: a loaded stage must be
//! indistinguishable from no stage at all.
//!
//! - `pass` does nothing.
//! - `rewrite` reads every entry, label, annotation and config field and
//!   writes each back; it also streams every file's content.

use std::io::Read;

use treeport_plugin_api::{
    Draft, Made, Options, Plugin, PluginResult, Role, Transform, export_plugins,
};

struct Pass;

impl Transform for Pass {
    fn apply(&mut self, _draft: &mut Draft) -> PluginResult<()> {
        Ok(())
    }
}

struct Rewrite;

impl Transform for Rewrite {
    fn apply(&mut self, draft: &mut Draft) -> PluginResult<()> {
        let mut buf = vec![0u8; 64 * 1024];
        for n in 0..draft.len() {
            let Some(entry) = draft.entry(n) else {
                continue;
            };
            let mut content = draft.open(&entry)?;
            while content.read(&mut buf)? > 0 {}
            draft.put(&entry)?;
        }
        for (k, v) in draft.labels() {
            draft.set_label(&k, &v)?;
        }
        for (k, v) in draft.annotations() {
            draft.set_annotation(&k, Some(&v))?;
        }
        for field in ["env", "cmd", "entrypoint", "user", "working-dir"] {
            let value = draft.config(field)?;
            let refs: Option<Vec<&str>> = value
                .as_ref()
                .map(|v| v.iter().map(String::as_str).collect());
            draft.set_config(field, refs.as_deref())?;
        }
        Ok(())
    }
}

fn make_pass(_: &str, _: &Options) -> PluginResult<Made> {
    Ok(Made::Transform(Box::new(Pass)))
}

fn make_rewrite(_: &str, _: &Options) -> PluginResult<Made> {
    Ok(Made::Transform(Box::new(Rewrite)))
}

fn plugins() -> Vec<Plugin> {
    vec![
        Plugin {
            role: Role::Transform,
            kind: "pass",
            description: "does nothing",
            usage: "pass",
            version: "0.1.0",
            options: &[],
            make: make_pass,
        },
        Plugin {
            role: Role::Transform,
            kind: "rewrite",
            description: "reads every entry and field and writes it back",
            usage: "rewrite",
            version: "0.1.0",
            options: &[],
            make: make_rewrite,
        },
    ]
}

export_plugins!(plugins);
