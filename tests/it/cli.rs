//! What a user sees at the command line: errors, exit codes, listings.

use std::fs;

use treeport_tests::{export_cmd, run, treeport};

/// A tree of one file, `tree/f`, in `work`.
fn one_file_tree(work: &std::path::Path) -> std::path::PathBuf {
    let root = work.join("tree");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("f"), b"x").unwrap();
    root
}

#[test]
fn a_missing_directory_is_one_line_and_exit_1() {
    let work = tempfile::tempdir().unwrap();
    let line = run(treeport().args([
        "export",
        "--source",
        "rootfs:/nonexistent/tree",
        "--sink",
        &format!("oci:{}", work.path().join("img").display()),
    ]))
    .fails_with(1);
    assert_eq!(
        line,
        "error: source rootfs:/nonexistent/tree: /nonexistent/tree: No such file or directory"
    );
    assert!(!work.path().join("img").exists());
}

#[test]
fn an_unknown_kind_lists_the_valid_ones() {
    let line = run(treeport().args([
        "export",
        "--source",
        "rootfs:/",
        "--sink",
        "floppy:/dev/fd0",
    ]))
    .fails_with(1);
    assert!(
        line.starts_with("error: unknown sink kind 'floppy' (valid kinds: "),
        "{line}"
    );
    assert!(line.contains("oci"), "{line}");
    let line =
        run(treeport().args(["export", "--source", "git:x", "--sink", "oci:/tmp/x"])).fails_with(1);
    assert!(
        line.contains("unknown source kind 'git'") && line.contains("rootfs"),
        "{line}"
    );
}

#[test]
fn an_unwritable_destination_fails_before_any_work() {
    let work = tempfile::tempdir().unwrap();
    let root = one_file_tree(work.path());
    let blocker = work.path().join("file");
    fs::write(&blocker, b"not a directory").unwrap();
    for dest in [
        blocker.display().to_string(),
        blocker.join("below").display().to_string(),
        "/proc/treeport-cannot-write-here".to_string(),
    ] {
        let ran = run(&mut export_cmd(
            &format!("rootfs:{}", root.display()),
            &[&format!("oci:{dest}")],
        ));
        let line = ran.fails_with(1);
        assert!(line.contains(&dest) || line.contains("/proc"), "{line}");
    }
    assert_eq!(fs::read(&blocker).unwrap(), b"not a directory");
    // A directory that is not a layout is not taken over.
    let precious = work.path().join("precious");
    fs::create_dir(&precious).unwrap();
    fs::write(precious.join("notes"), b"mine").unwrap();
    let line = run(&mut export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!("oci:{}", precious.display())],
    ))
    .fails_with(1);
    assert!(line.contains("not an OCI image layout"), "{line}");
    assert_eq!(
        fs::read_dir(&precious).unwrap().count(),
        1,
        "nothing added to a foreign directory"
    );
}

#[test]
fn bad_usage_is_exit_2() {
    let ran = run(treeport().args(["export", "--source", "rootfs:/"]));
    assert_eq!(ran.code, Some(2), "missing --sink: {ran:#?}");
    let line = run(treeport().args([
        "export",
        "--source",
        "rootfs:/",
        "--sink",
        "oci:/tmp/x",
        "--compression-level",
        "42",
    ]))
    .fails_with(2);
    assert!(line.contains("level 42 is out of range"), "{line}");
    let line = run(treeport().args([
        "export",
        "--source",
        "rootfs:/",
        "--sink",
        "oci:/tmp/x",
        "--expose",
        "http",
    ]))
    .fails_with(2);
    assert!(line.contains("--expose 'http'"), "{line}");
    let line = run(treeport()
        .args(["export", "--source", "rootfs:/", "--sink", "oci:/tmp/x"])
        .env("SOURCE_DATE_EPOCH", "yesterday"))
    .fails_with(2);
    assert!(line.contains("SOURCE_DATE_EPOCH='yesterday'"), "{line}");
    for (flag, value, says) in [
        ("--arch", "sparc99", "--arch sparc99: unknown architecture"),
        ("--arch", "arm64/eight", "variant 'eight'"),
        ("--os", "plan10", "--os plan10: unknown operating system"),
    ] {
        let line = run(treeport().args([
            "export",
            "--source",
            "rootfs:/nonexistent",
            "--sink",
            "oci:/tmp/x",
            flag,
            value,
        ]))
        .fails_with(2);
        assert!(line.contains(says), "{line}");
    }
}

