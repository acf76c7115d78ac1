//! Pipeline files: a whole export (source, transforms, sinks, image and
//! encoding settings, plugin libraries) in TOML, so a distribution ships its
//! exporter as a file plus plugins.
//!
//! ```toml
//! plugins = ["libtreeport_example_os_release.so"]   # relative to this file
//!
//! [source]
//! selector = "mmdebstrap:bookworm"
//! options = { variant = "minbase", include = ["ca-certificates", "curl"] }
//!
//! [[transform]]
//! selector = "os-release"
//!
//! [[sink]]
//! selector = "oci:out:bookworm"
//!
//! [image]
//! label = ["org.opencontainers.image.source=https://example.org/distro"]
//! cmd = "/bin/bash"
//!
//! [encoding]
//! compression = "zstd"
//! timestamp = 1700000000
//! ```
//!
//! A malformed file is a usage error naming the file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use treeport_core::Error;
use treeport_core::plugin::Options;

use crate::args::{EncodingFlags, ImageFlags};

/// A value that is one string or a list of them.
#[derive(Deserialize, Debug, Clone)]
#[serde(
    untagged,
    expecting = "a string, an integer, a boolean or an array of strings"
)]
pub enum OneOrMany {
    One(String),
    Bool(bool),
    Int(i64),
    Many(Vec<String>),
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct StageToml {
    selector: toml::Spanned<String>,
    #[serde(default)]
    options: BTreeMap<String, OneOrMany>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    plugins: Vec<String>,
    source: Option<StageToml>,
    #[serde(default)]
    transform: Vec<StageToml>,
    #[serde(default)]
    sink: Vec<StageToml>,
    #[serde(default)]
    image: ImageFlags,
    #[serde(default)]
    encoding: EncodingFlags,
}

/// One stage: its selector, options, and where it was written.
#[derive(Debug, Clone)]
pub struct StageSpec {
    pub selector: String,
    pub options: Options,
    /// `pipeline FILE: line N: KEY` when it came from a file.
    pub origin: Option<String>,
}

impl StageSpec {
    /// A stage given on the command line.
    pub fn flag(selector: &str) -> Self {
        StageSpec {
            selector: selector.to_string(),
            options: Options::new(),
            origin: None,
        }
    }

    /// Blames an error on where the stage was written.
    pub fn blame(&self, e: anyhow::Error) -> anyhow::Error {
        match &self.origin {
            Some(o) => Error::usage(format!("{o}: {}", crate::one_line(&e))).into(),
            None => e,
        }
    }
}

/// A pipeline, from a file, flags, or both.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    pub plugins: Vec<PathBuf>,
    pub source: Option<StageSpec>,
    pub transforms: Vec<StageSpec>,
    pub sinks: Vec<StageSpec>,
    pub image: ImageFlags,
    pub encoding: EncodingFlags,
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

/// The key written on the line of `offset`, when there is one.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('#')).then(|| key.to_string())
}

fn options_of(map: &BTreeMap<String, OneOrMany>) -> Options {
    let mut out = Options::new();
    for (k, v) in map {
        match v {
            OneOrMany::One(s) => out.push(k.clone(), s.clone()),
            OneOrMany::Bool(b) => out.push(k.clone(), b.to_string()),
            OneOrMany::Int(i) => out.push(k.clone(), i.to_string()),
            OneOrMany::Many(list) => {
                for s in list {
                    out.push(k.clone(), s.clone());
                }
            }
        }
    }
    out
}

/// Reads a pipeline file.
pub fn load(file: &Path) -> anyhow::Result<Plan> {
    let what = format!("pipeline {}", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| Error::usage(format!("{what}: {e}")))?;
    let parsed: FileToml = toml::from_str(&text).map_err(|e| {
        let place = match e.span() {
            Some(span) => {
                let (line, col) = line_col(&text, span.start);
                match key_at(&text, span.start) {
                    Some(key) => format!("line {line}, column {col}, key '{key}'"),
                    None => format!("line {line}, column {col}"),
                }
            }
            None => "somewhere".to_string(),
        };
        Error::usage(format!("{what}: {place}: {}", e.message().trim()))
    })?;
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stage = |s: &StageToml, key: String| {
        let (line, _) = line_col(&text, s.selector.span().start);
        StageSpec {
            selector: s.selector.get_ref().clone(),
            options: options_of(&s.options),
            origin: Some(format!("{what}: line {line}, key '{key}'")),
        }
    };
    Ok(Plan {
        plugins: parsed.plugins.iter().map(|p| dir.join(p)).collect(),
        source: parsed
            .source
            .as_ref()
            .map(|s| stage(s, "source.selector".into())),
        transforms: parsed
            .transform
            .iter()
            .enumerate()
            .map(|(i, t)| stage(t, format!("transform[{i}].selector")))
            .collect(),
        sinks: parsed
            .sink
            .iter()
            .enumerate()
            .map(|(i, t)| stage(t, format!("sink[{i}].selector")))
            .collect(),
        image: parsed.image,
        encoding: parsed.encoding,
    })
}

