//! Dynamic plugins: the example plugins loaded through the command line and
//! mixed with built-in stages, every loading failure, pipeline files, and
//! treeport-core embedded in another program.

use std::fs;
use std::path::{Path, PathBuf};

use treeport_tests::{
    fixtures, layout_digest, require_root, run, skopeo_inspect, target_dir, tool, treeport, trees,
    umoci_unpack, verify,
};

fn lib(name: &str) -> PathBuf {
    let path = target_dir().join(format!("lib{}.so", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first",
        path.display()
    );
    path
}

/// The digest a layout's tag points to, if the layout and tag exist.
fn layout_digest_or_none(layout: &Path, tag: &str) -> Option<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).ok()?).ok()?;
    index["manifests"]
        .as_array()?
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|m| m["digest"].to_string())
}

fn example(name: &str) -> PathBuf {
    lib(&format!("treeport_example_{name}"))
}

fn test_plugin(name: &str) -> PathBuf {
    lib(&format!("treeport_test_plugin_{name}"))
}

/// A private copy of plugin libraries in a directory of their own.
fn plugin_dir(work: &Path, libs: &[PathBuf]) -> PathBuf {
    let dir = work.join("plugins");
    fs::create_dir_all(&dir).unwrap();
    for l in libs {
        fs::copy(l, dir.join(l.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn loaded_plugins_mix_with_builtin_stages() {
    require_root();
    let rootfs = fixtures::minbase();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    let listing = work.path().join("listing.json");
    run(treeport().args([
        "--plugin",
        example("os_release").to_str().unwrap(),
        "--plugin",
        example("listing").to_str().unwrap(),
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", rootfs.display()),
        "--transform",
        "os-release",
        "--label",
        "org.opencontainers.image.vendor=overridden by the flag",
        "--sink",
        &format!("oci:{}:v1", layout.display()),
        "--sink",
        &format!("listing:{}", listing.display()),
    ]))
    .ok();
    let inspected = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &[]);
    let labels = &inspected["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.title"],
        "Debian GNU/Linux 12 (bookworm)"
    );
    assert_eq!(labels["org.opencontainers.image.version"], "12");
    assert_eq!(
        labels["org.opencontainers.image.url"],
        "https://www.debian.org/"
    );
    assert_eq!(
        labels["org.opencontainers.image.vendor"],
        "overridden by the flag"
    );
    let bundle = umoci_unpack(&layout, "v1");
    let diffs = trees::differences(&rootfs, &bundle.path().join("b/rootfs"));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));

    let doc: serde_json::Value = serde_json::from_slice(&fs::read(&listing).unwrap()).unwrap();
    assert_eq!(doc["manifest"], layout_digest(&layout, "v1").as_str());
    assert_eq!(doc["layers"][0]["digest"], inspected["Layers"][0]);
    let files = doc["layers"][0]["files"].as_array().unwrap();
    let version = files
        .iter()
        .find(|f| f["path"] == "etc/debian_version")
        .unwrap();
    let want = tool(
        "sha256sum",
        [rootfs.join("etc/debian_version").to_str().unwrap()],
    );
    assert_eq!(version["sha256"], want.split_whitespace().next().unwrap());
}

