//! Commands that read images from anywhere and write them elsewhere:
//! `pull`, `oci push`, `index`, and `tags`.

use crate::output::outln;
use serde::Serialize;
use treeport_core::Error;
use treeport_core::blobs::BlobStore;
use treeport_core::copy::{self, ImageSet, SetManifest};
use treeport_core::plugin::{Options, Selector};
use treeport_core::registry::Registry;
use treeport_core::resolve::Platform;

use crate::args::{IndexArgs, OciPushArgs, PullArgs, RegistryFlags, TagsArgs};
use crate::output::Output;

/// The registry flags as plugin options, for plugins that declare them.
pub fn plugin_options(
    registry: &Registry,
    role: treeport_core::Role,
    selector: &Selector,
    flags: &RegistryFlags,
) -> anyhow::Result<Options> {
    let mut all = Options::new();
    if let Some(creds) = &flags.creds {
        all.push("creds", full_creds(creds)?);
    }
    if let Some(f) = &flags.authfile {
        all.push("authfile", f.clone());
    }
    if let Some(v) = flags.tls_verify {
        all.push("tls-verify", v.to_string());
    }
    if let Some(d) = &flags.cert_dir {
        all.push("cert-dir", d.clone());
    }
    let declared: Vec<String> = registry
        .find(role, selector.kind())
        .map(|p| p.info.options.iter().map(|o| o.name.clone()).collect())
        .unwrap_or_default();
    let mut out = Options::new();
    for (k, v) in all.iter() {
        if declared.iter().any(|d| d == k) {
            out.push(k, v);
        }
    }
    Ok(out)
}

