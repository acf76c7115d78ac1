//! Images as sources: layouts, archives, registries and podman's store,
//! flattened as a container runtime unpacks them, re-exported and
//! rechunked.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use treeport_tests::registry::{Auth, RegistryServer};
use treeport_tests::{
    crafted, export_cmd, fixtures, require, require_root, run, tool, treeport, trees, umoci_unpack,
    verify,
};

/// podman on a store of the test's own (vfs, in `dir`).
fn podman(dir: &Path) -> Command {
    require("podman");
    let mut c = Command::new("podman");
    c.arg(format!("--root={}", dir.join("root").display()))
        .arg(format!("--runroot={}", dir.join("run").display()))
        .arg("--storage-driver=vfs");
    c
}

/// The source options naming that store.
fn store_opts(dir: &Path) -> Vec<String> {
    vec![
        "--source-opt".into(),
        format!("root={}", dir.join("root").display()),
        "--source-opt".into(),
        format!("runroot={}", dir.join("run").display()),
        "--source-opt".into(),
        "storage-driver=vfs".into(),
    ]
}

/// The tree umoci unpacks from `layout:tag`, compared with `expected`.
fn unpacks_to(layout: &Path, tag: &str, expected: &Path) {
    let bundle = umoci_unpack(layout, tag);
    let diffs = trees::differences(expected, &bundle.path().join("b/rootfs"));
    assert!(
        diffs.is_empty(),
        "{}:{tag}:\n{}",
        layout.display(),
        diffs.join("\n")
    );
}

fn small_tree(root: &Path) {
    fs::create_dir_all(root.join("etc/app")).unwrap();
    fs::create_dir_all(root.join("opt/data/deep")).unwrap();
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::write(root.join("etc/hostname"), b"images\n").unwrap();
    fs::write(root.join("etc/app/one.conf"), b"one\n").unwrap();
    fs::write(root.join("etc/app/two.conf"), b"two\n").unwrap();
    fs::write(root.join("opt/data/deep/x"), b"deep\n").unwrap();
    fs::write(root.join("opt/data/y"), "y".repeat(50_000)).unwrap();
    fs::write(root.join("usr/bin/tool"), "binary".repeat(1000)).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool-alias")).unwrap();
    std::os::unix::fs::symlink("tool", root.join("usr/bin/link")).unwrap();
}

/// A three-layer image made by umoci (a deleted file, a whited-out
/// directory, an opaque directory, a directory replaced by a file, a
/// hardlink to a lower layer's file) flattens to the tree umoci unpacks.
#[test]
fn a_umoci_image_with_whiteouts_flattens_to_what_umoci_unpacks() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let layout = w.join("umoci");
    let image = format!("{}:v1", layout.display());
    tool("umoci", ["init", "--layout", layout.to_str().unwrap()]);
    tool("umoci", ["new", "--image", &image]);
    // Layer 1: the whole tree.
    let root = w.join("tree");
    small_tree(&root);
    tool(
        "umoci",
        ["insert", "--image", &image, root.to_str().unwrap(), "/"],
    );
    // Layer 2: unpack, change, repack (umoci writes the whiteouts).
    let bundle = w.join("bundle");
    tool(
        "umoci",
        ["unpack", "--image", &image, bundle.to_str().unwrap()],
    );
    let r = bundle.join("rootfs");
    fs::remove_file(r.join("etc/app/two.conf")).unwrap();
    fs::remove_dir_all(r.join("opt/data/deep")).unwrap();
    fs::remove_dir_all(r.join("etc/app")).unwrap();
    fs::write(r.join("etc/app"), b"now a file\n").unwrap();
    fs::hard_link(r.join("usr/bin/tool"), r.join("usr/bin/tool-again")).unwrap();
    tool(
        "umoci",
        ["repack", "--image", &image, bundle.to_str().unwrap()],
    );
    // Layer 3: /opt/data made opaque, with one new file.
    let opaque = w.join("opaque");
    fs::create_dir_all(&opaque).unwrap();
    fs::write(opaque.join("fresh"), b"fresh\n").unwrap();
    tool(
        "umoci",
        [
            "insert",
            "--image",
            &image,
            "--opaque",
            opaque.to_str().unwrap(),
            "/opt/data",
        ],
    );
    let expected = umoci_unpack(&layout, "v1");
    let expected_root = expected.path().join("b/rootfs");
    assert!(!expected_root.join("opt/data/y").exists());
    assert!(expected_root.join("etc/app").is_file());

    let out = w.join("out");
    run(export_cmd(
        &format!("oci:{image}"),
        &[&format!("oci:{}:flat", out.display())],
    )
    .arg("-q"))
    .ok();
    unpacks_to(&out, "flat", &expected_root);
    verify(
        &format!("oci:{}:flat", out.display()),
        Some(&format!("rootfs:{}", expected_root.display())),
        &[],
    );
}

