//! The registry: every plugin a run knows (built-ins collected with
//! `inventory`, plus any loaded at run time), looked up by role and kind,
//! and the one place stages are made: options checked against what a plugin
//! declares, images flattened when a source names one.

use crate::error::{Error, Result, Role};
use crate::plugin::{
    Builtin, Factory, ImageReader, OptionInfo, OptionKind, Options, Plugin, Selector, Sink, Source,
    Transform,
};

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

    /// The sinks whose images can be read back: each kind is also a source
    /// that flattens an image (`oci:`, `docker://`...), unless a source
    /// plugin of that kind exists.
    pub fn image_sources(&self) -> impl Iterator<Item = &Plugin> {
        self.image_kinds()
            .filter(|p| self.find(Role::Source, &p.info.kind).is_none())
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
                hint: match role {
                    Role::Source => path_hint(Meant::Source, selector),
                    Role::Sink => path_hint(Meant::Sink, selector),
                    Role::Transform => String::new(),
                },
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
        check_options(&stage(plugin), &plugin.info.options, options)?;
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
        check_options(&stage(plugin), &plugin.info.options, &all)?;
        match &plugin.factory {
            Factory::Transform(f) => f(selector, &all),
            _ => unreachable!("lookup filters by role"),
        }
    }

    /// Builds a sink from its selector and options.
    pub fn sink(&self, selector: &Selector, options: &Options) -> Result<Box<dyn Sink>> {
        let plugin = self.lookup(Role::Sink, selector)?;
        check_options(&stage(plugin), &plugin.info.options, options)?;
        match &plugin.factory {
            Factory::Sink { sink, .. } => sink(selector, options),
            _ => unreachable!("lookup filters by role"),
        }
    }

    /// Opens an image reference for reading (the same kinds as sinks).
    pub fn reader(&self, selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        // An image is read: an unknown kind is named as one, among the
        // kinds that can be read, with what a bare path would be.
        let plugin = self.lookup(Role::Sink, selector).map_err(|e| match e {
            Error::UnknownKind { kind, .. } => {
                let mut valid: Vec<&str> =
                    self.image_kinds().map(|p| p.info.kind.as_str()).collect();
                valid.sort_unstable();
                Error::UnknownKind {
                    role: Role::Source,
                    kind,
                    valid: valid.join(", "),
                    hint: path_hint(Meant::Image, selector),
                }
            }
            e => e,
        })?;
        match &plugin.factory {
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

/// Checks an option list against what a plugin declares: every key known,
/// integers and booleans well formed. The message names the stage, the key
/// and the valid keys.
pub fn check_options(stage: &str, specs: &[OptionInfo], options: &Options) -> Result<()> {
    for (key, value) in options.iter() {
        let Some(spec) = specs.iter().find(|s| s.name == key) else {
            let valid = if specs.is_empty() {
                "it takes none".to_string()
            } else {
                format!(
                    "valid: {}",
                    specs
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return Err(Error::usage(format!(
                "{stage} has no option '{key}' ({valid})"
            )));
        };
        let ok = match spec.kind {
            OptionKind::Integer => value.parse::<i64>().is_ok(),
            OptionKind::Boolean => matches!(value, "true" | "false"),
            _ => true,
        };
        if !ok {
            let expected = match spec.kind {
                OptionKind::Integer => "an integer",
                _ => "true or false",
            };
            // A bare KEY reads as KEY=true; say what it lacks instead.
            if value == "true" {
                return Err(Error::usage(format!(
                    "{stage}: option {key} needs a value: {key}=VALUE, {expected}"
                )));
            }
            return Err(Error::usage(format!(
                "{stage}: option {key}={value}: expected {expected}"
            )));
        }
    }
    Ok(())
}

/// What a bare selector (no colon) stood for where it was refused.
#[derive(Clone, Copy)]
enum Meant {
    /// A source: a tree or an image.
    Source,
    /// A sink: where an image is written.
    Sink,
    /// An image to read (`inspect`, `pull`...).
    Image,
}

/// For a bare selector that names an existing path (`--source tree`,
/// `inspect DIR`), the selector the user probably meant.
fn path_hint(meant: Meant, selector: &Selector) -> String {
    let raw = selector.as_str();
    if raw.contains(':') {
        return String::new();
    }
    let path = std::path::Path::new(raw);
    let Ok(m) = std::fs::metadata(path) else {
        return match meant {
            Meant::Sink => format!("; to write an OCI layout at '{raw}', write oci:{raw}"),
            _ => String::new(),
        };
    };
    match meant {
        Meant::Sink => format!("; to write an OCI layout at '{raw}', write oci:{raw}"),
        _ if m.is_dir() && path.join("oci-layout").exists() => {
            format!("; for the OCI layout '{raw}', write oci:{raw}")
        }
        Meant::Source if m.is_dir() => format!("; for the directory '{raw}', write rootfs:{raw}"),
        Meant::Image if m.is_dir() => format!("; '{raw}' is a directory, not an OCI layout"),
        Meant::Source => format!(
            "; for the file '{raw}', write tar:{raw} (oci-archive:{raw} or docker-archive:{raw} for an image archive)"
        ),
        Meant::Image => {
            format!("; for the archive '{raw}', write oci-archive:{raw} or docker-archive:{raw}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{OptionSpec, option_infos};

    #[test]
    fn options_are_checked_against_their_declaration() {
        let specs = option_infos(&[
            OptionSpec::new("n", OptionKind::Integer, "a number"),
            OptionSpec::new("on", OptionKind::Boolean, "a switch"),
            OptionSpec::new("tag", OptionKind::List, "tags"),
        ]);
        let ok = Options::parse_list("n=3,on,tag=a,tag=b").expect("the test literal parses");
        assert!(check_options("transform x", &specs, &ok).is_ok());
        let unknown = check_options(
            "transform x",
            &specs,
            &Options::parse_list("m=1").expect("the test literal parses"),
        )
        .unwrap_err();
        assert!(unknown.is_usage());
        assert_eq!(
            unknown.to_string(),
            "transform x has no option 'm' (valid: n, on, tag)"
        );
        for bad in ["n=three", "on=yes"] {
            let e = check_options(
                "transform x",
                &specs,
                &Options::parse_list(bad).expect("the test literal parses"),
            )
            .unwrap_err();
            assert!(e.is_usage() && e.to_string().contains(bad), "{e}");
        }
    }
}
