//! Registries: push, pull, tags, mounts, auth, TLS, faults and indexes,
//! against Debian's docker-registry started on 127.0.0.1 for each test.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use treeport_tests::registry::{Auth, PASSWORD, Proxy, RegistryServer, USER, write_authfile};
use treeport_tests::{export_cmd, layout_digest, run, skopeo_inspect, tool, treeport, verify};

/// A small tree with a few files, different for each `seed`.
fn small_tree(dir: &Path, seed: &str) -> PathBuf {
    let root = dir.join(format!("tree-{seed}"));
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/share/data")).unwrap();
    fs::write(root.join("etc/hostname"), format!("{seed}\n")).unwrap();
    let data: Vec<u8> = (0..400_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8 ^ seed.len() as u8)
        .collect();
    fs::write(root.join("usr/share/data/blob"), data).unwrap();
    root
}

/// Registry flags for `server`.
fn flags(server: &RegistryServer) -> Vec<String> {
    vec![
        "--authfile".into(),
        server.authfile.display().to_string(),
        "--cert-dir".into(),
        server.cert_dir.display().to_string(),
    ]
}

fn skopeo_flags(server: &RegistryServer) -> Vec<String> {
    vec![
        format!("--authfile={}", server.authfile.display()),
        format!("--cert-dir={}", server.cert_dir.display()),
    ]
}

