//! A library exporting a root module named like treeport's, with another
//! layout: what a plugin built against a different interface looks like.

#![allow(non_local_definitions, unsafe_code)]

use abi_stable::library::RootModule;
use abi_stable::prefix_type::PrefixTypeTrait;
use abi_stable::sabi_types::VersionStrings;
use abi_stable::std_types::RString;
use abi_stable::{StableAbi, declare_root_module_statics, export_root_module};

/// Not treeport's `PluginMod`: other fields.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginModRef)))]
#[sabi(missing_field(panic))]
pub struct PluginMod {
    pub name: extern "C" fn() -> RString,
    #[sabi(last_prefix_field)]
    pub answer: extern "C" fn(u64) -> u64,
}

impl RootModule for PluginModRef {
    declare_root_module_statics! {PluginModRef}
    const BASE_NAME: &'static str = "treeport_plugin";
    const NAME: &'static str = "treeport_plugin";
    // The same version as treeport's interface crate: only the layout differs.
    const VERSION_STRINGS: VersionStrings = VersionStrings::new("1.0.0");
}

extern "C" fn name() -> RString {
    "impostor".into()
}

extern "C" fn answer(x: u64) -> u64 {
    x + 42
}

/// The root module.
#[export_root_module]
pub fn root() -> PluginModRef {
    PluginMod { name, answer }.leak_into_prefix()
}
