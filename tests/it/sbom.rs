//! The `sbom` transform on a real minbase tree, its documents checked with
//! tools no one here wrote: spdx-tools' `pyspdxtools` and
//! cyclonedx-python-lib's schema validation (from `PyPI`, in the virtual
//! environment `make deps` makes), and the package list against
//! `dpkg-query -W` on the unpacked image.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use treeport_tests::{
    fixtures, layout_digest, oci_validate, python, require_root, run, skopeo_inspect, treeport,
    umoci_unpack, verify,
};

fn export(rootfs: &Path, layout: &Path, tag: &str) {
    run(treeport().args([
        "export",
        "-q",
        "--timestamp",
        "1700000000",
        "--source",
        &format!("rootfs:{}", rootfs.display()),
        "--transform",
        "sbom:in-image=true",
        "--sink",
        &format!("oci:{}:{tag}", layout.display()),
    ]))
    .ok();
}

#[test]
fn the_sbom_of_a_minbase_tree_validates_and_lists_what_dpkg_lists() {
    require_root();
    let rootfs = fixtures::minbase();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    export(&rootfs, &layout, "a");
    let bundle = umoci_unpack(&layout, "a");
    let root = bundle.path().join("b/rootfs");
    let docs = root.join("usr/share/doc/treeport-sbom");
    let spdx_file = docs.join("sbom.spdx.json");
    let cdx_file = docs.join("sbom.cdx.json");

    // spdx-tools: parses and validates the document (exit 0, no messages).
    let bin = python().parent().unwrap().join("pyspdxtools");
    let out = Command::new(&bin)
        .arg("-i")
        .arg(&spdx_file)
        .output()
        .unwrap();
    assert!(
        out.status.success() && !String::from_utf8_lossy(&out.stdout).contains("ERROR"),
        "pyspdxtools: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // cyclonedx-python-lib: strict validation against the 1.5 schema.
    let out = Command::new(python())
        .args([
            "-c",
            "import sys\n\
             from cyclonedx.validation.json import JsonStrictValidator\n\
             from cyclonedx.schema import SchemaVersion\n\
             e = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
             print(e if e else 'valid'); sys.exit(1 if e else 0)",
        ])
        .arg(&cdx_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cyclonedx: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The package list is dpkg's own.
    let listed = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version} ${Architecture}\\n"])
        .output()
        .unwrap();
    assert!(listed.status.success());
    let mut dpkg: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    dpkg.sort();
    let spdx: serde_json::Value = serde_json::from_slice(&fs::read(&spdx_file).unwrap()).unwrap();
    let cdx: serde_json::Value = serde_json::from_slice(&fs::read(&cdx_file).unwrap()).unwrap();
    let purls: Vec<&str> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["purl"].as_str().unwrap())
        .collect();
    let mut from_cdx: Vec<String> = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let arch = c["properties"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "treeport:deb:architecture")
                .unwrap()["value"]
                .as_str()
                .unwrap()
                .to_string();
            format!(
                "{} {} {arch}",
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        })
        .collect();
    from_cdx.sort();
    assert_eq!(from_cdx, dpkg);
    let spdx_packages = spdx["packages"].as_array().unwrap();
    assert_eq!(
        spdx_packages.len(),
        dpkg.len() + 1,
        "the image and each package"
    );
    // purls as the issue spells them, with the distribution from os-release.
    assert!(
        purls
            .iter()
            .any(|p| p.starts_with("pkg:deb/debian/bash@")
                && p.contains("arch=amd64&distro=debian-12")),
        "{purls:?}"
    );
    // Licenses from machine-readable copyright files, and dependencies.
    let bash = spdx_packages.iter().find(|p| p["name"] == "bash").unwrap();
    assert_eq!(bash["licenseDeclared"], "GPL-3.0-or-later");
    let depends = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["relationshipType"] == "DEPENDS_ON")
        .count();
    assert!(depends > 50, "{depends} DEPENDS_ON relationships");

    // Reproducible: the same tree and timestamp give the same image.
    export(&rootfs, &layout, "b");
    assert_eq!(layout_digest(&layout, "a"), layout_digest(&layout, "b"));

    // Published beside the image as OCI 1.1 artifacts whose subject is the
    // image, listed in index.json: `treeport sbom` finds and checks them,
    // `inspect` lists them, and the consumers still read the layout.
    let reference = format!("oci:{}:a", layout.display());
    let printed = run(treeport().args(["sbom", &reference])).ok();
    assert_eq!(printed.stdout.as_bytes(), fs::read(&spdx_file).unwrap());
    let printed = run(treeport().args(["sbom", "--format", "cyclonedx", &reference])).ok();
    assert_eq!(printed.stdout.as_bytes(), fs::read(&cdx_file).unwrap());
    let inspected: serde_json::Value = serde_json::from_str(
        &run(treeport().args(["inspect", "--json", &reference]))
            .ok()
            .stdout,
    )
    .unwrap();
    let types: Vec<&str> = inspected["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["artifactType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["application/spdx+json", "application/vnd.cyclonedx+json"]
    );
    // The layout lists them as registries without the referrers API do:
    // the tag sha256-<hex of the image> names an index of the artifacts.
    let subject = layout_digest(&layout, "a");
    let referrers_tag = subject.replace(':', "-");
    let blob = |d: &str| {
        let hex = d.strip_prefix("sha256:").unwrap().to_string();
        fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    };
    let listed: serde_json::Value =
        serde_json::from_slice(&blob(&layout_digest(&layout, &referrers_tag))).unwrap();
    assert_eq!(
        listed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let artifact = listed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["artifactType"] == "application/spdx+json")
        .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(artifact["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["subject"]["digest"], subject.as_str());
    assert_eq!(manifest["artifactType"], "application/spdx+json");
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    let _ = skopeo_inspect(&reference, &[]);
    verify(&reference, None, &[]);
    // An OCI archive carries them the same way.
    let archive = work.path().join("img.tar");
    run(treeport().args([
        "export",
        "-q",
        "--timestamp",
        "1700000000",
        "--source",
        &format!("rootfs:{}", rootfs.display()),
        "--transform",
        "sbom",
        "--sink",
        &format!("oci-archive:{}:a", archive.display()),
    ]))
    .ok();
    let in_archive = format!("oci-archive:{}:a", archive.display());
    let printed = run(treeport().args(["sbom", "--format", "cyclonedx", &in_archive])).ok();
    let archived: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    assert_eq!(archived["components"], cdx["components"]);
    let _ = skopeo_inspect(&in_archive, &[]);
    // oci-image-tool refuses any layout of three tags or more (it drops
    // the entry after each one it filters out): a layout of its own.
    let single = work.path().join("single");
    export(&rootfs, &single, "only");
    oci_validate(&single, "only");
    // An image without an SBOM in the same layout has no referrers, and
    // retagging `a` and `b` to it drops the artifacts of the image they named.
    let tree = work.path().join("tree");
    fs::create_dir_all(tree.join("etc")).unwrap();
    for tag in ["a", "b"] {
        run(treeport().args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("oci:{}:{tag}", layout.display()),
        ]))
        .ok();
    }
    let line = run(treeport().args(["sbom", &reference])).fails_with(1);
    assert!(line.contains("no SPDX SBOM refers to image"), "{line}");
    let index = fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(!index.contains(&referrers_tag), "{index}");
}

