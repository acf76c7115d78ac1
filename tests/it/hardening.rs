//! Hardening: interrupted runs, full disks, concurrent writers, hostile
//! archives and registries, very large and very many files, and secrets.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use treeport_tests::registry::{FakeRegistry, PASSWORD, RegistryServer, Reply};
use treeport_tests::{
    bin, export_cmd, fixtures, layout_digest, list_files, require_root, run, run_for, tool,
    treeport, verify,
};

/// A small tree to export quickly.
fn small_tree(dir: &Path) -> PathBuf {
    let root = dir.join("small");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hostname"), b"small\n").unwrap();
    root
}

/// Names of treeport's temporary files anywhere below `dirs`.
fn temporaries(dirs: &[&Path]) -> Vec<String> {
    dirs.iter()
        .flat_map(|d| list_files(d))
        .filter(|n| n.contains(".treeport-tmp-"))
        .collect()
}

#[test]
fn signals_leave_earlier_images_and_no_temporaries() {
    require_root();
    let rootfs = fixtures::minbase();
    let work = tempfile::tempdir().unwrap();
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    let small = small_tree(work.path());
    let layout = work.path().join("layout");
    let archive = work.path().join("image.tar");
    for sink in [
        format!("oci:{}:old", layout.display()),
        format!("docker-archive:{}:old:1", archive.display()),
    ] {
        run(treeport().args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", small.display()),
            "--sink",
            &sink,
        ]))
        .ok();
    }
    let old = layout_digest(&layout, "old");
    for (signal, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGKILL, "KILL"),
    ] {
        for delay_ms in [300u64, 1500] {
            let mut child = Command::new(bin())
                .args([
                    "export",
                    "-q",
                    "--source",
                    &format!("rootfs:{}", rootfs.display()),
                    "--sink",
                    &format!("oci:{}:new", layout.display()),
                    "--sink",
                    &format!("docker-archive:{}:new:1", archive.display()),
                ])
                .env("TMPDIR", &tmp)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(delay_ms));
            let pid = child.id();
            // SAFETY: signalling a child we started.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid as i32, signal);
            }
            let status = child.wait().unwrap();
            let case = format!("SIG{name} after {delay_ms} ms");
            if status.success() {
                // The export won the race; nothing to check about interruption.
                continue;
            }
            if signal != libc::SIGKILL {
                assert_eq!(status.code(), Some(128 + signal), "{case}: exit status");
                let left = temporaries(&[&layout, work.path(), &tmp]);
                assert!(left.is_empty(), "{case}: left behind {left:?}");
            }
            // Earlier content is whole.
            assert_eq!(layout_digest(&layout, "old"), old, "{case}");
            verify(&format!("oci:{}:old", layout.display()), None, &[]);
            verify(&format!("docker-archive:{}", archive.display()), None, &[]);
        }
    }
    // After SIGKILL, the next run cleans up what the dead one left.
    run(export_cmd(
        &format!("rootfs:{}", small.display()),
        &[
            &format!("oci:{}:after", layout.display()),
            &format!("docker-archive:{}:after:1", archive.display()),
        ],
    )
    .arg("-q")
    .env("TMPDIR", &tmp))
    .ok();
    let left = temporaries(&[&layout, work.path(), &tmp]);
    assert!(left.is_empty(), "left behind after the next run: {left:?}");
    verify(&format!("oci:{}:old", layout.display()), None, &[]);
}