#[test]
fn a_cpio_source_plugin_round_trips() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("dev")).unwrap();
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("usr/bin/tool", root.join("link")).unwrap();
    fs::write(root.join("init"), vec![7u8; 100_000]).unwrap();
    tool(
        "mknod",
        [root.join("dev/console").to_str().unwrap(), "c", "5", "1"],
    );
    tool("mkfifo", [root.join("dev/initctl").to_str().unwrap()]);
    tool(
        "chmod",
        ["4755", root.join("usr/bin/tool").to_str().unwrap()],
    );
    tool("chown", ["1234:5678", root.join("init").to_str().unwrap()]);
    let archive = work.path().join("initrd.cpio");
    tool(
        "sh",
        [
            "-c",
            &format!(
                "cd {} && find . | sort | cpio --quiet -o -H newc > {}",
                root.display(),
                archive.display()
            ),
        ],
    );
    let layout = work.path().join("img");
    run(treeport().args([
        "--plugin",
        example("cpio").to_str().unwrap(),
        "export",
        "-q",
        "--source",
        &format!("cpio:{}", archive.display()),
        "--sink",
        &format!("oci:{}:v1", layout.display()),
    ]))
    .ok();
    verify(
        &format!("oci:{}:v1", layout.display()),
        Some(&format!("rootfs:{}", root.display())),
        &[],
    );
    let bundle = umoci_unpack(&layout, "v1");
    let diffs = trees::differences(&root, &bundle.path().join("b/rootfs"));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn every_loading_failure_names_the_file_and_the_others_keep_working() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(
        tree.join("etc/os-release"),
        "NAME=\"Plug OS\"\nVERSION_ID=7\n",
    )
    .unwrap();
    let dir = plugin_dir(
        work.path(),
        &[
            example("os_release"),
            test_plugin("not_a_plugin"),
            test_plugin("bad_version"),
            test_plugin("bad_layout"),
            test_plugin("panicky"),
        ],
    );
    let layout = work.path().join("img");
    let ran = run(treeport().args([
        "--plugin-dir",
        dir.to_str().unwrap(),
        "export",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--transform",
        "os-release",
        "--transform",
        "stamp",
        "--sink",
        &format!("oci:{}:v1", layout.display()),
    ]));
    assert_eq!(
        ran.code,
        Some(0),
        "libraries found in a directory are warnings: {ran:#?}"
    );
    let lines: Vec<&str> = ran.stderr.lines().collect();
    let expect = [
        ("not_a_plugin", "not a treeport plugin"),
        (
            "bad_version",
            "built for plugin interface 1.99; this treeport speaks 1.0",
        ),
        (
            "bad_layout",
            "its interface types do not match this treeport's: in PluginMod: mismatched package: \
             expected treeport-plugin-api, found treeport-test-plugin-bad-layout",
        ),
        ("panicky", "sink kind 'oci' is already provided by built-in"),
    ];
    for (file, reason) in expect {
        assert!(
            lines.iter().any(|l| l.starts_with("warning: plugin ")
                && l.contains(file)
                && l.contains(reason)
                && l.ends_with("; skipped")),
            "{file}: {reason}: {}",
            ran.stderr
        );
    }
    assert_eq!(
        lines.len(),
        expect.len(),
        "one line per failure: {}",
        ran.stderr
    );
    // Named with --plugin, the same library stops the run before it starts.
    let ran = run(treeport().args([
        "--plugin",
        dir.join("libtreeport_test_plugin_bad_version.so")
            .to_str()
            .unwrap(),
        "export",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--sink",
        &format!("oci:{}:v2", layout.display()),
    ]));
    let line = ran.fails_with(1);
    assert!(line.contains("bad_version"), "{line}");
    assert_eq!(
        layout_digest_or_none(&layout, "v2"),
        None,
        "nothing written"
    );
    // The run went on with the plugins that loaded.
    let labels = &skopeo_inspect(&format!("oci:{}:v1", layout.display()), &[])["Labels"];
    assert_eq!(labels["org.opencontainers.image.vendor"], "Plug OS");
    assert_eq!(labels["com.example.stamped"], "yes");
}