/// A small tree with a dpkg database of two packages, os-release and a
/// machine-readable copyright file.
fn dpkg_tree(work: &Path) -> PathBuf {
    let tree = work.join("tree");
    for (path, text) in [
        (
            "var/lib/dpkg/status",
            "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\nSource: hello (2.10-3)\nDepends: libc6 (>= 2.34)\nDescription: example package\n\n\
             Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\nArchitecture: amd64\nSource: glibc\nDescription: GNU C Library\n\n",
        ),
        (
            "etc/os-release",
            "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        ),
        (
            "usr/share/doc/hello/copyright",
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-3+\n",
        ),
    ] {
        let p = tree.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    tree
}

/// Pushed to `docker-registry` (with auth and TLS), which has no Referrers
/// API: the artifacts land under the referrers tag `sha256-<hex>`, and
/// `treeport sbom` reads the document back through it.
#[test]
fn a_pushed_image_carries_its_sbom_under_the_referrers_tag() {
    use treeport_tests::registry::{Auth, RegistryServer};
    let server = RegistryServer::start(Auth::Htpasswd, true);
    let work = tempfile::tempdir().unwrap();
    let tree = dpkg_tree(work.path());
    let flags = [
        "--authfile".to_string(),
        server.authfile.display().to_string(),
        "--cert-dir".to_string(),
        server.cert_dir.display().to_string(),
    ];
    let image = format!("docker://{}/sbom/hello:v1", server.addr);
    let ran = run(treeport()
        .args([
            "export",
            "--json",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--transform",
            "sbom",
            "--sink",
            &image,
        ])
        .args(&flags))
    .ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        report["destinations"][0]["counters"]["referrers"], 2,
        "{report}"
    );
    let digest = report["manifestDigest"].as_str().unwrap().to_string();

    let printed = run(treeport().args(["sbom", &image]).args(&flags)).ok();
    let spdx: serde_json::Value = serde_json::from_str(&printed.stdout).unwrap();
    let hello = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hello")
        .unwrap();
    assert_eq!(hello["licenseDeclared"], "GPL-3.0-or-later");
    assert_eq!(
        hello["externalRefs"][0]["referenceLocator"],
        "pkg:deb/debian/hello@2.10-3?arch=amd64&distro=debian-12"
    );
    let tags = run(treeport()
        .args(["tags", &format!("docker://{}/sbom/hello", server.addr)])
        .args(&flags))
    .ok();
    assert!(
        tags.stdout.lines().any(|t| t == digest.replace(':', "-")),
        "{}",
        tags.stdout
    );
    // Pushing the same image again adds nothing to the referrers index.
    run(treeport()
        .args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--transform",
            "sbom",
            "--sink",
            &image,
        ])
        .args(&flags))
    .ok();
    let inspected: serde_json::Value = serde_json::from_str(
        &run(treeport().args(["inspect", "--json", &image]).args(&flags))
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(inspected["referrers"].as_array().unwrap().len(), 2);

    // A copy carries the SBOM along: pulled into a layout and an
    // oci-archive, pushed from that layout to another repository, each
    // keeps both documents, byte for byte, under the same image digest.
    let spdx_bytes = printed.stdout;
    let pulled = work.path().join("pulled");
    let archive = work.path().join("pulled.tar");
    for dest in [
        format!("oci:{}:v1", pulled.display()),
        format!("oci-archive:{}:v1", archive.display()),
    ] {
        let r = run(treeport()
            .args(["pull", "--json", &image, &dest])
            .args(&flags))
        .ok();
        let r: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(r["digest"], digest.as_str(), "{r}");
    }
    let other = format!("docker://{}/sbom/copied:v1", server.addr);
    let pushed = run(treeport()
        .args([
            "oci",
            "push",
            "--json",
            &format!("{}:v1", pulled.display()),
            &server.addr,
            "sbom/copied:v1",
        ])
        .args(&flags))
    .ok();
    let pushed: serde_json::Value = serde_json::from_str(&pushed.stdout).unwrap();
    assert_eq!(pushed["counters"]["referrers"], 2, "{pushed}");
    for copy in [
        format!("oci:{}:v1", pulled.display()),
        format!("oci-archive:{}:v1", archive.display()),
        other,
    ] {
        let again = run(treeport().args(["sbom", &copy]).args(&flags)).ok();
        assert_eq!(again.stdout, spdx_bytes, "{copy}");
        let cdx = run(treeport()
            .args(["sbom", "--format", "cyclonedx", &copy])
            .args(&flags))
        .ok();
        assert!(cdx.stdout.contains("CycloneDX"), "{copy}");
    }
    oci_validate(&pulled, "v1");
}

