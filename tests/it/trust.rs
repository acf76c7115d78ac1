//! Trust boundaries: what treeport reads, writes, removes and sends stays
//! within what the user asked for, whatever the input does.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    assert!(line.contains(&elsewhere.addr.to_string()), "{line}");
    // The tag list's next page lives elsewhere: not followed.
    let line = run(treeport()
        .args(["tags", &format!("docker://{}/r", registry.addr)])
        .args(flags))
    .fails_with(1);
    assert!(line.contains("links to another place"), "{line}");

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
