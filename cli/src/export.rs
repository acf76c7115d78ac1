//! `treeport export`: build a pipeline from selectors and flags and run it.

use serde::Serialize;
use treeport_core::Error;
use treeport_core::layer::Compression;
use treeport_core::pipeline::{Outcome, Pipeline, Settings, Stage};
use treeport_core::plugin::{Options, Registry, Selector, Transform};

use crate::args::{CompressionName, EncodingFlags, ExportArgs, ImageFlags, RegistryFlags};
use crate::output::{Output, human_bytes};
use crate::registry_cmd::plugin_options;

/// Runs `treeport export`.
pub fn run(
    args: &ExportArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    run_pipeline(
        registry,
        flags,
        &args.source,
        &args.source_opts,
        &args.transforms,
        &args.sinks,
        &args.image,
        &args.encoding,
        out,
    )
}

/// Builds the pipeline from selectors and flags, runs it and reports.
#[allow(clippy::too_many_arguments)]
pub fn run_pipeline(
    registry: &Registry,
    flags: &RegistryFlags,
    source: &str,
    source_opts: &[String],
    transform_selectors: &[String],
    sink_selectors: &[String],
    image: &ImageFlags,
    encoding: &EncodingFlags,
    out: Output,
) -> anyhow::Result<()> {
    let settings = settings(encoding)?;
    let source_selector = Selector::parse(source)?;
    let mut source_options = Options::new();
    for pair in source_opts {
        source_options.push_pair(pair)?;
    }
    let source = Stage::new(
        source_selector.clone(),
        registry.source(&source_selector, &source_options)?,
    );
    let transforms = transforms(registry, transform_selectors, image)?;
    let mut sinks = Vec::with_capacity(sink_selectors.len());
    for raw in sink_selectors {
        let selector = Selector::parse(raw)?;
        let options = plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
        sinks.push(Stage::new(
            selector.clone(),
            registry.sink(&selector, &options)?,
        ));
    }
    let ctx = out.context();
    let ctx = match encoding.threads {
        Some(n) => ctx.with_threads(n),
        None => ctx,
    };
    let outcome = Pipeline {
        source,
        transforms,
        sinks,
        settings,
    }
    .run(&ctx)?;
    report(&outcome, out)
}

/// The transforms named on the command line, then `config` for the image flags.
pub fn transforms(
    registry: &Registry,
    selectors: &[String],
    image: &ImageFlags,
) -> anyhow::Result<Vec<Stage<dyn Transform>>> {
    let mut out = Vec::with_capacity(selectors.len() + 1);
    for raw in selectors {
        let selector = Selector::parse(raw)?;
        out.push(Stage::new(
            selector.clone(),
            registry.transform(&selector, &Options::new())?,
        ));
    }
    let flags = image.to_options();
    if !flags.is_empty() {
        let selector = Selector::parse("config")?;
        out.push(Stage::new(
            selector.clone(),
            registry.transform(&selector, &flags)?,
        ));
    }
    Ok(out)
}

/// Encoding settings from the flags and `SOURCE_DATE_EPOCH`.
pub fn settings(flags: &EncodingFlags) -> anyhow::Result<Settings> {
    let name = match flags.compression {
        Some(CompressionName::Gzip) | None => "gzip",
        Some(CompressionName::Zstd) => "zstd",
        Some(CompressionName::None) => "none",
    };
    let compression = Compression::parse(name, flags.compression_level)?;
    let timestamp = match flags.timestamp {
        Some(t) => Some(t),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(text) if !text.is_empty() => Some(text.trim().parse::<i64>().map_err(|_| {
                Error::usage(format!(
                    "SOURCE_DATE_EPOCH='{text}' is not a number of seconds since the epoch"
                ))
            })?),
            _ => None,
        },
    };
    Ok(Settings {
        compression,
        timestamp,
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LayerReport {
    digest: String,
    diff_id: String,
    size: u64,
    uncompressed_size: u64,
    media_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExportReport<'a> {
    manifest_digest: String,
    config_digest: String,
    created: String,
    platform: String,
    layers: Vec<LayerReport>,
    destinations: &'a [treeport_core::plugin::Written],
    entries: usize,
    content_bytes: u64,
}

/// Prints what an export produced.
pub fn report(outcome: &Outcome, out: Output) -> anyhow::Result<()> {
    let image = &outcome.image;
    if out.json {
        let report = ExportReport {
            manifest_digest: image.manifest_digest.to_string(),
            config_digest: image.config_digest.to_string(),
            created: treeport_core::json::rfc3339(image.created),
            platform: format!("{}/{}", image.os, image.architecture),
            layers: image
                .layers
                .iter()
                .map(|l| LayerReport {
                    digest: l.encoded.digest.to_string(),
                    diff_id: l.encoded.diff_id.to_string(),
                    size: l.encoded.size,
                    uncompressed_size: l.encoded.tar_size,
                    media_type: l.encoded.media_type,
                })
                .collect(),
            destinations: &outcome.destinations,
            entries: outcome.entries,
            content_bytes: outcome.content_bytes,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if out.text() {
        let compressed: u64 = image.layers.iter().map(|l| l.encoded.size).sum();
        println!(
            "{} entries, {} of content, in {} layer{} ({} compressed)",
            outcome.entries,
            human_bytes(outcome.content_bytes),
            image.layers.len(),
            if image.layers.len() == 1 { "" } else { "s" },
            human_bytes(compressed),
        );
        println!("manifest {}", image.manifest_digest);
        for d in &outcome.destinations {
            println!("wrote {}", d.destination);
        }
    }
    Ok(())
}
