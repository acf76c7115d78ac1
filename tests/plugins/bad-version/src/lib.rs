//! A plugin built for a later minor version of the interface than this
//! treeport speaks.

use treeport_plugin_api::{Made, Options, Plugin, PluginError, PluginResult, Role, export_plugins};

fn make(_: &str, _: &Options) -> PluginResult<Made> {
    Err(PluginError::new("never made"))
}

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Source,
        kind: "from-the-future",
        description: "built for interface version 1.99",
        usage: "from-the-future:X",
        version: "0.1.0",
        options: &[],
        make,
    }]
}

export_plugins!(plugins, version = (1, 99));