fn json(args: &[String], cache: &Path) -> serde_json::Value {
    let ran = run(treeport().args(args).env("TREEPORT_CACHE_DIR", cache)).ok();
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn push_pull_tags_and_mounts_against_htpasswd_and_token_registries() {
    for auth in [Auth::Htpasswd, Auth::Token] {
        let server = RegistryServer::start(auth, true);
        let work = tempfile::tempdir().unwrap();
        let cache = work.path().join("cache");
        let tree = small_tree(work.path(), "push");
        let layout = work.path().join("layout");
        let addr = &server.addr;

        // One run: a local layout and a push.
        let mut args = strings(&["export", "--json", "--source"]);
        args.push(format!("rootfs:{}", tree.display()));
        args.extend(["--sink".into(), format!("oci:{}:v1", layout.display())]);
        args.extend([
            "--sink".into(),
            format!("docker://{addr}/test/image:v1,latest"),
        ]);
        args.extend(flags(&server));
        let report = json(&args, &cache);
        let digest = layout_digest(&layout, "v1");
        assert_eq!(report["manifestDigest"], digest.as_str());
        let pushed = &report["destinations"][1]["counters"];
        assert_eq!(
            pushed["blobs_uploaded"], 2,
            "{auth:?}: config and layer: {report}"
        );
        assert_eq!(
            pushed["blobs_streamed"], 1,
            "{auth:?}: the layer went out while it was encoded: {report}"
        );

        let mut sk = strings(&["inspect"]);
        sk.extend(skopeo_flags(&server));
        sk.push(format!("docker://{addr}/test/image:v1"));
        let inspected: serde_json::Value = serde_json::from_str(&tool("skopeo", &sk)).unwrap();
        assert_eq!(inspected["Digest"], digest.as_str(), "{auth:?}");

        // A second push sends no blob.
        let mut args = strings(&["oci", "push", "--json"]);
        args.extend([
            layout.display().to_string(),
            addr.clone(),
            "test/image:v1".into(),
        ]);
        args.extend(flags(&server));
        let again = json(&args, &cache);
        assert_eq!(again["counters"]["blobs_existing"], 2, "{auth:?}: {again}");
        assert!(
            again["counters"].get("blobs_uploaded").is_none(),
            "{auth:?}: {again}"
        );

        // Another repository of the same registry mounts the blobs.
        let mut args = strings(&["oci", "push", "--json"]);
        args.extend([
            layout.display().to_string(),
            addr.clone(),
            "other/image:v1".into(),
        ]);
        args.extend(flags(&server));
        let mounted = json(&args, &cache);
        assert_eq!(
            mounted["counters"]["blobs_mounted"], 2,
            "{auth:?}: {mounted}"
        );

        // LAYOUT:TAG pushes one image of a layout holding several.
        run(export_cmd(
            &format!("rootfs:{}", tree.display()),
            &[&format!("oci:{}:v2", layout.display())],
        )
        .args(["-q", "--label", "second=yes"]))
        .ok();
        let mut args = strings(&["oci", "push", "--json"]);
        args.extend([
            format!("{}:v1", layout.display()),
            addr.clone(),
            "third/image:stable".into(),
        ]);
        args.extend(flags(&server));
        let picked = json(&args, &cache);
        assert_eq!(picked["digest"], digest.as_str(), "{auth:?}: {picked}");
        assert_ne!(layout_digest(&layout, "v2"), digest);

        // Pull gives back the same digest, every blob checked.
        let pulled = work.path().join("pulled");
        let mut args = strings(&["pull", "--json"]);
        args.extend([
            format!("docker://{addr}/test/image:v1"),
            format!("oci:{}:v1", pulled.display()),
        ]);
        args.extend(flags(&server));
        let r = json(&args, &cache);
        assert_eq!(r["digest"], digest.as_str());
        assert_eq!(layout_digest(&pulled, "v1"), digest);

        let mut args = strings(&["tags", "--json"]);
        args.push(format!("docker://{addr}/test/image"));
        args.extend(flags(&server));
        let tags = json(&args, &cache);
        let mut listed: Vec<&str> = tags["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        listed.sort_unstable();
        assert_eq!(listed, ["latest", "v1"], "{auth:?}");

        let mut vflags = flags(&server);
        vflags.push("--against".into());
        vflags.push(format!("rootfs:{}", tree.display()));
        let vrefs: Vec<&str> = vflags.iter().map(String::as_str).collect();
        verify(&format!("docker://{addr}/test/image:v1"), None, &vrefs);

        let mut args = strings(&["inspect", "--json"]);
        args.push(format!("docker://{addr}/test/image:latest"));
        args.extend(flags(&server));
        assert_eq!(json(&args, &cache)["digest"], digest.as_str());
    }
}

#[test]
fn a_wrong_password_is_named_and_never_shown() {
    for auth in [Auth::Htpasswd, Auth::Token] {
        let server = RegistryServer::start(auth, true);
        let work = tempfile::tempdir().unwrap();
        let tree = small_tree(work.path(), "pw");
        let bad = work.path().join("bad.json");
        let wrong = "not-the-Secret-42";
        write_authfile(&bad, &server.addr, USER, wrong);
        let ran = run(treeport().args([
            "export",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("docker://{}/test/image:v1", server.addr),
            "--authfile",
            bad.to_str().unwrap(),
            "--cert-dir",
            server.cert_dir.to_str().unwrap(),
        ]));
        let all = format!("{}{}", ran.stdout, ran.stderr);
        let line = ran.fails_with(1);
        assert!(
            line.contains(&format!(
                "authentication failed for registry {}",
                server.addr
            )),
            "{auth:?}: {line}"
        );
        assert!(
            !all.contains(wrong) && !all.contains(PASSWORD),
            "{auth:?}: {all}"
        );
    }
}

#[test]
fn tls_is_verified_unless_told_otherwise() {
    let server = RegistryServer::start(Auth::Htpasswd, true);
    let work = tempfile::tempdir().unwrap();
    let tree = small_tree(work.path(), "tls");
    let export = |extra: &[&str]| {
        let mut cmd = treeport();
        cmd.args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("docker://{}/tls/image:v1", server.addr),
            "--authfile",
            server.authfile.to_str().unwrap(),
        ])
        .args(extra);
        run(&mut cmd)
    };
    let line = export(&[]).fails_with(1);
    assert!(
        line.contains(&server.addr) && line.contains("--cert-dir"),
        "{line}"
    );
    export(&["--tls-verify=false"]).ok();
    export(&["--cert-dir", server.cert_dir.to_str().unwrap()]).ok();

    // A registry without TLS: the error says so and names the flag.
    let plain = RegistryServer::start(Auth::Htpasswd, false);
    let line = run(treeport().args([
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--sink",
        &format!("docker://{}/tls/image:v1", plain.addr),
        "--authfile",
        plain.authfile.to_str().unwrap(),
    ]))
    .fails_with(1);
    assert!(
        line.contains(&plain.addr)
            && line.contains("answered in plain HTTP")
            && line.contains("--tls-verify=false"),
        "{line}"
    );
    assert!(!line.contains("InvalidContentType"), "{line}");
}