/// `USER:PASS`, asking for the password on a terminal when only USER is given.
fn full_creds(creds: &str) -> anyhow::Result<String> {
    if creds.contains(':') {
        return Ok(creds.to_string());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Error::usage(format!(
            "--creds {creds}: no password, and no terminal to ask for one (use --authfile)"
        ))
        .into());
    }
    let password = rpassword::prompt_password(format!("Password for {creds}: "))
        .map_err(|e| Error::invalid(format!("reading the password: {e}")))?;
    Ok(format!("{creds}:{password}"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CopyReport {
    source: String,
    destination: String,
    digest: String,
    media_type: String,
    manifests: usize,
    blobs: usize,
    counters: std::collections::BTreeMap<String, u64>,
}

fn report(
    source: &str,
    set: &ImageSet,
    written: &treeport_core::plugin::Written,
    out: Output,
) -> anyhow::Result<()> {
    let top = set.top();
    // The digest the destination's consumers see (a docker archive's is
    // its own).
    let digest = written
        .manifest_digest
        .clone()
        .unwrap_or_else(|| top.digest.to_string());
    if out.json {
        let r = CopyReport {
            source: source.to_string(),
            destination: written.destination.clone(),
            digest,
            media_type: top.media_type.clone(),
            manifests: set.manifests.len(),
            blobs: set.blobs().len(),
            counters: written.counters.clone(),
        };
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else if out.text() {
        outln!(
            "wrote {} ({} {digest})",
            written.destination,
            if set.index.is_some() {
                "index"
            } else {
                "manifest"
            },
        );
        for (k, v) in &written.counters {
            outln!("  {k}: {v}");
        }
    }
    Ok(())
}

/// Copies `source` to `destination` (pull, push).
fn copy_between(
    registry: &Registry,
    source: &str,
    destination: &str,
    platform: Option<&Platform>,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let src = Selector::parse(source)?;
    let dst = Selector::parse(destination)?;
    let mut reader = registry.reader(
        &src,
        &plugin_options(registry, treeport_core::Role::Sink, &src, flags)?,
    )?;
    let mut sink = registry.sink(
        &dst,
        &plugin_options(registry, treeport_core::Role::Sink, &dst, flags)?,
    )?;
    let ctx = out.context();
    ctx.check_signable(sink.signature_formats(), destination)?;
    let (set, written) = copy::copy(&mut *reader, &mut *sink, platform, &ctx)?;
    report(source, &set, &written, out)
}

/// `treeport pull SRC DEST`.
pub fn pull(
    args: &PullArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    copy_between(
        registry,
        &args.source,
        &args.destination,
        platform.as_ref(),
        flags,
        out,
    )
}

/// `treeport oci push OCI_DIR REGISTRY NAME:TAG`.
pub fn oci_push(
    args: &OciPushArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    if args.registry.contains('/') || args.registry.is_empty() {
        return Err(Error::usage(format!(
            "registry '{}': expected HOST[:PORT]",
            args.registry
        ))
        .into());
    }
    let (_, tag) = args
        .name
        .rsplit_once(':')
        .filter(|(n, _)| !n.contains(':'))
        .unwrap_or((&args.name, "latest"));
    // LAYOUT:TAG names the image (a directory whose name holds a colon is
    // taken whole); else the layout's image tagged as the destination is,
    // else its only image.
    let (dir, layout_tag) = match treeport_core::layout::split_path_tag(&args.layout) {
        (dir, Some(t)) if !std::path::Path::new(&args.layout).is_dir() => (dir, Some(t)),
        _ => (args.layout.as_str(), None),
    };
    let layout = treeport_core::layout::Layout::open(dir)?;
    let source = match layout_tag {
        Some(t) => format!("oci:{dir}:{t}"),
        None => match layout.resolve(Some(tag)) {
            Ok(_) => format!("oci:{dir}:{tag}"),
            // The trailing colon: a directory name holding one is not
            // split into a layout and a tag again.
            Err(_) => format!("oci:{dir}:"),
        },
    };
    let destination = format!("docker://{}/{}", args.registry, args.name);
    copy_between(registry, &source, &destination, None, flags, out)
}

/// `treeport index DEST IMAGE...`.
pub fn index(
    args: &IndexArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let dst = Selector::parse(&args.destination)?;
    let mut sink = registry.sink(
        &dst,
        &plugin_options(registry, treeport_core::Role::Sink, &dst, flags)?,
    )?;
    let ctx = out.context();
    ctx.check_signable(sink.signature_formats(), &args.destination)?;
    sink.prepare(&ctx)?;
    let store = BlobStore::temporary_in(sink.staging_dir().as_deref())?;
    let mut manifests: Vec<SetManifest> = Vec::new();
    for image in &args.images {
        let sel = Selector::parse(image)?;
        let mut reader = registry.reader(
            &sel,
            &plugin_options(registry, treeport_core::Role::Sink, &sel, flags)?,
        )?;
        let set = copy::read_set(&mut *reader, None)?;
        if set.index.is_some() {
            return Err(Error::invalid(format!(
                "{image} is already an index; give one image per architecture"
            ))
            .into());
        }
        let mut m = set
            .manifests
            .into_iter()
            .next()
            .expect("a set has a manifest");
        m.platform = Some(copy::config_platform(&mut *reader, &m)?);
        if let Some(dup) = manifests.iter().find(|o| o.platform == m.platform) {
            return Err(Error::usage(format!(
                "{image} has the same platform as manifest {} ({})",
                dup.raw.digest,
                m.platform
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ))
            .into());
        }
        let single = ImageSet {
            index: None,
            manifests: vec![m.clone()],
            referrers: Vec::new(),
        };
        copy::fetch(&mut *reader, &single, &store, &ctx)?;
        manifests.push(m);
    }
    let index = copy::build_index(&manifests)?;
    store.put(&index.bytes)?;
    let set = ImageSet {
        index: Some(index),
        manifests,
        referrers: Vec::new(),
    };
    let written = sink.write_set(&set, &store, &ctx)?;
    report(&args.images.join(" "), &set, &written, out)
}

/// `treeport tags docker://HOST/REPO`.
pub fn tags(
    args: &TagsArgs,
    registry: &Registry,
    flags: &RegistryFlags,
    out: Output,
) -> anyhow::Result<()> {
    let sel = Selector::parse(&args.repository)?;
    if sel.kind() != "docker" {
        return Err(Error::usage(format!(
            "tags lists a registry repository: docker://HOST/REPO, not '{}'",
            args.repository
        ))
        .into());
    }
    let options = plugin_options(registry, treeport_core::Role::Sink, &sel, flags)?;
    let tags = treeport_docker::list_tags(sel.rest(), &options)?;
    if out.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "repository": args.repository,
                "tags": tags,
            }))?
        );
    } else if out.text() {
        for t in tags {
            outln!("{t}");
        }
    }
    Ok(())
}
