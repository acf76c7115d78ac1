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

mod convert;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abi_stable::library::{LibraryError, RootModule, lib_header_from_path};
use abi_stable::std_types::{RResult, RString, RVec, Tuple2};
use treeport_plugin_api::{self as api, INTERFACE_VERSION, Instance, PluginModRef};

use crate::blobs::BlobStore;
use crate::error::{Error, Result, Role};
use crate::image::{BuiltImage, ImageDraft};
use crate::plugin::{
    Factory, Options, Origin, Plugin, PluginInfo, Registry, Selector, Sink, Source, Transform,
    Written,
};
use crate::progress::Context;

/// Why a plugin file was not (wholly) loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "plugin {}: {}", self.file.display(), self.reason)
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
    let resolved = std::fs::canonicalize(path).map_err(|e| e.to_string())?;
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
    };
    let module = match open_module(file) {
        Ok(m) => m,
        Err(reason) => return vec![err(reason)],
    };
    let descriptors = match (module.descriptors())() {
        RResult::ROk(d) => d,
        RResult::RErr(e) => return vec![err(format!("listing its plugins failed: {}", e.message))],
    };
    let mut errors = Vec::new();
    for d in descriptors {
        let plugin = dynamic_plugin(file, d);
        if let Err(e) = registry.add(plugin) {
            errors.push(err(e.to_string()));
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
    let module = header
        .init_root_module::<PluginModRef>()
        .map_err(|e| describe(&e))?;
    let version = (module.interface_version())();
    if version != INTERFACE_VERSION {
        return Err(format!(
            "built for plugin interface version {version}; this treeport speaks version {INTERFACE_VERSION}"
        ));
    }
    Ok(module)
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
            "built against treeport-plugin-api {actual_version}; this treeport needs {expected_version}"
        ),
        LibraryError::AbiInstability(_) => format!(
            "its interface types do not match this treeport's ({} layout mismatch)",
            PluginModRef::NAME
        ),
        LibraryError::RootModule { err, .. } => format!("its root module failed: {err}"),
        other => format!(
            "cannot be loaded: {}",
            other.to_string().lines().next().unwrap_or("")
        ),
    }
}

fn role_of(r: api::Role) -> Role {
    match r {
        api::Role::Source => Role::Source,
        api::Role::Transform => Role::Transform,
        api::Role::Sink => Role::Sink,
    }
}

/// What a plugin call failure says: the file, the stage, the plugin's words.
fn call_error(origin: &Path, role: Role, kind: &str, e: &api::PluginError) -> Error {
    let text = format!(
        "plugin {}: {role} '{kind}': {}",
        origin.display(),
        e.message
    );
    if e.usage {
        Error::usage(text)
    } else {
        Error::invalid(text)
    }
}

