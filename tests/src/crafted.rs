//! Crafted inputs for the hostile-input tests: tar members written byte by
//! byte, and OCI layouts and docker archives assembled by hand from them,
//! so a test can make exactly the image it needs (whiteouts by the
//! thousand, a layer listed a hundred thousand times).

use std::fs;
use std::path::Path;

use sha2::Digest as _;

/// `sha256:<hex>` of `bytes`.
#[must_use]
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// One ustar member: `kind` is the type flag (`b'0'` file, `b'5'`
/// directory...), `name` raw bytes (no checks, so `..` and control
/// characters can be written).
#[must_use]
pub fn member(name: &[u8], kind: u8, data: &[u8]) -> Vec<u8> {
    member_sized(name, kind, data.len() as u64, data)
}

/// [`member`] whose size field says `size_field`, whatever the data (a
/// member that lies about its size). A name is cut at 100 bytes.
#[must_use]
pub fn member_sized(name: &[u8], kind: u8, size_field: u64, data: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    let name = &name[..name.len().min(100)];
    h[..name.len()].copy_from_slice(name);
    h[100..108].copy_from_slice(if kind == b'5' {
        b"0000755\0"
    } else {
        b"0000644\0"
    });
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    h[124..136].copy_from_slice(format!("{size_field:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A member with a link target: a symlink (`b'2'`) or hardlink (`b'1'`).
#[must_use]
pub fn member_link(name: &[u8], kind: u8, target: &[u8]) -> Vec<u8> {
    let mut m = member(name, kind, b"");
    m[157..157 + target.len()].copy_from_slice(target);
    m[148..156].copy_from_slice(b"        ");
    let sum: u32 = m[..512].iter().map(|&b| u32::from(b)).sum();
    m[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    m
}

/// A tar stream of `members`, with its end marker.
#[must_use]
pub fn tar(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Writes an OCI layout at `dir` whose image, tagged `tag`, has the given
/// uncompressed layers. Returns the manifest's digest.
pub fn layout_from_layers(dir: &Path, tag: &str, layers: &[Vec<u8>]) -> String {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("create a fixture directory");
    let put = |bytes: &[u8]| {
        let d = digest(bytes);
        fs::write(blobs.join(&d["sha256:".len()..]), bytes).expect("write a fixture file");
        d
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| digest(l)).collect();
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    });
    let config = serde_json::to_vec(&config).expect("serialize fixture JSON");
    let config_digest = put(&config);
    let layer_descriptors: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": put(l),
                "size": l.len(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layer_descriptors,
    }))
    .expect("a JSON value serializes");
    let manifest_digest = put(&manifest);
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write a fixture file");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("write a fixture file"),
    )
    .expect("write a fixture file");
    manifest_digest
}

/// The path of blob `digest` (`sha256:<hex>`) in the layout at `dir`.
#[must_use]
pub fn blob_path(dir: &Path, digest: &str) -> std::path::PathBuf {
    dir.join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

/// The layout's `index.json`, parsed.
#[must_use]
pub fn index(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(dir.join("index.json")).expect("read a fixture file"))
        .expect("read a fixture file")
}

/// The manifest the layout's first index entry names, parsed.
#[must_use]
pub fn manifest(dir: &Path) -> serde_json::Value {
    let d = index(dir)["manifests"][0]["digest"]
        .as_str()
        .expect("the layout names its manifest digest")
        .to_string();
    serde_json::from_slice(&fs::read(blob_path(dir, &d)).expect("read a fixture file"))
        .expect("read a fixture file")
}