impl Plan {
    /// Applies command-line flags over the file: a flag given replaces the
    /// file's value; list flags (`--sink`, `--transform`) replace the file's
    /// list; image flags are added after the file's, so they win.
    /// `--max-layers` and `--previous` configure the `chunk` transform,
    /// overriding its own options; without one they are a usage error.
    fn apply_chunk_flags(&mut self) -> anyhow::Result<()> {
        let flags = [
            (
                "max-layers",
                self.encoding.max_layers.map(|n| n.to_string()),
            ),
            ("previous", self.encoding.previous.clone()),
        ];
        for (key, value) in flags {
            let Some(value) = value else { continue };
            let chunk = self
                .transforms
                .iter_mut()
                .filter(|t| t.selector == "chunk" || t.selector.starts_with("chunk:"))
                .last()
                .ok_or_else(|| {
                    Error::usage(format!(
                        "--{key} configures the chunk transform: add --transform chunk"
                    ))
                })?;
            chunk.options.push(key, value);
        }
        Ok(())
    }

    /// Gives `--sink-opt KEY=VALUE` options to every sink.
    pub fn with_sink_opts(mut self, sink_opts: &[String]) -> anyhow::Result<Plan> {
        if !sink_opts.is_empty() && self.sinks.is_empty() {
            return Err(Error::usage("--sink-opt without a sink").into());
        }
        for spec in &mut self.sinks {
            for pair in sink_opts {
                spec.options.push_pair(pair)?;
            }
        }
        Ok(self)
    }

    pub fn override_with(
        mut self,
        source: Option<&str>,
        source_opts: &[String],
        transforms: &[String],
        sinks: &[String],
        image: &ImageFlags,
        encoding: &EncodingFlags,
    ) -> anyhow::Result<Plan> {
        if let Some(s) = source {
            self.source = Some(StageSpec::flag(s));
        }
        if !source_opts.is_empty() {
            let spec = self
                .source
                .as_mut()
                .ok_or_else(|| Error::usage("--source-opt without a source"))?;
            for pair in source_opts {
                spec.options.push_pair(pair)?;
            }
        }
        if !transforms.is_empty() {
            self.transforms = transforms.iter().map(|t| StageSpec::flag(t)).collect();
        }
        if !sinks.is_empty() {
            self.sinks = sinks.iter().map(|t| StageSpec::flag(t)).collect();
        }
        let i = &mut self.image;
        i.label.extend(image.label.iter().cloned());
        i.annotation.extend(image.annotation.iter().cloned());
        i.env.extend(image.env.iter().cloned());
        i.expose.extend(image.expose.iter().cloned());
        i.volume.extend(image.volume.iter().cloned());
        for (mine, theirs) in [
            (&mut i.entrypoint, &image.entrypoint),
            (&mut i.cmd, &image.cmd),
            (&mut i.workdir, &image.workdir),
            (&mut i.user, &image.user),
            (&mut i.arch, &image.arch),
            (&mut i.os, &image.os),
        ] {
            if theirs.is_some() {
                mine.clone_from(theirs);
            }
        }
        let e = &mut self.encoding;
        if encoding.compression.is_some() {
            e.compression = encoding.compression;
        }
        if encoding.compression_level.is_some() {
            e.compression_level = encoding.compression_level;
        }
        if encoding.timestamp.is_some() {
            e.timestamp = encoding.timestamp;
        }
        if encoding.threads.is_some() {
            e.threads = encoding.threads;
        }
        if encoding.cache.is_some() {
            e.cache.clone_from(&encoding.cache);
        }
        if encoding.max_layers.is_some() {
            e.max_layers = encoding.max_layers;
        }
        if encoding.previous.is_some() {
            e.previous.clone_from(&encoding.previous);
        }
        e.prune.extend(encoding.prune.iter().cloned());
        if encoding.platform.is_some() {
            e.platform.clone_from(&encoding.platform);
        }
        self.apply_chunk_flags()?;
        if self.source.is_none() {
            return Err(Error::usage(
                "no source: give --source or a [source] in the pipeline file",
            )
            .into());
        }
        if self.sinks.is_empty() {
            return Err(
                Error::usage("no sink: give --sink or a [[sink]] in the pipeline file").into(),
            );
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("a temporary directory can be made");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).expect("the test writes its fixture");
        (dir, path)
    }

    #[test]
    fn a_full_file_parses() {
        let (_d, path) = write(
            "plugins = [\"libx.so\"]\n[source]\nselector = \"mmdebstrap:bookworm\"\noptions = { variant = \"minbase\", include = [\"a\", \"b\"] }\n[[transform]]\nselector = \"os-release\"\n[[sink]]\nselector = \"oci:out\"\n[image]\nlabel = [\"a=b\"]\ncmd = \"/bin/sh\"\n[encoding]\ncompression = \"zstd\"\ntimestamp = 5\n",
        );
        let plan = load(&path).expect("the test fixture is valid");
        let source = plan.source.expect("the test fixture is valid");
        assert_eq!(source.selector, "mmdebstrap:bookworm");
        assert_eq!(
            source.options.get_all("include").collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(
            source
                .origin
                .expect("the test fixture is valid")
                .contains("line 3")
        );
        assert_eq!(plan.sinks[0].selector, "oci:out");
        assert_eq!(plan.image.label, ["a=b"]);
        assert_eq!(plan.encoding.timestamp, Some(5));
        assert!(plan.plugins[0].ends_with("libx.so"));
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let (_d, path) = write("[source]\nselector = \"rootfs:/\"\ncolour = \"blue\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(
            e.contains("line 3") && e.contains("colour") && e.contains("p.toml"),
            "{e}"
        );
        let (_d, path) = write("[encoding]\ntimestamp = \"soon\"\n");
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("key 'timestamp'"), "{e}");
        let (_d, path) = write("[source\n");
        assert!(load(&path).unwrap_err().to_string().contains("line 1"));
    }
}