#[test]
fn a_panic_inside_a_plugin_is_an_error_not_a_crash() {
    let work = tempfile::tempdir().unwrap();
    // In a directory: its clashing `oci` sink is skipped with a warning and
    // its source stays usable.
    let dir = plugin_dir(work.path(), &[test_plugin("panicky")]);
    let ran = run(treeport().args([
        "--plugin-dir",
        dir.to_str().unwrap(),
        "export",
        "--source",
        "panicky:",
        "--sink",
        &format!("oci:{}", work.path().join("img").display()),
    ]));
    assert_eq!(ran.code, Some(1), "exit 1, not a signal: {ran:#?}");
    let panic_line = ran
        .stderr
        .lines()
        .find(|l| l.starts_with("error: source panicky:: plugin "))
        .unwrap_or_else(|| panic!("{}", ran.stderr));
    assert!(
        panic_line.contains("panicked: the tree is on fire"),
        "{panic_line}"
    );
    assert!(
        panic_line.contains("libtreeport_test_plugin_panicky.so"),
        "{panic_line}"
    );
    assert!(!ran.stderr.contains("stack backtrace"), "{}", ran.stderr);
    assert!(!work.path().join("img").exists());
}

#[test]
fn world_writable_plugins_and_directories_are_refused() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_dir(work.path(), &[example("os_release")]);
    let file = dir.join("libtreeport_example_os_release.so");
    let refused = |args: &[&str], env: Option<&Path>, reason: &str| {
        let mut cmd = treeport();
        cmd.args(args).args(["plugins", "list"]);
        if let Some(path) = env {
            cmd.env("TREEPORT_PLUGIN_PATH", path);
        }
        let ran = run(&mut cmd);
        assert!(ran.stderr.contains(reason), "{args:?}: {reason}: {ran:#?}");
        assert!(!ran.stdout.contains("os-release"), "{args:?}: not loaded");
        ran
    };
    let f = file.to_str().unwrap();
    let d = dir.to_str().unwrap();

    tool("chmod", ["o+w", f]);
    let ran = refused(
        &["--plugin", f],
        None,
        "is world-writable; refusing to load it",
    );
    assert_eq!(ran.code, Some(1));
    assert_eq!(ran.stdout, "", "a named library fails before any output");
    tool("chmod", ["o-w", f]);

    tool("chmod", ["o+w", d]);
    let ran = refused(&["--plugin-dir", d], None, "is world-writable");
    assert_eq!(ran.code, Some(1), "a named directory must be trusted");
    let ran = refused(&[], Some(&dir), "is world-writable");
    assert_eq!(ran.code, Some(0), "a search path entry is a warning");
    // Sticky, as /tmp is: others cannot replace what they do not own.
    tool("chmod", ["+t", d]);
    run(treeport().args(["--plugin", f, "plugins", "list"])).ok();
    tool("chmod", ["-t,o-w", d]);

    // A world-writable directory further up counts as much as the parent.
    let deep = work.path().join("open/a/b");
    fs::create_dir_all(&deep).unwrap();
    fs::copy(&file, deep.join("p.so")).unwrap();
    tool("chmod", ["o+w", work.path().join("open").to_str().unwrap()]);
    refused(
        &["--plugin", deep.join("p.so").to_str().unwrap()],
        None,
        "open is world-writable",
    );

    // A symlink from a trusted place into an untrusted one.
    let link = dir.join("linked.so");
    std::os::unix::fs::symlink(deep.join("p.so"), &link).unwrap();
    refused(
        &["--plugin", link.to_str().unwrap()],
        None,
        "open is world-writable",
    );

    // A library owned by another user, loaded by root.
    let theirs = dir.join("theirs.so");
    fs::copy(&file, &theirs).unwrap();
    tool("chown", ["12345", theirs.to_str().unwrap()]);
    refused(
        &["--plugin", theirs.to_str().unwrap()],
        None,
        "is owned by uid 12345, not by root or the user running treeport",
    );
}

