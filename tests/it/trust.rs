//! Trust boundaries: what treeport reads, writes, removes and sends stays
//! within what the user asked for, whatever the input does.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use treeport_tests::crafted;
use treeport_tests::registry::{FakeRegistry, Reply, Seen, write_authfile};
use treeport_tests::{
    bin, fixtures, layout_digest, require, require_root, run, run_for, treeport, verify,
};

/// Names of treeport's temporaries directly in `dir`.
fn temporaries_in(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".treeport-tmp-"))
        .collect()
}

/// Several exports at once, some in a PID namespace of their own, sharing
/// one TMPDIR and one destination directory, each making a chunked bootc
/// image (whose OSTree commit is built in a temporary repository): every
/// one lands, none removes another's temporaries, and a directory named
/// like a temporary that no treeport run made is left alone.
#[test]
fn runs_sharing_tmpdir_and_destination_never_disturb_each_other() {
    require_root();
    require("unshare");
    let rootfs = fixtures::minbase();
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    let out = work.path().join("out");
    fs::create_dir_all(&tmp).unwrap();
    fs::create_dir_all(&out).unwrap();
    let foreign = [
        tmp.join(".treeport-tmp-3999999-not-treeports"),
        out.join(".treeport-tmp-3999998-not-treeports"),
    ];
    for f in &foreign {
        fs::create_dir(f).unwrap();
        fs::write(f.join("keep"), b"mine").unwrap();
    }
    let children: Vec<(String, std::process::Child)> = (0..4)
        .map(|i| {
            let in_namespace = i % 2 == 1;
            let layout = out.join(format!("img{i}"));
            let mut cmd = if in_namespace {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc"]).arg(bin());
                c
            } else {
                Command::new(bin())
            };
            cmd.args([
                "export",
                "-q",
                "--timestamp",
                "1700000000",
                "--source",
                &format!("rootfs:{}", rootfs.display()),
                "--transform",
                "chunk:max-layers=32",
                "--transform",
                "bootc",
                "--sink",
                &format!("oci:{}:v1", layout.display()),
            ])
            .env("TMPDIR", &tmp)
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
            let name = format!(
                "run {i}{}",
                if in_namespace {
                    " (own PID namespace)"
                } else {
                    ""
                }
            );
            (name, cmd.spawn().unwrap())
        })
        .collect();
    let mut digests = Vec::new();
    for (i, (name, child)) in children.into_iter().enumerate() {
        let done = child.wait_with_output().unwrap();
        assert!(
            done.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&done.stderr)
        );
        let layout = out.join(format!("img{i}"));
        digests.push(layout_digest(&layout, "v1"));
        verify(&format!("oci:{}:v1", layout.display()), None, &[]);
    }
    digests.dedup();
    assert_eq!(digests.len(), 1, "the same image from every run");
    for f in &foreign {
        assert_eq!(
            fs::read(f.join("keep")).unwrap(),
            b"mine",
            "{}",
            f.display()
        );
    }
    // Only the foreign directories are left: every run removed its own.
    assert_eq!(
        temporaries_in(&tmp),
        [".treeport-tmp-3999999-not-treeports"]
    );
    assert_eq!(
        temporaries_in(&out),
        [".treeport-tmp-3999998-not-treeports"]
    );
}

