//! bootc images and package-aware chunking, checked with bootc's own
//! importer (the ostree-ext crate) and with umoci.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use ostree_ext::container::{ImageReference, OstreeImageReference, SignatureSource, Transport};
use treeport_tests::{
    fixtures, require_root, run, skopeo_inspect, tool, treeport, trees, umoci_unpack, verify,
};

/// Imports `layout:tag` with ostree-ext into a new repository; returns the
/// repository and the commit it gives back.
fn import(layout: &Path, tag: &str, work: &Path) -> (PathBuf, String) {
    let repo_path = work.join(format!("import-{tag}"));
    let repo = ostree_ext::ostree::Repo::new_for_path(&repo_path);
    repo.create(
        ostree_ext::ostree::RepoMode::BareUser,
        ostree_ext::gio::Cancellable::NONE,
    )
    .unwrap();
    let imgref = OstreeImageReference {
        sigverify: SignatureSource::ContainerPolicyAllowInsecure,
        imgref: ImageReference {
            transport: Transport::OciDir,
            name: format!("{}:{tag}", layout.display()),
        },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let imported = rt
        .block_on(ostree_ext::container::unencapsulate(&repo, &imgref))
        .unwrap_or_else(|e| panic!("ostree-ext refused {}:{tag}: {e:#}", layout.display()));
    (repo_path, imported.ostree_commit)
}

/// A bootable commit: the minbase tree with a kernel, committed with
/// `ostree commit --bootable`.
pub(crate) fn bootable_repo() -> (PathBuf, String) {
    let repo = fixtures::cached("ostree-bootable", |tmp| {
        let tree = tmp.with_extension("tree");
        let _ = fs::remove_dir_all(&tree);
        tool(
            "cp",
            [
                "-a",
                fixtures::minbase_nodev().to_str().unwrap(),
                tree.to_str().unwrap(),
            ],
        );
        let kdir = tree.join("usr/lib/modules/6.1.0-treeport");
        fs::create_dir_all(&kdir).unwrap();
        fs::write(kdir.join("vmlinuz"), vec![0x4d; 64 * 1024]).unwrap();
        fs::write(kdir.join("initramfs.img"), vec![0x1f; 16 * 1024]).unwrap();
        tool(
            "ostree",
            [
                "init",
                "--mode=archive",
                &format!("--repo={}", tmp.display()),
            ],
        );
        tool(
            "ostree",
            [
                "commit",
                &format!("--repo={}", tmp.display()),
                "--branch=debian/bookworm/bootable",
                "--bootable",
                "--timestamp=2024-05-06T07:08:09Z",
                "--add-metadata-string=version=12.5",
                &format!("--tree=dir={}", tree.display()),
            ],
        );
        fs::remove_dir_all(&tree).unwrap();
    });
    let checksum = tool(
        "ostree",
        [
            &format!("--repo={}", repo.display()),
            "rev-parse",
            "debian/bookworm/bootable",
        ],
    );
    (repo, checksum.trim().to_string())
}

fn export(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["export", "--json", "--timestamp", "1700000000"];
    all.extend_from_slice(args);
    let ran = run(treeport().args(&all)).ok();
    serde_json::from_str(&ran.stdout).unwrap()
}

#[test]
fn a_bootable_commit_imports_back_to_its_checksum_unchunked_and_chunked() {
    require_root();
    let (repo, checksum) = bootable_repo();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    let source = format!("ostree:{}:debian/bookworm/bootable", repo.display());
    for (tag, chunked) in [("plain", false), ("chunked", true)] {
        let mut args = vec!["--source", &source];
        if chunked {
            args.extend(["--transform", "chunk"]);
        }
        let sink = format!("oci:{}:{tag}", layout.display());
        args.extend(["--transform", "bootc", "--sink", &sink]);
        let report = export(&args);
        let layers = report["layers"].as_array().unwrap();
        if chunked {
            assert!((8..=64).contains(&layers.len()), "{} layers", layers.len());
        } else {
            assert_eq!(layers.len(), 1);
        }
        let config = skopeo_inspect(&format!("oci:{}:{tag}", layout.display()), &["--config"]);
        let labels = &config["config"]["Labels"];
        assert_eq!(labels["containers.bootc"], "1");
        assert_eq!(labels["ostree.commit"], checksum.as_str());
        assert_eq!(labels["ostree.bootable"], "true");
        assert_eq!(labels["ostree.linux"], "6.1.0-treeport");
        assert_eq!(labels["org.opencontainers.image.version"], "12.5");
        assert_eq!(
            labels["ostree.final-diffid"],
            layers.last().unwrap()["diffId"]
        );

        verify(&format!("oci:{}:{tag}", layout.display()), None, &[]);
        let (_, imported) = import(&layout, tag, work.path());
        assert_eq!(
            imported, checksum,
            "{tag}: ostree-ext gives back the commit"
        );
    }
}

#[test]
fn a_rootfs_source_becomes_an_importable_bootc_image() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/lib/modules/6.2.0-x")).unwrap();
    fs::create_dir_all(root.join("run")).unwrap();
    fs::create_dir_all(root.join("var")).unwrap();
    std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
    fs::write(root.join("etc/hostname"), b"bootc\n").unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    fs::write(
        root.join("usr/lib/modules/6.2.0-x/vmlinuz"),
        vec![1u8; 4096],
    )
    .unwrap();
    xattr::set(root.join("usr/bin/tool"), "user.test", b"kept").unwrap();
    let layout = work.path().join("img");
    let report = export(&[
        "--source",
        &format!("rootfs:{}", root.display()),
        "--transform",
        "bootc",
        "--sink",
        &format!("oci:{}:v1", layout.display()),
    ]);
    assert_eq!(report["layers"].as_array().unwrap().len(), 1);
    let config = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &["--config"]);
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["ostree.bootable"], "true");
    let (repo, commit) = import(&layout, "v1", work.path());
    assert_eq!(labels["ostree.commit"], commit.as_str());
    // The commit keeps /etc in /usr/etc and the xattrs; the checkout matches.
    let checkout = work.path().join("checkout");
    tool(
        "ostree",
        [
            &format!("--repo={}", repo.display()),
            "checkout",
            &commit,
            checkout.to_str().unwrap(),
        ],
    );
    assert_eq!(
        fs::read(checkout.join("usr/etc/hostname")).unwrap(),
        b"bootc\n"
    );
    assert!(!checkout.join("etc").exists());
    assert_eq!(
        xattr::get(checkout.join("usr/bin/tool"), "user.test")
            .unwrap()
            .unwrap(),
        b"kept"
    );
    // A container runtime sees the tree with /etc at /etc.
    let bundle = umoci_unpack(&layout, "v1");
    let rootfs = bundle.path().join("b/rootfs");
    assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"bootc\n");
    assert!(rootfs.join("sysroot/ostree/repo/config").is_file());
}

