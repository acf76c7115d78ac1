//! Dynamic plugins: loading shared libraries that implement
//! [`treeport_plugin_api`], and wrapping what they provide in the same
//! [`Source`], [`Transform`] and [`Sink`] traits as the built-in plugins, so
//! a pipeline cannot tell them apart.
//!
//! Loading refuses world-writable files and directories, libraries that are
//! not treeport plugins, libraries built for another interface version or
//! with another layout of the interface's types, and kinds that clash with
//! one already registered; each refusal is a [`LoadError`] naming the file,
//! and the other plugins still load. A loaded library is never unloaded.

mod host;

pub use host::{CONFIG_FIELDS, DraftHandle, HostImage};

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abi_stable::library::{LibraryError, lib_header_from_path};
use abi_stable::sabi_trait::prelude::TD_Opaque;
use abi_stable::std_types::{RBox, RResult, RString, RVec, Tuple2};
use treeport_plugin_api::ffi::{self, PluginBox, PluginModRef};
use treeport_plugin_api::released;
use treeport_plugin_api::{self as api, INTERFACE_MAJOR, INTERFACE_MINOR};

use crate::blobs::BlobStore;
use crate::error::{Error, Result, Role};
use crate::image::{BuiltImage, ImageDraft};
use crate::plugin::{
    Factory, OptionInfo, Options, Origin, Plugin, PluginInfo, Selector, Sink, Source, Transform,
    Written,
};
use crate::progress::Context;
use crate::registry::Registry;

/// Why a plugin file was not (wholly) loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
    /// `file` is a plugin directory (`--plugin-dir`), not a library.
    pub directory: bool,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.directory {
            "plugin directory"
        } else {
            "plugin"
        };
        write!(f, "{what} {}: {}", self.file.display(), self.reason)
    }
}

/// The shared-library files in `dir`, sorted.
fn libraries_in(dir: &Path) -> std::result::Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| e.to_string())?;
    let mut out: Vec<PathBuf> = entries
        .filter_map(std::result::Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    out.sort();
    Ok(out)
}

/// Where plugin libraries come from, which decides what a refusal means.
#[derive(Debug, Default)]
pub struct PluginSources<'a> {
    /// Libraries named one by one (`--plugin`, a pipeline file's
    /// `plugins`): each must load, or the run stops before it starts.
    pub files: &'a [PathBuf],
    /// Directories named on the command line (`--plugin-dir`): each must
    /// exist; a library in one that is refused is a warning.
    pub dirs: &'a [PathBuf],
    /// Directories of a search path (`TREEPORT_PLUGIN_PATH`): missing ones
    /// are skipped, as PATH skips them; refused libraries are warnings.
    pub search_path: &'a [PathBuf],
}

/// What loading found wrong.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Refusals that stop the run (a named library, a named directory).
    pub errors: Vec<LoadError>,
    /// Refusals the run goes on without (libraries found in directories).
    pub warnings: Vec<LoadError>,
}

/// The user running treeport.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// Checks that nobody but root and the user running treeport can change
/// what `path` holds: the file (or directory) and every directory above it,
/// both as named and with every symlink resolved, are owned by root or this
/// user, and none is world-writable (a directory may be when it is sticky,
/// as /tmp is: others cannot rename what they do not own there). These are
/// the checks sudo and ssh make before trusting a file.
fn check_trusted(path: &Path) -> std::result::Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let me = euid();
    let check = |p: &Path, what: &str| -> std::result::Result<(), String> {
        let m = std::fs::symlink_metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if m.uid() != 0 && m.uid() != me {
            return Err(format!(
                "{what} {} is owned by uid {}, not by root or the user running treeport; refusing to load it",
                p.display(),
                m.uid()
            ));
        }
        let mode = m.permissions().mode();
        let sticky_dir = m.is_dir() && mode & 0o1000 != 0;
        if !m.file_type().is_symlink() && mode & 0o002 != 0 && !sticky_dir {
            return Err(format!(
                "{what} {} is world-writable; refusing to load it",
                p.display()
            ));
        }
        Ok(())
    };
    let absolute = std::path::absolute(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let resolved = std::fs::canonicalize(path).map_err(|e| crate::error::io_message(&e))?;
    for (chain, what) in [(&absolute, "path"), (&resolved, "resolved path")] {
        // The named path itself (a symlink is checked as a link: its owner
        // decides where it points), then every directory above it, each
        // with the symlinks above it resolved.
        check(chain, if chain == &resolved { "file" } else { what })?;
        let mut dir = chain.parent();
        while let Some(d) = dir {
            let real = std::fs::canonicalize(d).map_err(|e| format!("{}: {e}", d.display()))?;
            check(&real, "directory")?;
            dir = d.parent();
        }
    }
    Ok(())
}

