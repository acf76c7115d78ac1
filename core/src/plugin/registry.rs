//! The plugin registry: built-ins collected with `inventory`, plus any loaded
//! at run time, looked up by role and kind.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use treeport_plugin_api::{OptionKind, OptionSpec};

use super::{ImageReader, Options, Selector, Sink, Source, Transform};
use crate::error::{Result, Role};

/// A constructor of `T` from a selector and its options, shareable.
pub type Make<T> = Arc<dyn Fn(&Selector, &Options) -> Result<Box<T>> + Send + Sync>;
/// A built-in's constructor of `T`.
pub type MakeFn<T> = fn(&Selector, &Options) -> Result<Box<T>>;

pub type SourceFactory = Make<dyn Source>;
pub type TransformFactory = Make<dyn Transform>;
pub type SinkFactory = Make<dyn Sink>;
pub type ReaderFactory = Make<dyn ImageReader>;

/// How a plugin's stages are made.
#[derive(Clone)]
pub enum Factory {
    Source(SourceFactory),
    Transform(TransformFactory),
    /// A sink, and a reader for the same kind of reference if it can be read back.
    Sink {
        sink: SinkFactory,
        reader: Option<ReaderFactory>,
    },
}

impl Factory {
    #[must_use]
    pub fn role(&self) -> Role {
        match self {
            Factory::Source(_) => Role::Source,
            Factory::Transform(_) => Role::Transform,
            Factory::Sink { .. } => Role::Sink,
        }
    }
}

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::BuiltIn => f.write_str("built-in"),
            Origin::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What `treeport plugins list` shows about a plugin.
#[derive(Clone, Debug)]
pub struct PluginInfo {
    pub role: Role,
    pub kind: String,
    pub description: String,
    /// The selector's form, e.g. `oci:DIR[:TAG]`.
    pub usage: String,
    /// The options it takes, each with its type and a line of help.
    pub options: Vec<OptionInfo>,
    pub origin: Origin,
    pub version: String,
}

/// One option a plugin takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionInfo {
    pub name: String,
    pub kind: OptionKind,
    pub help: String,
}

/// A plugin: its description and its factory.
#[derive(Clone)]
pub struct Plugin {
    pub info: PluginInfo,
    pub factory: Factory,
}

/// A built-in plugin's static descriptor, submitted with `inventory::submit!`.
pub struct Builtin {
    pub kind: &'static str,
    pub description: &'static str,
    pub usage: &'static str,
    /// Its options (the same declaration loaded plugins make).
    pub options: &'static [OptionSpec],
    pub factory: BuiltinFactory,
}

/// Constructors of a built-in plugin.
pub enum BuiltinFactory {
    Source(MakeFn<dyn Source>),
    Transform(MakeFn<dyn Transform>),
    Sink(MakeFn<dyn Sink>, Option<MakeFn<dyn ImageReader>>),
}

inventory::collect!(Builtin);

impl Builtin {
    /// The plugin this descriptor describes.
    #[must_use]
    pub fn to_plugin(&self) -> Plugin {
        let factory = match self.factory {
            BuiltinFactory::Source(f) => Factory::Source(Arc::new(f)),
            BuiltinFactory::Transform(f) => Factory::Transform(Arc::new(f)),
            BuiltinFactory::Sink(f, r) => Factory::Sink {
                sink: Arc::new(f),
                reader: r.map(|r| Arc::new(r) as ReaderFactory),
            },
        };
        Plugin {
            info: PluginInfo {
                role: factory.role(),
                kind: self.kind.to_string(),
                description: self.description.to_string(),
                usage: self.usage.to_string(),
                options: option_infos(self.options),
                origin: Origin::BuiltIn,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            factory,
        }
    }
}

/// Built-ins declare their options with the interface's own type.
#[must_use]
pub fn option_infos(specs: &[OptionSpec]) -> Vec<OptionInfo> {
    specs
        .iter()
        .map(|s| OptionInfo {
            name: s.name.to_string(),
            kind: s.kind,
            help: s.help.to_string(),
        })
        .collect()
}