#[test]
fn each_fatal_lint_stops_the_export() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let base = |name: &str| {
        let root = work.path().join(name);
        fs::create_dir_all(root.join("usr/lib/modules/6.1.0-a")).unwrap();
        fs::write(root.join("usr/lib/modules/6.1.0-a/vmlinuz"), b"k").unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("../run", root.join("var/run")).unwrap();
        root
    };
    let cases: Vec<(&str, PathBuf, &str)> = vec![
        (
            "var-run",
            {
                let r = base("var-run");
                fs::remove_file(r.join("var/run")).unwrap();
                fs::create_dir(r.join("var/run")).unwrap();
                r
            },
            "/var/run is a directory",
        ),
        (
            "kernel",
            {
                let r = base("kernel");
                fs::create_dir_all(r.join("usr/lib/modules/6.1.0-b")).unwrap();
                fs::write(r.join("usr/lib/modules/6.1.0-b/vmlinuz"), b"k").unwrap();
                r
            },
            "2 kernels",
        ),
        (
            "etc-usretc",
            {
                let r = base("etc");
                fs::create_dir_all(r.join("etc")).unwrap();
                fs::create_dir_all(r.join("usr/etc")).unwrap();
                r
            },
            "both /etc and /usr/etc",
        ),
        (
            "utf8",
            {
                let r = base("utf8");
                let name =
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"caf\xe9");
                fs::write(r.join(name), b"x").unwrap();
                r
            },
            "not UTF-8",
        ),
    ];
    for (name, root, needle) in cases {
        let out = work.path().join(format!("img-{name}"));
        let line = run(treeport().args([
            "export",
            "--source",
            &format!("rootfs:{}", root.display()),
            "--transform",
            "bootc",
            "--sink",
            &format!("oci:{}", out.display()),
        ]))
        .fails_with(1);
        assert!(
            line.contains(&format!("bootc lint {name}:")) && line.contains(needle),
            "{line}"
        );
        assert!(!out.exists());
    }
}

