//! `treeport pipeline check FILE`: a pipeline file checked without running.

use crate::output::outln;
use treeport_core::registry::Registry;

use crate::args::{PipelineCheckArgs, RegistryFlags};
use crate::export;
use crate::output::Output;
use crate::pipeline_file::{self, Plan};

/// Parses the file, loads the plugins it names and makes every stage (which
/// checks kinds and options); runs nothing.
pub fn check(
    args: &PipelineCheckArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let plan: Plan = pipeline_file::load(&args.file)?.override_with(
        None,
        &[],
        &[],
        &[],
        &crate::args::ImageFlags::default(),
        &crate::args::EncodingFlags::default(),
    )?;
    let registry = export::with_plan_plugins(registry, &plan, Some(&args.file))?;
    export::build(&registry, flags, &plan)?;
    let stages: Vec<String> = plan
        .source
        .iter()
        .chain(&plan.transforms)
        .chain(&plan.sinks)
        .map(|s| s.selector.clone())
        .collect();
    if out.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": args.file.display().to_string(),
                "valid": true,
                "source": plan.source.as_ref().map(|s| s.selector.clone()),
                "transforms": plan.transforms.iter().map(|s| s.selector.clone()).collect::<Vec<_>>(),
                "sinks": plan.sinks.iter().map(|s| s.selector.clone()).collect::<Vec<_>>(),
            }))?
        );
    } else if out.text() {
        outln!("{}: valid ({})", args.file.display(), stages.join(" -> "));
    }
    Ok(())
}