/// Loads every plugin from `sources` into `registry`. Whatever loaded stays
/// registered; the report says what was refused and whether that stops the
/// run.
pub fn load(registry: &mut Registry, sources: &PluginSources<'_>) -> LoadReport {
    let mut report = LoadReport::default();
    for file in sources.files {
        report.errors.extend(load_file(registry, file));
    }
    let dirs = sources
        .dirs
        .iter()
        .map(|d| (d, true))
        .chain(sources.search_path.iter().map(|d| (d, false)));
    for (dir, named) in dirs {
        let refuse = |reason: String| LoadError {
            file: dir.clone(),
            reason,
            directory: true,
        };
        if !named && !dir.is_dir() {
            continue;
        }
        let found = check_trusted(dir).and_then(|()| {
            libraries_in(dir).map_err(|e| format!("cannot read the plugin directory: {e}"))
        });
        match found {
            Ok(found) => {
                for file in found {
                    report.warnings.extend(load_file(registry, &file));
                }
            }
            Err(reason) if named => report.errors.push(refuse(reason)),
            Err(reason) => report.warnings.push(refuse(reason)),
        }
    }
    report
}

/// Loads one plugin library; returns its errors (none when all went well).
pub fn load_file(registry: &mut Registry, file: &Path) -> Vec<LoadError> {
    let err = |reason: String| LoadError {
        file: file.to_path_buf(),
        reason,
        directory: false,
    };
    let module = match open_module(file) {
        Ok(m) => m,
        Err(reason) => return vec![err(reason)],
    };
    let plugins = match (module.plugins())() {
        RResult::ROk(d) => d,
        RResult::RErr(e) => return vec![err(format!("listing its plugins failed: {}", e.message))],
    };
    let mut errors = Vec::new();
    for p in plugins {
        match dynamic_plugin(file, p) {
            Ok(plugin) => {
                if let Err(e) = registry.add(plugin) {
                    errors.push(err(e.to_string()));
                }
            }
            Err(reason) => errors.push(err(reason)),
        }
    }
    errors
}

/// Checks and opens the library's root module.
fn open_module(file: &Path) -> std::result::Result<PluginModRef, String> {
    let meta = std::fs::metadata(file).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a file".into());
    }
    check_trusted(file)?;
    let header = lib_header_from_path(file).map_err(|e| describe(&e))?;
    // The layout is checked against interface 1.0 as released: a plugin
    // built for any 1.N has at least its fields and methods (abi_stable
    // would refuse one built before fields this treeport's types added).
    header
        .init_root_module::<released::v1_0::PluginModRef>()
        .map_err(|e| describe(&e))?;
    // SAFETY: the library's root module was just checked against 1.0's
    // layout, which the current one only extends (a unit test of the
    // interface crate checks that); fields and methods added after 1.0 are
    // read through accessors that see they are absent, and treeport calls
    // a plugin's methods added after 1.0 only when its interface version
    // has them.
    #[allow(unsafe_code)]
    let module = unsafe { header.unchecked_layout::<PluginModRef>() }
        .map_err(|e| format!("its root module failed: {e}"))?;
    let Tuple2(major, minor) = (module.interface())();
    check_interface(major, minor)?;
    Ok(module)
}

/// A plugin built against interface `major.minor` runs here when the major
/// versions are equal and its minor version is not newer than ours.
fn check_interface(major: u32, minor: u32) -> std::result::Result<(), String> {
    if major != INTERFACE_MAJOR || minor > INTERFACE_MINOR {
        return Err(format!(
            "built for plugin interface {major}.{minor}; this treeport speaks {INTERFACE_MAJOR}.{INTERFACE_MINOR} \
             (it runs plugins built for {INTERFACE_MAJOR}.0 to {INTERFACE_MAJOR}.{INTERFACE_MINOR})"
        ));
    }
    Ok(())
}