#[test]
fn a_registry_failing_every_third_request_still_gets_the_whole_image() {
    let server = RegistryServer::start(Auth::None, false);
    let proxy = Proxy::start(&server.addr, Some(3), None);
    let work = tempfile::tempdir().unwrap();
    let tree = small_tree(work.path(), "flaky");
    let layout = work.path().join("layout");
    let ran = run(export_cmd(
        &format!("rootfs:{}", tree.display()),
        &[
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/flaky/image:v1", proxy.addr),
        ],
    )
    .args(["--json", "--tls-verify=false"]))
    .ok();
    assert!(ran.stdout.contains("blobs_uploaded"), "{}", ran.stdout);
    let requests = proxy.requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        requests >= 9,
        "the proxy saw {requests} requests, a third of them failed"
    );
    let inspected = skopeo_inspect(
        &format!("docker://{}/flaky/image:v1", server.addr),
        &["--tls-verify=false"],
    );
    assert_eq!(inspected["Digest"], layout_digest(&layout, "v1").as_str());
}

/// A layout with `layers` layers of incompressible data, made by umoci.
fn multi_layer_layout(dir: &Path, layers: usize, mib: usize) -> PathBuf {
    let layout = dir.join("multi");
    tool("umoci", ["init", "--layout", layout.to_str().unwrap()]);
    tool(
        "umoci",
        ["new", "--image", &format!("{}:v1", layout.display())],
    );
    for i in 0..layers {
        let d = dir.join(format!("layer{i}"));
        fs::create_dir_all(&d).unwrap();
        let mut f = fs::File::create(d.join(format!("data{i}"))).unwrap();
        let bytes = Command::new("head")
            .args(["-c", &format!("{}", mib << 20), "/dev/urandom"])
            .output()
            .unwrap()
            .stdout;
        std::io::Write::write_all(&mut f, &bytes).unwrap();
        tool(
            "umoci",
            [
                "insert",
                "--image",
                &format!("{}:v1", layout.display()),
                d.to_str().unwrap(),
                &format!("/layer{i}"),
            ],
        );
    }
    layout
}

#[test]
fn an_interrupted_push_resumes_sending_only_what_is_missing() {
    let server = RegistryServer::start(Auth::None, false);
    // Throttled, so the push can be killed halfway.
    let proxy = Proxy::start(&server.addr, None, Some(12 << 20));
    let work = tempfile::tempdir().unwrap();
    let layout = multi_layer_layout(work.path(), 6, 8);
    let mut child = treeport()
        .args([
            "oci",
            "push",
            "-q",
            layout.to_str().unwrap(),
            &proxy.addr,
            "resume/image:v1",
            "--tls-verify=false",
        ])
        .env("TREEPORT_CACHE_DIR", work.path().join("cache"))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.stored_blobs().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no blob landed");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // What the proxy still holds of the killed push is dropped; an upload
    // whose last byte already passed may still land: wait until the
    // registry's store is still.
    proxy.cut();
    let mut landed = server.stored_blobs();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let now = server.stored_blobs();
        if now == landed {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the registry never settled"
        );
        landed = now;
    }
    let manifest: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        ["inspect", "--raw", &format!("oci:{}:v1", layout.display())],
    ))
    .unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let present = layers.iter().filter(|d| landed.contains(d)).count();
    assert!(
        present < layers.len(),
        "the kill came too late: all layers landed"
    );

    let ran = run(treeport()
        .args([
            "oci",
            "push",
            "--json",
            layout.to_str().unwrap(),
            &server.addr,
            "resume/image:v1",
            "--tls-verify=false",
        ])
        .env("TREEPORT_CACHE_DIR", work.path().join("cache")))
    .ok();
    let r: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let config_landed =
        usize::from(landed.contains(&manifest["config"]["digest"].as_str().unwrap().to_string()));
    assert_eq!(
        r["counters"]["blobs_existing"],
        (present + config_landed) as u64,
        "{r}"
    );
    assert_eq!(
        r["counters"]["blobs_uploaded"],
        (layers.len() + 1 - present - config_landed) as u64,
        "{r}"
    );
    let inspected = skopeo_inspect(
        &format!("docker://{}/resume/image:v1", server.addr),
        &["--tls-verify=false"],
    );
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), layers.len());
}