/// Layer digests of a layout's image.
fn layer_digests(report: &serde_json::Value) -> Vec<(String, u64)> {
    report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn chunked_images_change_little_when_a_package_is_added() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let base = fixtures::minbase();
    let with_hello = fixtures::minbase_hello();
    let exp = |root: &Path, name: &str, extra: &[&str]| {
        let mut args = vec!["--source".to_string(), format!("rootfs:{}", root.display())];
        args.extend(extra.iter().map(|s| (*s).to_string()));
        args.extend([
            "--sink".into(),
            format!("oci:{}:{name}", work.path().join(name).display()),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        export(&refs)
    };
    let a = exp(&base, "a", &["--transform", "chunk"]);
    let b = exp(&with_hello, "b", &["--transform", "chunk"]);
    let la = layer_digests(&a);
    let lb = layer_digests(&b);
    assert!((8..=64).contains(&la.len()), "{} layers", la.len());
    let old: BTreeSet<&String> = la.iter().map(|(d, _)| d).collect();
    let changed: Vec<&(String, u64)> = lb.iter().filter(|(d, _)| !old.contains(d)).collect();
    assert!(
        changed.len() <= 3,
        "{} of {} layers changed",
        changed.len(),
        lb.len()
    );
    let pulled: u64 = changed.iter().map(|(_, s)| s).sum();
    let single = exp(&with_hello, "single", &[]);
    let whole = single["layers"][0]["size"].as_u64().unwrap();
    eprintln!(
        "update with hello: chunked pulls {pulled} bytes in {} layers; one layer is {whole} bytes",
        changed.len()
    );
    assert!(
        pulled < whole / 2,
        "chunking saves bytes: {pulled} vs {whole}"
    );

    // Every layer names its packages, and the chunked tree is the tree.
    let raw: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        [
            "inspect",
            "--raw",
            &format!("oci:{}:b", work.path().join("b").display()),
        ],
    ))
    .unwrap();
    let annotated = raw["layers"].as_array().unwrap()[1..].iter().all(|l| {
        l["annotations"]["ostree.components"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    });
    assert!(annotated);
    let hello_layer = raw["layers"].as_array().unwrap().iter().any(|l| {
        l["annotations"]["ostree.components"]
            .as_str()
            .is_some_and(|s| s.split(',').any(|p| p == "hello"))
    });
    assert!(hello_layer);
    verify(
        &format!("oci:{}:b", work.path().join("b").display()),
        Some(&format!("rootfs:{}", with_hello.display())),
        &[],
    );
    let bundle = umoci_unpack(&work.path().join("b"), "b");
    let diffs = trees::differences(&with_hello, &bundle.path().join("b/rootfs"));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));

    // With the earlier plan, the new package gets a layer of its own.
    let c = exp(
        &with_hello,
        "c",
        &[
            "--transform",
            &format!("chunk:previous=oci:{}:a", work.path().join("a").display()),
        ],
    );
    let lc = layer_digests(&c);
    let changed_c = lc.iter().filter(|(d, _)| !old.contains(d)).count();
    assert!(changed_c <= 3, "{changed_c} layers changed with --previous");
    assert_eq!(lc.len(), la.len() + 1);

    // The flags rpm-ostree and chunkah users know configure the same thing.
    let previous = format!("oci:{}:a", work.path().join("a").display());
    let by_flag = exp(
        &with_hello,
        "d",
        &["--transform", "chunk", "--previous", &previous],
    );
    assert_eq!(by_flag["manifestDigest"], c["manifestDigest"]);
    let capped = exp(
        &with_hello,
        "e",
        &["--transform", "chunk:max-layers=40", "--max-layers", "12"],
    );
    let n = capped["layers"].as_array().unwrap().len();
    assert!(
        (2..=12).contains(&n),
        "--max-layers wins over the option: {n}"
    );
    for flag in [["--max-layers", "12"], ["--previous", previous.as_str()]] {
        let line = run(treeport()
            .args(["export", "--source"])
            .arg(format!("rootfs:{}", base.display()))
            .args(flag)
            .args([
                "--sink",
                &format!("oci:{}", work.path().join("f").display()),
            ]))
        .fails_with(2);
        assert!(
            line.contains("configures the chunk transform: add --transform chunk"),
            "{line}"
        );
    }
}

