//! The fuzz targets' bodies, shared by `cargo fuzz` (in `fuzz/`) and by the
//! regression test that replays every input ever found to crash one
//! (`tests/fuzz-regressions/<target>/`). Each must return, never panic.

use std::io::{self, Read};
use std::path::Path;

use treeport_core::layer::untar::Untar;
use treeport_core::plugin::{ImageReader, Options, RawManifest, Selector};
use treeport_core::{archive, layout, media, resolve};

/// A fuzz target: takes any bytes, must return.
pub type Target = fn(&[u8]);

/// The targets, by name.
pub const TARGETS: &[(&str, Target)] = &[
    ("selector", selector),
    ("tar", tar),
    ("manifest", manifest),
    ("docker_archive", docker_archive),
    ("www_authenticate", www_authenticate),
];

/// Selectors, option lists, registry references, layout paths.
pub fn selector(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(s) = Selector::parse(text) {
        let _ = (s.kind(), s.rest(), s.to_string());
    }
    let _ = Options::parse_list(text);
    let mut o = Options::new();
    let _ = o.push_pair(text);
    let _ = treeport_docker::Reference::parse(text).map(|r| (r.target(), r.to_string()));
    let _ = layout::split_path_tag(text);
    let _ = layout::check_tag(text);
    let _ = resolve::Platform::parse(text);
}

/// The tar reader, and a whole archive read into a tree.
pub fn tar(data: &[u8]) {
    let mut untar = Untar::new(data);
    let mut members = 0;
    while let Ok(Some(_)) = untar.next_member() {
        let _ = io::copy(&mut untar.data(), &mut io::sink());
        members += 1;
        if members > 100_000 {
            break;
        }
    }
    if let Ok(tree) = archive::read_stream(data, Path::new("fuzz")) {
        for e in tree.entries().iter().take(1000) {
            if let Ok(mut r) = e.content.open() {
                let _ = io::copy(&mut (&mut r).take(1 << 20), &mut io::sink());
            }
        }
    }
}

/// Manifests, indexes and configs, as JSON from anywhere.
pub fn manifest(data: &[u8]) {
    let _ = media::sniff_media_type(data);
    let raw = RawManifest {
        bytes: data.to_vec(),
        media_type: media::OCI_MANIFEST.into(),
        digest: treeport_core::digest::Digest::of(data),
    };
    if let Ok(m) = resolve::parse_manifest(&raw) {
        let _ = treeport_core::copy::manifest_blobs(&raw);
        let _ = m.layers().len();
    }
    let _ = resolve::parse_index(&raw);
    let _ = serde_json::from_slice::<oci_spec::image::ImageConfiguration>(data);
}

/// A docker archive read back: manifest.json, config, layers.
pub fn docker_archive(data: &[u8]) {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if io::Write::write_all(&mut file, data).is_err() {
        return;
    }
    let Ok(mut reader) = treeport_docker_archive::DockerArchiveReader::open(file.path(), None)
    else {
        return;
    };
    if let Ok(top) = reader.top()
        && let Ok(blobs) = treeport_core::copy::manifest_blobs(&top)
    {
        for (d, _) in blobs.iter().take(16) {
            if let Ok(mut r) = reader.blob(d) {
                let _ = io::copy(&mut (&mut r).take(1 << 20), &mut io::sink());
            }
        }
    }
}

/// `WWW-Authenticate` headers.
pub fn www_authenticate(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        for c in treeport_docker::parse_challenges(text) {
            let _ = (c.scheme.len(), c.params.len());
        }
    }
}