#[test]
fn plugins_list_shows_every_builtin() {
    let ran = run(treeport().args(["plugins", "list"])).ok();
    insta::assert_snapshot!("plugins_list", ran.stdout);
    let ran = run(treeport().args(["plugins", "list", "--json"])).ok();
    let rows: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["origin"] == "built-in")
    );
}

#[test]
fn inspect_shows_an_image_and_names_a_missing_tag() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir(&root).unwrap();
    fs::write(root.join("hello"), b"hello\n").unwrap();
    let layout = work.path().join("img");
    let exported = run(treeport().args([
        "export",
        "--json",
        "--source",
        &format!("rootfs:{}", root.display()),
        "--sink",
        &format!("oci:{}:v1", layout.display()),
        "--label",
        "a=b",
        "--timestamp",
        "0",
    ]))
    .ok();
    let exported: serde_json::Value = serde_json::from_str(&exported.stdout).unwrap();
    let ran =
        run(treeport().args(["inspect", "--json", &format!("oci:{}:v1", layout.display())])).ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["digest"], exported["manifestDigest"]);
    assert_eq!(report["labels"]["a"], "b");
    assert_eq!(report["created"], "1970-01-01T00:00:00Z");
    assert_eq!(
        report["layers"][0]["diffId"],
        exported["layers"][0]["diffId"]
    );
    let text = run(treeport().args(["inspect", &format!("oci:{}:v1", layout.display())])).ok();
    assert!(
        text.stdout.contains("Platform:    linux/amd64"),
        "{}",
        text.stdout
    );

    let line =
        run(treeport().args(["inspect", &format!("oci:{}:v2", layout.display())])).fails_with(1);
    assert!(line.contains("no image tagged 'v2' (tags: v1)"), "{line}");
    let line = run(treeport().args(["inspect", "oci:/nonexistent"])).fails_with(1);
    assert!(
        line.contains("/nonexistent: not an OCI image layout"),
        "{line}"
    );
}

#[test]
fn every_input_fuzzing_ever_broke_is_handled_now() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-regressions");
    let mut replayed = 0;
    for (name, target) in treeport_tests::fuzzing::TARGETS {
        let dir = root.join(name);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let data = fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| target(&data));
                assert!(outcome.is_ok(), "{} panics again", path.display());
                replayed += 1;
            }
        }
    }
    eprintln!("replayed {replayed} fuzz regression inputs");
}

/// `--cache` takes a directory, a registry repository or an OCI layout: a
/// value of another kind is refused (exit 2) instead of becoming a directory
/// named after it (`s3:`).
#[test]
fn a_cache_of_an_unknown_kind_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    for cache in [
        "s3://bucket/cache",
        "foo:bar",
        "oci:",
        "docker://127.0.0.1:5000/x@sha256:00",
    ] {
        let line = run(treeport().current_dir(work.path()).args([
            "export",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("oci:{}:x", work.path().join("img").display()),
            "--cache",
            cache,
        ]))
        .fails_with(2);
        assert!(line.contains("--cache"), "{cache}: {line}");
    }
    assert!(!work.path().join("s3:").exists());
    assert!(!work.path().join("foo:bar").exists());
    assert!(!work.path().join("img").exists());
}

#[test]
fn a_bare_path_where_a_selector_belongs_says_what_to_write() {
    let work = tempfile::tempdir().unwrap();
    let root = one_file_tree(work.path());
    let out = work.path().join("out");
    // A path with a slash is not a kind at all: bad usage.
    let line = run(&mut export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&out.display().to_string()],
    ))
    .fails_with(2);
    assert!(
        line.contains("has no kind") && line.contains("oci:PATH"),
        "{line}"
    );
    // A bare name that is a directory: the selector it probably meant.
    let line = run(treeport()
        .current_dir(work.path())
        .args(["export", "--source", "tree", "--sink", "oci:img"]))
    .fails_with(1);
    assert!(
        line.contains("unknown source kind 'tree'")
            && line.ends_with("for the directory 'tree', write rootfs:tree"),
        "{line}"
    );
    let line = run(treeport().current_dir(work.path()).args([
        "export",
        "--source",
        "rootfs:tree",
        "--sink",
        "img",
    ]))
    .fails_with(1);
    assert!(line.ends_with("write oci:img"), "{line}");
    assert!(!work.path().join("img").exists());
    // Where an image is read, the image kinds and the selector for one.
    let line = run(treeport()
        .current_dir(work.path())
        .args(["inspect", "tree"]))
    .fails_with(1);
    assert!(
        line.starts_with("error: unknown source kind 'tree' (valid kinds: docker, docker-archive, oci, oci-archive)")
            && line.ends_with("'tree' is a directory, not an OCI layout"),
        "{line}"
    );
}