#[test]
fn oci_build_takes_the_bootc_and_chunk_transforms() {
    require_root();
    let (repo, checksum) = bootable_repo();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    run(treeport().args([
        "oci",
        "build",
        "-q",
        "--repo",
        repo.to_str().unwrap(),
        "--source",
        "debian/bookworm/bootable",
        "--output",
        layout.to_str().unwrap(),
        "--tag",
        "bootc",
        "--transform",
        "chunk",
        "--max-layers",
        "16",
        "--transform",
        "bootc",
    ]))
    .ok();
    let raw: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        [
            "inspect",
            "--raw",
            &format!("oci:{}:bootc", layout.display()),
        ],
    ))
    .unwrap();
    let layers = raw["layers"].as_array().unwrap().len();
    assert!((8..=16).contains(&layers), "{layers} layers");
    let config = skopeo_inspect(&format!("oci:{}:bootc", layout.display()), &["--config"]);
    assert_eq!(
        config["config"]["Labels"]["ostree.commit"],
        checksum.as_str()
    );
}

#[test]
fn a_transform_that_reshapes_the_tree_after_bootc_is_refused_up_front() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let base = fixtures::minbase();
    let out = work.path().join("img");
    for chunk in ["chunk", "chunk:max-layers=32"] {
        let line = run(treeport().args([
            "export",
            "--source",
            &format!("rootfs:{}", base.display()),
            "--transform",
            "bootc",
            "--transform",
            chunk,
            "--sink",
            &format!("oci:{}", out.display()),
        ]))
        .fails_with(2);
        assert!(
            line.contains(&format!(
                "transform '{chunk}' cannot come after 'bootc', which writes the tree's final form: put 'chunk' before 'bootc'"
            )),
            "{line}"
        );
        assert!(!out.exists(), "nothing written");
    }
}

/// A plain image built with podman FROM a bootc base (adding a file with
/// COPY) is rechunked into package layers and made bootable again:
/// ostree-ext imports it, with the added file in the commit. Without
/// `--prune /sysroot/`, the OSTree repository the base carries is named
/// and the way out given.
#[test]
fn an_image_built_from_a_bootc_base_rechunks_into_an_importable_image() {
    require_root();
    treeport_tests::require("podman");
    let (repo, _) = bootable_repo();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let base = w.join("base.tar");
    run(treeport().args([
        "export",
        "-q",
        "--source",
        &format!("ostree:{}:debian/bookworm/bootable", repo.display()),
        "--transform",
        "bootc",
        "--sink",
        &format!("oci-archive:{}:base", base.display()),
    ]))
    .ok();
    let ctx = w.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("motd"), b"built on a bootc base\n").unwrap();
    fs::write(
        ctx.join("Containerfile"),
        format!(
            "FROM oci-archive:{}\nCOPY motd /usr/share/treeport/motd\n",
            base.display()
        ),
    )
    .unwrap();
    let store = [
        format!("--root={}", w.join("store/root").display()),
        format!("--runroot={}", w.join("store/run").display()),
        "--storage-driver=vfs".to_string(),
    ];
    let ran = run(Command::new("podman")
        .args(&store)
        .args(["build", "-q", "-t", "localhost/derived:1"])
        .arg(&ctx));
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let source_opts: Vec<String> = store
        .iter()
        .flat_map(|f| {
            [
                "--source-opt".to_string(),
                f.trim_start_matches("--").to_string(),
            ]
        })
        .collect();
    let layout = w.join("rechunked");
    let export = |extra: &[&str]| {
        let mut cmd = treeport();
        cmd.args([
            "export",
            "--json",
            "--source",
            "containers-storage:localhost/derived:1",
        ])
        .args(&source_opts)
        .args(extra)
        .args([
            "--transform",
            "chunk",
            "--transform",
            "bootc",
            "--sink",
            &format!("oci:{}:rechunked", layout.display()),
        ]);
        run(&mut cmd)
    };
    let line = export(&[]).fails_with(2);
    assert!(line.contains("--prune /sysroot/"), "{line}");
    let ran = export(&["--prune", "/sysroot/"]).ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let layers = report["layers"].as_array().unwrap().len();
    assert!((8..=64).contains(&layers), "{layers} layers");
    let (imported, checksum) = import(&layout, "rechunked", w);
    let motd = tool(
        "ostree",
        [
            &format!("--repo={}", imported.display()),
            "cat",
            &checksum,
            "/usr/share/treeport/motd",
        ],
    );
    assert_eq!(motd, "built on a bootc base\n");
}
