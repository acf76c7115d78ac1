//! The tar source against archives made by GNU tar, compared with the rootfs
//! source on the same tree.

use std::fs;
use std::process::Command;

use treeport_tests::{
    Ran, export_cmd, layout_digest, require_root, run, tool, treeport, trees, umoci_unpack, verify,
};

/// Exports `source` at a fixed time and returns the manifest digest.
fn export(source: &str, layout: &std::path::Path) -> String {
    run(treeport().args([
        "export",
        "-q",
        "--source",
        source,
        "--sink",
        &format!("oci:{}", layout.display()),
        "--timestamp",
        "1700000000",
    ]))
    .ok();
    layout_digest(layout, "latest")
}

#[test]
fn tar_archives_give_the_same_image_as_the_directory() {
    require_root();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir(&root).unwrap();
    trees::edge_case_tree(&root);
    fs::remove_file(root.join("tmp/socket")).unwrap();

    let from_dir = export(
        &format!("rootfs:{}", root.display()),
        &work.path().join("dir"),
    );

    let plain = work.path().join("tree.tar");
    tool(
        "tar",
        [
            "--create",
            "--xattrs",
            "--xattrs-include=*",
            "--numeric-owner",
            "--format=posix",
            "--file",
            plain.to_str().unwrap(),
            "-C",
            root.to_str().unwrap(),
            ".",
        ],
    );
    tool(
        "sh",
        [
            "-c",
            &format!(
                "gzip -c {0} > {0}.gz && zstd -q -c {0} > {0}.zst",
                plain.display()
            ),
        ],
    );
    for (name, file) in [
        ("plain", plain.clone()),
        ("gzip", plain.with_extension("tar.gz")),
        ("zstd", plain.with_extension("tar.zst")),
    ] {
        let layout = work.path().join(name);
        let digest = export(&format!("tar:{}", file.display()), &layout);
        assert_eq!(
            digest, from_dir,
            "{name} archive gives the directory's image"
        );
        verify(
            &format!("oci:{}", layout.display()),
            Some(&format!("tar:{}", file.display())),
            &[],
        );
        let bundle = umoci_unpack(&layout, "latest");
        let diffs = trees::differences(&root, &bundle.path().join("b/rootfs"));
        assert!(diffs.is_empty(), "{name}: {}", diffs.join("\n"));
    }
}

