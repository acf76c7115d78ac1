//! Debian sources: OSTree commits through libostree, mmdebstrap trees, the
//! archive sinks, and `treeport oci build`.

use std::fs;
use std::path::Path;

use treeport_tests::{
    export_cmd, fixtures, layout_digest, list_files, oci_validate, require_root, run,
    skopeo_inspect, tool, treeport, trees, umoci_unpack, verify,
};

/// Exports with `--json` and returns the report.
fn export_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["export", "--json"];
    all.extend_from_slice(args);
    let ran = run(treeport().args(&all)).ok();
    serde_json::from_str(&ran.stdout).expect("--json prints JSON")
}

#[test]
fn ostree_commits_of_every_repository_mode_round_trip() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    for mode in ["archive", "bare", "bare-user", "bare-user-only"] {
        let repo = fixtures::ostree_repo(mode);
        let layout = work.path().join(format!("img-{mode}"));
        let report = export_json(&[
            "--source",
            &format!("ostree:{}:debian/bookworm", repo.display()),
            "--sink",
            &format!("oci:{}:bookworm", layout.display()),
        ]);
        oci_validate(&layout, "bookworm");
        verify(
            &format!("oci:{}:bookworm", layout.display()),
            Some(&format!("ostree:{}:debian/bookworm", repo.display())),
            &[],
        );
        let inspected = skopeo_inspect(&format!("oci:{}:bookworm", layout.display()), &[]);
        let commit = tool(
            "ostree",
            [
                &format!("--repo={}", repo.display()),
                "rev-parse",
                "debian/bookworm",
            ],
        );
        assert_eq!(
            inspected["Labels"]["ostree.commit"],
            commit.trim(),
            "{mode}"
        );
        assert_eq!(
            inspected["Labels"]["org.opencontainers.image.version"],
            "12"
        );
        assert_eq!(
            inspected["Created"], "2024-01-02T03:04:05Z",
            "{mode}: commit time"
        );

        let checkout = work.path().join(format!("checkout-{mode}"));
        tool(
            "ostree",
            [
                &format!("--repo={}", repo.display()),
                "checkout",
                "debian/bookworm",
                checkout.to_str().unwrap(),
            ],
        );
        let bundle = umoci_unpack(&layout, "bookworm");
        // Checkouts copy some files and hardlink others, so hardlinks are
        // checked against the commit itself: paths share an inode exactly
        // when they share a file object.
        let unpacked = bundle.path().join("b/rootfs");
        let diffs = trees::differences_with(&checkout, &unpacked, false);
        assert!(
            diffs.is_empty(),
            "{mode}: unpacked tree differs:\n{}",
            diffs.join("\n")
        );
        let groups = object_groups(&repo, "debian/bookworm");
        let shared = groups.values().filter(|g| g.len() > 1).count();
        assert!(
            shared > 10,
            "{mode}: the commit shares objects ({shared} groups)"
        );
        let object_of: std::collections::HashMap<&Vec<u8>, &String> = groups
            .iter()
            .flat_map(|(checksum, paths)| paths.iter().map(move |p| (p, checksum)))
            .collect();
        for (path, node) in trees::snapshot(&unpacked) {
            if node.kind != "file" {
                continue;
            }
            let group = &groups[object_of[&path]];
            let others: std::collections::BTreeSet<Vec<u8>> =
                group.iter().filter(|p| **p != path).cloned().collect();
            assert_eq!(
                node.links,
                others,
                "{mode}: links of {}",
                String::from_utf8_lossy(&path)
            );
        }

        // The same tree without shared objects (a copying checkout) makes a
        // larger layer: shared objects are stored once, then hardlinked.
        if mode == "archive" {
            let copy = work.path().join("copy");
            tool(
                "ostree",
                [
                    &format!("--repo={}", repo.display()),
                    "checkout",
                    "--force-copy",
                    "debian/bookworm",
                    copy.to_str().unwrap(),
                ],
            );
            let flat = export_json(&[
                "--source",
                &format!("rootfs:{}", copy.display()),
                "--sink",
                &format!("oci:{}", work.path().join("flat").display()),
            ]);
            let with_links = report["layers"][0]["uncompressedSize"].as_u64().unwrap();
            let without = flat["layers"][0]["uncompressedSize"].as_u64().unwrap();
            assert!(
                with_links < without,
                "layer with hardlinks {with_links} B, without {without} B"
            );
        }
        fs::remove_dir_all(&checkout).unwrap();
    }
}

