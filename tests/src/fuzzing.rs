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
    ("pax", pax),
    ("index_json", index_json),
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

/// PAX extended and global headers and sparse maps: the fuzz input is cut
/// into header bodies and data and wrapped in valid tar headers (a raw
/// fuzzed tar rarely gets a checksum right), so the parsers behind the
/// headers see every shape of records, lengths, maps and sizes.
pub fn pax(data: &[u8]) {
    let Some((&shape, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xff);
    let mut archive = Vec::new();
    // Up to four extended or global headers, then a member of some kind.
    for i in 0..4 {
        let Some(body) = parts.next() else { break };
        let kind = if shape >> i & 1 == 0 { b'x' } else { b'g' };
        archive.extend(crate::crafted::member(b"PaxHeaders/x", kind, body));
    }
    let member_kind = match shape >> 4 & 3 {
        0 => b'0',
        1 => b'S',
        2 => b'1',
        _ => b'5',
    };
    let payload = parts.next().unwrap_or_default();
    let mut member = crate::crafted::member(b"file", member_kind, payload);
    if member_kind == b'S' {
        // GNU magic, and the old sparse map's slots taken from the input.
        member[257..265].copy_from_slice(b"ustar  \0");
        let map = parts.next().unwrap_or_default();
        let n = map.len().min(495 - 386);
        member[386..386 + n].copy_from_slice(&map[..n]);
        member[148..156].copy_from_slice(b"        ");
        let sum: u32 = member[..512].iter().map(|&b| u32::from(b)).sum();
        member[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    }
    archive.extend(member);
    archive.extend_from_slice(&[0u8; 1024]);
    tar(&archive);
}

/// A layout's `index.json` from anywhere: read, and a tag resolved in it.
pub fn index_json(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else {
        return;
    };
    let ok = std::fs::write(dir.path().join("oci-layout"), layout::LAYOUT_CONTENT).is_ok()
        && std::fs::create_dir_all(dir.path().join("blobs/sha256")).is_ok()
        && std::fs::write(dir.path().join("index.json"), data).is_ok();
    if !ok {
        return;
    }
    let Ok(l) = layout::Layout::open(dir.path()) else {
        return;
    };
    if let Ok(index) = l.read_index() {
        for tag in [None, Some("latest"), Some("v1")] {
            let _ = layout::resolve_in(&index, tag, "fuzz");
        }
        let _ = index
            .manifests()
            .iter()
            .filter_map(layout::ref_name)
            .count();
    }
}