/// Referrers tags in a layout: two exports adding artifacts to one image at
/// once keep both; an index that lists the image keeps its artifacts when
/// the image's own tag moves; a user's tag of the reserved form is refused.
#[test]
fn referrers_tags_in_a_layout_survive_what_they_should() {
    let work = tempfile::tempdir().unwrap();
    let tree = dpkg_tree(work.path());
    let layout = work.path().join("img");
    let export = |format: &str, tag: &str| {
        let mut cmd = treeport();
        cmd.args([
            "export",
            "-q",
            "--timestamp",
            "1700000000",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--transform",
            &format!("sbom:format={format}"),
            "--sink",
            &format!("oci:{}:{tag}", layout.display()),
        ]);
        cmd
    };
    let referrers = |reference: &str| -> usize {
        let out = run(treeport().args(["inspect", "--json", reference])).ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["referrers"].as_array().map_or(0, Vec::len)
    };
    run(&mut export("spdx", "base")).ok();
    for round in 0..5 {
        let mut a = export("spdx", &format!("s{round}")).spawn().unwrap();
        let mut b = export("cyclonedx", &format!("c{round}")).spawn().unwrap();
        assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
        assert_eq!(
            referrers(&format!("oci:{}:base", layout.display())),
            2,
            "round {round}"
        );
    }
    // An index lists the image; moving every tag of the image itself keeps
    // its artifacts, since the index still names it.
    let multi = format!("oci:{}:multi", layout.display());
    run(treeport().args(["index", &multi, &format!("oci:{}:base", layout.display())])).ok();
    let other = work.path().join("other");
    fs::create_dir_all(other.join("etc")).unwrap();
    let mut tags = vec!["base".to_string()];
    for round in 0..5 {
        tags.push(format!("s{round}"));
        tags.push(format!("c{round}"));
    }
    for tag in &tags {
        run(treeport().args([
            "export",
            "-q",
            "--source",
            &format!("rootfs:{}", other.display()),
            "--sink",
            &format!("oci:{}:{tag}", layout.display()),
        ]))
        .ok();
    }
    let printed = run(treeport().args(["sbom", &multi])).ok();
    assert!(printed.stdout.contains("SPDX-2.3"), "{}", printed.stdout);
    // The reserved form is not a user's tag.
    let line = run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", other.display()),
        "--sink",
        &format!("oci:{}:sha256-{}", layout.display(), "0".repeat(64)),
    ]))
    .fails_with(2);
    assert!(line.contains("names an image's artifacts"), "{line}");
}

/// A docker archive has no place for artifacts: the SBOM is not silently
/// lost there, a warning names what was left out; the layout written in the
/// same run keeps it.
#[test]
fn a_docker_archive_sink_says_it_leaves_the_sbom_out() {
    let work = tempfile::tempdir().unwrap();
    let tree = dpkg_tree(work.path());
    let archive = work.path().join("image.tar");
    let layout = work.path().join("layout");
    let ran = run(treeport().args([
        "export",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--transform",
        "sbom",
        "--sink",
        &format!("docker-archive:{}", archive.display()),
        "--sink",
        &format!("oci:{}", layout.display()),
    ]))
    .ok();
    assert!(
        ran.stderr.contains("a docker archive holds no artifacts")
            && ran.stderr.contains("application/spdx+json"),
        "{}",
        ran.stderr
    );
    assert!(archive.is_file());
    let sbom = run(treeport().args(["sbom", &format!("oci:{}", layout.display())])).ok();
    assert!(sbom.stdout.contains("SPDX-2.3"), "{}", sbom.stdout);
}
