//! Same input, same bytes: a tree of several large files exported again and
//! again, with 1, 2 and 8 threads, from a directory and from a gzipped tar
//! (whose decoder hands the encoder odd-sized pieces), while other threads
//! keep every core busy, gives one manifest digest per compression.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use treeport_tests::{export_cmd, layout_digest, run, tool};

/// Files of several MiB each, so every layer spans many 1 MiB gzip blocks
/// and several 4 MiB zstd jobs: slices of the treeport binary (machine
/// code, the kind of input that showed the gzip encoder's history
/// dependence) and generated text with repeats at every distance.
fn large_files_tree(root: &Path) {
    let code = fs::read(treeport_tests::bin()).unwrap();
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    let slice = (5 << 20) + 123_457;
    for i in 0..5 {
        let at = (i * code.len() / 5).min(code.len() - slice);
        fs::write(
            root.join(format!("usr/lib/code{i}.bin")),
            &code[at..at + slice],
        )
        .unwrap();
    }
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3 {
        let mut text: Vec<u8> = Vec::with_capacity(7 << 20);
        while text.len() < 7 << 20 {
            if text.len() > 64 && next() % 3 == 0 {
                let dist = 1 + (next() % (text.len().min(40_000) as u64)) as usize;
                let len = 3 + (next() % 300) as usize;
                let start = text.len() - dist;
                for k in 0..len {
                    text.push(text[start + k]);
                }
            } else {
                text.extend(
                    format!("line {} of file {i}: {:x}\n", next() % 5000, next() % 97).bytes(),
                );
            }
        }
        fs::write(root.join(format!("usr/lib/text{i}.txt")), &text).unwrap();
    }
}

/// Keeps every core busy until dropped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, usize::from);
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        }
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Exports `source` ten times for each thread count under load and returns
/// every run's manifest digest, keyed by how the run was made.
fn digests(work: &Path, sources: &[String], compression: &str) -> BTreeMap<String, String> {
    let _load = Load::start();
    let mut seen = BTreeMap::new();
    for threads in ["1", "2", "8"] {
        for round in 0..10 {
            let source = &sources[round % sources.len()];
            let dest = work.join("out");
            let ran = run(
                export_cmd(source, &[&format!("oci:{}:r", dest.display())]).args([
                    "-q",
                    "--timestamp",
                    "1700000000",
                    "--compression",
                    compression,
                    "--threads",
                    threads,
                ]),
            );
            ran.ok();
            let digest = layout_digest(&dest, "r");
            seen.insert(
                format!("{compression} {threads} threads round {round} from {source}"),
                digest,
            );
            fs::remove_dir_all(&dest).unwrap();
        }
    }
    seen
}

fn assert_one_digest(seen: &BTreeMap<String, String>) {
    let distinct: std::collections::BTreeSet<&String> = seen.values().collect();
    assert_eq!(
        distinct.len(),
        1,
        "{} runs gave {} digests: {seen:#?}",
        seen.len(),
        distinct.len()
    );
}

fn sources(work: &Path) -> Vec<String> {
    let root = work.join("tree");
    large_files_tree(&root);
    let archive = work.join("tree.tar.gz");
    tool(
        "tar",
        [
            "-C",
            root.to_str().unwrap(),
            "--numeric-owner",
            "-czf",
            archive.to_str().unwrap(),
            ".",
        ],
    );
    vec![
        format!("rootfs:{}", root.display()),
        format!("rootfs:{}", root.display()),
        format!("tar:{}", archive.display()),
    ]
}

#[test]
fn gzip_layers_are_the_same_bytes_every_run_on_a_busy_machine() {
    let work = tempfile::tempdir().unwrap();
    let sources = sources(work.path());
    assert_one_digest(&digests(work.path(), &sources, "gzip"));
}

#[test]
fn zstd_layers_are_the_same_bytes_every_run_on_a_busy_machine() {
    let work = tempfile::tempdir().unwrap();
    let sources = sources(work.path());
    assert_one_digest(&digests(work.path(), &sources, "zstd"));
}
