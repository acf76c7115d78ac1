//! `distro-exporter ROOTFS LAYOUT TAG`: an exporter built on treeport as a
//! library, the way a distribution tool (apt-ostree, a image builder) embeds
//! it: the pipeline is composed in code from built-in plugin types, with the
//! distribution's own labels, and run with treeport's engine.

use std::process::ExitCode;

use treeport_config::ConfigTransform;
use treeport_core::layer::Compression;
use treeport_core::pipeline::{Pipeline, Settings, Stage};
use treeport_core::plugin::{Options, Selector};
use treeport_core::progress::Context;
use treeport_oci::OciSink;
use treeport_rootfs::RootfsSource;

fn run(rootfs: &str, layout: &str, tag: &str) -> treeport_core::Result<String> {
    let mut labels = Options::new();
    labels.push("label", "org.example.distro=exampleOS");
    labels.push("label", format!("org.example.built-from={rootfs}"));
    labels.push("env", "PATH=/usr/sbin:/usr/bin:/sbin:/bin");
    let pipeline = Pipeline {
        source: Stage::new(
            Selector::parse(&format!("rootfs:{rootfs}"))?,
            Box::new(RootfsSource::new(rootfs)),
        ),
        transforms: vec![Stage::new(
            Selector::parse("config")?,
            Box::new(ConfigTransform::new(&labels)?),
        )],
        sinks: vec![Stage::new(
            Selector::parse(&format!("oci:{layout}:{tag}"))?,
            Box::new(OciSink::new(layout, tag)?),
        )],
        settings: Settings {
            compression: Compression::Zstd { level: 3 },
            timestamp: Some(0),
            ..Settings::default()
        },
        shared_cache: None,
    };
    let outcome = pipeline.run(&Context::quiet())?;
    Ok(outcome.image.manifest_digest.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, rootfs, layout, tag] = args.as_slice() else {
        eprintln!("usage: distro-exporter ROOTFS LAYOUT TAG");
        return ExitCode::from(2);
    };
    match run(rootfs, layout, tag) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
