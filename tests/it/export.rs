//! Exports to an OCI layout, checked by skopeo, oci-image-tool and umoci.

use std::fs;
use std::process::Command;

use treeport_tests::{
    export_cmd, fixtures, layout_digest, list_files, oci_validate, require_root, run,
    skopeo_inspect, tool, treeport, trees, umoci_unpack, verify,
};

#[test]
fn minbase_bookworm_round_trips_through_umoci_and_dpkg_verify() {
    require_root();
    let rootfs = fixtures::minbase();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", rootfs.display()),
        "--sink",
        &format!("oci:{}:bookworm", layout.display()),
        "--label",
        "org.opencontainers.image.title=minbase",
    ]))
    .ok();

    let inspected = skopeo_inspect(&format!("oci:{}:bookworm", layout.display()), &[]);
    assert_eq!(inspected["Digest"], layout_digest(&layout, "bookworm"));
    assert_eq!(
        inspected["Labels"]["org.opencontainers.image.title"],
        "minbase"
    );
    assert_eq!(inspected["Architecture"], "amd64");
    oci_validate(&layout, "bookworm");
    verify(
        &format!("oci:{}:bookworm", layout.display()),
        Some(&format!("rootfs:{}", rootfs.display())),
        &[],
    );

    let bundle = umoci_unpack(&layout, "bookworm");
    let unpacked = bundle.path().join("b/rootfs");
    let diffs = trees::differences(&rootfs, &unpacked);
    assert!(
        diffs.is_empty(),
        "unpacked tree differs:\n{}",
        diffs.join("\n")
    );

    let verify = run(Command::new("chroot")
        .arg(&unpacked)
        .args(["dpkg", "--verify"]));
    assert_eq!(verify.code, Some(0), "{verify:#?}");
    assert_eq!(verify.stdout, "", "dpkg --verify reported problems");
}

#[test]
fn every_edge_case_round_trips() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir(&root).unwrap();
    trees::edge_case_tree(&root);
    let layout = work.path().join("img");
    let ran = run(&mut export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!("oci:{}:edge", layout.display())],
    ))
    .ok();
    assert!(
        ran.stderr.contains("warning: skipping socket") && ran.stderr.contains("tmp/socket"),
        "the socket is reported: {}",
        ran.stderr
    );
    oci_validate(&layout, "edge");
    verify(
        &format!("oci:{}:edge", layout.display()),
        Some(&format!("rootfs:{}", root.display())),
        &[],
    );
    let bundle = umoci_unpack(&layout, "edge");
    let diffs = trees::differences(&root, &bundle.path().join("b/rootfs"));
    assert!(
        diffs.is_empty(),
        "unpacked tree differs:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn the_same_input_and_timestamp_give_the_same_digest() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir(&root).unwrap();
    trees::edge_case_tree(&root);
    let export = |dest: &str, threads: &str, env_epoch: bool| {
        let mut cmd = treeport();
        cmd.args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", root.display()),
            "--sink",
            &format!("oci:{}", work.path().join(dest).display()),
            "--threads",
            threads,
        ]);
        if env_epoch {
            cmd.env("SOURCE_DATE_EPOCH", "1700000000");
        } else {
            cmd.args(["--timestamp", "1700000000"]);
        }
        let ran = run(&mut cmd).ok();
        assert_eq!(ran.stdout, "", "-q prints nothing");
        layout_digest(&work.path().join(dest), "latest")
    };
    let a = export("a", "1", false);
    let b = export("b", "2", false);
    let c = export("c", "2", true);
    assert_eq!(a, b);
    assert_eq!(a, c, "SOURCE_DATE_EPOCH works like --timestamp");
    let config = skopeo_inspect(
        &format!("oci:{}", work.path().join("a").display()),
        &["--config"],
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn image_flags_land_in_the_config() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(root.join("srv")).unwrap();
    fs::write(root.join("srv/app"), b"#!/bin/sh\n").unwrap();
    let layout = work.path().join("img");
    run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", root.display()),
        "--sink",
        &format!("oci:{}:v1", layout.display()),
        "--label",
        "com.example.a=1",
        "--annotation",
        "com.example.note=hello",
        "--env",
        "PATH=/usr/bin:/bin",
        "--env",
        "LANG=C.UTF-8",
        "--expose",
        "8080",
        "--expose",
        "53/udp",
        "--volume",
        "/data",
        "--entrypoint",
        r#"["/srv/app", "--serve"]"#,
        "--cmd",
        "--port 8080",
        "--workdir",
        "/srv",
        "--user",
        "1000:1000",
        "--arch",
        "arm64/v8",
        "--os",
        "linux",
    ]))
    .ok();
    let reference = format!("oci:{}:v1", layout.display());
    let config = skopeo_inspect(&reference, &["--config"]);
    let c = &config["config"];
    assert_eq!(c["Labels"]["com.example.a"], "1");
    assert_eq!(
        c["Env"],
        serde_json::json!(["PATH=/usr/bin:/bin", "LANG=C.UTF-8"])
    );
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}}));
    assert_eq!(c["Entrypoint"], serde_json::json!(["/srv/app", "--serve"]));
    assert_eq!(c["Cmd"], serde_json::json!(["--port", "8080"]));
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(config["architecture"], "arm64");
    assert_eq!(config["variant"], "v8");
    let raw: serde_json::Value =
        serde_json::from_str(&tool("skopeo", ["inspect", "--raw", &reference])).unwrap();
    assert_eq!(raw["annotations"]["com.example.note"], "hello");
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

