//! What a new user meets first: the digest each destination reports is the
//! one other tools show for it, `pull` copies between any two kinds, a
//! closed pipe ends quietly, and `inspect` shows what the config holds.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use treeport_tests::{export_cmd, run, skopeo_inspect, tool, treeport};

fn small_tree(root: &Path) {
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(root.join("etc/hostname"), b"newuser\n").unwrap();
    fs::write(root.join("etc/motd"), "welcome\n".repeat(1000)).unwrap();
}

#[test]
fn every_destination_reports_the_digest_its_consumers_see() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    small_tree(&root);
    let layout = format!("oci:{}:v1", work.path().join("img").display());
    let archive = format!(
        "docker-archive:{}:newuser:1",
        work.path().join("d.tar").display()
    );
    let oci_archive = format!("oci-archive:{}:v1", work.path().join("o.tar").display());
    let ran = run(export_cmd(
        &format!("rootfs:{}", root.display()),
        &[&layout, &archive, &oci_archive],
    )
    .args(["--json", "--timestamp", "1700000000"]))
    .ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let destinations = report["destinations"].as_array().unwrap();
    assert_eq!(destinations.len(), 3);
    for d in destinations {
        let reference = d["destination"].as_str().unwrap();
        let reported = d["manifestDigest"].as_str().unwrap();
        // skopeo names docker archives without the tag after the file.
        let skopeo_ref = reference
            .strip_suffix(":newuser:1")
            .map_or(reference.to_string(), |r| format!("{r}:newuser:1"));
        assert_eq!(
            skopeo_inspect(&skopeo_ref, &[])["Digest"],
            reported,
            "{reference}: skopeo's digest"
        );
        let inspected = run(treeport().args(["inspect", "--json", reference])).ok();
        let inspected: serde_json::Value = serde_json::from_str(&inspected.stdout).unwrap();
        assert_eq!(
            inspected["digest"], reported,
            "{reference}: treeport inspect"
        );
    }
    // The docker archive's digest is its own, the layout's is the export's.
    assert_ne!(destinations[1]["manifestDigest"], report["manifestDigest"]);
    assert_eq!(destinations[0]["manifestDigest"], report["manifestDigest"]);
    // The text output names each destination with its digest.
    let ran = run(
        export_cmd(&format!("rootfs:{}", root.display()), &[&archive])
            .args(["--timestamp", "1700000000"]),
    )
    .ok();
    let line = ran
        .stdout
        .lines()
        .find(|l| l.starts_with("wrote docker-archive:"))
        .unwrap();
    assert!(
        line.ends_with(&format!(
            "(manifest {})",
            destinations[1]["manifestDigest"].as_str().unwrap()
        )),
        "{line}"
    );
}

#[test]
fn pull_copies_between_any_two_kinds() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    small_tree(&root);
    let w = |name: &str| work.path().join(name).display().to_string();
    let layout = format!("oci:{}:v1", w("img"));
    run(
        export_cmd(&format!("rootfs:{}", root.display()), &[&layout]).args([
            "-q",
            "--timestamp",
            "1700000000",
        ]),
    )
    .ok();
    let layout_digest = skopeo_inspect(&layout, &[])["Digest"].clone();
    let pairs = [
        (layout.clone(), format!("oci-archive:{}:v1", w("a.tar"))),
        (layout.clone(), format!("docker-archive:{}:x:1", w("b.tar"))),
        (
            format!("docker-archive:{}:x:1", w("b.tar")),
            format!("oci-archive:{}:v2", w("c.tar")),
        ),
        (
            format!("docker-archive:{}", w("b.tar")),
            format!("oci:{}:from-docker", w("img")),
        ),
        (
            format!("oci-archive:{}:v1", w("a.tar")),
            format!("docker-archive:{}", w("e.tar")),
        ),
    ];
    for (from, to) in &pairs {
        let ran = run(treeport().args(["pull", "--json", from, to])).ok();
        let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        let skopeo_ref = if to.starts_with("docker-archive:") {
            to.split(':').take(2).collect::<Vec<_>>().join(":")
        } else {
            to.clone()
        };
        let seen = skopeo_inspect(&skopeo_ref, &[]);
        assert_eq!(seen["Digest"], report["digest"], "{from} -> {to}");
        if to.starts_with("oci-archive:") && from.starts_with("oci:") {
            assert_eq!(
                seen["Digest"], layout_digest,
                "{from} -> {to}: the same manifest"
            );
        }
    }
    // The copies hold the same tree.
    for reference in [
        format!("oci-archive:{}:v2", w("c.tar")),
        format!("docker-archive:{}", w("e.tar")),
    ] {
        treeport_tests::verify(&reference, Some(&format!("rootfs:{}", root.display())), &[]);
    }
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    small_tree(&root);
    let layout = format!("oci:{}", work.path().join("img").display());
    run(export_cmd(&format!("rootfs:{}", root.display()), &[&layout]).arg("-q")).ok();
    for args in [
        vec!["plugins", "list", "--json"],
        vec!["plugins", "list"],
        vec!["inspect", "--json", layout.as_str()],
    ] {
        // A reader that takes nothing: the pipe is closed before treeport
        // writes.
        let mut child = treeport()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("backtrace"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
        assert_eq!(
            stderr, "",
            "{args:?}: a broken pipe is not an error to report"
        );
    }
    // And through a shell pipeline, as a user types it.
    let ran = run(Command::new("sh").arg("-c").arg(format!(
        "{} plugins list --json | head -c 40 >/dev/null; echo ${{PIPESTATUS:-done}}",
        treeport_tests::bin().display()
    )));
    assert!(!ran.stderr.contains("panicked"), "{ran:#?}");
}

#[test]
fn inspect_shows_ports_volumes_and_the_layers_alone() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    small_tree(&root);
    let layout = format!("oci:{}", work.path().join("img").display());
    run(
        export_cmd(&format!("rootfs:{}", root.display()), &[&layout]).args([
            "-q",
            "--expose",
            "8080/tcp",
            "--expose",
            "53/udp",
            "--volume",
            "/var/lib/data",
        ]),
    )
    .ok();
    let text = run(treeport().args(["inspect", &layout])).ok().stdout;
    assert!(text.contains("Ports:       53/udp 8080/tcp"), "{text}");
    assert!(text.contains("Volumes:     /var/lib/data"), "{text}");
    let raw: serde_json::Value =
        serde_json::from_str(&tool("skopeo", ["inspect", "--raw", &layout])).unwrap();
    let layer_bytes = raw["layers"][0]["size"].as_u64().unwrap();
    let json: serde_json::Value = serde_json::from_str(
        &run(treeport().args(["inspect", "--json", &layout]))
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(json["size"], layer_bytes, "the config is not a layer");
    assert!(
        text.contains(&format!("Layers:      1 ({layer_bytes} B compressed)")),
        "{text}"
    );
}