/// Unmounts a test filesystem when dropped.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_is_one_error_and_leaves_the_layout_as_it_was() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("disk");
    fs::create_dir(&disk).unwrap();
    tool(
        "mount",
        [
            "-t",
            "tmpfs",
            "-o",
            "size=24m",
            "tmpfs",
            disk.to_str().unwrap(),
        ],
    );
    let _guard = Unmount(disk.clone());
    let small = small_tree(work.path());
    let layout = disk.join("layout");
    run(export_cmd(
        &format!("rootfs:{}", small.display()),
        &[&format!("oci:{}:old", layout.display())],
    )
    .arg("-q"))
    .ok();
    let line = run(&mut export_cmd(
        &format!("rootfs:{}", fixtures::minbase().display()),
        &[&format!("oci:{}:big", layout.display())],
    ))
    .fails_with(1);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(
        line.contains(&disk.display().to_string()),
        "names where: {line}"
    );
    verify(&format!("oci:{}:old", layout.display()), None, &[]);
    let left = temporaries(&[&disk]);
    assert!(left.is_empty(), "{left:?}");
    // Archives too.
    let archive = disk.join("image.tar");
    let line = run(&mut export_cmd(
        &format!("rootfs:{}", fixtures::minbase().display()),
        &[&format!("docker-archive:{}", archive.display())],
    ))
    .fails_with(1);
    assert!(line.contains("No space left on device"), "{line}");
    assert!(!archive.exists());
    assert!(temporaries(&[&disk]).is_empty());
}

#[test]
fn concurrent_writers_both_land_and_readers_never_see_half_an_index() {
    let work = tempfile::tempdir().unwrap();
    let small = small_tree(work.path());
    for existing in [true, false] {
        let layout = work.path().join(format!("layout-{existing}"));
        if existing {
            run(export_cmd(
                &format!("rootfs:{}", small.display()),
                &[&format!("oci:{}:first", layout.display())],
            )
            .arg("-q"))
            .ok();
        }
        let tags: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
        let children: Vec<_> = tags
            .iter()
            .map(|tag| {
                let root = work.path().join(format!("tree-{existing}-{tag}"));
                fs::create_dir_all(&root).unwrap();
                fs::write(root.join("f"), tag.as_bytes()).unwrap();
                export_cmd(
                    &format!("rootfs:{}", root.display()),
                    &[&format!("oci:{}:{tag}", layout.display())],
                )
                .arg("-q")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
            })
            .collect();
        // Read the index while they write: it always parses.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut reads = 0;
        let mut children = children;
        while children.iter_mut().any(|c| c.try_wait().unwrap().is_none()) {
            assert!(Instant::now() < deadline, "writers did not finish");
            if let Ok(bytes) = fs::read(layout.join("index.json")) {
                serde_json::from_slice::<serde_json::Value>(&bytes)
                    .unwrap_or_else(|e| panic!("a reader saw a broken index: {e}"));
                reads += 1;
            }
        }
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        assert!(reads > 0 || !existing);
        for tag in &tags {
            let _ = layout_digest(&layout, tag);
            verify(&format!("oci:{}:{tag}", layout.display()), None, &[]);
        }
    }
}

/// Writes a ustar member with a raw name and size field.
fn member(out: &mut Vec<u8>, name: &[u8], kind: u8, size_field: u64, data: &[u8]) {
    out.extend(treeport_tests::crafted::member_sized(
        name, kind, size_field, data,
    ));
}