#[test]
fn missing_plugins_and_plugin_path_entries() {
    // A search path skips directories that do not exist, as PATH does.
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_dir(work.path(), &[example("os_release")]);
    let path = format!(
        "{}:{}::/nonexistent/treeport/plugins",
        work.path().join("missing").display(),
        dir.display()
    );
    let ran = run(treeport()
        .args(["plugins", "list"])
        .env("TREEPORT_PLUGIN_PATH", &path))
    .ok();
    assert!(ran.stdout.contains("os-release"), "{ran:#?}");
    assert_eq!(ran.stderr, "");
    // A library or directory named on the command line must exist, and the
    // command stops before printing anything.
    for args in [
        ["--plugin", "/nonexistent.so"],
        ["--plugin-dir", "/nonexistent/plugins"],
    ] {
        let ran = run(treeport().args(args).args(["plugins", "list"]));
        assert_eq!(ran.stdout, "", "{args:?}: no table before the error");
        let line = ran.fails_with(1);
        assert!(line.contains(args[1]), "{line}");
    }
}

#[test]
fn plugins_list_shows_origins_and_versions() {
    let work = tempfile::tempdir().unwrap();
    let dir = plugin_dir(
        work.path(),
        &[example("os_release"), example("listing"), example("cpio")],
    );
    let ran = run(treeport()
        .args(["plugins", "list"])
        .env("TREEPORT_PLUGIN_PATH", dir.to_str().unwrap()))
    .ok();
    insta::with_settings!({filters => vec![(dir.to_str().unwrap(), "[PLUGINS]"), ("  +", "  ")]}, {
        insta::assert_snapshot!("plugins_list_with_examples", ran.stdout);
    });
}

#[test]
fn a_pipeline_file_gives_the_command_lines_digest() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(
        tree.join("etc/os-release"),
        "PRETTY_NAME=\"Pipe OS 1\"\nVERSION_ID=1\n",
    )
    .unwrap();
    let plugin =
        plugin_dir(work.path(), &[example("os_release")]).join("libtreeport_example_os_release.so");
    let by_flags = work.path().join("by-flags");
    run(treeport().args([
        "--plugin",
        plugin.to_str().unwrap(),
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--transform",
        "os-release",
        "--sink",
        &format!("oci:{}:v1", by_flags.display()),
        "--label",
        "com.example.shipped-by=pipeline",
        "--compression",
        "zstd",
        "--timestamp",
        "1700000000",
    ]))
    .ok();
    let by_file = work.path().join("by-file");
    let pipeline = work.path().join("distro.toml");
    fs::write(
        &pipeline,
        format!(
            "plugins = [\"plugins/libtreeport_example_os_release.so\"]\n\n[source]\nselector = \"rootfs:{}\"\n\n[[transform]]\nselector = \"os-release\"\n\n[[sink]]\nselector = \"oci:{}:v1\"\n\n[image]\nlabel = [\"com.example.shipped-by=pipeline\"]\n\n[encoding]\ncompression = \"zstd\"\ntimestamp = 1700000000\n",
            tree.display(),
            by_file.display()
        ),
    )
    .unwrap();
    let checked = run(treeport().args(["pipeline", "check", pipeline.to_str().unwrap()])).ok();
    assert!(checked.stdout.contains("valid"), "{}", checked.stdout);
    run(treeport().args(["export", "-q", "--pipeline", pipeline.to_str().unwrap()])).ok();
    assert_eq!(
        layout_digest(&by_file, "v1"),
        layout_digest(&by_flags, "v1")
    );
    assert_eq!(
        skopeo_inspect(&format!("oci:{}:v1", by_file.display()), &[])["Labels"]["org.opencontainers.image.title"],
        "Pipe OS 1"
    );
    // Flags override the file.
    let other = work.path().join("other");
    run(treeport().args([
        "export",
        "-q",
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--sink",
        &format!("oci:{}:v2", other.display()),
        "--timestamp",
        "1",
    ]))
    .ok();
    let config = skopeo_inspect(&format!("oci:{}:v2", other.display()), &["--config"]);
    assert_eq!(config["created"], "1970-01-01T00:00:01Z");
}