#[test]
fn env_key_minus_removes_a_variable_an_image_source_set() {
    let work = tempfile::tempdir().unwrap();
    let root = one_file_tree(work.path());
    let first = work.path().join("first");
    run(export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&format!("oci:{}", first.display())],
    )
    .args(["-q", "--env", "KEEP=1", "--env", "DROP=2"]))
    .ok();
    let second = work.path().join("second");
    run(export_cmd(
        &format!("oci:{}", first.display()),
        &[&format!("oci:{}", second.display())],
    )
    .args(["-q", "--env", "DROP-"]))
    .ok();
    let config =
        treeport_tests::skopeo_inspect(&format!("oci:{}:latest", second.display()), &["--config"]);
    let env: Vec<&str> = config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"KEEP=1"), "{env:?}");
    assert!(!env.iter().any(|e| e.starts_with("DROP")), "{env:?}");
}

#[test]
fn read_errors_of_an_image_source_name_the_source() {
    let work = tempfile::tempdir().unwrap();
    let missing = work.path().join("nothing-here");
    let line = run(&mut export_cmd(
        &format!("oci:{}", missing.display()),
        &[&format!("oci:{}", work.path().join("img").display())],
    ))
    .fails_with(1);
    assert!(
        line.starts_with(&format!("error: source oci:{}: ", missing.display())),
        "{line}"
    );
}

#[test]
fn misplaced_forms_get_one_line_naming_the_right_one() {
    let work = tempfile::tempdir().unwrap();
    // oci build takes a ref of --repo, not export's selector.
    let line = run(treeport().args([
        "oci",
        "build",
        "--repo",
        &work.path().display().to_string(),
        "--source",
        "ostree:/srv/repo:main",
        "--output",
        &work.path().join("img").display().to_string(),
    ]))
    .fails_with(2);
    assert!(
        line.contains("--source 'ostree:/srv/repo:main'") && line.contains("--repo REPO"),
        "{line}"
    );
    // A missing plugin directory is called one.
    let missing = work.path().join("no-plugins");
    let line = run(treeport().args([
        "--plugin-dir",
        &missing.display().to_string(),
        "plugins",
        "list",
    ]))
    .fails_with(1);
    assert_eq!(
        line,
        format!(
            "error: plugin directory {}: No such file or directory",
            missing.display()
        )
    );
    // A suite is asked for in words that read.
    let line = run(&mut export_cmd(
        "mmdebstrap:",
        &[&format!("oci:{}", work.path().join("img").display())],
    ))
    .fails_with(2);
    assert!(
        line.contains("needs a suite (e.g. bookworm) after 'mmdebstrap:'"),
        "{line}"
    );
}

#[test]
fn a_registry_tag_of_the_artifact_form_is_refused_before_any_work() {
    let work = tempfile::tempdir().unwrap();
    let root = one_file_tree(work.path());
    let reserved = format!("sha256-{}", "ab".repeat(32));
    for tag in [reserved.clone(), format!("{reserved}.sig")] {
        // Port 9 on 127.0.0.1: nothing listens; the refusal comes first.
        let line = run(&mut export_cmd(
            &format!("rootfs:{}", root.display()),
            &[&format!("docker://127.0.0.1:9/x/y:{tag}")],
        ))
        .fails_with(2);
        assert!(line.contains("names an image's artifacts"), "{line}");
    }
    // A bare archive name where a selector belongs.
    let line = run(&mut export_cmd("t.tar", &["oci:img"])).fails_with(2);
    assert!(line.contains("has no kind"), "{line}");
}