#[test]
fn an_index_of_amd64_and_arm64_pushes_and_pulls_back() {
    treeport_tests::require_root();
    let server = RegistryServer::start(Auth::Htpasswd, true);
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let amd = work.path().join("amd64");
    let arm = work.path().join("arm64");
    let tree = small_tree(work.path(), "amd64");
    run(export_cmd(
        &format!("rootfs:{}", tree.display()),
        &[&format!("oci:{}:v1", amd.display())],
    )
    .args(["-q"]))
    .ok();
    // mmdebstrap's extract variant unpacks arm64 packages without running them.
    run(treeport().args([
        "export",
        "-q",
        "--source",
        "mmdebstrap:bookworm",
        "--source-opt",
        "variant=extract",
        "--source-opt",
        "arch=arm64",
        "--source-opt",
        &format!("mirror={}", treeport_tests::fixtures::mirror()),
        "--sink",
        &format!("oci:{}:v1", arm.display()),
    ]))
    .ok();
    let addr = &server.addr;
    let mut args = strings(&["index", "--json"]);
    args.push(format!("docker://{addr}/multi/image:latest"));
    args.push(format!("oci:{}:v1", amd.display()));
    args.push(format!("oci:{}:v1", arm.display()));
    args.extend(flags(&server));
    let r = json(&args, &cache);
    let index_digest = r["digest"].as_str().unwrap().to_string();
    assert_eq!(r["mediaType"], "application/vnd.oci.image.index.v1+json");

    let mut sk = strings(&["inspect", "--raw"]);
    sk.extend(skopeo_flags(&server));
    sk.push(format!("docker://{addr}/multi/image:latest"));
    let raw: serde_json::Value = serde_json::from_str(&tool("skopeo", &sk)).unwrap();
    let mut platforms: Vec<String> = raw["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    let pulled = work.path().join("pulled");
    let mut args = strings(&["pull", "--json"]);
    args.extend([
        format!("docker://{addr}/multi/image:latest"),
        format!("oci:{}:latest", pulled.display()),
    ]);
    args.extend(flags(&server));
    assert_eq!(json(&args, &cache)["digest"], index_digest.as_str());
    assert_eq!(layout_digest(&pulled, "latest"), index_digest);
    verify(&format!("oci:{}:latest", pulled.display()), None, &[]);
    let mut args = strings(&["inspect", "--json", "--platform", "linux/arm64"]);
    args.push(format!("oci:{}:latest", pulled.display()));
    let arm_view = json(&args, &cache);
    assert_eq!(arm_view["platform"], "linux/arm64");
    assert_eq!(arm_view["indexDigest"], index_digest.as_str());

    // --platform pulls one image out of the index.
    let one = work.path().join("one");
    let mut args = strings(&["pull", "--json", "--platform", "linux/arm64"]);
    args.extend([
        format!("docker://{addr}/multi/image:latest"),
        format!("oci:{}:arm", one.display()),
    ]);
    args.extend(flags(&server));
    let r = json(&args, &cache);
    assert_eq!(r["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(layout_digest(&one, "arm"), layout_digest(&arm, "v1"));
}

#[test]
fn no_command_starts_skopeo() {
    let server = RegistryServer::start(Auth::Htpasswd, true);
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let marker = work.path().join("skopeo-was-run");
    let fake = bin.join("skopeo");
    fs::write(
        &fake,
        format!("#!/bin/sh\ntouch {}\nexit 1\n", marker.display()),
    )
    .unwrap();
    tool("chmod", ["755", fake.to_str().unwrap()]);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let tree = small_tree(work.path(), "noskopeo");
    let layout = work.path().join("layout");
    let reference = format!("docker://{}/plain/image:v1", server.addr);
    let mut commands: Vec<Vec<String>> = vec![
        vec![
            "export".into(),
            "--source".into(),
            format!("rootfs:{}", tree.display()),
            "--sink".into(),
            format!("oci:{}:v1", layout.display()),
            "--sink".into(),
            reference.clone(),
        ],
        vec![
            "oci".into(),
            "push".into(),
            layout.display().to_string(),
            server.addr.clone(),
            "plain/image:v2".into(),
        ],
        vec![
            "pull".into(),
            reference.clone(),
            format!("oci:{}:pulled", layout.display()),
        ],
        vec![
            "tags".into(),
            format!("docker://{}/plain/image", server.addr),
        ],
        vec!["inspect".into(), reference],
    ];
    for c in &mut commands {
        c.extend(flags(&server));
        run(treeport().args(&*c).env("PATH", &path)).ok();
    }
    assert!(!marker.exists(), "a command ran skopeo");
}

#[test]
fn credentials_come_from_helpers_and_default_auth_files() {
    let server = RegistryServer::start(Auth::Token, true);
    let work = tempfile::tempdir().unwrap();
    let tree = small_tree(work.path(), "helpers");

    // A docker-credential helper answering on stdout; it logs its arguments
    // and what it read on stdin, which must be the registry only.
    let bin = work.path().join("bin");
    fs::create_dir(&bin).unwrap();
    let log = work.path().join("helper.log");
    let helper = bin.join("docker-credential-treeporttest");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\necho \"args: $*\" >> {log}\nread reg\necho \"stdin: $reg\" >> {log}\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$reg\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    tool("chmod", ["755", helper.to_str().unwrap()]);
    let home = work.path().join("home");
    fs::create_dir_all(home.join(".docker")).unwrap();
    fs::write(
        home.join(".docker/config.json"),
        format!(r#"{{"credHelpers":{{"{}":"treeporttest"}}}}"#, server.addr),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let export = |env: &[(&str, String)], tag: &str| {
        let mut cmd = treeport();
        cmd.args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("docker://{}/helper/image:{tag}", server.addr),
            "--cert-dir",
            server.cert_dir.to_str().unwrap(),
        ])
        .env("PATH", &path)
        .env("HOME", &home)
        .env_remove("REGISTRY_AUTH_FILE")
        .env_remove("XDG_RUNTIME_DIR");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(&mut cmd).ok();
    };
    export(&[], "helper");
    let logged = fs::read_to_string(&log).unwrap();
    assert!(logged.contains("args: get"), "{logged}");
    assert!(
        logged.contains(&format!("stdin: {}", server.addr)),
        "{logged}"
    );
    assert!(!logged.contains(PASSWORD), "{logged}");

    // $XDG_RUNTIME_DIR/containers/auth.json comes before ~/.docker/config.json.
    let runtime = work.path().join("run");
    fs::create_dir_all(runtime.join("containers")).unwrap();
    write_authfile(
        &runtime.join("containers/auth.json"),
        &server.addr,
        USER,
        PASSWORD,
    );
    fs::write(&log, "").unwrap();
    export(&[("XDG_RUNTIME_DIR", runtime.display().to_string())], "xdg");
    assert_eq!(
        fs::read_to_string(&log).unwrap(),
        "",
        "the helper was not needed"
    );
}

#[test]
fn a_layer_is_streamed_while_encoded_and_a_layout_pushed_in_chunks() {
    treeport_tests::require_root();
    let server = RegistryServer::start(Auth::None, false);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    // An export sends the layer while it is compressed, in streamed PATCH
    // requests of 8 MiB (each ends at a 256 KiB piece).
    let ran = run(export_cmd(
        &format!("rootfs:{}", treeport_tests::fixtures::minbase().display()),
        &[
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/streamed/image:v1", server.addr),
        ],
    )
    .args(["--json", "--tls-verify=false"]))
    .ok();
    let r: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let size = r["layers"][0]["size"].as_u64().unwrap();
    assert!(
        size > 32 << 20,
        "the layer ({size} B) is larger than one chunk"
    );
    let pushed = &r["destinations"][1]["counters"];
    assert_eq!(pushed["blobs_streamed"], 1, "{r}");
    assert_eq!(pushed["blobs_uploaded"], 2, "{r}");
    let log = server.log();
    let streamed_patches = log
        .matches("\"PATCH /v2/streamed/image/blobs/uploads/")
        .count();
    let span = 8u64 << 20;
    let most = size.div_ceil(span);
    assert!(
        (2..=most).contains(&(streamed_patches as u64)),
        "{streamed_patches} PATCH requests for a {size} B layer: {log}"
    );
    let inspected = skopeo_inspect(
        &format!("docker://{}/streamed/image:v1", server.addr),
        &["--tls-verify=false"],
    );
    assert_eq!(inspected["Digest"], layout_digest(&layout, "v1").as_str());
    verify(
        &format!("docker://{}/streamed/image:v1", server.addr),
        None,
        &["--tls-verify=false"],
    );

    // A push from disk sends a large blob in chunks (a fresh cache of blob
    // locations, so it uploads rather than mounts).
    run(treeport()
        .args([
            "oci",
            "push",
            "-q",
            layout.to_str().unwrap(),
            &server.addr,
            "big/image:v1",
            "--tls-verify=false",
        ])
        .env("TREEPORT_CACHE_DIR", work.path().join("fresh-cache")))
    .ok();
    let patches = server
        .log()
        .matches("\"PATCH /v2/big/image/blobs/uploads/")
        .count();
    assert!(
        patches >= 2,
        "{patches} PATCH requests for a {size} B layer"
    );
    let inspected = skopeo_inspect(
        &format!("docker://{}/big/image:v1", server.addr),
        &["--tls-verify=false"],
    );
    assert_eq!(inspected["Digest"], layout_digest(&layout, "v1").as_str());
}

#[test]
fn a_registry_refusing_streamed_uploads_gets_the_layer_from_disk() {
    let server = RegistryServer::start(Auth::None, false);
    // As some registries and proxies do: no chunked request bodies.
    let proxy = Proxy::refusing_streams(&server.addr);
    let work = tempfile::tempdir().unwrap();
    let tree = small_tree(work.path(), "refused");
    let layout = work.path().join("layout");
    let ran = run(export_cmd(
        &format!("rootfs:{}", tree.display()),
        &[
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{}/refused/image:v1", proxy.addr),
        ],
    )
    .args(["--json", "--tls-verify=false"]))
    .ok();
    let r: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let pushed = &r["destinations"][1]["counters"];
    assert!(pushed.get("blobs_streamed").is_none(), "{r}");
    assert_eq!(pushed["blobs_uploaded"], 2, "{r}");
    assert!(
        proxy.refused.load(std::sync::atomic::Ordering::Relaxed) >= 1,
        "the stream was tried"
    );
    let inspected = skopeo_inspect(
        &format!("docker://{}/refused/image:v1", server.addr),
        &["--tls-verify=false"],
    );
    assert_eq!(inspected["Digest"], layout_digest(&layout, "v1").as_str());
}