/// Paths of the commit's regular files, grouped by file object.
fn object_groups(repo: &Path, rev: &str) -> std::collections::HashMap<String, Vec<Vec<u8>>> {
    let listing = tool(
        "ostree",
        [&format!("--repo={}", repo.display()), "ls", "-R", "-C", rev],
    );
    let mut groups: std::collections::HashMap<String, Vec<Vec<u8>>> =
        std::collections::HashMap::default();
    for line in listing.lines().filter(|l| l.starts_with('-')) {
        // "-00644 0 0   12 <checksum> /path"
        let checksum = line.split_whitespace().nth(4).unwrap().to_string();
        let path = line.as_bytes()[line.find(" /").unwrap() + 2..].to_vec();
        groups.entry(checksum).or_default().push(path);
    }
    groups
}

#[test]
fn a_commit_with_usr_etc_is_exported_with_it_at_etc() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("usr/etc/apt")).unwrap();
    fs::write(tree.join("usr/etc/hostname"), b"ostree\n").unwrap();
    fs::write(tree.join("usr/etc/apt/sources.list"), b"deb x y z\n").unwrap();
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    let repo = work.path().join("repo");
    fixtures::ostree_commit(&repo, "archive", &tree, "t");
    let layout = work.path().join("img");
    run(&mut export_cmd(
        &format!("ostree:{}:t", repo.display()),
        &[&format!("oci:{}", layout.display())],
    ))
    .ok();
    let bundle = umoci_unpack(&layout, "latest");
    let root = bundle.path().join("b/rootfs");
    assert_eq!(fs::read(root.join("etc/hostname")).unwrap(), b"ostree\n");
    assert!(root.join("etc/apt/sources.list").is_file());
    assert!(!root.join("usr/etc").exists());
}

#[test]
fn mmdebstrap_builds_and_exports_in_one_run() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    // A temporary directory of its own, so other runs' files do not count.
    let tmp = work.path().join("tmp");
    fs::create_dir(&tmp).unwrap();
    run(treeport().env("TMPDIR", &tmp).args([
        "export",
        "--source",
        "mmdebstrap:bookworm",
        "--source-opt",
        "variant=minbase",
        "--source-opt",
        &format!("mirror={}", fixtures::mirror()),
        "--sink",
        &format!("oci:{}:latest", layout.display()),
    ]))
    .ok();
    let bundle = umoci_unpack(&layout, "latest");
    let version = fs::read_to_string(bundle.path().join("b/rootfs/etc/debian_version")).unwrap();
    assert!(version.starts_with("12."), "{version}");
    assert!(bundle.path().join("b/rootfs/dev/null").exists());
    // The spool is gone.
    let leftovers: Vec<String> = list_files(&tmp)
        .into_iter()
        .filter(|n| n.contains(".treeport-tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_failing_mmdebstrap_is_one_line_with_its_last_words() {
    let work = tempfile::tempdir().unwrap();
    let line = run(treeport().args([
        "export",
        "--source",
        "mmdebstrap:no-such-suite",
        "--source-opt",
        "variant=minbase",
        "--source-opt",
        &format!("mirror={}", fixtures::mirror()),
        "--sink",
        &format!("oci:{}", work.path().join("img").display()),
    ]))
    .fails_with(1);
    assert!(
        line.starts_with("error: source mmdebstrap:no-such-suite: mmdebstrap no-such-suite failed"),
        "{line}"
    );
    assert!(
        line.contains(" | ") || line.contains("E:"),
        "quotes mmdebstrap: {line}"
    );
    assert!(!work.path().join("img").exists());
}

#[test]
fn archives_are_read_by_skopeo_and_podman() {
    require_root();
    let repo = fixtures::ostree_repo("archive");
    let work = tempfile::tempdir().unwrap();
    let docker = work.path().join("image.tar");
    let oci_archive = work.path().join("image-oci.tar");
    let layout = work.path().join("layout");
    // One encoding, three destinations.
    let report = export_json(&[
        "--source",
        &format!("ostree:{}:debian/bookworm", repo.display()),
        "--sink",
        &format!("docker-archive:{}:treeport/bookworm:12", docker.display()),
        "--sink",
        &format!("oci-archive:{}:12", oci_archive.display()),
        "--sink",
        &format!("oci:{}:12", layout.display()),
    ]);
    let layer = report["layers"][0]["digest"].as_str().unwrap();

    // skopeo presents a docker archive's layers uncompressed: by diff_id.
    for reference in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}:12", oci_archive.display()),
        format!("oci:{}:12", layout.display()),
    ] {
        verify(&reference, None, &[]);
    }
    let d = skopeo_inspect(&format!("docker-archive:{}", docker.display()), &[]);
    assert_eq!(d["Layers"][0], report["layers"][0]["diffId"]);
    assert_eq!(d["Labels"]["org.opencontainers.image.version"], "12");
    let o = skopeo_inspect(&format!("oci-archive:{}:12", oci_archive.display()), &[]);
    assert_eq!(o["Digest"], layout_digest(&layout, "12"));
    assert_eq!(o["Digest"], report["manifestDigest"]);

    // treeport reads both back.
    for reference in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}:12", oci_archive.display()),
    ] {
        let ran = run(treeport().args(["inspect", "--json", &reference])).ok();
        let r: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(r["layers"][0]["digest"], layer, "{reference}");
    }

    let store = work.path().join("containers");
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root".to_string(),
            store.join("root").display().to_string(),
            "--runroot".to_string(),
            store.join("run").display().to_string(),
            "--storage-driver=vfs".to_string(),
        ];
        all.extend(args.iter().map(|s| (*s).to_string()));
        tool("podman", all)
    };
    let loaded = podman(&["load", "--input", docker.to_str().unwrap()]);
    assert!(loaded.contains("treeport/bookworm:12"), "{loaded}");
    let images = podman(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        images.contains("localhost/treeport/bookworm:12"),
        "{images}"
    );
}

