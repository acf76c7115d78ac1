//! `treeport oci build`: apt-ostree's form of an export from an OSTree commit.

use treeport_core::Error;

use crate::args::{OciBuildArgs, OciFormat, RegistryFlags};
use crate::export;
use crate::output::Output;
use crate::pipeline_file::Plan;
use treeport_core::registry::Registry;

/// Runs `treeport oci build`.
pub fn build(
    args: &OciBuildArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    if args.repo.contains(':') {
        return Err(Error::usage(format!(
            "--repo '{}': a repository path may not contain ':'",
            args.repo
        ))
        .into());
    }
    // `--source ostree:REPO:REF` is export's selector, not a ref of --repo
    // (a ref may have a remote prefix, `remote:ref`, but not two colons).
    if let Some(rest) = args.source.strip_prefix("ostree:")
        && rest.contains(':')
    {
        return Err(Error::usage(format!(
            "--source '{}': oci build takes a branch or commit of --repo (--repo REPO --source REF); a selector goes to treeport export --source",
            args.source
        ))
        .into());
    }
    let source = format!("ostree:{}:{}", args.repo, args.source);
    let sink = match args.format {
        OciFormat::Oci => format!(
            "oci:{}:{}",
            args.output,
            args.tag.as_deref().unwrap_or("latest")
        ),
        OciFormat::Docker => format!("docker-archive:{}:{}", args.output, docker_name(args)),
    };
    let plan = Plan::default().override_with(
        Some(&source),
        &[],
        &args.transforms,
        &[sink],
        &args.image,
        &args.encoding,
    )?;
    let pipeline = export::build(registry, flags, &plan)?;
    export::report(
        &pipeline.run(&export::context(registry, flags, &plan, out))?,
        out,
    )
}

/// `NAME:TAG` for a docker archive: `--tag` as given (a bare tag gets the
/// ref's name), else the ref turned into an image name, tagged latest.
fn docker_name(args: &OciBuildArgs) -> String {
    let from_ref = || {
        let name: String = args
            .source
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._/-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let name = name
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string();
        let is_checksum =
            args.source.len() == 64 && args.source.bytes().all(|b| b.is_ascii_hexdigit());
        if name.is_empty() || is_checksum {
            "treeport".to_string()
        } else {
            name
        }
    };
    match args.tag.as_deref() {
        Some(tag) if tag.contains(':') || tag.contains('/') => tag.to_string(),
        Some(tag) => format!("{}:{tag}", from_ref()),
        None => format!("{}:latest", from_ref()),
    }
}