/// A registry on 127.0.0.1 that wants Basic credentials and, once given
/// them, sends uploads and tag-list pages to `elsewhere`.
fn registry_pointing_at(elsewhere: String) -> FakeRegistry {
    FakeRegistry::start_with(move |r: &Seen| {
        if r.header("authorization").is_none() {
            return Reply::status(401, &[("WWW-Authenticate", "Basic realm=\"fake\"")]);
        }
        let (method, path) = (r.method.as_str(), r.path.as_str());
        if path == "/v2/" {
            Reply::ok("application/json", b"{}".to_vec())
        } else if method == "HEAD" {
            Reply::status(404, &[])
        } else if method == "POST" && path.contains("/blobs/uploads/") {
            Reply::status(
                202,
                &[("Location", &format!("http://{elsewhere}/elsewhere/upload"))],
            )
        } else if path.contains("/tags/list") {
            let mut reply = Reply::ok("application/json", br#"{"name":"r","tags":["a"]}"#.to_vec());
            reply.headers.push((
                "Link".into(),
                format!("<http://{elsewhere}/v2/r/tags/list?last=a>; rel=\"next\""),
            ));
            reply
        } else {
            Reply::status(404, &[])
        }
    })
}

/// Credentials go to the registry they are for, never to a host its
/// `Location` or `Link` headers name.
#[test]
fn credentials_stay_with_their_registry() {
    let elsewhere = FakeRegistry::start_with(|_| {
        Reply::status(401, &[("WWW-Authenticate", "Basic realm=\"elsewhere\"")])
    });
    let registry = registry_pointing_at(elsewhere.addr.clone());
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hostname"), b"trust\n").unwrap();
    let authfile = work.path().join("auth.json");
    write_authfile(&authfile, &registry.addr, "user", "s3cret-password");
    let flags = [
        "--authfile",
        authfile.to_str().unwrap(),
        "--tls-verify=false",
    ];
    // A push (streamed while encoding, then from disk) and a push of a layout.
    let ran = run(treeport()
        .args(["export", "--source", &format!("rootfs:{}", root.display())])
        .args(["--sink", &format!("docker://{}/r:v1", registry.addr)])
        .args([
            "--sink",
            &format!("oci:{}", work.path().join("img").display()),
        ])
        .args(flags));
    let line = ran.fails_with(1);
    assert!(line.contains("they are sent only to"), "{line}");
    let ran = run(treeport()
        .args([
            "pull",
            &format!("oci:{}", work.path().join("img").display()),
        ])
        .arg(format!("docker://{}/r:v2", registry.addr))
        .args(flags));
    let line = ran.fails_with(1);
    assert!(line.contains(elsewhere.addr.as_str()), "{line}");
    // The tag list's next page lives elsewhere: not followed.
    let line = run(treeport()
        .args(["tags", &format!("docker://{}/r", registry.addr)])
        .args(flags))
    .fails_with(1);
    assert!(line.contains("links to another place"), "{line}");

    // A redirect elsewhere, where the answer is a Bearer challenge naming a
    // token service there: no credentials, not even to that token service.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[]}}"#,
        crafted::digest(config),
        config.len()
    );
    let evil = FakeRegistry::start_with(|r: &Seen| {
        let addr = r.header("host").unwrap_or_default().to_string();
        Reply::status(
            401,
            &[(
                "WWW-Authenticate",
                &format!("Bearer realm=\"http://{addr}/token\",service=\"evil\""),
            )],
        )
    });
    let to_evil = evil.addr.clone();
    let redirecting = FakeRegistry::start_with(move |r: &Seen| {
        if r.header("authorization").is_none() {
            return Reply::status(401, &[("WWW-Authenticate", "Basic realm=\"fake\"")]);
        }
        if r.path == "/v2/" {
            Reply::ok("application/json", b"{}".to_vec())
        } else if r.path.contains("/manifests/") {
            Reply::ok(
                "application/vnd.oci.image.manifest.v1+json",
                manifest.clone().into_bytes(),
            )
        } else {
            Reply::status(307, &[("Location", &format!("http://{to_evil}{}", r.path))])
        }
    });
    write_authfile(&authfile, &redirecting.addr, "user", "s3cret-password");
    let line = run(treeport()
        .args([
            "pull",
            &format!("docker://{}/r:v1", redirecting.addr),
            &format!("oci:{}", work.path().join("pulled").display()),
        ])
        .args(flags))
    .fails_with(1);
    assert!(line.contains("they are sent only to"), "{line}");
    assert!(line.contains(&evil.addr), "{line}");
    let at_evil = evil.seen();
    assert!(!at_evil.is_empty(), "the redirect was followed");
    for r in &at_evil {
        assert_eq!(r.header("authorization"), None, "{r:?}");
    }
    assert!(
        !at_evil.iter().any(|r| r.path.starts_with("/token")),
        "{at_evil:?}"
    );

    let at_elsewhere = elsewhere.seen();
    assert!(!at_elsewhere.is_empty(), "uploads were sent there");
    for r in &at_elsewhere {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        assert!(
            !r.path.contains("tags"),
            "the tag link was not followed: {r:?}"
        );
    }
    // The registry itself did get the credentials.
    assert!(
        registry
            .seen()
            .iter()
            .any(|r| r.header("authorization").is_some())
    );
}