#[test]
fn malformed_pipeline_files_are_exit_2_with_file_line_and_key() {
    let work = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[source]\nselector = \"rootfs:/\"\ncolour = \"blue\"\n",
            "line 3",
            "colour",
        ),
        (
            "[source]\nselector = \"rootfs:/\"\n[[sink]]\nselector = \"oci:/tmp/x\"\n[encoding]\ntimestamp = \"soon\"\n",
            "line 6",
            "timestamp",
        ),
        (
            "[source]\nselector = \"florp:/x\"\n[[sink]]\nselector = \"oci:/tmp/x\"\n",
            "line 2",
            "source.selector",
        ),
        (
            "[source]\nselector = \"rootfs:/\"\n[[transform]]\nselector = \"config\"\noptions = { colour = \"blue\" }\n[[sink]]\nselector = \"oci:/tmp/x\"\n",
            "line 4",
            "transform[0].selector",
        ),
    ];
    for (i, (text, line, key)) in cases.iter().enumerate() {
        let file = work.path().join(format!("p{i}.toml"));
        fs::write(&file, text).unwrap();
        for args in [
            vec!["pipeline", "check", file.to_str().unwrap()],
            vec!["export", "--pipeline", file.to_str().unwrap()],
        ] {
            let msg = run(treeport().args(&args)).fails_with(2);
            assert!(
                msg.contains(&file.display().to_string())
                    && msg.contains(line)
                    && msg.contains(key),
                "{args:?}: {msg}"
            );
        }
    }
}

#[test]
fn treeport_core_embeds_in_a_distro_tool() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/hello"), b"#!/bin/sh\necho hello\n").unwrap();
    let layout = work.path().join("img");
    let exporter = target_dir().join("distro-exporter");
    let ran = run(std::process::Command::new(exporter).args([
        tree.to_str().unwrap(),
        layout.to_str().unwrap(),
        "v1",
    ]))
    .ok();
    let inspected = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &[]);
    assert_eq!(inspected["Digest"], ran.stdout.trim());
    assert_eq!(inspected["Labels"]["org.example.distro"], "exampleOS");
    let raw: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        ["inspect", "--raw", &format!("oci:{}:v1", layout.display())],
    ))
    .unwrap();
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

/// Exports with the pass-through plugin loaded; the manifest digest.
fn export_digest(work: &Path, source: &str, transforms: &[&str], tag: &str) -> String {
    let layout = work.join("img");
    let pass = test_plugin("passthrough");
    let mut cmd = treeport();
    cmd.arg("--plugin").arg(&pass).args([
        "export",
        "-q",
        "--timestamp",
        "1700000000",
        "--source",
        source,
    ]);
    for t in transforms {
        cmd.args(["--transform", t]);
    }
    cmd.args(["--sink", &format!("oci:{}:{tag}", layout.display())]);
    run(&mut cmd).ok();
    layout_digest(&layout, tag)
}

/// A loaded stage that changes nothing leaves the image byte for byte as it
/// is without it: before `bootc`, which needs the commit object the OSTree
/// source leaves beside the tree, after it, which fixes the objects' order
/// and the `ostree.final-diffid` label, and with `chunk`, whose layer plan
/// it must keep. `rewrite` reads every entry and field and writes it back.
#[test]
fn a_loaded_pass_through_stage_changes_no_byte() {
    require_root();
    let (repo, _) = crate::bootc::bootable_repo();
    let work = tempfile::tempdir().unwrap();
    let ostree = format!("ostree:{}:debian/bookworm/bootable", repo.display());
    let rootfs = format!("rootfs:{}", fixtures::minbase().display());
    let cases: [(&str, &[&str], &[&str]); 5] = [
        (&ostree, &["bootc"], &["pass", "bootc"]),
        (&ostree, &["bootc"], &["rewrite", "bootc", "rewrite"]),
        (
            &ostree,
            &["chunk", "bootc"],
            &["rewrite", "chunk", "rewrite", "bootc", "pass"],
        ),
        (&rootfs, &["chunk"], &["chunk", "rewrite"]),
        (
            &rootfs,
            &["config:label=a=b"],
            &["rewrite", "config:label=a=b", "rewrite"],
        ),
    ];
    for (i, (source, plain, with)) in cases.iter().enumerate() {
        let a = export_digest(work.path(), source, plain, &format!("plain{i}"));
        let b = export_digest(work.path(), source, with, &format!("with{i}"));
        assert_eq!(a, b, "{source}: {plain:?} and {with:?} differ");
    }
}

