//! The plugin registry: built-ins collected with `inventory`, plus any loaded
//! at run time, looked up by role and kind.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

pub use treeport_plugin_api::{OptionKind, OptionSpec};

use super::{ImageReader, Options, Selector, Sink, Source, Transform};
use crate::error::{Error, Result, Role};

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
    fn to_plugin(&self) -> Plugin {
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
                options: crate::abi::option_infos(self.options),
                origin: Origin::BuiltIn,
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            factory,
        }
    }
}

/// How errors name a plugin's stage: `transform 'chunk'`.
fn stage(plugin: &Plugin) -> String {
    format!("{} '{}'", plugin.info.role, plugin.info.kind)
}

/// Every plugin known to a run.
#[derive(Clone, Default)]
pub struct Registry {
    plugins: Vec<Plugin>,
}

impl Registry {
    /// An empty registry.
    #[must_use]
    pub fn empty() -> Self {
        Self::default()
    }

    /// The plugins linked into this program.
    ///
    /// # Panics
    /// Two built-ins of one role and kind: a build mistake, not a user error.
    #[must_use]
    pub fn builtin() -> Self {
        let mut registry = Registry::empty();
        for b in inventory::iter::<Builtin> {
            registry
                .add(b.to_plugin())
                .expect("built-in plugins have distinct kinds");
        }
        registry
    }

    /// Adds a plugin.
    ///
    /// # Errors
    /// A plugin of the same role and kind is already registered.
    pub fn add(&mut self, plugin: Plugin) -> Result<()> {
        if let Some(existing) = self.find(plugin.info.role, &plugin.info.kind) {
            return Err(Error::invalid(format!(
                "{} kind '{}' is already provided by {}",
                plugin.info.role, plugin.info.kind, existing.info.origin
            )));
        }
        self.plugins.push(plugin);
        self.plugins
            .sort_by(|a, b| (a.info.role, &a.info.kind).cmp(&(b.info.role, &b.info.kind)));
        Ok(())
    }

    /// Every plugin, sorted by role then kind.
    #[must_use]
    pub fn plugins(&self) -> &[Plugin] {
        &self.plugins
    }

    /// The plugin of `role` and `kind`.
    #[must_use]
    pub fn find(&self, role: Role, kind: &str) -> Option<&Plugin> {
        self.plugins
            .iter()
            .find(|p| p.info.role == role && p.info.kind == kind)
    }

    /// The kinds of image references a reader can open (as sources, images
    /// are flattened).
    fn image_kinds(&self) -> impl Iterator<Item = &Plugin> {
        self.plugins.iter().filter(|p| {
            matches!(
                p.factory,
                Factory::Sink {
                    reader: Some(_),
                    ..
                }
            )
        })
    }

    fn lookup(&self, role: Role, selector: &Selector) -> Result<&Plugin> {
        self.find(role, selector.kind()).ok_or_else(|| {
            let mut valid: Vec<&str> = self
                .plugins
                .iter()
                .filter(|p| p.info.role == role)
                .map(|p| p.info.kind.as_str())
                .collect();
            if role == Role::Source {
                valid.extend(self.image_kinds().map(|p| p.info.kind.as_str()));
                valid.sort_unstable();
                valid.dedup();
            }
            Error::UnknownKind {
                role,
                kind: selector.kind().to_string(),
                valid: valid.join(", "),
            }
        })
    }

    /// True when `kind` names images rather than trees: a source of that
    /// kind flattens an image (and takes registry options and `platform`).
    #[must_use]
    pub fn is_image_kind(&self, kind: &str) -> bool {
        self.find(Role::Source, kind).is_none() && self.image_kinds().any(|p| p.info.kind == kind)
    }

    /// Builds a source from its selector and options. A kind no source
    /// provides but a reader does (`oci:`, `docker://`...) is an image,
    /// flattened into a tree.
    pub fn source(&self, selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        if self.is_image_kind(selector.kind()) {
            let (platform, rest) = crate::flatten::ImageSource::split_options(options)?;
            let reader = self.reader(selector, &rest)?;
            return Ok(Box::new(crate::flatten::ImageSource::new(
                reader,
                selector.clone(),
                platform,
            )));
        }
        let plugin = self.lookup(Role::Source, selector)?;
        crate::abi::check_options(&stage(plugin), &plugin.info.options, options)?;
        match &plugin.factory {
            Factory::Source(f) => f(selector, options),
            _ => unreachable!("lookup filters by role"),
        }
    }

    /// Builds a transform from its selector and options. What follows a
    /// transform's kind is its options (`KIND:KEY=VALUE,...`), given before
    /// `options`; both are checked against what the plugin declares.
    pub fn transform(&self, selector: &Selector, options: &Options) -> Result<Box<dyn Transform>> {
        let plugin = self.lookup(Role::Transform, selector)?;
        let mut all = Options::parse_list(selector.rest())?;
        all.extend(options);
        crate::abi::check_options(&stage(plugin), &plugin.info.options, &all)?;
        match &plugin.factory {
            Factory::Transform(f) => f(selector, &all),
            _ => unreachable!("lookup filters by role"),
        }
    }

    /// Builds a sink from its selector and options.
    pub fn sink(&self, selector: &Selector, options: &Options) -> Result<Box<dyn Sink>> {
        let plugin = self.lookup(Role::Sink, selector)?;
        crate::abi::check_options(&stage(plugin), &plugin.info.options, options)?;
        match &plugin.factory {
            Factory::Sink { sink, .. } => sink(selector, options),
            _ => unreachable!("lookup filters by role"),
        }
    }

    /// Opens an image reference for reading (the same kinds as sinks).
    pub fn reader(&self, selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        match &self.lookup(Role::Sink, selector)?.factory {
            Factory::Sink {
                reader: Some(reader),
                ..
            } => reader(selector, options),
            _ => Err(Error::usage(format!(
                "'{}' images cannot be read back",
                selector.kind()
            ))),
        }
    }
}
