//! `treeport export`: build a pipeline from selectors and flags and run it.

use crate::output::outln;
use serde::Serialize;
use std::sync::Arc;

use treeport_core::Error;
use treeport_core::layer::Compression;
use treeport_core::pipeline::{Outcome, Pipeline, Settings, Stage};
use treeport_core::plugin::{Options, Selector, Transform};
use treeport_core::progress::Context;
use treeport_core::registry::Registry;

use crate::args::{CompressionName, EncodingFlags, ExportArgs, RegistryFlags};
use crate::output::{Output, human_bytes};
use crate::pipeline_file::{self, Plan};
use crate::registry_cmd::plugin_options;

/// Runs `treeport export`.
pub fn run(
    args: &ExportArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let plan = match &args.pipeline {
        Some(file) => pipeline_file::load(file)?,
        None => Plan::default(),
    }
    .override_with(
        args.source.as_deref(),
        &args.source_opts,
        &args.transforms,
        &args.sinks,
        &args.image,
        &args.encoding,
    )?
    .with_sink_opts(&args.sink_opts)?;
    let registry = with_plan_plugins(registry, &plan, args.pipeline.as_deref())?;
    let pipeline = build(&registry, flags, &plan)?;
    let outcome = pipeline.run(&context(&registry, flags, &plan, out))?;
    report(&outcome, out)
}

/// The run context: output, threads, and image readers for stages that
/// open images (`chunk:previous=IMAGE`).
pub fn context(registry: &Registry, flags: &RegistryFlags, plan: &Plan, out: Output) -> Context {
    let ctx = out.context();
    let ctx = match plan.encoding.threads {
        Some(n) => ctx.with_threads(n),
        None => ctx,
    };
    let registry = registry.clone();
    let flags = flags.clone();
    ctx.with_image_opener(Arc::new(move |reference: &str| {
        let selector = Selector::parse(reference)?;
        let options = plugin_options(&registry, treeport_core::Role::Sink, &selector, &flags)
            .map_err(|e| treeport_core::Error::usage(crate::one_line(&e)))?;
        registry.reader(&selector, &options)
    }))
}