#[test]
fn hostile_archives_fail_cleanly_or_work() {
    let work = tempfile::tempdir().unwrap();
    let export = |name: &str, bytes: &[u8]| {
        let archive = work.path().join(format!("{name}.tar"));
        fs::write(&archive, bytes).unwrap();
        let layout = work.path().join(format!("img-{name}"));
        let ran = run_for(
            treeport()
                .args(["export", "--source", &format!("tar:{}", archive.display())])
                .args(["--sink", &format!("oci:{}", layout.display())]),
            Duration::from_secs(120),
        );
        (ran, layout, archive)
    };
    // Absolute paths land inside the root.
    let mut t = Vec::new();
    member(&mut t, b"/etc/passwd", b'0', 5, b"root\n");
    t.extend_from_slice(&[0u8; 1024]);
    let (ran, layout, archive) = export("absolute", &t);
    ran.ok();
    verify(
        &format!("oci:{}", layout.display()),
        Some(&format!("tar:{}", archive.display())),
        &[],
    );

    // Duplicates: the later member wins, as tar extracts.
    let mut t = Vec::new();
    member(&mut t, b"f", b'0', 5, b"first");
    member(&mut t, b"f", b'0', 6, b"second");
    t.extend_from_slice(&[0u8; 1024]);
    let (ran, layout, _) = export("duplicates", &t);
    ran.ok();
    let ours =
        run(treeport().args(["verify", "--json", &format!("oci:{}", layout.display())])).ok();
    assert!(ours.stdout.contains("\"members\": 1"), "{}", ours.stdout);

    // A header claiming a terabyte.
    let mut t = Vec::new();
    member(&mut t, b"huge", b'0', (8 << 30) - 1, b"tiny");
    t.extend_from_slice(&[0u8; 1024]);
    let (ran, layout, _) = export("huge", &t);
    let line = ran.fails_with(1);
    assert!(
        line.contains("huge") && line.contains("past the end"),
        "{line}"
    );
    assert!(!layout.exists());

    // Truncated in a header, and in data.
    let mut t = Vec::new();
    member(&mut t, b"a", b'0', 3000, &[1u8; 3000]);
    let whole = t.clone();
    t.truncate(700);
    let (ran, _, _) = export("truncated-data", &t);
    let line = ran.fails_with(1);
    assert!(
        line.contains("'a'") || line.contains("past the end"),
        "{line}"
    );
    let (ran, _, _) = export("truncated-header", &whole[..200]);
    let line = ran.fails_with(1);
    assert!(line.contains("truncated"), "{line}");

    // Not a tar at all.
    let (ran, _, _) = export("garbage", &[0x42u8; 4096]);
    let line = ran.fails_with(1);
    assert!(line.contains("checksum"), "{line}");
}

#[test]
fn very_long_names_and_a_sparse_file_of_several_gib_round_trip() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    // A 3,000-byte path of 200-byte components.
    let mut deep = root.clone();
    for i in 0..14 {
        deep = deep.join(format!("{i:02}{}", "x".repeat(198)));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("leaf"), b"deep\n").unwrap();
    let sparse = root.join("sparse.img");
    tool("truncate", ["-s", "5G", sparse.to_str().unwrap()]);
    tool(
        "sh",
        [
            "-c",
            &format!(
                "printf end | dd of={} bs=1 seek=5368709000 conv=notrunc status=none",
                sparse.display()
            ),
        ],
    );
    let layout = work.path().join("img");
    let ran = run(export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!("oci:{}", layout.display())],
    )
    .arg("--json"))
    .ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert!(report["layers"][0]["uncompressedSize"].as_u64().unwrap() > 5 << 30);
    assert!(
        report["layers"][0]["size"].as_u64().unwrap() < 64 << 20,
        "zeros compress"
    );
    verify(
        &format!("oci:{}", layout.display()),
        Some(&format!("rootfs:{}", root.display())),
        &[],
    );
}

#[test]
fn non_utf8_names_are_kept_byte_for_byte() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    // Latin-1 and stray bytes, in a directory name and a file name.
    let odd = root.join(OsStr::from_bytes(b"d\xff\xfe"));
    fs::create_dir_all(&odd).unwrap();
    fs::write(odd.join(OsStr::from_bytes(b"caf\xe9")), b"latin-1\n").unwrap();
    for sink in ["oci", "docker-archive"] {
        let image = format!("{sink}:{}", work.path().join(sink).display());
        run(export_cmd(&format!("rootfs:{}", root.display()), &[&image]).arg("-q")).ok();
        verify(&image, Some(&format!("rootfs:{}", root.display())), &[]);
    }
    let unpacked = work.path().join("unpacked");
    tool(
        "umoci",
        [
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:latest", work.path().join("oci").display()),
            unpacked.to_str().unwrap(),
        ],
    );
    let back = unpacked
        .join("rootfs")
        .join(OsStr::from_bytes(b"d\xff\xfe/caf\xe9"));
    assert_eq!(fs::read(back).unwrap(), b"latin-1\n");
}