/// What `abi_stable`'s report of a layout mismatch says, in one line: the
/// innermost type that differs (and the field holding it), what differs,
/// and both sides, without the layouts it prints around them.
fn mismatch(report: &str) -> String {
    let lines: Vec<&str> = report.lines().map(str::trim).collect();
    let Some(err_at) = lines.iter().position(|l| l.starts_with("Error:")) else {
        return "layout mismatch".into();
    };
    let before = &lines[..err_at];
    let expected_at = before
        .iter()
        .rposition(|l| l.starts_with("Layout of expected type:"))
        .unwrap_or(0);
    let ty = before[expected_at..]
        .iter()
        .find_map(|l| l.strip_prefix("type:"))
        .unwrap_or("?");
    let field = before[..expected_at]
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("field_name:"))
        .filter(|f| f.parse::<u32>().is_err());
    let next_after = |label: &str| {
        lines[err_at..]
            .iter()
            .position(|l| *l == label)
            .and_then(|i| lines[err_at + i + 1..].iter().find(|l| !l.is_empty()))
            .copied()
    };
    let mut out = format!("in {ty}");
    if let Some(f) = field {
        let _ = write!(out, " (field {f})");
    }
    let _ = write!(
        out,
        ": {}",
        lines[err_at].trim_start_matches("Error:").trim()
    );
    if let (Some(e), Some(f)) = (next_after("Expected:"), next_after("Found:")) {
        let _ = write!(out, ": expected {e}, found {f}");
    }
    out
}

/// One line for a loading failure.
fn describe(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => format!("cannot be loaded: {err}"),
        LibraryError::GetSymbolError { .. } => {
            "not a treeport plugin (it exports no treeport root module)".into()
        }
        LibraryError::InvalidAbiHeader(_) => {
            "built with an abi_stable version this treeport cannot load".into()
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => format!(
            "built for plugin interface {actual_version}; this treeport speaks {expected_version}"
        ),
        LibraryError::AbiInstability(report) => format!(
            "its interface types do not match this treeport's: {}",
            mismatch(&report.to_string())
        ),
        LibraryError::RootModule { err, .. } => format!("its root module failed: {err}"),
        other => format!(
            "cannot be loaded: {}",
            other.to_string().lines().next().unwrap_or("")
        ),
    }
}

fn role_of(code: u8) -> Option<Role> {
    api::Role::from_code(code).map(|r| match r {
        api::Role::Source => Role::Source,
        api::Role::Transform => Role::Transform,
        api::Role::Sink => Role::Sink,
    })
}

/// Where a plugin's error came from: its file and, for a plugin being
/// made, its role and kind (when it runs, the pipeline names the stage);
/// usage errors exit 2.
fn call_error(origin: &Path, making: Option<(Role, &str)>, e: &ffi::ErrorRecord) -> Error {
    let e = api::PluginError::from_record(e);
    let text = match making {
        Some((role, kind)) => format!(
            "plugin {}: {role} '{kind}': {}",
            origin.display(),
            e.message()
        ),
        None => format!("plugin {}: {}", origin.display(), e.message()),
    };
    match e.kind() {
        api::ErrorKind::Usage => Error::usage(text),
        _ => Error::invalid(text),
    }
}

/// Option values as the boundary carries them.
fn option_values(options: &Options) -> ffi::OptionValues {
    options
        .iter()
        .map(|(k, v)| Tuple2(RString::from(k), RVec::from(vec![RString::from(v)])))
        .collect()
}

/// A loaded plugin, shared by the stages made from it.
struct Loaded {
    obj: PluginBox,
    origin: PathBuf,
    kind: String,
    role: Role,
}

impl Loaded {
    /// The result of making a stage.
    fn made<T>(&self, r: ffi::Res<T>) -> Result<T> {
        r.into_result()
            .map_err(|e| call_error(&self.origin, Some((self.role, &self.kind)), &e))
    }

    /// The result of a call while the pipeline runs (which names the stage).
    fn lift<T>(&self, r: ffi::Res<T>) -> Result<T> {
        r.into_result()
            .map_err(|e| call_error(&self.origin, None, &e))
    }
}

