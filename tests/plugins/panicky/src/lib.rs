//! A plugin library with a source that panics, a sink whose kind clashes
//! with a built-in, and a transform that works: one bad plugin must not stop
//! the others.

use treeport_plugin_api::{
    Draft, Made, Options, Plugin, PluginError, PluginResult, Role, Source, Transform,
    export_plugins,
};

struct Panicky;

impl Source for Panicky {
    fn read(&mut self, _draft: &mut Draft) -> PluginResult<()> {
        panic!("the tree is on fire");
    }

    fn open(&self, _key: u64) -> PluginResult<Box<dyn std::io::Read + Send>> {
        Err(PluginError::new("no content"))
    }
}

struct Stamp;

impl Transform for Stamp {
    fn apply(&mut self, draft: &mut Draft) -> PluginResult<()> {
        draft.set_label("com.example.stamped", "yes")
    }
}

fn make_panicky(_: &str, _: &Options) -> PluginResult<Made> {
    Ok(Made::Source(Box::new(Panicky)))
}

fn make_stamp(_: &str, _: &Options) -> PluginResult<Made> {
    Ok(Made::Transform(Box::new(Stamp)))
}

fn make_never(_: &str, _: &Options) -> PluginResult<Made> {
    Err(PluginError::new("never made"))
}

fn plugins() -> Vec<Plugin> {
    vec![
        Plugin {
            role: Role::Source,
            kind: "panicky",
            description: "panics when read",
            usage: "panicky:",
            version: "0.1.0",
            options: &[],
            make: make_panicky,
        },
        Plugin {
            role: Role::Sink,
            kind: "oci",
            description: "clashes with the built-in oci sink",
            usage: "oci:X",
            version: "0.1.0",
            options: &[],
            make: make_never,
        },
        Plugin {
            role: Role::Transform,
            kind: "stamp",
            description: "sets com.example.stamped=yes",
            usage: "stamp",
            version: "0.1.0",
            options: &[],
            make: make_stamp,
        },
    ]
}

export_plugins!(plugins);