/// A `podman save` archive, an image in a real podman store (through
/// `--source-opt` and through `CONTAINERS_STORAGE_CONF`), and an image
/// pulled from the test registry with auth and TLS: each re-exports to an
/// image whose tree is the source's, with its config carried over and
/// overridden by the flags.
#[test]
fn archives_stores_and_registries_re_export_to_the_same_tree() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root = w.join("tree");
    small_tree(&root);
    let archive = w.join("first.tar");
    run(export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!(
            "docker-archive:{}:localhost/first:1",
            archive.display()
        )],
    )
    .args([
        "-q",
        "--env",
        "APP=1",
        "--cmd",
        "/usr/bin/tool",
        "--label",
        "keep=yes",
        "--label",
        "drop=me",
        "--expose",
        "8080/tcp",
        "--volume",
        "/var/lib/app",
    ]))
    .ok();
    let store = w.join("store");
    let ran = run(podman(&store).args(["load", "-q", "-i", archive.to_str().unwrap()]));
    assert_eq!(ran.code, Some(0), "{ran:#?}");
    let saved = w.join("saved.tar");
    let ran = run(podman(&store).args([
        "save",
        "--format",
        "docker-archive",
        "-o",
        saved.to_str().unwrap(),
        "localhost/first:1",
    ]));
    assert_eq!(ran.code, Some(0), "{ran:#?}");

    let registry = RegistryServer::start(Auth::Htpasswd, true);
    let reg_flags = [
        "--authfile".to_string(),
        registry.authfile.display().to_string(),
        "--cert-dir".to_string(),
        registry.cert_dir.display().to_string(),
    ];
    run(treeport()
        .args([
            "pull",
            "-q",
            &format!("docker-archive:{}", archive.display()),
            &format!("docker://{}/images/first:1", registry.addr),
        ])
        .args(&reg_flags))
    .ok();

    let conf = w.join("storage.conf");
    fs::write(
        &conf,
        format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            store.join("root").display(),
            store.join("run").display()
        ),
    )
    .unwrap();
    let sources: Vec<(&str, String, Vec<String>)> = vec![
        (
            "podman save",
            format!("docker-archive:{}", saved.display()),
            vec![],
        ),
        (
            "podman store",
            "containers-storage:localhost/first:1".into(),
            store_opts(&store),
        ),
        (
            "storage.conf",
            "containers-storage:localhost/first:1".into(),
            vec![],
        ),
        (
            "registry",
            format!("docker://{}/images/first:1", registry.addr),
            reg_flags.to_vec(),
        ),
    ];
    for (i, (what, source, extra)) in sources.into_iter().enumerate() {
        let out = w.join(format!("out{i}"));
        let mut cmd = export_cmd(&source, &[&format!("oci:{}:v1", out.display())]);
        cmd.arg("-q")
            .args(&extra)
            .args(["--label", "drop-", "--env", "MORE=2"]);
        if what == "storage.conf" {
            cmd.env("CONTAINERS_STORAGE_CONF", &conf);
        }
        run(&mut cmd).ok();
        unpacks_to(&out, "v1", &root);
        let config =
            treeport_tests::skopeo_inspect(&format!("oci:{}:v1", out.display()), &["--config"]);
        let c = &config["config"];
        assert_eq!(c["Labels"]["keep"], "yes", "{what}: {config}");
        assert!(c["Labels"].get("drop").is_none(), "{what}: label removed");
        let env: Vec<&str> = c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            env.contains(&"APP=1") && env.contains(&"MORE=2"),
            "{what}: {env:?}"
        );
        assert_eq!(c["Cmd"][0], "/usr/bin/tool", "{what}");
        assert!(c["ExposedPorts"].get("8080/tcp").is_some(), "{what}");
        assert!(c["Volumes"].get("/var/lib/app").is_some(), "{what}");
    }

    // --prune, on an image source: a subtree, and a directory's contents.
    let pruned = w.join("pruned");
    run(export_cmd(
        &format!("docker-archive:{}", saved.display()),
        &[&format!("oci:{}:v1", pruned.display())],
    )
    .args(["-q", "--prune", "/opt", "--prune", "/etc/app/"]))
    .ok();
    let bundle = umoci_unpack(&pruned, "v1");
    let r = bundle.path().join("b/rootfs");
    assert!(!r.join("opt").exists());
    assert!(r.join("etc/app").is_dir());
    assert_eq!(fs::read_dir(r.join("etc/app")).unwrap().count(), 0);
    assert!(r.join("etc/hostname").is_file());
}