fn dynamic_plugin(file: &Path, obj: PluginBox) -> std::result::Result<Plugin, String> {
    let kind = obj.kind().to_string();
    let role = role_of(obj.role())
        .ok_or_else(|| format!("'{kind}' declares role code {}, unknown here", obj.role()))?;
    let options = obj
        .options()
        .into_iter()
        .map(|o| OptionInfo {
            name: o.name.to_string(),
            kind: api::OptionKind::from_code(o.kind),
            help: o.help.to_string(),
        })
        .collect();
    let info = PluginInfo {
        role,
        kind: kind.clone(),
        description: obj.description().to_string(),
        usage: obj.usage().to_string(),
        options,
        origin: Origin::File(file.to_path_buf()),
        version: obj.version().to_string(),
    };
    let loaded = Arc::new(Loaded {
        obj,
        origin: file.to_path_buf(),
        kind,
        role,
    });
    let factory = match role {
        Role::Source => Factory::Source(Arc::new(move |s: &Selector, o: &Options| {
            let obj = loaded.made(loaded.obj.make_source(s.as_str().into(), option_values(o)))?;
            Ok(Box::new(DynSource {
                obj: Arc::new(Mutex::new(obj)),
                plugin: Arc::clone(&loaded),
            }) as Box<dyn Source>)
        })),
        Role::Transform => Factory::Transform(Arc::new(move |s: &Selector, o: &Options| {
            let obj = loaded.made(
                loaded
                    .obj
                    .make_transform(s.as_str().into(), option_values(o)),
            )?;
            Ok(Box::new(DynTransform {
                obj,
                plugin: Arc::clone(&loaded),
            }) as Box<dyn Transform>)
        })),
        Role::Sink => Factory::Sink {
            sink: Arc::new(move |s: &Selector, o: &Options| {
                let obj = loaded.made(loaded.obj.make_sink(s.as_str().into(), option_values(o)))?;
                Ok(Box::new(DynSink {
                    obj,
                    plugin: Arc::clone(&loaded),
                }) as Box<dyn Sink>)
            }),
            reader: None,
        },
    };
    Ok(Plugin { info, factory })
}

type SourceBox = ffi::SourceObj_TO<'static, RBox<()>>;

/// A loaded source.
struct DynSource {
    obj: Arc<Mutex<SourceBox>>,
    plugin: Arc<Loaded>,
}

impl Source for DynSource {
    fn read(&mut self, _ctx: &Context) -> Result<ImageDraft> {
        let store = Arc::new(host::SourceContent {
            obj: Arc::clone(&self.obj),
            describe: format!(
                "plugin {} source '{}'",
                self.plugin.origin.display(),
                self.plugin.kind
            ),
        });
        let mut empty = ImageDraft::new(crate::tree::Tree::new());
        // A source starts from nothing; the pipeline puts what it added in
        // order.
        empty.tree.push(crate::tree::Entry::new(
            crate::tree::TreePath::root(),
            crate::tree::EntryKind::Dir,
        ));
        let handle = DraftHandle::new(empty, Some(store), false);
        let result = {
            let mut obj = self.obj.lock().expect("the plugin lock is not poisoned");
            obj.read(handle.to_box())
        };
        self.plugin.lift(result)?;
        Ok(handle.finish())
    }
}

/// A loaded transform: it edits the host's draft in place through a handle.
struct DynTransform {
    obj: ffi::TransformObj_TO<'static, RBox<()>>,
    plugin: Arc<Loaded>,
}

impl Transform for DynTransform {
    fn apply(&mut self, image: &mut ImageDraft, _ctx: &Context) -> Result<()> {
        let taken = std::mem::replace(image, ImageDraft::new(crate::tree::Tree::new()));
        let handle = DraftHandle::new(taken, None, false);
        let result = self.obj.apply(handle.to_box());
        // The draft comes back whatever the plugin did, so an error leaves
        // nothing half-taken.
        *image = handle.finish();
        self.plugin.lift(result)
    }
}

/// A loaded sink.
struct DynSink {
    obj: ffi::SinkObj_TO<'static, RBox<()>>,
    plugin: Arc<Loaded>,
}

impl Sink for DynSink {
    fn prepare(&mut self, _ctx: &Context) -> Result<()> {
        let r = self.obj.prepare();
        self.plugin.lift(r)
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, _ctx: &Context) -> Result<Written> {
        let host = ffi::ImageObj_TO::from_value(
            HostImage {
                image: Arc::new(image.clone()),
                dir: blobs.dir().to_path_buf(),
            },
            TD_Opaque,
        );
        let r = self.obj.write(host);
        let dest = self.plugin.lift(r)?;
        Ok(Written::to(dest.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_versions_follow_the_policy() {
        assert!(check_interface(INTERFACE_MAJOR, 0).is_ok());
        assert!(check_interface(INTERFACE_MAJOR, INTERFACE_MINOR).is_ok());
        let newer = check_interface(INTERFACE_MAJOR, INTERFACE_MINOR + 1).unwrap_err();
        assert!(
            newer.contains(&format!("{INTERFACE_MAJOR}.{}", INTERFACE_MINOR + 1)),
            "{newer}"
        );
        assert!(
            newer.contains(&format!("speaks {INTERFACE_MAJOR}.{INTERFACE_MINOR}")),
            "{newer}"
        );
        assert!(check_interface(INTERFACE_MAJOR + 1, 0).is_err());
        assert!(check_interface(0, 1).is_err());
    }
}
