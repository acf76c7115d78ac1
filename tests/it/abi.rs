//! The plugin interface's promises, each checked by building real crates
//! outside the workspace: a plugin built against interface 1.0 as released
//! runs in this treeport; a host built from the current interface with a
//! field, a method and a code added loads plugins built against the current
//! one; and the guide's own plugin builds in an empty directory and runs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use treeport_tests::{run, skopeo_inspect, target_dir, treeport, umoci_unpack};

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// Copies a directory tree (regular files and directories).
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// The target directory these tests share (dependencies built once).
fn abi_target() -> PathBuf {
    target_dir()
        .parent()
        .expect("target/<profile>")
        .join("abi-tests")
}

/// Runs `cargo ARGS` offline in `dir` with the shared target directory;
/// panics with cargo's words unless it succeeds.
fn cargo(dir: &Path, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(dir)
        .args(args)
        .args(["--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", abi_target())
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the crate in `dir` with the workspace's lock file (so the same
/// dependency versions); returns the directory its artifacts land in.
fn build(dir: &Path, features: &[&str]) -> PathBuf {
    fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let features = features.join(",");
    let mut args = vec!["build"];
    if !features.is_empty() {
        args.extend(["--features", &features]);
    }
    cargo(dir, &args);
    abi_target().join("debug")
}

/// A tree with a file, for the exports below.
fn small_tree(work: &Path) -> PathBuf {
    let tree = work.join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    tree
}

#[test]
fn a_plugin_built_against_interface_1_0_runs_in_this_treeport() {
    let work = tempfile::tempdir().unwrap();
    copy_tree(&root().join("tests/abi/1.0"), &work.path().join("1.0"));
    copy_tree(
        &root().join("tests/abi/plugin-1.0"),
        &work.path().join("plugin-1.0"),
    );
    let out = build(&work.path().join("plugin-1.0"), &[]);
    let lib = out.join("libtreeport_plugin_frozen.so");
    let tree = small_tree(work.path());
    let layout = work.path().join("img");
    run(treeport().arg("--plugin").arg(&lib).args([
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--transform",
        "frozen:label=old",
        "--sink",
        &format!("oci:{}:frozen", layout.display()),
    ]))
    .ok();
    let config = skopeo_inspect(&format!("oci:{}:frozen", layout.display()), &["--config"]);
    assert_eq!(config["config"]["Labels"]["com.example.frozen"], "old");
    let bundle = umoci_unpack(&layout, "frozen");
    let frozen = fs::read_to_string(bundle.path().join("b/rootfs/etc/frozen")).unwrap();
    // etc, usr, usr/bin, usr/bin/tool: what the host gave, read back whole.
    assert_eq!(frozen, "4 entries\n");
    assert_eq!(
        fs::read(bundle.path().join("b/rootfs/usr/bin/tool")).unwrap(),
        b"#!/bin/sh\n"
    );
}

/// Replaces `from` by `to` in `file`, which must hold it.
fn patch(file: &Path, from: &str, to: &str) {
    let text = fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    fs::write(file, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_grown_interface_still_loads_plugins_built_against_this_one() {
    let work = tempfile::tempdir().unwrap();
    let api = work.path().join("api");
    copy_tree(&root().join("core/abi"), &api);
    // A field of the root module, after the last one.
    patch(
        &api.join("src/ffi.rs"),
        "    pub plugins: extern \"C\" fn() -> Res<RVec<PluginBox>>,\n}",
        "    pub plugins: extern \"C\" fn() -> Res<RVec<PluginBox>>,\n    \
         pub features: extern \"C\" fn() -> u64,\n}",
    );
    patch(
        &api.join("src/lib.rs"),
        "                plugins: __treeport_plugins,\n",
        "                plugins: __treeport_plugins,\n                \
         features: { extern \"C\" fn f() -> u64 { 1 } f },\n",
    );
    // A method of the draft, after the last one.
    patch(
        &api.join("src/ffi.rs"),
        "    #[sabi(last_prefix_field)]\n    fn read_only(&self) -> bool;\n}",
        "    #[sabi(last_prefix_field)]\n    fn read_only(&self) -> bool;\n    \
         fn rank(&self, index: u64) -> u32;\n}",
    );
    // A kind of entry.
    let lib = api.join("src/lib.rs");
    patch(
        &lib,
        "    Fifo,\n    /// A kind a later",
        "    Fifo,\n    Socket,\n    /// A kind a later",
    );
    patch(
        &lib,
        "            Kind::Fifo => 5,\n",
        "            Kind::Fifo => 5,\n            Kind::Socket => 6,\n",
    );
    patch(
        &lib,
        "            5 => Kind::Fifo,\n",
        "            5 => Kind::Fifo,\n            6 => Kind::Socket,\n",
    );
    let host = work.path().join("host");
    copy_tree(&root().join("tests/abi/host"), &host);
    patch(
        &host.join("Cargo.toml"),
        "path = \"../../../core/abi\"",
        &format!("path = \"{}\"", api.display()),
    );
    let out = build(&host, &["grown"]);
    let plugin = target_dir().join("libtreeport_test_plugin_passthrough.so");
    assert!(plugin.is_file(), "build the workspace first");
    let ran = Command::new(out.join("treeport-abi-host"))
        .arg(&plugin)
        .arg("rewrite")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"interface=1.0"), "{stdout}");
    // The old plugin's root module has no `features`: the grown host sees
    // it is absent instead of reading past the end.
    assert!(lines.contains(&"features=absent"), "{stdout}");
    assert!(lines.contains(&"plugin=rewrite"), "{stdout}");
    for e in ["entry etc", "entry usr", "entry usr/bin"] {
        assert!(lines.contains(&e), "{stdout}");
    }
}

/// The blocks of docs/plugins.md marked `plugin-guide:FILE`, by file.
fn guide_files() -> Vec<(String, String)> {
    let text = fs::read_to_string(root().join("docs/plugins.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(name) = trimmed
            .strip_prefix("```")
            .and_then(|info| info.split_whitespace().nth(1))
            .and_then(|tag| tag.strip_prefix("plugin-guide:"))
        else {
            continue;
        };
        let indent = line.len() - trimmed.len();
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push_str(l.get(indent..).unwrap_or(""));
            body.push('\n');
        }
        out.push((name.to_string(), body));
    }
    out
}

#[test]
fn the_guides_plugin_builds_in_an_empty_directory_and_runs() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("treeport-plugin-hello");
    let files = guide_files();
    assert_eq!(
        files.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["Cargo.toml", "src/lib.rs"]
    );
    for (name, body) in &files {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        // The guide's placeholder path, pointed at this checkout.
        let body = body.replace(
            "/path/to/treeport/core/abi",
            &root().join("core/abi").display().to_string(),
        );
        fs::write(path, body).unwrap();
    }
    let out = build(&dir, &[]);
    let lib = out.join("libtreeport_plugin_hello.so");
    let listed = run(treeport()
        .arg("--plugin")
        .arg(&lib)
        .args(["plugins", "list"]))
    .ok();
    assert!(
        listed.stdout.contains("hello[:greeting=TEXT]"),
        "{}",
        listed.stdout
    );
    assert!(
        listed.stdout.contains("greeting <string>"),
        "{}",
        listed.stdout
    );
    let tree = small_tree(work.path());
    let layout = work.path().join("img");
    run(treeport().arg("--plugin").arg(&lib).args([
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--transform",
        "hello:greeting=moin",
        "--sink",
        &format!("oci:{}:hello", layout.display()),
    ]))
    .ok();
    let config = skopeo_inspect(&format!("oci:{}:hello", layout.display()), &["--config"]);
    assert_eq!(config["config"]["Labels"]["com.example.hello"], "moin");
    let bundle = umoci_unpack(&layout, "hello");
    assert_eq!(
        fs::read_to_string(bundle.path().join("b/rootfs/etc/hello")).unwrap(),
        "moin\n"
    );
}

/// The interface crate stands on its own: its package metadata is its own
/// (nothing inherited from the workspace), and the packaged crate builds.
#[test]
fn the_interface_crate_packages_on_its_own() {
    let manifest = fs::read_to_string(root().join("core/abi/Cargo.toml")).unwrap();
    assert!(!manifest.contains(".workspace"), "{manifest}");
    cargo(
        &root(),
        &["package", "--allow-dirty", "-p", "treeport-plugin-api"],
    );
    assert!(
        abi_target()
            .join("package/treeport-plugin-api-1.0.0.crate")
            .is_file()
    );
}
