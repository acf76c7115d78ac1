//! Transform `config`: the image's labels, annotations, environment and
//! runtime settings. The image flags of `treeport export` (`--label`,
//! `--env`, ...) are options of this transform; it can also be given as
//! `--transform config:label=K=V,env=K=V`.

use treeport_core::error::{Error, Result};
use treeport_core::image::{ImageDraft, check_os, parse_architecture};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, OptionKind, OptionSpec, Options, Selector, Transform,
};
use treeport_core::progress::Context;

treeport_core::inventory::submit! {
    Builtin {
        kind: "config",
        description: "image labels, annotations, environment, entrypoint and platform (the image flags)",
        usage: "config[:KEY=VALUE,...]",
        options: OPTIONS,
        factory: BuiltinFactory::Transform(ConfigTransform::build),
    }
}

/// Options, with the help shown by `treeport plugins list`.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "label",
        OptionKind::List,
        "K=V: a label in the image config; K- removes one (repeatable)",
    ),
    OptionSpec::new(
        "annotation",
        OptionKind::List,
        "K=V: an annotation on the manifest; K- removes one (repeatable)",
    ),
    OptionSpec::new(
        "env",
        OptionKind::List,
        "K=V: an environment variable; K- removes one (repeatable)",
    ),
    OptionSpec::new(
        "expose",
        OptionKind::List,
        "PORT[/PROTO]: an exposed port (repeatable)",
    ),
    OptionSpec::new(
        "volume",
        OptionKind::List,
        "PATH: a volume mount point (repeatable)",
    ),
    OptionSpec::new(
        "entrypoint",
        OptionKind::String,
        "a JSON array, or words split on whitespace; empty clears",
    ),
    OptionSpec::new(
        "cmd",
        OptionKind::String,
        "a JSON array, or words split on whitespace; empty clears",
    ),
    OptionSpec::new("workdir", OptionKind::String, "PATH: the working directory"),
    OptionSpec::new(
        "user",
        OptionKind::String,
        "USER[:GROUP]: the user the container runs as",
    ),
    OptionSpec::new(
        "arch",
        OptionKind::String,
        "ARCH[/VARIANT]: the image architecture (Go or Debian names)",
    ),
    OptionSpec::new("os", OptionKind::String, "OS: the image operating system"),
    OptionSpec::new("author", OptionKind::String, "TEXT: the image author"),
    OptionSpec::new(
        "stop-signal",
        OptionKind::String,
        "SIGNAL: the signal that stops the container",
    ),
];

/// The validated settings of one `config` transform.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigTransform {
    options: Vec<(String, String)>,
}

impl ConfigTransform {
    /// Checks every option up front, so bad input fails before any work.
    pub fn new(options: &Options) -> Result<Self> {
        let keys: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        options.check_keys("transform config", &keys)?;
        let t = ConfigTransform {
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut scratch = ImageDraft::new(treeport_core::tree::Tree::new());
        t.apply_to(&mut scratch)?;
        Ok(t)
    }

    fn build(_selector: &Selector, options: &Options) -> Result<Box<dyn Transform>> {
        // The registry has merged `config:KEY=VALUE` into the options.
        Ok(Box::new(ConfigTransform::new(options)?))
    }

    fn apply_to(&self, image: &mut ImageDraft) -> Result<()> {
        let c = &mut image.config;
        for (key, value) in &self.options {
            let value = value.as_str();
            match key.as_str() {
                // `KEY-` removes (chunkah's and kubectl's spelling).
                "label" => {
                    if let Some(k) = removal(value) {
                        c.labels.remove(k);
                    } else {
                        let (k, v) = pair("--label", value)?;
                        c.labels.insert(k.to_string(), v.to_string());
                    }
                }
                "annotation" => {
                    if let Some(k) = removal(value) {
                        image.annotations.remove(k);
                    } else {
                        let (k, v) = pair("--annotation", value)?;
                        image.annotations.insert(k.to_string(), v.to_string());
                    }
                }
                "env" => {
                    if let Some(k) = removal(value) {
                        c.remove_env(k);
                    } else {
                        let (k, v) = pair("--env", value)?;
                        c.set_env(k, v);
                    }
                }
                "expose" => {
                    c.exposed_ports.insert(port(value)?);
                }
                "volume" => {
                    c.volumes.insert(absolute("--volume", value)?.to_string());
                }
                "entrypoint" => c.entrypoint = command(value)?,
                "cmd" => c.cmd = command(value)?,
                "workdir" => c.working_dir = Some(absolute("--workdir", value)?.to_string()),
                "user" => c.user = Some(nonempty("--user", value)?.to_string()),
                "arch" => {
                    let (arch, variant) = parse_architecture(nonempty("--arch", value)?)?;
                    c.architecture = arch;
                    c.variant = variant;
                }
                "os" => {
                    check_os(value)?;
                    c.os = value.to_string();
                }
                "author" => c.author = Some(value.to_string()),
                "stop-signal" => {
                    c.stop_signal = Some(nonempty("--stop-signal", value)?.to_string());
                }
                other => {
                    return Err(Error::usage(format!(
                        "transform config has no option '{other}'"
                    )));
                }
            }
        }
        Ok(())
    }
}

impl Transform for ConfigTransform {
    fn apply(&mut self, image: &mut ImageDraft, _ctx: &Context) -> Result<()> {
        self.apply_to(image)
    }
}

/// `KEY-` (no `=`): the key to remove.
fn removal(value: &str) -> Option<&str> {
    if value.contains('=') {
        return None;
    }
    value.strip_suffix('-').filter(|k| !k.is_empty())
}

fn pair<'a>(flag: &str, value: &'a str) -> Result<(&'a str, &'a str)> {
    match value.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(Error::usage(format!(
            "{flag} '{value}': expected KEY=VALUE"
        ))),
    }
}