#[test]
fn oci_build_writes_layouts_and_docker_archives() {
    require_root();
    let repo = fixtures::ostree_repo("archive");
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let build = |args: &[&str]| {
        let mut all = vec![
            "oci",
            "build",
            "-q",
            "--repo",
            repo.to_str().unwrap(),
            "--source",
            "debian/bookworm",
        ];
        all.extend_from_slice(args);
        run(treeport().args(&all)).ok();
    };
    build(&[
        "--output",
        layout.to_str().unwrap(),
        "--format",
        "oci",
        "--tag",
        "v1",
        "--label",
        "com.example=yes",
    ]);
    let inspected = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &[]);
    assert_eq!(inspected["Labels"]["com.example"], "yes");
    let tar = work.path().join("docker.tar");
    build(&["--output", tar.to_str().unwrap(), "--format", "docker"]);
    let manifest = tool("tar", ["-xOf", tar.to_str().unwrap(), "manifest.json"]);
    assert!(
        manifest.contains(r#""RepoTags":["debian/bookworm:latest"]"#),
        "{manifest}"
    );
    build(&[
        "--output",
        tar.to_str().unwrap(),
        "--format",
        "docker",
        "--tag",
        "demo:2",
    ]);
    let manifest = tool("tar", ["-xOf", tar.to_str().unwrap(), "manifest.json"]);
    assert!(manifest.contains(r#""RepoTags":["demo:2"]"#), "{manifest}");
}

/// A small repository of `mode` with a few files, for breaking on purpose.
fn small_repo(dir: &Path, mode: &str) -> std::path::PathBuf {
    let tree = dir.join(format!("tree-{mode}"));
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/motd"), "a message of the day\n".repeat(100)).unwrap();
    fs::write(tree.join("etc/other"), b"other\n").unwrap();
    let repo = dir.join(format!("repo-{mode}"));
    fixtures::ostree_commit(&repo, mode, &tree, "small");
    repo
}

/// The path of `kind` object `checksum` in a repository.
fn object_path(repo: &Path, checksum: &str, ext: &str) -> std::path::PathBuf {
    repo.join("objects")
        .join(&checksum[..2])
        .join(format!("{}.{ext}", &checksum[2..]))
}

/// Overwrites bytes in the middle of a file.
fn scribble(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    let end = (mid + 8).min(bytes.len());
    for b in &mut bytes[mid..end] {
        *b ^= 0x5a;
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn missing_repositories_refs_and_corrupt_objects_are_named() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("img");
    let export = |source: String| {
        let line = run(treeport().args([
            "export",
            "--source",
            &source,
            "--sink",
            &format!("oci:{}", out.display()),
        ]))
        .fails_with(1);
        assert!(!out.exists(), "no partial output for {source}");
        line
    };

    let line = export(format!("ostree:{}:x", work.path().join("none").display()));
    assert!(line.contains("not an OSTree repository"), "{line}");
    assert!(
        line.contains(&work.path().join("none").display().to_string()),
        "{line}"
    );

    let repo = small_repo(work.path(), "archive");
    let line = export(format!("ostree:{}:debian/sid", repo.display()));
    assert!(line.contains("ref 'debian/sid' not found"), "{line}");
    assert!(line.contains(&repo.display().to_string()), "{line}");

    for (mode, ext) in [
        ("archive", "filez"),
        ("bare", "file"),
        ("bare-user", "file"),
    ] {
        let repo = small_repo(work.path(), mode);
        let listing = tool(
            "ostree",
            [
                &format!("--repo={}", repo.display()),
                "ls",
                "-C",
                "small",
                "/etc/motd",
            ],
        );
        let checksum = listing.split_whitespace().nth(4).unwrap().to_string();
        scribble(&object_path(&repo, &checksum, ext));
        let line = export(format!("ostree:{}:small", repo.display()));
        assert!(line.contains(&checksum), "{mode}: names the object: {line}");
    }

    // A broken directory listing.
    let repo = small_repo(work.path(), "bare");
    let listing = tool(
        "ostree",
        [
            &format!("--repo={}", repo.display()),
            "ls",
            "-d",
            "-C",
            "small",
            "/etc",
        ],
    );
    let dirtree = listing.split_whitespace().nth(4).unwrap().to_string();
    scribble(&object_path(&repo, &dirtree, "dirtree"));
    let line = export(format!("ostree:{}:small", repo.display()));
    assert!(line.contains(&dirtree), "names the dirtree: {line}");
}

/// A way to damage an object file's bytes.
type Damage = fn(&mut Vec<u8>);

/// A commit whose one large file (1.3 MB of machine code, as /usr/bin/bash
/// is) is damaged in the repository in each way a disk or a hand can damage
/// it: 256 bytes overwritten in the middle, the object cut short, bytes
/// appended. Every mode reports the object as corrupt, naming its checksum
/// and the path, never as a file that changed while being read.
#[test]
fn damaged_file_objects_are_reported_as_corrupt_in_every_mode() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    let code = fs::read(treeport_tests::bin()).unwrap();
    let at = code.len() / 3;
    fs::write(tree.join("usr/bin/bash"), &code[at..at + 1_265_648]).unwrap();
    let out = work.path().join("img");
    let damages: [(&str, Damage); 3] = [
        ("overwritten", |b| {
            let mid = b.len() / 2;
            for (i, byte) in b[mid..mid + 256].iter_mut().enumerate() {
                *byte = (i as u8).wrapping_mul(37) ^ 0xa5;
            }
        }),
        ("truncated", |b| b.truncate(b.len() - 4000)),
        ("extended", |b| b.extend_from_slice(&[0x55; 3000])),
    ];
    for mode in ["archive", "bare", "bare-user", "bare-user-only"] {
        let ext = if mode == "archive" { "filez" } else { "file" };
        for (how, damage) in damages {
            // Bytes after an archive object's deflate stream are never read:
            // its content is whole, and is checked as it is exported.
            if (mode, how) == ("archive", "extended") {
                continue;
            }
            let repo = work.path().join(format!("repo-{mode}-{how}"));
            fixtures::ostree_commit(&repo, mode, &tree, "damaged");
            let listing = tool(
                "ostree",
                [
                    &format!("--repo={}", repo.display()),
                    "ls",
                    "-C",
                    "damaged",
                    "/usr/bin/bash",
                ],
            );
            let checksum = listing.split_whitespace().nth(4).unwrap().to_string();
            let object = object_path(&repo, &checksum, ext);
            let mut bytes = fs::read(&object).unwrap();
            damage(&mut bytes);
            fs::write(&object, bytes).unwrap();
            let line = run(treeport().args([
                "export",
                "--source",
                &format!("ostree:{}:damaged", repo.display()),
                "--sink",
                &format!("oci:{}", out.display()),
            ]))
            .fails_with(1);
            assert!(!out.exists(), "{mode}, {how}: no output");
            for needle in [checksum.as_str(), "corrupt", "/usr/bin/bash"] {
                assert!(
                    line.contains(needle),
                    "{mode}, {how}: no '{needle}' in {line}"
                );
            }
            assert!(!line.contains("changed while"), "{mode}, {how}: {line}");
        }
    }
}
