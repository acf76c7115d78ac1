//! `treeport verify IMAGE [--against SOURCE]`.

use crate::output::outln;
use serde::Serialize;
use treeport_core::Error;
use treeport_core::plugin::{Options, Selector};
use treeport_core::registry::Registry;
use treeport_core::verify;

use crate::args::{RegistryFlags, SignFlags, VerifyArgs};
use crate::output::Output;
use crate::registry_cmd::plugin_options;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifyReport {
    image: String,
    manifests: usize,
    layers: usize,
    members: u64,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    against: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    matching_paths: Option<usize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    signatures: Vec<treeport_core::sign::check::Checked>,
}

/// Runs `treeport verify`.
pub fn run(
    args: &VerifyArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    sign: &SignFlags,
    out: Output,
) -> anyhow::Result<()> {
    let selector = Selector::parse(&args.image)?;
    let options = plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
    let mut reader = registry.reader(&selector, &options)?;
    let report =
        verify::verify(&mut *reader).map_err(|e| e.context(format!("verify {}", args.image)))?;
    let signatures = if args.key.is_some() || args.gpg_key.is_some() {
        let top = reader.top()?.digest;
        crate::sign_cmd::verify(args, sign, &selector, &mut *reader, &top)
            .map_err(|e| e.context(format!("verify {}", args.image)))?
    } else {
        Vec::new()
    };
    let mut matching = None;
    if let Some(source) = &args.against {
        let sel = Selector::parse(source)?;
        let mut opts = Options::new();
        for pair in &args.source_opts {
            opts.push_pair(pair)?;
        }
        let ctx = out.context();
        let mut draft = registry.source(&sel, &opts)?.read(&ctx).map_err(|e| {
            e.context(treeport_core::pipeline::stage(
                treeport_core::Role::Source,
                &sel,
            ))
        })?;
        draft.tree.normalize()?;
        let source_nodes = verify::tree_nodes(&draft.tree)?;
        let diffs = verify::differences(&report.tree, &source_nodes);
        if let Some(first) = diffs.first() {
            return Err(Error::invalid(format!(
                "verify {}: the image differs from {source}: {first}{}",
                args.image,
                if diffs.len() > 1 {
                    format!(" (and {} more)", diffs.len() - 1)
                } else {
                    String::new()
                }
            ))
            .into());
        }
        matching = Some(source_nodes.len());
    }
    if out.json {
        let r = VerifyReport {
            image: args.image.clone(),
            manifests: report.manifests,
            layers: report.layers,
            members: report.members,
            bytes: report.bytes,
            against: args.against.clone(),
            matching_paths: matching,
            signatures,
        };
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else if out.text() {
        outln!(
            "{}: {} manifest{}, {} layer{}, {} tar members: ok",
            args.image,
            report.manifests,
            if report.manifests == 1 { "" } else { "s" },
            report.layers,
            if report.layers == 1 { "" } else { "s" },
            report.members
        );
        if let (Some(source), Some(n)) = (&args.against, matching) {
            outln!("{n} paths match {source}");
        }
        for s in &signatures {
            outln!(
                "{} signature of {} for {} by {}: ok",
                s.format,
                s.digest,
                crate::output::escape(&s.identity),
                crate::output::escape(&s.key)
            );
        }
    }
    Ok(())
}