fn dynamic_plugin(file: &Path, d: api::Descriptor) -> Plugin {
    let role = role_of(d.role);
    let info = PluginInfo {
        role,
        kind: d.kind.to_string(),
        description: d.description.to_string(),
        usage: d.usage.to_string(),
        options: d
            .options
            .iter()
            .map(|Tuple2(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        origin: Origin::File(file.to_path_buf()),
        version: d.version.to_string(),
    };
    let factory = Arc::new(d.factory);
    let origin = file.to_path_buf();
    let kind = info.kind.clone();
    let make = move |selector: &Selector, options: &Options| -> Result<Instance> {
        let opts: RVec<Tuple2<RString, RString>> = options
            .iter()
            .map(|(k, v)| Tuple2(RString::from(k), RString::from(v)))
            .collect();
        match factory.make(selector.as_str().into(), opts) {
            RResult::ROk(i) => Ok(i),
            RResult::RErr(e) => Err(call_error(&origin, role, &kind, &e)),
        }
    };
    let origin = file.to_path_buf();
    let kind = info.kind.clone();
    let factory = match role {
        Role::Source => Factory::Source(Arc::new(move |s: &Selector, o: &Options| {
            match make(s, o)? {
                Instance::Source(obj) => Ok(Box::new(DynSource {
                    obj: Arc::new(Mutex::new(obj)),
                    origin: origin.clone(),
                    kind: kind.clone(),
                }) as Box<dyn Source>),
                _ => Err(wrong_instance(&origin, &kind)),
            }
        })),
        Role::Transform => {
            Factory::Transform(Arc::new(move |s: &Selector, o: &Options| {
                match make(s, o)? {
                    Instance::Transform(obj) => Ok(Box::new(DynTransform {
                        obj,
                        origin: origin.clone(),
                        kind: kind.clone(),
                    }) as Box<dyn Transform>),
                    _ => Err(wrong_instance(&origin, &kind)),
                }
            }))
        }
        Role::Sink => Factory::Sink {
            sink: Arc::new(move |s: &Selector, o: &Options| match make(s, o)? {
                Instance::Sink(obj) => Ok(Box::new(DynSink {
                    obj,
                    origin: origin.clone(),
                    kind: kind.clone(),
                }) as Box<dyn Sink>),
                _ => Err(wrong_instance(&origin, &kind)),
            }),
            reader: None,
        },
    };
    Plugin { info, factory }
}

fn wrong_instance(origin: &Path, kind: &str) -> Error {
    Error::invalid(format!(
        "plugin {}: '{kind}' made a plugin of another role than it declared",
        origin.display()
    ))
}

type SourceBox = api::SourceObj_TO<'static, abi_stable::std_types::RBox<()>>;

/// A loaded source.
struct DynSource {
    obj: Arc<Mutex<SourceBox>>,
    origin: PathBuf,
    kind: String,
}

impl Source for DynSource {
    fn read(&mut self, _ctx: &Context) -> Result<ImageDraft> {
        let draft = {
            let mut obj = self.obj.lock().expect("the plugin lock is not poisoned");
            obj.read()
        };
        let draft = match draft {
            RResult::ROk(d) => d,
            RResult::RErr(e) => return Err(call_error(&self.origin, Role::Source, &self.kind, &e)),
        };
        let store = Arc::new(convert::SourceContent {
            obj: Arc::clone(&self.obj),
            describe: format!("plugin {} source '{}'", self.origin.display(), self.kind),
        });
        convert::draft_from_api(draft, &convert::Keys::Source(store)).map_err(|e| {
            e.context(format!(
                "plugin {} source '{}'",
                self.origin.display(),
                self.kind
            ))
        })
    }
}

/// A loaded transform.
struct DynTransform {
    obj: api::TransformObj_TO<'static, abi_stable::std_types::RBox<()>>,
    origin: PathBuf,
    kind: String,
}

impl Transform for DynTransform {
    fn apply(&mut self, image: &mut ImageDraft, _ctx: &Context) -> Result<()> {
        let (draft, host) = convert::draft_to_api(image);
        let contents = host.contents.clone();
        let content =
            api::ContentObj_TO::from_value(host, abi_stable::sabi_trait::prelude::TD_Opaque);
        match self.obj.apply(draft, content) {
            RResult::ROk(d) => {
                *image =
                    convert::draft_from_api(d, &convert::Keys::Host(contents)).map_err(|e| {
                        e.context(format!(
                            "plugin {} transform '{}'",
                            self.origin.display(),
                            self.kind
                        ))
                    })?;
                Ok(())
            }
            RResult::RErr(e) => Err(call_error(&self.origin, Role::Transform, &self.kind, &e)),
        }
    }
}

/// A loaded sink.
struct DynSink {
    obj: api::SinkObj_TO<'static, abi_stable::std_types::RBox<()>>,
    origin: PathBuf,
    kind: String,
}

impl Sink for DynSink {
    fn prepare(&mut self, _ctx: &Context) -> Result<()> {
        match self.obj.prepare() {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(call_error(&self.origin, Role::Sink, &self.kind, &e)),
        }
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, _ctx: &Context) -> Result<Written> {
        let built = convert::built_to_api(image);
        let host = api::BlobsObj_TO::from_value(
            convert::HostBlobs {
                dir: blobs.dir().to_path_buf(),
            },
            abi_stable::sabi_trait::prelude::TD_Opaque,
        );
        match self.obj.write(built, host) {
            RResult::ROk(dest) => Ok(Written::to(dest.to_string())),
            RResult::RErr(e) => Err(call_error(&self.origin, Role::Sink, &self.kind, &e)),
        }
    }
}