#[test]
fn a_layout_keeps_its_other_tags_and_only_blobs() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    for (tag, content) in [("one", "1"), ("two", "2"), ("one", "1 again")] {
        let root = work.path().join(format!("tree-{tag}"));
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join("f"), content).unwrap();
        run(&mut export_cmd(
            &format!("rootfs:{}", root.display()),
            &[&format!("oci:{}:{tag}", layout.display())],
        ))
        .ok();
    }
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, ["two", "one"]);
    for tag in ["one", "two"] {
        let _ = skopeo_inspect(&format!("oci:{}:{tag}", layout.display()), &[]);
    }
    // blobs/ holds only sha256/<hex> files whose content matches the name;
    // nothing temporary is left anywhere in the layout.
    for name in list_files(&layout) {
        assert!(!name.contains(".treeport-tmp-"), "left behind: {name}");
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            let bytes = fs::read(layout.join(&name)).unwrap();
            assert_eq!(
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
                hex
            );
        } else {
            assert!(
                ["blobs", "blobs/sha256", "index.json", "oci-layout"].contains(&name.as_str()),
                "unexpected file in the layout: {name}"
            );
        }
    }
}

#[test]
fn zstd_and_uncompressed_layers_have_their_media_types() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hostname"), b"zstd\n").unwrap();
    for (compression, media_type) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
        ("none", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let layout = work.path().join(compression);
        let ran = run(treeport().args([
            "export",
            "--json",
            "--source",
            &format!("rootfs:{}", root.display()),
            "--sink",
            &format!("oci:{}", layout.display()),
            "--compression",
            compression,
        ]))
        .ok();
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(report["layers"][0]["mediaType"], media_type);
        let raw: serde_json::Value = serde_json::from_str(&tool(
            "skopeo",
            ["inspect", "--raw", &format!("oci:{}", layout.display())],
        ))
        .unwrap();
        assert_eq!(raw["layers"][0]["mediaType"], media_type);
        assert_eq!(raw["layers"][0]["digest"], report["layers"][0]["digest"]);
    }
}

#[test]
fn the_layer_cache_encodes_only_changed_layers_and_stays_correct() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    tool(
        "cp",
        [
            "-a",
            fixtures::minbase().to_str().unwrap(),
            root.to_str().unwrap(),
        ],
    );
    let cache = work.path().join("cache");
    let export = |name: &str, with_cache: bool| -> serde_json::Value {
        let mut args = vec![
            "export".to_string(),
            "--json".into(),
            "--transform".into(),
            "chunk".into(),
            "--timestamp".into(),
            "1700000000".into(),
            "--source".into(),
            format!("rootfs:{}", root.display()),
            "--sink".into(),
            format!("oci:{}", work.path().join(name).display()),
        ];
        if with_cache {
            args.extend(["--cache".into(), cache.display().to_string()]);
        }
        serde_json::from_str(&run(treeport().args(&args)).ok().stdout).unwrap()
    };
    let cold = export("cold", true);
    assert_eq!(cold["cachedLayers"], 0);
    let layers = cold["layers"].as_array().unwrap().len() as u64;
    let again = export("again", true);
    assert_eq!(again["cachedLayers"], layers, "nothing changed");
    assert_eq!(again["manifestDigest"], cold["manifestDigest"]);

    // One package changes: only its layer is encoded again.
    let copyright = root.join("usr/share/doc/hostname/copyright");
    let mut text = fs::read(&copyright).unwrap();
    text.extend_from_slice(b"\nchanged for the cache test\n");
    fs::write(&copyright, text).unwrap();
    let warm = export("warm", true);
    assert_eq!(warm["cachedLayers"], layers - 1, "{warm}");
    assert_ne!(warm["manifestDigest"], cold["manifestDigest"]);
    // And the result is exactly what an export without the cache gives.
    let fresh = export("fresh", false);
    assert_eq!(warm["manifestDigest"], fresh["manifestDigest"]);
}