/// Options reach a loaded plugin from the selector and from a pipeline
/// file's typed values; an unknown key or a mistyped value is exit 2 naming
/// it and the valid keys, before any work.
#[test]
fn options_reach_loaded_plugins_and_unknown_ones_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(
        tree.join("etc/os-release"),
        "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n",
    )
    .unwrap();
    let plugin = example("os_release");
    let layout = work.path().join("img");
    let export = |transform: &str, tag: &str| {
        run(treeport().arg("--plugin").arg(&plugin).args([
            "export",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--transform",
            "config:label=org.opencontainers.image.title=mine",
            "--transform",
            transform,
            "--sink",
            &format!("oci:{}:{tag}", layout.display()),
        ]))
    };
    let title = |tag: &str| {
        let config = skopeo_inspect(&format!("oci:{}:{tag}", layout.display()), &["--config"]);
        config["config"]["Labels"]["org.opencontainers.image.title"]
            .as_str()
            .unwrap()
            .to_string()
    };
    export("os-release", "kept").ok();
    assert_eq!(title("kept"), "mine");
    export("os-release:override=true", "replaced").ok();
    assert_eq!(title("replaced"), "Debian GNU/Linux 12 (bookworm)");
    let line = export("os-release:bogus=1", "bad").fails_with(2);
    assert!(
        line.contains("transform 'os-release' has no option 'bogus' (valid: override)"),
        "{line}"
    );
    let line = export("os-release:override=maybe", "bad").fails_with(2);
    assert!(
        line.contains("override=maybe: expected true or false"),
        "{line}"
    );
    assert!(layout_digest_or_none(&layout, "bad").is_none());
    // Built-ins go through the same check.
    let line = export("chunk:max-layers=many", "bad").fails_with(2);
    assert!(
        line.contains("max-layers=many: expected an integer"),
        "{line}"
    );
    let line = export("chunk:max-layers", "bad").fails_with(2);
    assert!(
        line.contains("option max-layers needs a value: max-layers=VALUE, an integer"),
        "{line}"
    );
}

/// A sink reads each layer's members decoded by treeport: the listing
/// example links no tar, gzip or zstd code, for gzip and zstd layers alike.
#[test]
fn a_loaded_sink_reads_decoded_layer_entries() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/hello"), b"hello\n").unwrap();
    std::os::unix::fs::symlink("hello", tree.join("usr/bin/hi")).unwrap();
    fs::hard_link(tree.join("usr/bin/hello"), tree.join("usr/bin/hola")).unwrap();
    let plugin = example("listing");
    for compression in ["gzip", "zstd"] {
        let out = work.path().join(format!("{compression}.json"));
        run(treeport().arg("--plugin").arg(&plugin).args([
            "export",
            "--compression",
            compression,
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("listing:{}", out.display()),
        ]))
        .ok();
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(&out).unwrap()).unwrap();
        let files = doc["layers"][0]["files"].as_array().unwrap();
        let hello = files.iter().find(|f| f["path"] == "usr/bin/hello").unwrap();
        assert_eq!(
            hello["sha256"],
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        let hi = files.iter().find(|f| f["path"] == "usr/bin/hi").unwrap();
        assert_eq!(hi["type"], "symlink");
        assert_eq!(hi["target"], "hello");
        // A hardlink: a file with no content naming the member it links to.
        let hola = files.iter().find(|f| f["path"] == "usr/bin/hola").unwrap();
        assert_eq!(hola["type"], "file");
        assert_eq!(hola["target"], "usr/bin/hello");
        assert!(hola.get("sha256").is_none());
    }
}
