//! Trust boundaries: what treeport reads, writes, removes and sends stays
//! within what the user asked for, whatever the input does.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use treeport_tests::{bin, fixtures, layout_digest, require, require_root, verify};

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