/// The registry with the plugin libraries a pipeline file names.
pub fn with_plan_plugins(
    registry: &Registry,
    plan: &Plan,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Registry> {
    let mut registry = registry.clone();
    if !plan.plugins.is_empty() {
        let report = treeport_core::abi::load(
            &mut registry,
            &treeport_core::abi::PluginSources {
                files: &plan.plugins,
                ..Default::default()
            },
        );
        if let Some(e) = report.errors.first() {
            let file = file.map(|f| f.display().to_string()).unwrap_or_default();
            return Err(Error::invalid(format!("pipeline {file}: {e}")).into());
        }
    }
    Ok(registry)
}

/// Makes every stage of a plan (checking selectors and options) into a
/// pipeline, without running anything.
pub fn build(registry: &Registry, flags: &RegistryFlags, plan: &Plan) -> anyhow::Result<Pipeline> {
    let settings = settings(&plan.encoding)?;
    let spec = plan
        .source
        .as_ref()
        .ok_or_else(|| Error::usage("no source"))?;
    let make_source = || -> anyhow::Result<Stage<dyn treeport_core::plugin::Source>> {
        let selector = Selector::parse(&spec.selector)?;
        // An image source reads like `pull` does: registry flags, and a
        // platform from an index.
        let mut options = Options::new();
        if registry.is_image_kind(selector.kind()) {
            options = plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
            if let Some(p) = &plan.encoding.platform {
                options.push("platform", p.clone());
            }
        } else if let Some(p) = &plan.encoding.platform {
            let takes_platform = registry
                .find(treeport_core::Role::Source, selector.kind())
                .is_some_and(|s| s.info.options.iter().any(|o| o.name == "platform"));
            if !takes_platform {
                return Err(Error::usage(format!(
                    "--platform picks an image from an index; source '{}' is not an image",
                    selector.kind()
                ))
                .into());
            }
            options.push("platform", p.clone());
        }
        options.extend(&spec.options);
        // What the source refuses as it opens (a directory that is not a
        // layout...) names the source, as its read errors do.
        let source = registry.source(&selector, &options).map_err(|e| {
            if e.is_usage() || matches!(e, Error::UnknownKind { .. }) {
                e
            } else {
                e.context(format!("source {selector}"))
            }
        })?;
        Ok(Stage::new(selector.clone(), source))
    };
    let source = make_source().map_err(|e| spec.blame(e))?;
    let mut transforms = Vec::with_capacity(plan.transforms.len() + 1);
    for t in &plan.transforms {
        let make = || -> anyhow::Result<Stage<dyn Transform>> {
            let selector = Selector::parse(&t.selector)?;
            Ok(Stage::new(
                selector.clone(),
                registry.transform(&selector, &t.options)?,
            ))
        };
        transforms.push(make().map_err(|e| t.blame(e))?);
    }
    let image_options = plan.image.to_options();
    if !image_options.is_empty() {
        let selector = Selector::parse("config")?;
        transforms.push(Stage::new(
            selector.clone(),
            registry.transform(&selector, &image_options)?,
        ));
    }
    let mut sinks = Vec::with_capacity(plan.sinks.len());
    for s in &plan.sinks {
        let make = || -> anyhow::Result<Stage<dyn treeport_core::plugin::Sink>> {
            let selector = Selector::parse(&s.selector)?;
            let mut options =
                plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
            options.extend(&s.options);
            Ok(Stage::new(
                selector.clone(),
                registry.sink(&selector, &options)?,
            ))
        };
        sinks.push(make().map_err(|e| s.blame(e))?);
    }
    let shared_cache = match &plan.encoding.cache {
        Some(cache) if shared_cache_kind(cache).is_some() => {
            let stage = shared_cache(registry, flags, &cache.to_string_lossy())?;
            // A sink writing the cache's own tag would lose the image.
            for s in &plan.sinks {
                if same_place(&s.selector, &stage.reference) {
                    return Err(Error::usage(format!(
                        "--cache {}: sink {} writes the same tag; give the cache a tag of its own",
                        stage.reference, s.selector
                    ))
                    .into());
                }
            }
            Some(stage)
        }
        _ => None,
    };
    Ok(Pipeline {
        source,
        transforms,
        sinks,
        settings,
        shared_cache,
    })
}

/// The tag a shared cache has when its reference names none.
const CACHE_TAG: &str = "treeport-cache";

/// `docker` or `oci` when `--cache` names a shared cache
/// (`docker://HOST/REPO[:TAG]`, `oci:DIR[:TAG]`) rather than a directory.
fn shared_cache_kind(cache: &std::path::Path) -> Option<&'static str> {
    let text = cache.to_string_lossy();
    if cache.exists() {
        return None;
    }
    if text.starts_with("docker://") {
        Some("docker")
    } else if text.starts_with("oci:") {
        Some("oci")
    } else {
        None
    }
}

/// True when the sink `sink` writes the tag the cache `cache`
/// (`docker://HOST/REPO:TAG` or `oci:DIR:TAG`, as [`shared_cache`] spells
/// it) lives at.
fn same_place(sink: &str, cache: &str) -> bool {
    if let (Some(s), Some(c)) = (sink.strip_prefix("docker:"), cache.strip_prefix("docker:"))
        && let (Ok(s), Ok(c)) = (
            treeport_docker::Reference::parse(s),
            treeport_docker::Reference::parse(c),
        )
    {
        return s.registry == c.registry
            && s.repository == c.repository
            && s.push_tags().iter().any(|t| c.tags.contains(t));
    }
    if let (Some(s), Some(c)) = (sink.strip_prefix("oci:"), cache.strip_prefix("oci:")) {
        let (sd, st) = treeport_core::layout::split_path_tag(s);
        let (cd, ct) = treeport_core::layout::split_path_tag(c);
        let canon = |d: &str| std::fs::canonicalize(d).unwrap_or_else(|_| d.into());
        return st.unwrap_or("latest") == ct.unwrap_or(CACHE_TAG) && canon(sd) == canon(cd);
    }
    false
}

