//! A shared library that is not a treeport plugin.

/// Something to export.
#[unsafe(no_mangle)]
pub extern "C" fn not_a_treeport_plugin() -> u32 {
    42
}
