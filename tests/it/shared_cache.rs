//! The layer cache shared through a registry (`--cache docker://...`) or a
//! directory (`--cache oci:DIR`): two machines (two scratch directories,
//! each with its own copy of the tree and its own treeport state) export
//! the same tree; the second encodes no layer and uploads no blob.

use std::path::Path;
use std::process::Command;

use treeport_tests::registry::{Auth, RegistryServer};
use treeport_tests::{fixtures, layout_digest, require_root, run, treeport};

/// A copy of `tree` at `to`, as another machine would have it: the same
/// content, owners and times, other inodes.
fn copy_tree(tree: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(tree)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// `treeport export` as a machine whose own state lives in `home`.
fn machine(home: &Path) -> Command {
    let mut c = treeport();
    c.env("HOME", home)
        .env("TREEPORT_CACHE_DIR", home.join("cache"))
        .env_remove("XDG_CACHE_HOME");
    c
}

#[test]
fn a_second_machine_encodes_nothing_and_uploads_no_blob() {
    require_root();
    let server = RegistryServer::start(Auth::Htpasswd, true);
    let work = tempfile::tempdir().unwrap();
    let flags = [
        "--authfile".to_string(),
        server.authfile.display().to_string(),
        "--cert-dir".to_string(),
        server.cert_dir.display().to_string(),
    ];
    let cache = format!("docker://{}/ci/layers:bookworm", server.addr);
    let export = |name: &str| -> serde_json::Value {
        let home = work.path().join(format!("home-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let tree = work.path().join(format!("tree-{name}"));
        copy_tree(&fixtures::minbase_nodev(), &tree);
        let ran = run(machine(&home)
            .args([
                "export",
                "--json",
                "--timestamp",
                "1700000000",
                "--source",
                &format!("rootfs:{}", tree.display()),
                "--transform",
                "chunk",
                "--cache",
                &cache,
                "--sink",
                &format!("docker://{}/app/{name}:v1", server.addr),
            ])
            .args(&flags))
        .ok();
        serde_json::from_str(&ran.stdout).unwrap()
    };
    let first = export("a");
    let layers = first["layers"].as_array().unwrap().len();
    assert!(layers > 10, "{first}");
    assert_eq!(first["cachedLayers"], 0, "{first}");
    let second = export("b");
    assert_eq!(second["manifestDigest"], first["manifestDigest"]);
    assert_eq!(second["cachedLayers"], layers, "{second}");
    let counters = &second["destinations"][0]["counters"];
    assert!(
        counters["blobs_uploaded"].is_null() && counters["bytes_uploaded"] == 0,
        "{counters}"
    );
    // Every blob, the config too, mounted from the cache's repository.
    assert_eq!(counters["blobs_mounted"], layers + 1, "{counters}");
}

/// The same through a directory; a cached blob that was tampered with is
/// never used: the layer is encoded again, and the image is the same.
#[test]
fn a_directory_cache_is_shared_and_checked() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let cache_dir = work.path().join("shared");
    let cache = format!("oci:{}:main", cache_dir.display());
    let export = |name: &str| -> serde_json::Value {
        let home = work.path().join(format!("home-{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let tree = work.path().join(format!("tree-{name}"));
        if !tree.exists() {
            copy_tree(&fixtures::minbase_nodev(), &tree);
        }
        let out = work.path().join(format!("out-{name}"));
        let ran = run(machine(&home).args([
            "export",
            "--json",
            "--timestamp",
            "1700000000",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--transform",
            "chunk",
            "--cache",
            &cache,
            "--sink",
            &format!("oci:{}:v1", out.display()),
        ]))
        .ok();
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(
            report["manifestDigest"].as_str().unwrap(),
            layout_digest(&out, "v1")
        );
        report
    };
    let first = export("a");
    let layers = first["layers"].as_array().unwrap().len();
    let second = export("b");
    assert_eq!(second["manifestDigest"], first["manifestDigest"]);
    assert_eq!(second["cachedLayers"], layers, "{second}");
    // Tamper with the largest cached layer: it is refused and re-encoded.
    let largest = first["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let blob = cache_dir.join("blobs/sha256").join(&largest);
    let mut bytes = std::fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let third = export("c");
    assert_eq!(third["manifestDigest"], first["manifestDigest"]);
    assert_eq!(third["cachedLayers"], layers - 1, "{third}");
    // The failed layer was written back: the next machine takes all.
    let fourth = export("d");
    assert_eq!(fourth["cachedLayers"], layers, "{fourth}");

    // A cache writer who maps every input to one valid blob makes a
    // builder encode again, never ship that blob for other input.
    poison(&cache_dir, "main");
    let fifth = export("e");
    assert_eq!(fifth["manifestDigest"], first["manifestDigest"]);
    assert!(fifth["cachedLayers"].as_u64().unwrap() <= 1, "{fifth}");

    // A sink writing the cache's own tag is refused before any work.
    let tree = work.path().join("tree-a");
    let line = run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--cache",
        &cache,
        "--sink",
        &cache,
    ]))
    .fails_with(2);
    assert!(line.contains("writes the same tag"), "{line}");
}

/// Rewrites the cache image at `tag` of the layout `dir` so that every
/// record names the first record's blob.
fn poison(dir: &Path, tag: &str) {
    use sha2::Digest as _;
    let read = |d: &str| {
        std::fs::read(
            dir.join("blobs/sha256")
                .join(d.strip_prefix("sha256:").unwrap()),
        )
        .unwrap()
    };
    let write = |bytes: &[u8]| -> String {
        let hex = hex::encode(sha2::Sha256::digest(bytes));
        std::fs::write(dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&read(entry["digest"].as_str().unwrap())).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&read(manifest["config"]["digest"].as_str().unwrap())).unwrap();
    let layers = config["layers"].as_array_mut().unwrap();
    let (digest, size) = (layers[0]["digest"].clone(), layers[0]["size"].clone());
    for l in layers.iter_mut() {
        l["digest"] = digest.clone();
        l["size"] = size.clone();
    }
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = write(&config_bytes).into();
    manifest["config"]["size"] = config_bytes.len().into();
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    entry["digest"] = write(&manifest_bytes).into();
    entry["size"] = manifest_bytes.len().into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}