/// The single-layer minbase image rechunks into package layers that unpack
/// to the same tree; the image with `hello` added, rechunked too, shares
/// all but a few layers with it.
#[test]
fn a_one_layer_debian_image_rechunks_into_package_layers() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let mut layers = Vec::new();
    for (name, tree) in [
        ("base", fixtures::minbase()),
        ("hello", fixtures::minbase_hello()),
    ] {
        let single = w.join(format!("{name}-single"));
        run(export_cmd(
            &format!("rootfs:{}", tree.display()),
            &[&format!("oci:{}:v1", single.display())],
        )
        .args(["-q", "--timestamp", "1700000000"]))
        .ok();
        let chunked = w.join(format!("{name}-chunked"));
        let ran = run(export_cmd(
            &format!("oci:{}:v1", single.display()),
            &[&format!("oci:{}:v1", chunked.display())],
        )
        .args(["--json", "--transform", "chunk"]))
        .ok();
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        let digests: BTreeSet<String> = report["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect();
        assert!(digests.len() >= 8, "{name}: {} layers", digests.len());
        unpacks_to(&chunked, "v1", &tree);
        layers.push(digests);
    }
    let changed = layers[1].difference(&layers[0]).count();
    assert!(
        changed <= 3,
        "{changed} of {} layers changed",
        layers[1].len()
    );
}

/// A `user.component` attribute makes its own component: every file with
/// one value lands in one layer named after it.
#[test]
fn user_component_attributes_group_files() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(root.join("opt/a")).unwrap();
    fs::create_dir_all(root.join("opt/b")).unwrap();
    for (dir, component) in [("opt/a", "alpha"), ("opt/b", "beta")] {
        for i in 0..5 {
            let f = root.join(dir).join(format!("f{i}"));
            fs::write(&f, format!("{component} {i}")).unwrap();
            xattr::set(&f, "user.component", component.as_bytes()).unwrap();
            xattr::set(&f, "user.update-interval", b"7").unwrap();
        }
    }
    let out = work.path().join("out");
    run(export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!("oci:{}:v1", out.display())],
    )
    .args(["-q", "--transform", "chunk"]))
    .ok();
    let manifest = crafted::manifest(&out);
    let components: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["annotations"]["ostree.components"].as_str())
        .collect();
    let all: BTreeSet<&str> = components.iter().flat_map(|c| c.split(',')).collect();
    assert_eq!(all, BTreeSet::from(["alpha", "beta"]), "{components:?}");
    unpacks_to(&out, "v1", &root);
}

/// Bad images, each exit 1 with one line naming the layer or member.
#[test]
fn bad_images_are_refused_by_layer_and_member() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let export = |layout: &Path| {
        run(&mut export_cmd(
            &format!("oci:{}:v1", layout.display()),
            &[&format!("oci:{}", w.join("never").display())],
        ))
        .fails_with(1)
    };
    let good = crafted::tar(&[
        crafted::member(b"etc/", b'5', b""),
        crafted::member(b"etc/f", b'0', b"x"),
    ]);

    // A blob whose digest does not match, and a missing blob.
    let flipped = w.join("flipped");
    crafted::layout_from_layers(&flipped, "v1", std::slice::from_ref(&good));
    let layer = crafted::manifest(&flipped)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = fs::read(crafted::blob_path(&flipped, &layer)).unwrap();
    bytes[600] ^= 1;
    fs::write(crafted::blob_path(&flipped, &layer), bytes).unwrap();
    let line = export(&flipped);
    assert!(line.contains(&layer) && line.contains("layer 1"), "{line}");
    fs::remove_file(crafted::blob_path(&flipped, &layer)).unwrap();
    let line = export(&flipped);
    assert!(line.contains(&layer), "{line}");

    // A whiteout that escapes the root.
    let escaping = w.join("escaping");
    crafted::layout_from_layers(
        &escaping,
        "v1",
        &[
            good.clone(),
            crafted::tar(&[crafted::member(b"../.wh.etc", b'0', b"")]),
        ],
    );
    let line = export(&escaping);
    assert!(
        line.contains("layer 2") && line.contains("escapes the root"),
        "{line}"
    );

    // A member written through a symlink a lower layer made.
    let through = w.join("through");
    crafted::layout_from_layers(
        &through,
        "v1",
        &[
            crafted::tar(&[crafted::member_link(b"escape", b'2', b"/etc")]),
            crafted::tar(&[crafted::member(b"escape/passwd", b'0', b"root::0:0")]),
        ],
    );
    let line = export(&through);
    assert!(
        line.contains("layer 2") && line.contains("'/escape', which is a symlink"),
        "{line}"
    );

    // An index with no image for the platform asked for.
    let index = w.join("index");
    crafted::layout_from_layers(&index, "v1", &[good]);
    // Wrap the manifest in an index without s390x.
    let m = crafted::index(&index)["manifests"][0].clone();
    let mut child = m.clone();
    child.as_object_mut().unwrap().remove("annotations");
    child["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    let body = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [child],
    }))
    .unwrap();
    let d = crafted::digest(&body);
    fs::write(crafted::blob_path(&index, &d), &body).unwrap();
    fs::write(
        index.join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": d, "size": body.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }],
        }))
        .unwrap(),
    )
    .unwrap();
    let line = run(export_cmd(
        &format!("oci:{}:v1", index.display()),
        &[&format!("oci:{}", w.join("never").display())],
    )
    .args(["--platform", "linux/s390x"]))
    .fails_with(1);
    assert!(
        line.contains("no image for linux/s390x") && line.contains("linux/amd64"),
        "{line}"
    );
    assert!(!w.join("never").exists());
}