/// A tag list that links to itself, and a registry that sends a manifest
/// one byte every two seconds, end with an error in bounded time.
#[test]
fn looping_and_dripping_registries_end_in_bounded_time() {
    let looping = FakeRegistry::start(|_, path| {
        if path == "/v2/" {
            return Reply::ok("application/json", b"{}".to_vec());
        }
        let mut reply = Reply::ok(
            "application/json",
            br#"{"name":"r","tags":["a","b"]}"#.to_vec(),
        );
        reply.headers.push((
            "Link".into(),
            "</v2/r/tags/list?n=1000>; rel=\"next\"".into(),
        ));
        reply
    });
    let started = Instant::now();
    let line = run_for(
        treeport().args([
            "tags",
            &format!("docker://{}/r", looping.addr),
            "--tls-verify=false",
        ]),
        Duration::from_secs(60),
    )
    .fails_with(1);
    assert!(line.contains("links back to a page"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let dripping = FakeRegistry::start(|_, path| {
        if path == "/v2/" {
            return Reply::ok("application/json", b"{}".to_vec());
        }
        let mut reply = Reply::ok(
            "application/vnd.oci.image.manifest.v1+json",
            vec![b' '; 4096],
        );
        reply.drip = Some(Duration::from_secs(2));
        reply
    });
    let started = Instant::now();
    let work = tempfile::tempdir().unwrap();
    let line = run_for(
        treeport().args([
            "pull",
            &format!("docker://{}/r:v1", dripping.addr),
            &format!("oci:{}", work.path().join("out").display()),
            "--tls-verify=false",
        ]),
        Duration::from_secs(300),
    )
    .fails_with(1);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(150), "took {took:?}: {line}");
    assert!(line.contains(&dripping.addr), "{line}");
    assert!(!work.path().join("out").exists());
}

/// A small image in an OCI layout at `dir`, tagged v1.
fn small_layout(work: &Path, name: &str) -> std::path::PathBuf {
    let root = work.join(format!("{name}-tree"));
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hostname"), b"trust\n").unwrap();
    fs::write(root.join("etc/data"), "data line\n".repeat(10_000)).unwrap();
    let layout = work.join(name);
    run(treeport().args([
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", root.display()),
        "--sink",
        &format!("oci:{}:v1", layout.display()),
    ]))
    .ok();
    layout
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-a", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The digest of the layout's first layer.
fn first_layer(layout: &Path) -> String {
    crafted::manifest(layout)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A change made to a copy of a layout.
type Damage<'a> = Box<dyn Fn(&Path) + 'a>;

/// Blobs are regular files inside their layout: a blob that is a symlink
/// (to a secret, to /dev/zero), a FIFO, or a `blobs/sha256` that points
/// elsewhere is refused by name, by every command that reads it, in bounded
/// time, and nothing of it reaches a destination or a registry.
#[test]
fn blobs_outside_the_layout_are_never_read_or_sent() {
    let work = tempfile::tempdir().unwrap();
    let a = small_layout(work.path(), "a");
    let layer = first_layer(&a);
    let secret = work.path().join("secret");
    fs::write(&secret, b"the password file").unwrap();
    let registry = FakeRegistry::start(|method, path| match (method, path) {
        (_, "/v2/") => Reply::ok("application/json", b"{}".to_vec()),
        ("HEAD", _) => Reply::status(404, &[]),
        _ => Reply::status(202, &[("Location", "/v2/x/blobs/uploads/1")]),
    });
    let cases: [(&str, Damage, &str); 4] = [
        (
            "symlink to a file",
            Box::new(|dir: &Path| {
                let blob = crafted::blob_path(dir, &layer);
                fs::remove_file(&blob).unwrap();
                std::os::unix::fs::symlink(&secret, &blob).unwrap();
            }),
            "is a symlink",
        ),
        (
            "symlink to /dev/zero",
            Box::new(|dir: &Path| {
                let blob = crafted::blob_path(dir, &layer);
                fs::remove_file(&blob).unwrap();
                std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
            }),
            "is a symlink",
        ),
        (
            "FIFO",
            Box::new(|dir: &Path| {
                let blob = crafted::blob_path(dir, &layer);
                fs::remove_file(&blob).unwrap();
                let status = Command::new("mkfifo").arg(&blob).status().unwrap();
                assert!(status.success());
            }),
            "not a regular file",
        ),
        (
            "blobs/sha256 elsewhere",
            Box::new(|dir: &Path| {
                let real = dir.with_extension("real-blobs");
                fs::rename(dir.join("blobs/sha256"), &real).unwrap();
                std::os::unix::fs::symlink(&real, dir.join("blobs/sha256")).unwrap();
            }),
            "is a symlink",
        ),
    ];
    for (i, (what, damage, says)) in cases.iter().enumerate() {
        let src = work.path().join(format!("case{i}"));
        copy_dir(&a, &src);
        damage(&src);
        let from = format!("oci:{}:v1", src.display());
        let dest = work.path().join(format!("dest{i}"));
        for args in [
            vec![
                "pull".to_string(),
                from.clone(),
                format!("oci:{}", dest.display()),
            ],
            vec![
                "pull".to_string(),
                from.clone(),
                format!("docker://{}/x:v1", registry.addr),
                "--tls-verify=false".to_string(),
            ],
            vec![
                "oci".to_string(),
                "push".to_string(),
                src.display().to_string(),
                registry.addr.clone(),
                "x:v1".to_string(),
                "--tls-verify=false".to_string(),
            ],
            vec!["verify".to_string(), from.clone()],
            vec!["inspect".to_string(), from.clone()],
        ] {
            let ran = run_for(treeport().args(&args), Duration::from_secs(60));
            if args[0] == "inspect" && ran.code == Some(0) {
                // Inspect reads manifest and config only: fine, as long as
                // it did not touch the layer.
                continue;
            }
            let line = ran.fails_with(1);
            assert!(line.contains(says), "{what}: {args:?}: {line}");
        }
        assert!(!dest.exists(), "{what}: nothing written");
    }
    let uploads: Vec<Seen> = registry
        .seen()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(uploads.is_empty(), "nothing was sent: {uploads:?}");
}

/// Every source is checked on the way in: a flipped byte in a layer or in
/// the config, or a manifest that understates a layer, stops a pull with
/// the digest named, before anything is written.
#[test]
fn pull_checks_every_blob_it_copies() {
    let work = tempfile::tempdir().unwrap();
    let a = small_layout(work.path(), "a");
    let layer = first_layer(&a);
    let config = crafted::manifest(&a)["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let flip = |dir: &Path, digest: &str| {
        let blob = crafted::blob_path(dir, digest);
        let mut bytes = fs::read(&blob).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::remove_file(&blob).unwrap();
        fs::write(&blob, bytes).unwrap();
    };
    for (i, target) in [&layer, &config].into_iter().enumerate() {
        let src = work.path().join(format!("flip{i}"));
        copy_dir(&a, &src);
        flip(&src, target);
        for dest in [
            format!("oci:{}", work.path().join(format!("out{i}")).display()),
            format!(
                "oci-archive:{}",
                work.path().join(format!("out{i}.tar")).display()
            ),
        ] {
            let line = run(treeport().args(["pull", &format!("oci:{}:v1", src.display()), &dest]))
                .fails_with(1);
            assert!(line.contains(target.as_str()), "{line}");
        }
        assert!(!work.path().join(format!("out{i}")).exists());
        assert!(!work.path().join(format!("out{i}.tar")).exists());
    }
    // A manifest that says the layer is smaller than it is (a new manifest,
    // so the index names it by its own digest).
    let src = work.path().join("short");
    copy_dir(&a, &src);
    let mut manifest = crafted::manifest(&src);
    let size = manifest["layers"][0]["size"].as_u64().unwrap();
    manifest["layers"][0]["size"] = (size - 100).into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let d = crafted::digest(&bytes);
    fs::write(crafted::blob_path(&src, &d), &bytes).unwrap();
    let mut index = crafted::index(&src);
    index["manifests"][0]["digest"] = d.clone().into();
    index["manifests"][0]["size"] = bytes.len().into();
    fs::write(src.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let line = run(treeport().args([
        "pull",
        &format!("oci:{}:v1", src.display()),
        &format!("oci:{}", work.path().join("out-short").display()),
    ]))
    .fails_with(1);
    assert!(line.contains(&layer), "{line}");
    assert!(!work.path().join("out-short").exists());
}

/// A blob already in a destination layout or in a cache, with the right
/// name and the wrong bytes, is replaced, not reused.
#[test]
fn wrong_blobs_in_a_destination_or_a_cache_are_replaced() {
    let work = tempfile::tempdir().unwrap();
    let a = small_layout(work.path(), "a");
    let layer = first_layer(&a);
    let root = work.path().join("a-tree");
    let export = |dest: &Path, cache: &Path| {
        let ran = run(treeport().args([
            "export",
            "--json",
            "--source",
            &format!("rootfs:{}", root.display()),
            "--sink",
            &format!("oci:{}:v1", dest.display()),
            "--cache",
            cache.to_str().unwrap(),
        ]))
        .ok();
        serde_json::from_str::<serde_json::Value>(&ran.stdout).unwrap()
    };
    let cache = work.path().join("cache");
    let dest = work.path().join("dest");
    export(&dest, &cache);
    // Same size, wrong bytes: in the destination and in the cache (each a
    // file of its own, not the hardlink they share).
    let scribble = |path: &Path| {
        let mut bytes = fs::read(path).unwrap();
        bytes[10] ^= 0xff;
        fs::remove_file(path).unwrap();
        fs::write(path, bytes).unwrap();
    };
    scribble(&crafted::blob_path(&dest, &layer));
    scribble(
        &cache
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:")),
    );
    let report = export(&dest, &cache);
    assert_eq!(
        report["cachedLayers"], 0,
        "the bad cached layer is not used"
    );
    assert_eq!(report["layers"][0]["digest"], layer.as_str());
    verify(&format!("oci:{}:v1", dest.display()), None, &[]);
    // And the cache is whole again: the next export takes it.
    let report = export(&work.path().join("dest2"), &cache);
    assert_eq!(report["cachedLayers"], 1);
    verify(
        &format!("oci:{}:v1", work.path().join("dest2").display()),
        None,
        &[],
    );
}

/// New blobs are never written through a destination's `blobs/sha256`
/// when it is a symlink to another place.
#[test]
fn a_destination_whose_blob_directory_is_a_symlink_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let a = small_layout(work.path(), "a");
    let elsewhere = work.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let blobs = a.join("blobs/sha256");
    fs::remove_dir_all(&blobs).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &blobs).unwrap();
    let root = work.path().join("a-tree");
    fs::write(root.join("etc/new"), b"new\n").unwrap();
    let line = run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", root.display()),
        "--sink",
        &format!("oci:{}:v2", a.display()),
    ]))
    .fails_with(1);
    assert!(line.contains("is a symlink"), "{line}");
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written there"
    );
}

