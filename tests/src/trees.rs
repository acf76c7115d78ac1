//! Comparing two directory trees the way a layer must preserve them, and
//! building a tree with every edge case a tar layer has to carry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use sha2::{Digest, Sha256};

/// What a layer must carry about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content hash of a file, target of a symlink, device number of a device.
    pub data: String,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Other paths that are the same inode (hardlinks), sorted.
    pub links: BTreeSet<Vec<u8>>,
}

/// Reads every path below `root` (not `root` itself).
#[must_use]
#[allow(clippy::many_single_char_names)]
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), Vec<Vec<u8>>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("readable dir") {
            let e = e.expect("dir entry");
            let path = e.path();
            let rel = path
                .strip_prefix(root)
                .expect("below root")
                .as_os_str()
                .as_bytes()
                .to_vec();
            let m = fs::symlink_metadata(&path).expect("lstat");
            let ft = m.file_type();
            let (kind, data) = if ft.is_file() {
                let mut h = Sha256::new();
                let mut f = fs::File::open(&path).expect("open file");
                let mut buf = vec![0; 1 << 16];
                loop {
                    let n = f.read(&mut buf).expect("read file");
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                ("file", hex::encode(h.finalize()))
            } else if ft.is_dir() {
                stack.push(path.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    String::from_utf8_lossy(
                        fs::read_link(&path)
                            .expect("readlink")
                            .as_os_str()
                            .as_bytes(),
                    )
                    .into_owned(),
                )
            } else if ft.is_char_device() {
                ("char", format!("{:x}", m.rdev()))
            } else if ft.is_block_device() {
                ("block", format!("{:x}", m.rdev()))
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else {
                ("socket", String::new())
            };
            if ft.is_file() && m.nlink() > 1 {
                inodes
                    .entry((m.dev(), m.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            let xattrs = xattr::list(&path)
                .map(|names| {
                    names
                        .filter_map(|n| {
                            let v = xattr::get(&path, &n).ok().flatten()?;
                            Some((n.as_bytes().to_vec(), v))
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.insert(
                rel,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    data,
                    xattrs,
                    links: BTreeSet::new(),
                },
            );
        }
    }
    for group in inodes.values() {
        for p in group {
            let others = group.iter().filter(|o| *o != p).cloned().collect();
            out.get_mut(p).expect("grouped path exists").links = others;
        }
    }
    out
}

/// The differences between two trees, one line each (empty when identical).
/// Sockets in `a` are expected to be missing from `b`.
#[must_use]
pub fn differences(a: &Path, b: &Path) -> Vec<String> {
    differences_with(a, b, true)
}

/// Like [`differences`]; `links` says whether hardlinks must match too.
#[must_use]
pub fn differences_with(a: &Path, b: &Path, links: bool) -> Vec<String> {
    let mut sa = snapshot(a);
    let mut sb = snapshot(b);
    if !links {
        for node in sa.values_mut().chain(sb.values_mut()) {
            node.links.clear();
        }
    }
    let mut out = Vec::new();
    for (path, na) in &sa {
        let name = String::from_utf8_lossy(path);
        match sb.get(path) {
            None if na.kind == "socket" => {}
            None => out.push(format!("missing in {}: {name}", b.display())),
            Some(nb) if nb != na => out.push(format!("differs: {name}: {na:?} vs {nb:?}")),
            Some(_) => {}
        }
    }
    for path in sb.keys() {
        if !sa.contains_key(path) {
            out.push(format!(
                "extra in {}: {}",
                b.display(),
                String::from_utf8_lossy(path)
            ));
        }
    }
    out
}

fn run_ok(cmd: &str, args: &[&str]) {
    let st = std::process::Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// Builds, under `root`, a tree with every case a tar layer must carry: long
/// names and link targets, non-UTF-8 names, ids above 2^21, setuid, setgid
/// and sticky bits, xattrs (binary values, newlines, a file capability),
/// hardlinks, symlinks (absolute, relative, dangling), character and block
/// devices, a fifo, a socket (which layers skip), empty and larger files.
pub fn edge_case_tree(root: &Path) {
    crate::require_root();
    let p = |rel: &str| root.join(rel);
    fs::create_dir_all(p("usr/bin")).expect("create a fixture directory");
    fs::create_dir_all(p("dev")).expect("create a fixture directory");
    fs::create_dir_all(p("tmp")).expect("create a fixture directory");
    fs::set_permissions(p("tmp"), fs::Permissions::from_mode(0o1777))
        .expect("set a fixture file mode");

    // Long names: a path over 100 bytes and a 200-byte component.
    let deep = "deep/".repeat(25);
    fs::create_dir_all(p(&deep)).expect("create a fixture directory");
    fs::write(p(&format!("{deep}file-at-the-bottom")), b"deep content\n")
        .expect("write a fixture file");
    let long_component = "n".repeat(200);
    fs::write(p(&long_component), b"long name\n").expect("write a fixture file");
    // A non-UTF-8 name.
    let latin1 = root.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    fs::write(&latin1, b"latin-1 name\n").expect("write a fixture file");

    // Ownership above ustar's 2^21 limit, and special permission bits.
    fs::write(p("bigids"), b"owned by a large uid\n").expect("write a fixture file");
    std::os::unix::fs::lchown(p("bigids"), Some(3_000_000), Some(4_000_001))
        .expect("chown a fixture (the tests run as root)");
    fs::write(p("usr/bin/setuid"), b"#!/bin/sh\n").expect("write a fixture file");
    fs::set_permissions(p("usr/bin/setuid"), fs::Permissions::from_mode(0o4755))
        .expect("set a fixture file mode");
    fs::write(p("usr/bin/setgid"), b"#!/bin/sh\n").expect("write a fixture file");
    fs::set_permissions(p("usr/bin/setgid"), fs::Permissions::from_mode(0o2711))
        .expect("set a fixture file mode");
    std::os::unix::fs::lchown(p("usr/bin/setgid"), Some(0), Some(42))
        .expect("chown a fixture (the tests run as root)");

    // Extended attributes: binary and newline values, and a file capability
    // (cap_net_raw+ep, VFS_CAP_REVISION_2).
    fs::write(p("usr/bin/ping"), b"not really ping\n").expect("write a fixture file");
    xattr::set(
        p("usr/bin/ping"),
        "user.binary",
        &[0, 1, 2, 0xff, b'\n', b'='],
    )
    .expect("set a fixture xattr (the test filesystem keeps user xattrs)");
    xattr::set(p("usr/bin/ping"), "user.text", b"two\nlines")
        .expect("set a fixture xattr (the test filesystem keeps user xattrs)");
    let mut cap = vec![0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00];
    cap.extend_from_slice(&[0; 12]);
    xattr::set(p("usr/bin/ping"), "security.capability", &cap)
        .expect("set a fixture xattr (the test filesystem keeps user xattrs)");
    xattr::set(p("usr"), "user.on-a-dir", b"yes")
        .expect("set a fixture xattr (the test filesystem keeps user xattrs)");

    // Hardlinks: three names for one inode, one in another directory.
    fs::write(p("usr/bin/tool"), b"shared inode\n").expect("write a fixture file");
    fs::hard_link(p("usr/bin/tool"), p("usr/bin/tool-alias")).expect("make a fixture hardlink");
    fs::hard_link(p("usr/bin/tool"), p("tool-elsewhere")).expect("make a fixture hardlink");

    // Symlinks.
    symlink("/etc/passwd", p("abs-link")).expect("make a fixture symlink");
    symlink("usr/bin/tool", p("rel-link")).expect("make a fixture symlink");
    symlink("does/not/exist", p("dangling")).expect("make a fixture symlink");
    let long_target = format!("/{}", "t".repeat(150));
    symlink(&long_target, p("long-target")).expect("make a fixture symlink");
    symlink("/", p("root-link")).expect("make a fixture symlink");

    // Devices and a fifo.
    run_ok(
        "mknod",
        &[
            p("dev/null").to_str().expect("temporary paths are UTF-8"),
            "c",
            "1",
            "3",
        ],
    );
    run_ok(
        "mknod",
        &[
            p("dev/loop7").to_str().expect("temporary paths are UTF-8"),
            "b",
            "7",
            "7",
        ],
    );
    run_ok(
        "mkfifo",
        &[p("dev/fifo").to_str().expect("temporary paths are UTF-8")],
    );
    fs::set_permissions(p("dev/null"), fs::Permissions::from_mode(0o666))
        .expect("set a fixture file mode");

    // A socket: layers cannot hold one, so it is skipped with a warning.
    let sock =
        std::os::unix::net::UnixListener::bind(p("tmp/socket")).expect("bind a port on 127.0.0.1");
    drop(sock);

    // Empty things and a file whose size is a whole number of tar blocks.
    fs::write(p("empty"), b"").expect("write a fixture file");
    fs::create_dir(p("empty-dir")).expect("create a fixture directory");
    fs::write(p("blocks"), vec![b'x'; 4096]).expect("write a fixture file");
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(p("big"), big).expect("write a fixture file");
}
