//! `treeport inspect IMAGE`: the manifest, config and layers of an image.

use crate::output::outln;
use serde::Serialize;
use treeport_core::plugin::Selector;
use treeport_core::registry::Registry;
use treeport_core::resolve::{self, Platform, ResolvedImage};

use crate::args::{InspectArgs, RegistryFlags};
use crate::output::{Output, human_bytes};
use crate::registry_cmd::plugin_options;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectReport {
    reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    index_digest: Option<String>,
    digest: String,
    media_type: String,
    platform: String,
    created: Option<String>,
    labels: std::collections::BTreeMap<String, String>,
    annotations: std::collections::BTreeMap<String, String>,
    layers: Vec<Layer>,
    /// Bytes of the layers, as stored.
    size: u64,
    manifest: serde_json::Value,
    config: serde_json::Value,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    manifests: Vec<Child>,
    /// Artifacts that refer to this image (an SBOM).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    referrers: Vec<Referrer>,
    /// cosign signatures stored beside the image (not checked here: that
    /// is `verify --key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    cosign_signatures: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Referrer {
    digest: String,
    size: u64,
    artifact_type: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Layer {
    digest: String,
    size: u64,
    media_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff_id: Option<String>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Child {
    digest: String,
    platform: String,
}

/// Runs `treeport inspect`.
pub fn run(
    args: &InspectArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let selector = Selector::parse(&args.image)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let options = plugin_options(registry, treeport_core::Role::Sink, &selector, flags)?;
    let mut reader = registry.reader(&selector, &options)?;
    let image = resolve::resolve(&mut *reader, platform.as_ref())?;
    let mut report = build_report(&args.image, &image)?;
    // The digest other tools show for this image, where it has its own
    // (a docker archive: skopeo makes its manifest from the diff_ids).
    if let Some(digest) = reader.reported_digest(&image.manifest)? {
        report.digest = digest.to_string();
    }
    // An artifact list that cannot be read (a registry answering nonsense
    // there) costs the list, not the report: a warning.
    let listed = reader
        .referrers(&image.manifest.digest)
        .unwrap_or_else(|e| {
            out.context()
                .warn(&format!("the image's artifacts cannot be listed: {e}"));
            Vec::new()
        });
    report.referrers = listed
        .into_iter()
        .map(|r| Referrer {
            digest: r.digest.to_string(),
            size: r.size,
            artifact_type: r.artifact_type,
        })
        .collect();
    let tag = treeport_core::sign::cosign::signature_tag(&image.manifest.digest);
    // Shown when readable; what is stored there is checked by verify --key.
    if let Ok(Some(raw)) = reader.tagged(&tag) {
        report.cosign_signatures = treeport_core::sign::cosign::signature_layers(&raw.bytes, &tag)
            .ok()
            .map(|l| l.len());
    }
    if out.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if out.text() {
        print_text(&report);
    }
    Ok(())
}

fn build_report(reference: &str, image: &ResolvedImage) -> anyhow::Result<InspectReport> {
    let config = &image.config;
    let runtime = config.config().as_ref();
    let diff_ids = config.rootfs().diff_ids();
    let layers: Vec<Layer> = image
        .parsed
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| Layer {
            digest: l.digest().to_string(),
            size: l.size(),
            media_type: l.media_type().to_string(),
            diff_id: diff_ids.get(i).cloned(),
            annotations: l
                .annotations()
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
        .collect();
    let mut platform = format!("{}/{}", config.os(), config.architecture());
    if let Some(v) = config.variant() {
        platform.push('/');
        platform.push_str(v);
    }
    Ok(InspectReport {
        reference: reference.to_string(),
        index_digest: image.index.as_ref().map(|(raw, _)| raw.digest.to_string()),
        digest: image.manifest.digest.to_string(),
        media_type: image.manifest.media_type.clone(),
        platform,
        created: config.created().clone(),
        labels: runtime
            .and_then(|r| r.labels().as_ref())
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        annotations: image
            .parsed
            .annotations()
            .as_ref()
            .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        size: layers.iter().map(|l| l.size).sum::<u64>(),
        layers,
        manifest: serde_json::from_slice(&image.manifest.bytes)?,
        config: serde_json::from_slice(&image.config_bytes)?,
        manifests: image
            .index
            .as_ref()
            .map(|(_, index)| {
                index
                    .manifests()
                    .iter()
                    .map(|d| Child {
                        digest: d.digest().to_string(),
                        platform: d
                            .platform()
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os(), p.architecture()))
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        referrers: Vec::new(),
        cosign_signatures: None,
    })
}

fn print_text(r: &InspectReport) {
    outln!("Image:       {}", r.reference);
    if let Some(index) = &r.index_digest {
        outln!("Index:       {index}");
        for child in &r.manifests {
            outln!("  {}  {}", child.digest, child.platform);
        }
    }
    outln!("Digest:      {}", r.digest);
    outln!("MediaType:   {}", r.media_type);
    outln!("Platform:    {}", r.platform);
    if let Some(created) = &r.created {
        outln!("Created:     {created}");
    }
    let runtime = r.config.get("config");
    for (key, title) in [
        ("Entrypoint", "Entrypoint:"),
        ("Cmd", "Cmd:"),
        ("WorkingDir", "WorkingDir:"),
        ("User", "User:"),
    ] {
        if let Some(v) = runtime.and_then(|c| c.get(key)) {
            outln!("{title:<12} {v}");
        }
    }
    if let Some(env) = runtime
        .and_then(|c| c.get("Env"))
        .and_then(|e| e.as_array())
    {
        outln!("Env:");
        for e in env {
            outln!("  {}", e.as_str().unwrap_or_default());
        }
    }
    for (key, title) in [("ExposedPorts", "Ports:"), ("Volumes", "Volumes:")] {
        if let Some(set) = runtime
            .and_then(|c| c.get(key))
            .and_then(|v| v.as_object())
            .filter(|o| !o.is_empty())
        {
            let names: Vec<&str> = set.keys().map(String::as_str).collect();
            outln!("{title:<12} {}", names.join(" "));
        }
    }
    if let Some(signal) = runtime
        .and_then(|c| c.get("StopSignal"))
        .and_then(|v| v.as_str())
    {
        outln!("StopSignal:  {signal}");
    }
    if !r.labels.is_empty() {
        outln!("Labels:");
        for (k, v) in &r.labels {
            outln!("  {k}={v}");
        }
    }
    if !r.annotations.is_empty() {
        outln!("Annotations:");
        for (k, v) in &r.annotations {
            outln!("  {k}={v}");
        }
    }
    outln!(
        "Layers:      {} ({} compressed)",
        r.layers.len(),
        human_bytes(r.size)
    );
    for l in &r.layers {
        outln!(
            "  {}  {:>9}  {}",
            l.digest,
            human_bytes(l.size),
            l.media_type
        );
    }
    if !r.referrers.is_empty() {
        outln!("Referrers:");
        for x in &r.referrers {
            outln!("  {}  {}", x.digest, x.artifact_type);
        }
    }
    if let Some(n) = r.cosign_signatures {
        outln!(
            "Signatures:  {n} cosign signature{} (check with verify --key)",
            if n == 1 { "" } else { "s" }
        );
    }
}
