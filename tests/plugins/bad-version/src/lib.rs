//! A plugin built for an interface version treeport does not speak.

use treeport_plugin_api::{Made, Plugin, PluginError, PluginResult, Role, export_plugins};

fn make(_: &str, _: &[(String, String)]) -> PluginResult<Made> {
    Err(PluginError::new("never made"))
}

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Source,
        kind: "from-the-future",
        description: "built for interface version 999",
        usage: "from-the-future:X",
        version: "0.1.0",
        options: &[],
        make,
    }]
}

export_plugins!(plugins, version = 999);