#[test]
fn a_deep_tree_is_walked_within_a_handle_per_level_on_any_thread_count() {
    // Two combs 300 levels deep, with a waiting sibling directory at every
    // level (each keeps its parent open, so a walk holds a handle per
    // level), one with files at every level and one below a directory of
    // 15,000 files: with several walkers reading across as well as down,
    // a walk once held 430 handles here and failed with EMFILE under a
    // limit one walker fit in.
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("nest");
    let comb = |top: &Path, files: usize| {
        let mut at = top.to_path_buf();
        for _ in 0..300 {
            fs::create_dir_all(at.join("b")).unwrap();
            at = at.join("a");
            fs::create_dir_all(&at).unwrap();
            for f in 0..files {
                fs::write(at.join(format!("f{f}")), b"").unwrap();
            }
        }
    };
    comb(&root.join("c1"), 100);
    fs::create_dir_all(root.join("s1")).unwrap();
    for f in 0..15_000 {
        fs::write(root.join("s1").join(format!("f{f}")), b"").unwrap();
    }
    comb(&root.join("s1/c2"), 0);
    let mut digests = Vec::new();
    for threads in ["1", "2", "4"] {
        for round in 0..2 {
            let out = work.path().join(format!("out-{threads}-{round}"));
            let status = Command::new("sh")
                .arg("-c")
                .arg("ulimit -n 380 && exec \"$@\"")
                .arg("sh")
                .arg(bin())
                .args([
                    "export",
                    "-q",
                    "--timestamp",
                    "1700000000",
                    "--threads",
                    threads,
                ])
                .arg("--source")
                .arg(format!("rootfs:{}", root.display()))
                .arg("--sink")
                .arg(format!("oci:{}:t", out.display()))
                .status()
                .unwrap();
            assert!(status.success(), "{threads} threads, round {round}");
            digests.push(layout_digest(&out, "t"));
        }
    }
    digests.dedup();
    assert_eq!(digests.len(), 1, "one image whatever the thread count");
}

#[test]
fn a_million_small_files_stream_with_bounded_memory() {
    let work = tempfile::tempdir().unwrap();
    // A tar of 1,000,000 small members, written here (no disk tree needed).
    let archive = work.path().join("million.tar");
    {
        let mut f = std::io::BufWriter::new(fs::File::create(&archive).unwrap());
        let mut buf = Vec::with_capacity(1 << 20);
        for d in 0..1000 {
            member(&mut buf, format!("d{d:03}/").as_bytes(), b'5', 0, b"");
            for i in 0..1000 {
                member(
                    &mut buf,
                    format!("d{d:03}/f{i:03}").as_bytes(),
                    b'0',
                    8,
                    format!("{d:03}-{i:04}").as_bytes(),
                );
            }
            std::io::Write::write_all(&mut f, &buf).unwrap();
            buf.clear();
        }
        std::io::Write::write_all(&mut f, &[0u8; 1024]).unwrap();
    }
    // The same export, then with a loaded transform that reads every entry
    // and its content and writes each back through the plugin interface.
    let passthrough = bin()
        .parent()
        .unwrap()
        .join("libtreeport_test_plugin_passthrough.so");
    let export = |tag: &str, transform: Option<&str>| -> (u64, String) {
        let layout = work.path().join("img");
        let timing = work.path().join(format!("time-{tag}.txt"));
        let mut cmd = Command::new("/usr/bin/time");
        cmd.args(["-f", "%M", "-o", timing.to_str().unwrap()])
            .arg(bin());
        if let Some(t) = transform {
            cmd.arg("--plugin").arg(&passthrough);
            cmd.args(["export", "--transform", t]);
        } else {
            cmd.arg("export");
        }
        let ran = run(cmd
            .args(["--json", "--timestamp", "1700000000", "--source"])
            .arg(format!("tar:{}", archive.display()))
            .args(["--sink", &format!("oci:{}:{tag}", layout.display())]))
        .ok();
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(report["entries"], 1_001_000);
        let peak_kib: u64 = fs::read_to_string(&timing).unwrap().trim().parse().unwrap();
        (peak_kib, layout_digest(&layout, tag))
    };
    let (plain_kib, plain_digest) = export("plain", None);
    eprintln!("1,001,000 entries: peak {} MiB", plain_kib / 1024);
    // Metadata only: a few hundred bytes per entry, content never held.
    assert!(plain_kib < 400 * 1024, "peak {} MiB", plain_kib / 1024);
    verify(
        &format!("oci:{}:plain", work.path().join("img").display()),
        None,
        &[],
    );
    let (loaded_kib, loaded_digest) = export("loaded", Some("rewrite"));
    eprintln!(
        "with a loaded transform: peak {} MiB ({}% of that)",
        loaded_kib / 1024,
        loaded_kib * 100 / plain_kib
    );
    assert_eq!(
        plain_digest, loaded_digest,
        "the loaded stage changed the image"
    );
    assert!(
        loaded_kib * 10 <= plain_kib * 12,
        "a loaded transform took {} MiB, more than 1.2 times {} MiB",
        loaded_kib / 1024,
        plain_kib / 1024
    );
}