/// The reader and writer of a shared cache.
fn shared_cache(
    registry: &Registry,
    flags: &RegistryFlags,
    text: &str,
) -> anyhow::Result<treeport_core::pipeline::SharedCacheStage> {
    let blame = |e: anyhow::Error| {
        anyhow::Error::from(Error::usage(format!("--cache: {}", crate::one_line(&e))))
    };
    let selector = Selector::parse(text)?;
    let options = plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
    let (reference, origin, tag, exists) = if selector.kind() == "docker" {
        let r = treeport_docker::Reference::parse(selector.rest()).map_err(|e| blame(e.into()))?;
        if r.digest.is_some() || r.tags.len() > 1 {
            return Err(blame(anyhow::anyhow!(
                "a cache is one tag: docker://HOST/REPO[:TAG]"
            )));
        }
        let tag = r
            .tags
            .first()
            .cloned()
            .unwrap_or_else(|| CACHE_TAG.to_string());
        let origin = format!("docker://{}/{}", r.registry, r.repository);
        (format!("{origin}:{tag}"), origin, tag, true)
    } else {
        let (dir, tag) = treeport_core::layout::split_path_tag(selector.rest());
        if dir.is_empty() {
            return Err(blame(anyhow::anyhow!("oci:DIR[:TAG] needs a directory")));
        }
        let tag = tag.unwrap_or(CACHE_TAG).to_string();
        treeport_core::layout::check_user_tag(&tag).map_err(|e| blame(e.into()))?;
        let exists = std::path::Path::new(dir).join("index.json").exists();
        (
            format!("oci:{dir}:{tag}"),
            format!("oci:{dir}"),
            tag,
            exists,
        )
    };
    let selector = Selector::parse(&reference)?;
    let reader = if exists {
        Some(registry.reader(&selector, &options).map_err(|e| {
            Error::invalid(format!("cache {reference}: {}", crate::one_line(&e.into())))
        })?)
    } else {
        None
    };
    Ok(treeport_core::pipeline::SharedCacheStage {
        sink: registry.sink(&selector, &options)?,
        reader,
        reference,
        origin,
        tag,
    })
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
    let prune = flags
        .prune
        .iter()
        .map(|p| treeport_core::pipeline::Prune::parse(p))
        .collect::<treeport_core::Result<Vec<_>>>()?;
    if let Some(cache) = &flags.cache {
        check_cache(cache)?;
    }
    Ok(Settings {
        compression,
        timestamp,
        // A shared cache is a pipeline stage of its own.
        cache: flags
            .cache
            .clone()
            .filter(|c| shared_cache_kind(c).is_none()),
        prune,
    })
}

/// A cache is a directory. A value spelled like an image reference
/// (`docker://HOST/REPO:TAG`, `oci:DIR`) that is no existing path would
/// otherwise become a directory named after its kind (`docker:`), so it is
/// refused, naming the forms treeport takes.
fn check_cache(cache: &std::path::Path) -> anyhow::Result<()> {
    let text = cache.to_string_lossy();
    let kind = text.split_once(':').map(|(k, _)| k);
    if let Some(kind) = kind
        && !kind.is_empty()
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !cache.exists()
        && shared_cache_kind(cache).is_none()
    {
        return Err(Error::usage(format!(
            "--cache {text}: a cache is a directory (DIR), a registry repository (docker://HOST/REPO[:TAG]) or an OCI layout (oci:DIR[:TAG]); '{kind}:' is none of them"
        ))
        .into());
    }
    Ok(())
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
    cached_layers: usize,
    cache_written: bool,
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
            cached_layers: outcome.cached_layers,
            cache_written: outcome.cache_written,
        };
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if out.text() {
        let compressed: u64 = image.layers.iter().map(|l| l.encoded.size).sum();
        outln!(
            "{} entries, {} of content, in {} layer{} ({} compressed)",
            outcome.entries,
            human_bytes(outcome.content_bytes),
            image.layers.len(),
            if image.layers.len() == 1 { "" } else { "s" },
            human_bytes(compressed),
        );
        if outcome.cached_layers > 0 || outcome.cache_written {
            outln!(
                "{} of {} layers from the cache{}",
                outcome.cached_layers,
                image.layers.len(),
                if outcome.cache_written {
                    "; the cache is updated"
                } else {
                    ""
                }
            );
        }
        // Each destination with the digest its consumers see (a docker
        // archive's differs: skopeo and podman make its manifest).
        for d in &outcome.destinations {
            let digest = d
                .manifest_digest
                .clone()
                .unwrap_or_else(|| image.manifest_digest.to_string());
            match d.counters.get("signatures") {
                Some(n) => outln!(
                    "wrote {} (manifest {digest}; {n} new signature{})",
                    d.destination,
                    if *n == 1 { "" } else { "s" }
                ),
                None => outln!("wrote {} (manifest {digest})", d.destination),
            }
        }
    }
    Ok(())
}