/// A tar with one member whose name is written raw (GNU tar would refuse).
fn hostile_tar(dir: &std::path::Path, members: &[(&str, u8, &str)]) -> std::path::PathBuf {
    let mut out = Vec::new();
    for (name, kind, link) in members {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        let body: &[u8] = if *kind == b'0' { b"payload" } else { b"" };
        h[124..136].copy_from_slice(format!("{:011o}\0", body.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        if !body.is_empty() {
            let mut block = [0u8; 512];
            block[..body.len()].copy_from_slice(body);
            out.extend_from_slice(&block);
        }
    }
    out.extend_from_slice(&[0u8; 1024]);
    let path = dir.join("hostile.tar");
    fs::write(&path, out).unwrap();
    path
}

#[test]
fn a_member_escaping_the_root_is_refused_and_nothing_is_written() {
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(work.path(), &[("ok", b'0', ""), ("../escape", b'0', "")]);
    let layout = work.path().join("img");
    let line = run(&mut export_cmd(
        &format!("tar:{}", archive.display()),
        &[&format!("oci:{}", layout.display())],
    ))
    .fails_with(1);
    assert!(line.contains("'../escape' escapes the root"), "{line}");
    assert!(line.contains(&archive.display().to_string()), "{line}");
    assert!(!layout.exists(), "no partial image");
    assert!(!work.path().join("escape").exists());
    let leftovers: Vec<_> = fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".treeport"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_member_through_a_symlink_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(work.path(), &[("a", b'2', "/etc"), ("a/passwd", b'0', "")]);
    let line = run(&mut export_cmd(
        &format!("tar:{}", archive.display()),
        &[&format!("oci:{}", work.path().join("img").display())],
    ))
    .fails_with(1);
    assert!(
        line.contains("'/a/passwd' lies below '/a', which is a symlink"),
        "{line}"
    );
    assert!(!work.path().join("img").exists());
    // The archive named /etc: nothing there was touched.
    let passwd = run(Command::new("grep").args(["-c", "payload", "/etc/passwd"]));
    assert_eq!(passwd.stdout.trim(), "0");
}

#[test]
fn sparse_members_of_every_gnu_format_are_expanded() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("tree");
    fs::create_dir(&root).unwrap();
    let sparse = root.join("sparse");
    tool("truncate", ["-s", "48M", sparse.to_str().unwrap()]);
    for (offset_mib, text) in [
        (1, "first piece"),
        (20, "second piece"),
        (47, "near the end"),
    ] {
        tool(
            "sh",
            [
                "-c",
                &format!(
                    "printf '{text}' | dd of={} bs=1M seek={offset_mib} conv=notrunc status=none",
                    sparse.display()
                ),
            ],
        );
    }
    fs::write(root.join("plain"), b"after the sparse file\n").unwrap();
    let from_dir = export(
        &format!("rootfs:{}", root.display()),
        &work.path().join("dir"),
    );
    for (name, flags) in [
        ("gnu", vec!["--format=gnu"]),
        ("pax-0.1", vec!["--format=posix", "--sparse-version=0.1"]),
        ("pax-1.0", vec!["--format=posix", "--sparse-version=1.0"]),
    ] {
        let archive = work.path().join(format!("{name}.tar"));
        let mut args = vec!["--create", "--sparse", "--numeric-owner"];
        args.extend(flags);
        args.extend([
            "--file",
            archive.to_str().unwrap(),
            "-C",
            root.to_str().unwrap(),
            ".",
        ]);
        tool("tar", args);
        assert!(
            fs::metadata(&archive).unwrap().len() < 1 << 20,
            "{name}: the archive itself is sparse"
        );
        let layout = work.path().join(name);
        let digest = export(&format!("tar:{}", archive.display()), &layout);
        assert_eq!(digest, from_dir, "{name}: same image as the directory");
        // Spooled (compressed) archives give the same result.
        tool("sh", ["-c", &format!("zstd -q {}", archive.display())]);
        let zst = work.path().join(format!("{name}.tar.zst"));
        let digest = export(
            &format!("tar:{}", zst.display()),
            &work.path().join(format!("{name}-zst")),
        );
        assert_eq!(digest, from_dir, "{name}.zst: same image as the directory");
    }
}

/// Exports `mmdebstrap:bookworm` with a stand-in mmdebstrap, the shell
/// `script`, into `work/img`; returns the run and the layout's path.
fn with_fake_mmdebstrap(work: &std::path::Path, script: &str) -> (Ran, std::path::PathBuf) {
    let fake = work.join("mmdebstrap");
    fs::write(&fake, format!("#!/bin/sh\n{script}")).unwrap();
    run(Command::new("chmod").args(["+x", &fake.display().to_string()])).ok();
    let layout = work.join("img");
    let _ = fs::remove_dir_all(&layout);
    let ran = run(export_cmd(
        "mmdebstrap:bookworm",
        &[&format!("oci:{}", layout.display())],
    )
    .arg("-q")
    .env("TREEPORT_MMDEBSTRAP", &fake));
    (ran, layout)
}

/// What mmdebstrap says when it cannot write its tarball.
const BROKEN_PIPE: &str = "echo 'E: cannot copy to standard output: Broken pipe' >&2; exit 25";

/// An mmdebstrap whose stream treeport refuses: the refusal is reported,
/// not the "Broken pipe" mmdebstrap then dies of (which hid the cause).
#[test]
fn a_refused_mmdebstrap_stream_reports_the_refusal() {
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(work.path(), &[("ok", b'0', ""), ("../escape", b'0', "")]);
    // Writes the archive, then more until the pipe breaks, and fails as
    // mmdebstrap does when it cannot write its tarball.
    let (ran, layout) = with_fake_mmdebstrap(
        work.path(),
        &format!(
            "cat {}\nyes '' | head -c 100000000 || {{ {BROKEN_PIPE}; }}\n{BROKEN_PIPE}\n",
            archive.display()
        ),
    );
    let line = ran.fails_with(1);
    assert!(line.contains("'../escape' escapes the root"), "{line}");
    assert!(!line.contains("Broken pipe"), "{line}");
    assert!(!layout.exists(), "no partial image");
}

/// tar pads its stream after the end marker; an mmdebstrap slow to write
/// that padding (a loaded machine) must not find the pipe closed: the run
/// failed with mmdebstrap's "Broken pipe" when it was.
#[test]
fn an_mmdebstrap_slow_to_finish_its_stream_is_read_to_the_end() {
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(
        work.path(),
        &[("etc", b'5', ""), ("etc/hostname", b'0', "")],
    );
    let (ran, layout) = with_fake_mmdebstrap(
        work.path(),
        &format!(
            "cat {}\nsleep 1\nhead -c 10240 /dev/zero || {{ {BROKEN_PIPE}; }}\n",
            archive.display()
        ),
    );
    ran.ok();
    assert!(layout.join("index.json").is_file());
}

/// mmdebstrap failing on its own mid-stream: its log says why, not the
/// truncated archive; data after the end marker is refused.
#[test]
fn an_mmdebstrap_failing_mid_stream_is_reported_by_its_log() {
    let work = tempfile::tempdir().unwrap();
    let archive = hostile_tar(
        work.path(),
        &[("etc", b'5', ""), ("etc/hostname", b'0', "")],
    );
    for (script, says) in [
        (
            format!(
                "head -c 512 {}\necho 'E: apt-get download failed' >&2\nexit 1\n",
                archive.display()
            ),
            "mmdebstrap bookworm failed (exit status: 1): E: apt-get download failed",
        ),
        (
            format!("cat {}\necho smuggled\n", archive.display()),
            "data after the archive's end marker",
        ),
    ] {
        let (ran, layout) = with_fake_mmdebstrap(work.path(), &script);
        let line = ran.fails_with(1);
        assert!(line.contains(says), "{line}");
        assert!(!layout.exists());
    }
}