#[test]
fn hostile_registries_are_refused_in_bounded_time() {
    let work = tempfile::tempdir().unwrap();
    let pull = |addr: &str, reference: &str| {
        run_for(
            treeport()
                .args(["pull", &format!("docker://{addr}/{reference}")])
                .args([
                    &format!("oci:{}", work.path().join("out").display()),
                    "--tls-verify=false",
                ]),
            Duration::from_secs(120),
        )
    };
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    // A manifest that is not what its digest says.
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let lying = FakeRegistry::start(move |_, path| {
        if path == "/v2/" {
            return Reply::ok("application/json", b"{}".to_vec());
        }
        Reply::ok(manifest_type, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#.to_vec())
    });
    let line = pull(&lying.addr, &format!("x/y@{wrong}")).fails_with(1);
    assert!(line.contains(&format!("not {wrong}")), "{line}");

    // A blob whose bytes do not match its descriptor.
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config_digest = format!("sha256:{}", hex_sha256(&config));
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[]}}"#,
        config.len()
    );
    let served = manifest.clone();
    let bad_blob = FakeRegistry::start(move |_, path| match path {
        "/v2/" => Reply::ok("application/json", b"{}".to_vec()),
        p if p.contains("/manifests/") => Reply::ok(manifest_type, served.clone().into_bytes()),
        _ => Reply::ok("application/octet-stream", b"{\"tampered\":true}".to_vec()),
    });
    let line = pull(&bad_blob.addr, "x/y:v1").fails_with(1);
    assert!(line.contains(&config_digest), "{line}");

    // Artifacts: what cannot be copied costs itself, not the image (a
    // Referrers API answering nonsense, an artifact that is an index, one
    // listed twice is copied once); an artifact listed for the image but
    // made for another is refused.
    let image_digest = format!("sha256:{}", hex_sha256(manifest.as_bytes()));
    let made_for = |subject: &str| {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{manifest_type}","artifactType":"application/spdx+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}},"layers":[],"subject":{{"mediaType":"{manifest_type}","digest":"{subject}","size":2}}}}"#
        )
    };
    let foreign = made_for(&format!("sha256:{}", "cd".repeat(32)));
    let nested = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"subject":{{"mediaType":"{manifest_type}","digest":"{image_digest}","size":2}}}}"#
    );
    for (artifact, listed_twice, garbage, says, code) in [
        (
            foreign.clone(),
            false,
            true,
            "its artifacts cannot be listed",
            0,
        ),
        (nested, false, false, "is not an image manifest", 0),
        (foreign, true, false, "its subject is another", 1),
    ] {
        let artifact_digest = format!("sha256:{}", hex_sha256(artifact.as_bytes()));
        let entry = format!(
            r#"{{"mediaType":"{manifest_type}","artifactType":"application/spdx+json","digest":"{artifact_digest}","size":{}}}"#,
            artifact.len()
        );
        let entries = if listed_twice {
            format!("{entry},{entry}")
        } else {
            entry
        };
        let listing = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{entries}]}}"#
        );
        let (manifest, config, config_digest) =
            (manifest.clone(), config.clone(), config_digest.clone());
        let served_digest = artifact_digest.clone();
        let registry = FakeRegistry::start(move |_, path| match path {
            "/v2/" => Reply::ok("application/json", b"{}".to_vec()),
            p if p.contains("/referrers/") && garbage => {
                Reply::ok("application/json", b"{\"tampered\":true}".to_vec())
            }
            p if p.contains("/referrers/") => Reply::ok(
                "application/vnd.oci.image.index.v1+json",
                listing.clone().into_bytes(),
            ),
            p if p.ends_with(&served_digest) => {
                Reply::ok(manifest_type, artifact.clone().into_bytes())
            }
            p if p.contains("/manifests/") => {
                Reply::ok(manifest_type, manifest.clone().into_bytes())
            }
            p if p.ends_with(&config_digest) => {
                Reply::ok("application/octet-stream", config.clone())
            }
            _ => Reply::status(404, &[]),
        });
        let _ = fs::remove_dir_all(work.path().join("out"));
        let ran = pull(&registry.addr, "x/y:v1");
        if code == 0 {
            let ran = ran.ok();
            assert!(ran.stderr.contains(says), "{}", ran.stderr);
            assert!(ran.stderr.contains(&image_digest), "{}", ran.stderr);
            assert!(work.path().join("out/index.json").is_file());
        } else {
            let line = ran.fails_with(1);
            assert!(
                line.contains(says) && line.contains(&artifact_digest),
                "{line}"
            );
            assert!(!work.path().join("out").exists(), "nothing written");
        }
    }

    // An oversized manifest.
    let huge = FakeRegistry::start(|_, path| {
        if path == "/v2/" {
            return Reply::ok("application/json", b"{}".to_vec());
        }
        Reply::ok(manifest_type, vec![b' '; 5 << 20])
    });
    let line = pull(&huge.addr, "x/y:v1").fails_with(1);
    assert!(line.contains("larger than 4 MiB"), "{line}");

    // A redirect loop.
    let looping = FakeRegistry::start(|_, path| {
        if path == "/v2/" {
            return Reply::ok("application/json", b"{}".to_vec());
        }
        Reply::status(302, &[("Location", path)])
    });
    let started = Instant::now();
    let line = pull(&looping.addr, "x/y:v1").fails_with(1);
    assert!(line.to_lowercase().contains("redirect"), "{line}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(!work.path().join("out").exists(), "nothing written");
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn secrets_never_show_in_output_logs_or_process_arguments() {
    let server = RegistryServer::start(treeport_tests::registry::Auth::Token, true);
    // Through a throttled proxy the push lasts long enough to watch it.
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(&root).unwrap();
    let data: Vec<u8> = (0..6_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    fs::write(root.join("data"), data).unwrap();
    let log = work.path().join("stderr.txt");
    let mut child = export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!("docker://{}/secret/image:v1", server.addr)],
    )
    .arg("--json")
    .args(["--authfile", server.authfile.to_str().unwrap()])
    .args(["--cert-dir", server.cert_dir.to_str().unwrap()])
    .stdout(Stdio::piped())
    .stderr(fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let mut seen = 0;
    while child.try_wait().unwrap().is_none() {
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
                seen += 1;
                assert!(
                    !String::from_utf8_lossy(&cmdline).contains(PASSWORD),
                    "process {:?} has the password in its arguments",
                    entry.file_name()
                );
            }
        }
    }
    assert!(seen > 0);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("blobs_uploaded"));
    for text in [
        stdout.to_string(),
        fs::read_to_string(&log).unwrap(),
        server.log(),
    ] {
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}