/// `verify` says ok only after checking: an index of indexes is followed
/// (and one that leads to no image fails), and an index.json whose size
/// for the manifest is wrong fails.
#[test]
fn verify_checks_what_it_says_it_checked() {
    let work = tempfile::tempdir().unwrap();
    let a = small_layout(work.path(), "a");
    // index.json gives the manifest a wrong size.
    let sized = work.path().join("sized");
    copy_dir(&a, &sized);
    let mut index = crafted::index(&sized);
    let size = index["manifests"][0]["size"].as_u64().unwrap();
    index["manifests"][0]["size"] = (size + 1).into();
    fs::write(
        sized.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let line =
        run(treeport().args(["verify", &format!("oci:{}:v1", sized.display())])).fails_with(1);
    assert!(line.contains("index.json says"), "{line}");

    // An index naming an index naming the image: followed, and checked.
    let nested = work.path().join("nested");
    copy_dir(&a, &nested);
    let index = crafted::index(&nested);
    let inner = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [index["manifests"][0].clone()],
    }))
    .unwrap();
    let inner_digest = crafted::digest(&inner);
    fs::write(crafted::blob_path(&nested, &inner_digest), &inner).unwrap();
    let top = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": inner_digest,
            "size": inner.len(),
            "annotations": {"org.opencontainers.image.ref.name": "v1"},
        }],
    });
    fs::write(nested.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let ran =
        run(treeport().args(["verify", "--json", &format!("oci:{}:v1", nested.display())])).ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["manifests"], 1, "{report}");
    // Break the layer under it: the nested image is really checked.
    let layer = first_layer(&a);
    let blob = crafted::blob_path(&nested, &layer);
    let mut bytes = fs::read(&blob).unwrap();
    bytes[20] ^= 1;
    fs::remove_file(&blob).unwrap();
    fs::write(&blob, bytes).unwrap();
    let line =
        run(treeport().args(["verify", &format!("oci:{}:v1", nested.display())])).fails_with(1);
    assert!(line.contains(&layer), "{line}");
}

