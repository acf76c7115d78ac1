//! Transform `frozen[:label=TEXT]`, written against interface 1.0: sets
//! `com.example.frozen` and adds `/etc/frozen`, after reading every entry
//! and writing each back.

use treeport_plugin_api::{
    Draft, Made, OptionKind, OptionSpec, Options, Plugin, PluginResult, Role, Transform,
    export_plugins,
};

struct Frozen {
    label: String,
}

impl Transform for Frozen {
    fn apply(&mut self, draft: &mut Draft) -> PluginResult<()> {
        let entries: Vec<_> = draft.entries().collect();
        for e in &entries {
            draft.put(e)?;
        }
        draft.set_label("com.example.frozen", &self.label)?;
        draft.add_file("etc/frozen", format!("{} entries\n", entries.len()), 0o644)?;
        Ok(())
    }
}

const OPTIONS: &[OptionSpec] = &[OptionSpec::new(
    "label",
    OptionKind::String,
    "the label's value",
)];

fn make(_selector: &str, options: &Options) -> PluginResult<Made> {
    Ok(Made::Transform(Box::new(Frozen {
        label: options.get("label").unwrap_or("1.0").to_string(),
    })))
}

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Transform,
        kind: "frozen",
        description: "built against interface 1.0",
        usage: "frozen[:label=TEXT]",
        version: "1.0.0",
        options: OPTIONS,
        make,
    }]
}

export_plugins!(plugins);