fn nonempty<'a>(flag: &str, value: &'a str) -> Result<&'a str> {
    if value.is_empty() {
        Err(Error::usage(format!("{flag} needs a value")))
    } else {
        Ok(value)
    }
}

fn absolute<'a>(flag: &str, value: &'a str) -> Result<&'a str> {
    if value.starts_with('/') {
        Ok(value)
    } else {
        Err(Error::usage(format!(
            "{flag} '{value}': expected an absolute path"
        )))
    }
}

fn port(value: &str) -> Result<String> {
    let (number, proto) = value.split_once('/').unwrap_or((value, "tcp"));
    let ok_number = number.parse::<u16>().is_ok_and(|n| n > 0);
    let ok_proto = matches!(proto, "tcp" | "udp" | "sctp");
    if ok_number && ok_proto {
        Ok(format!("{number}/{proto}"))
    } else {
        Err(Error::usage(format!(
            "--expose '{value}': expected PORT[/tcp|udp|sctp] with PORT from 1 to 65535"
        )))
    }
}

fn command(value: &str) -> Result<Option<Vec<String>>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(value)
            .map(Some)
            .map_err(|_| Error::usage(format!("'{value}' is not a JSON array of strings")));
    }
    Ok(Some(value.split_whitespace().map(str::to_string).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use treeport_core::tree::Tree;

    fn apply(list: &str) -> Result<ImageDraft> {
        let mut draft = ImageDraft::new(Tree::new());
        let mut t = ConfigTransform::new(&Options::parse_list(list)?)?;
        t.apply(&mut draft, &Context::quiet())?;
        Ok(draft)
    }

    #[test]
    fn flags_land_in_the_config() {
        let d = apply("label=a=b,env=PATH=/bin,env=PATH=/usr/bin,expose=80,expose=53/udp,volume=/data,workdir=/srv,user=app,arch=aarch64,annotation=x=y").expect("the test fixture is valid");
        assert_eq!(d.config.labels["a"], "b");
        assert_eq!(d.config.env, ["PATH=/usr/bin"]);
        assert_eq!(
            d.config.exposed_ports.iter().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
        assert_eq!(d.config.architecture, "arm64");
        let armhf = apply("arch=armhf").expect("the test fixture is valid");
        assert_eq!(
            (
                armhf.config.architecture.as_str(),
                armhf.config.variant.as_deref()
            ),
            ("arm", Some("v7"))
        );
        for bad in ["arch=sparc99", "arch=amd64/x", "os=plan10"] {
            let err = apply(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
        }
        assert_eq!(d.config.working_dir.as_deref(), Some("/srv"));
        assert_eq!(d.annotations["x"], "y");
    }

    #[test]
    fn commands_take_json_or_words() {
        assert_eq!(
            command(r#"["/bin/sh", "-c", "echo \"hi\""]"#)
                .expect("the test fixture is valid")
                .expect("the test fixture is valid"),
            ["/bin/sh", "-c", "echo \"hi\""]
        );
        assert_eq!(
            command("/bin/bash -l")
                .expect("the test fixture is valid")
                .expect("the test fixture is valid"),
            ["/bin/bash", "-l"]
        );
        assert_eq!(command("").expect("the test fixture is valid"), None);
        assert!(command("[\"open").is_err());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            "label=novalue",
            "expose=0",
            "expose=80/icmp",
            "volume=relative",
            "workdir=x",
            "colour=blue",
        ] {
            let err = apply(bad).unwrap_err();
            assert!(err.is_usage(), "{bad}: {err}");
        }
    }
}