/// index.json is a document like a manifest: past 4 MiB it is refused, as
/// a source and as a destination, without reading it whole.
#[test]
fn an_oversized_index_json_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let a = small_layout(work.path(), "a");
    let mut index = crafted::index(&a);
    let filler: Vec<serde_json::Value> = (0..60_000)
        .map(|i| {
            let mut d = index["manifests"][0].clone();
            d["annotations"]["org.opencontainers.image.ref.name"] = format!("tag-{i:08}").into();
            d
        })
        .collect();
    index["manifests"] = filler.into();
    let bytes = serde_json::to_vec(&index).unwrap();
    assert!(bytes.len() > 8 << 20, "{}", bytes.len());
    fs::write(a.join("index.json"), bytes).unwrap();
    let line = run(treeport().args(["inspect", &format!("oci:{}:tag-00000001", a.display())]))
        .fails_with(1);
    assert!(line.contains("larger than 4 MiB"), "{line}");
    let line = run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", work.path().join("a-tree").display()),
        "--sink",
        &format!("oci:{}:v2", a.display()),
    ]))
    .fails_with(1);
    assert!(line.contains("larger than 4 MiB"), "{line}");
}

/// Work on hostile images is bounded: a layer of thousands of whiteouts
/// verifies in seconds, a docker archive listing one layer 200,000 times is
/// refused at once, and names with control characters are shown escaped.
#[test]
fn hostile_images_end_in_bounded_time_with_escaped_names() {
    let work = tempfile::tempdir().unwrap();
    // 20,000 files, then a layer that whites out every one of them.
    let files: Vec<Vec<u8>> = (0..20_000)
        .map(|i| crafted::member(format!("d{}/f{i}", i % 100).as_bytes(), b'0', b"x"))
        .collect();
    let whiteouts: Vec<Vec<u8>> = (0..20_000)
        .map(|i| crafted::member(format!("d{}/.wh.f{i}", i % 100).as_bytes(), b'0', b""))
        .collect();
    let layout = work.path().join("whiteouts");
    crafted::layout_from_layers(
        &layout,
        "v1",
        &[crafted::tar(&files), crafted::tar(&whiteouts)],
    );
    let started = Instant::now();
    run_for(
        treeport().args(["verify", &format!("oci:{}:v1", layout.display())]),
        Duration::from_secs(120),
    )
    .ok();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    // One layer entry, listed 200,000 times.
    let layer = crafted::tar(&[crafted::member(b"f", b'0', b"x")]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [crafted::digest(&layer)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "c.json", "RepoTags": ["x:1"], "Layers": vec!["l"; 200_000],
    }]))
    .unwrap();
    let archive = work.path().join("repeat.tar");
    fs::write(
        &archive,
        crafted::tar(&[
            crafted::member(b"manifest.json", b'0', &manifest),
            crafted::member(b"c.json", b'0', &config),
            crafted::member(b"l", b'0', &layer),
        ]),
    )
    .unwrap();
    let started = Instant::now();
    let line = run_for(
        treeport().args(["verify", &format!("docker-archive:{}", archive.display())]),
        Duration::from_secs(60),
    )
    .fails_with(1);
    assert!(line.contains("layers, more than"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A docker archive whose config names fewer layers than it lists:
    // refused, not copied into an image nobody can unpack.
    let two = crafted::tar(&[crafted::member(b"f", b'0', b"x")]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [crafted::digest(&two)]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": "c.json", "RepoTags": ["x:1"], "Layers": ["l", "l"],
    }]))
    .unwrap();
    let archive = work.path().join("short-config.tar");
    fs::write(
        &archive,
        crafted::tar(&[
            crafted::member(b"manifest.json", b'0', &manifest),
            crafted::member(b"c.json", b'0', &config),
            crafted::member(b"l", b'0', &two),
        ]),
    )
    .unwrap();
    let line = run(treeport().args([
        "pull",
        &format!("docker-archive:{}", archive.display()),
        &format!("oci:{}", work.path().join("short-out").display()),
    ]))
    .fails_with(1);
    assert!(line.contains("its config 1 diff_ids"), "{line}");
    assert!(!work.path().join("short-out").exists());

    // Archive sources are regular files: a FIFO with no writer and a
    // device are refused at once.
    let fifo = work.path().join("fifo.tar");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for source in [fifo.display().to_string(), "/dev/zero".to_string()] {
        let never = format!("oci:{}", work.path().join("never").display());
        for args in [
            vec![
                "export",
                "--source",
                &format!("tar:{source}"),
                "--sink",
                &never,
            ],
            vec!["inspect", &format!("docker-archive:{source}")],
            vec!["inspect", &format!("oci-archive:{source}")],
        ] {
            let kind = args.join(" ");
            let line = run_for(treeport().args(&args), Duration::from_secs(30)).fails_with(1);
            assert!(line.contains("not a regular file"), "{kind}: {line}");
        }
    }

    // A member name with ESC and BEL that escapes the root.
    let evil = crafted::tar(&[crafted::member(b"../\x1b[31mred\x07", b'0', b"x")]);
    let archive = work.path().join("evil.tar");
    fs::write(&archive, evil).unwrap();
    let ran = run(treeport().args([
        "export",
        "--source",
        &format!("tar:{}", archive.display()),
        "--sink",
        &format!("oci:{}", work.path().join("evil-out").display()),
    ]));
    assert!(
        !ran.stderr.contains('\x1b') && !ran.stderr.contains('\x07'),
        "{:?}",
        ran.stderr
    );
    let line = ran.fails_with(1);
    assert!(line.contains("\\x1b[31mred\\x07"), "{line}");
}

