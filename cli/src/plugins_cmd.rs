//! `treeport plugins list`.

use crate::output::outln;
use serde::Serialize;
use treeport_core::Role;
use treeport_core::plugin::Plugin;
use treeport_core::registry::Registry;

use crate::output::Output;

#[derive(Serialize)]
struct Row<'a> {
    role: &'a str,
    kind: &'a str,
    usage: &'a str,
    origin: String,
    version: &'a str,
    description: &'a str,
    options: Vec<Opt<'a>>,
}

#[derive(Serialize)]
struct Opt<'a> {
    key: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    help: &'a str,
}

/// What an image source's description says, whatever its sink's is.
const IMAGE_SOURCE: &str = "an image in this form, flattened into one tree (layers applied with whiteouts, every blob checked)";

/// The option every image source takes beside its sink's.
const PLATFORM_HELP: &str =
    "OS/ARCH[/VARIANT]: from an index, this platform's image (from --platform)";

/// One plugin's line and options.
fn row(p: &Plugin) -> Row<'_> {
    Row {
        role: p.info.role.as_str(),
        kind: &p.info.kind,
        usage: &p.info.usage,
        origin: p.info.origin.to_string(),
        version: &p.info.version,
        description: &p.info.description,
        options: p
            .info
            .options
            .iter()
            .map(|o| Opt {
                key: &o.name,
                kind: o.kind.name(),
                help: &o.help,
            })
            .collect(),
    }
}

/// Prints every plugin, sorted by role and kind, the image sources (the
/// sinks that read images back) among the sources.
pub fn list(registry: &Registry, out: Output) -> anyhow::Result<()> {
    let mut rows: Vec<Row> = registry.plugins().iter().map(row).collect();
    rows.extend(registry.image_sources().map(|p| {
        let mut r = row(p);
        r.role = Role::Source.as_str();
        r.description = IMAGE_SOURCE;
        r.options.push(Opt {
            key: "platform",
            kind: "string",
            help: PLATFORM_HELP,
        });
        r
    }));
    let order = |role: &str| match role {
        "source" => 0,
        "transform" => 1,
        _ => 2,
    };
    rows.sort_by(|a, b| (order(a.role), a.kind).cmp(&(order(b.role), b.kind)));
    if out.json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if out.quiet {
        return Ok(());
    }
    let usage_w = rows.iter().map(|r| r.usage.len()).max().unwrap_or(0);
    let origin_w = rows.iter().map(|r| r.origin.len()).max().unwrap_or(0);
    outln!(
        "{:<9}  {:<usage_w$}  {:<origin_w$}  {:<7}  DESCRIPTION",
        "ROLE",
        "USAGE",
        "ORIGIN",
        "VERSION"
    );
    for r in &rows {
        outln!(
            "{:<9}  {:<usage_w$}  {:<origin_w$}  {:<7}  {}",
            r.role,
            r.usage,
            r.origin,
            r.version,
            r.description
        );
        // Options under their plugin, as `man` lists a command's flags.
        for o in &r.options {
            outln!(
                "{:<9}  {:<usage_w$}    {} <{}>  {}",
                "",
                "",
                o.key,
                o.kind,
                o.help
            );
        }
    }
    Ok(())
}