/// A tar claiming a 1 TiB sparse file in a few KB is refused before any
/// zero is encoded.
#[test]
fn an_archive_claiming_more_holes_than_it_could_hold_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let mut h = crafted::member(b"huge", b'S', b"data");
    // GNU old sparse: one segment of 4 bytes at offset 0, real size 1 TiB.
    h[257..265].copy_from_slice(b"ustar  \0");
    h[386..398].copy_from_slice(format!("{:011o}\0", 0).as_bytes());
    h[398..410].copy_from_slice(format!("{:011o}\0", 4).as_bytes());
    // The real size, 1 TiB, in base 256 (too large for octal).
    h[483] = 0x80;
    h[484..495].copy_from_slice(&(1u128 << 40).to_be_bytes()[5..]);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h[..512].iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let archive = work.path().join("sparse.tar");
    fs::write(&archive, crafted::tar(&[h])).unwrap();
    let started = Instant::now();
    let line = run_for(
        treeport().args([
            "export",
            "--source",
            &format!("tar:{}", archive.display()),
            "--sink",
            &format!("oci:{}", work.path().join("out").display()),
        ]),
        Duration::from_secs(60),
    )
    .fails_with(1);
    assert!(line.contains("bytes of holes"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!work.path().join("out").exists());
}

/// A directory swapped for a symlink to elsewhere, again and again while
/// exports run, never puts the other place's files in an image: an export
/// either fails, naming the path, or holds the tree's own content.
#[test]
fn a_directory_swapped_for_a_symlink_mid_export_never_leaks() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let real = root.join("d");
    fs::create_dir_all(&real).unwrap();
    // Large enough that reading it takes a while, so swaps land mid-run.
    for i in 0..8 {
        fs::write(real.join(format!("f{i}")), vec![b'a' + i; 2 << 20]).unwrap();
    }
    let outside = work.path().join("outside");
    fs::create_dir(&outside).unwrap();
    for i in 0..8 {
        fs::write(
            outside.join(format!("f{i}")),
            &b"SECRET".repeat((2 << 20) / 6 + 1)[..2 << 20],
        )
        .unwrap();
    }
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, root, outside) = (std::sync::Arc::clone(&stop), root.clone(), outside.clone());
        std::thread::spawn(move || {
            let (d, aside) = (root.join("d"), root.join("d.aside"));
            while !stop.load(Ordering::Relaxed) {
                if fs::rename(&d, &aside).is_ok() {
                    let _ = std::os::unix::fs::symlink(&outside, &d);
                    std::thread::sleep(Duration::from_millis(3));
                    let _ = fs::remove_file(&d);
                    let _ = fs::rename(&aside, &d);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let (mut failed, mut landed) = (0, 0);
    for i in 0..12 {
        let out = work.path().join(format!("out{i}"));
        let ran = run(treeport().args([
            "export",
            "-q",
            "--compression",
            "none",
            "--source",
            &format!("rootfs:{}", root.display()),
            "--sink",
            &format!("oci:{}", out.display()),
        ]));
        if ran.code == Some(0) {
            landed += 1;
            for entry in fs::read_dir(out.join("blobs/sha256")).unwrap() {
                let bytes = fs::read(entry.unwrap().path()).unwrap();
                assert!(
                    !bytes.windows(6).any(|w| w == b"SECRET"),
                    "run {i}: content from outside the tree got in"
                );
            }
        } else {
            failed += 1;
            assert!(!ran.stderr.contains("SECRET"), "{}", ran.stderr);
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();
    eprintln!("{landed} exports landed clean, {failed} refused a swapped directory");
}
