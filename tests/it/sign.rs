//! Signatures, checked with tools no one here wrote: cosign signatures
//! against keys made by Python's `cryptography` and `PyNaCl` in cosign's own
//! encrypted format (tests/tools/keys.py), verified with `openssl`; GPG
//! simple signatures made through gpgme, and `skopeo copy` under a
//! `signedBy` policy reading them from the lookaside store.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use treeport_tests::registry::{Auth, RegistryServer};
use treeport_tests::{layout_digest, python, require, run, skopeo_inspect, tool, treeport};

const PASSPHRASE: &str = "correct horse battery staple";

/// Makes a key of `kind` (tests/tools/keys.py) as `dir/NAME.key` and
/// `dir/NAME.pub`.
fn make_key(dir: &Path, kind: &str, name: &str) -> (PathBuf, PathBuf) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/keys.py");
    let out = dir.join(name);
    let status = Command::new(python())
        .arg(&script)
        .arg(kind)
        .arg(&out)
        .env("KEY_PASSWORD", PASSPHRASE)
        .status()
        .expect("run keys.py");
    assert!(status.success(), "keys.py {kind} failed");
    (out.with_extension("key"), out.with_extension("pub"))
}

/// A tree with a dpkg database of one package (so the sbom transform has
/// something to describe).
fn tree(work: &Path, text: &str) -> PathBuf {
    let tree = work.join(format!("tree-{text}"));
    for (path, content) in [
        (
            "var/lib/dpkg/status",
            "Package: hello\nStatus: install ok installed\nVersion: 2.10-3\nArchitecture: amd64\nDescription: example\n\n",
        ),
        ("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
        ("etc/motd", text),
    ] {
        let p = tree.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    tree
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").unwrap();
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

fn json_blob(layout: &Path, digest: &str) -> serde_json::Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap()
}

fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// Checks a cosign signature with openssl: the payload and the DER
/// signature written to files, `openssl dgst -sha256 -verify`.
fn openssl_verifies(public: &Path, payload: &[u8], signature_b64: &str, work: &Path) -> bool {
    let der = base64::engine::general_purpose::STANDARD
        .decode(signature_b64)
        .unwrap();
    let (p, s) = (work.join("payload"), work.join("sig.der"));
    fs::write(&p, payload).unwrap();
    fs::write(&s, der).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(public)
        .arg("-signature")
        .arg(&s)
        .arg(&p)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// The one cosign signature layer of the signature image of `digest` in a
/// layout: its payload and signature.
fn layout_signature(layout: &Path, digest: &str) -> (Vec<u8>, String, serde_json::Value) {
    let sig_manifest = json_blob(layout, &layout_digest(layout, &sig_tag(digest)));
    let layer = &sig_manifest["layers"][0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
    let payload = blob(layout, layer["digest"].as_str().unwrap());
    let signature = layer["annotations"]["dev.cosignproject.cosign/signature"]
        .as_str()
        .unwrap()
        .to_string();
    (payload, signature, sig_manifest)
}

fn sign_export(tree: &Path, sink: &str, key: &Path) -> Command {
    let mut c = treeport();
    c.args([
        "export",
        "--json",
        "--timestamp",
        "1700000000",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--transform",
        "sbom:format=spdx",
        "--sink",
        sink,
        "--sign-key",
    ])
    .arg(key)
    .env("COSIGN_PASSWORD", PASSPHRASE)
    .stdin(Stdio::null());
    c
}

/// cosign signatures in an OCI layout: the image and its SBOM artifact are
/// signed under `sha256-<hex>.sig`; the payload names the manifest digest
/// and openssl verifies the signature with the public key; `treeport
/// verify --key` accepts it and refuses another key, a tampered signature
/// and a manifest pushed over the tag; every bad key fails before anything
/// is written; the passphrase is never printed.
#[test]
fn cosign_signatures_in_a_layout_verify_with_the_public_key() {
    require("openssl");
    let work = tempfile::tempdir().unwrap();
    let (key, public) = make_key(work.path(), "cosign", "cosign");
    let (_, other_public) = make_key(work.path(), "ec", "other");
    let tree = tree(work.path(), "one");
    let layout = work.path().join("layout");
    let reference = format!("oci:{}:v1", layout.display());
    let ran = run(&mut sign_export(&tree, &reference, &key)).ok();
    assert!(!ran.stdout.contains(PASSPHRASE) && !ran.stderr.contains(PASSPHRASE));
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    // The image and its SPDX artifact.
    assert_eq!(
        report["destinations"][0]["counters"]["signatures"], 2,
        "{report}"
    );
    let digest = layout_digest(&layout, "v1");
    let (payload, signature, _) = layout_signature(&layout, &digest);
    let p: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        p["critical"]["image"]["docker-manifest-digest"],
        digest.as_str()
    );
    assert_eq!(p["critical"]["type"], "cosign container image signature");
    assert_eq!(p["critical"]["identity"]["docker-reference"], "v1");
    assert!(openssl_verifies(&public, &payload, &signature, work.path()));
    assert!(!openssl_verifies(
        &other_public,
        &payload,
        &signature,
        work.path()
    ));
    // The SBOM artifact is signed too.
    let referrers = json_blob(&layout, &layout_digest(&layout, &digest.replace(':', "-")));
    let artifact = referrers["manifests"][0]["digest"].as_str().unwrap();
    let (a_payload, a_signature, _) = layout_signature(&layout, artifact);
    assert!(openssl_verifies(
        &public,
        &a_payload,
        &a_signature,
        work.path()
    ));
    // Signing again adds nothing (signatures are deterministic).
    let entries = || {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        let mut all: Vec<String> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        all.sort();
        all
    };
    let before = entries();
    assert_eq!(before.len(), 4, "{before:#?}");
    run(&mut sign_export(&tree, &reference, &key)).ok();
    assert_eq!(entries(), before);
    // skopeo still reads the image by its tag.
    let _ = skopeo_inspect(&reference, &[]);
    let inspected: serde_json::Value = serde_json::from_str(
        &run(treeport().args(["inspect", "--json", &reference]))
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(inspected["cosignSignatures"], 1, "{inspected}");

    let verified = run(treeport()
        .args(["verify", "--json", &reference, "--key"])
        .arg(&public))
    .ok();
    let v: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(v["signatures"][0]["digest"], digest.as_str());
    assert_eq!(v["signatures"][0]["format"], "cosign");
    let line = run(treeport()
        .args(["verify", &reference, "--key"])
        .arg(&other_public))
    .fails_with(1);
    assert!(line.contains("does not verify with"), "{line}");

    // A tampered signature: the artifact's signature put on the image's
    // payload, in a signature image written over the tag.
    let tampered = work.path().join("tampered");
    copy_dir(&layout, &tampered);
    let (_, _, mut sig_manifest) = layout_signature(&tampered, &digest);
    sig_manifest["layers"][0]["annotations"]["dev.cosignproject.cosign/signature"] =
        a_signature.clone().into();
    retag(
        &tampered,
        &sig_tag(&digest),
        &serde_json::to_vec(&sig_manifest).unwrap(),
    );
    let line = run(treeport()
        .args(["verify", &format!("oci:{}:v1", tampered.display()), "--key"])
        .arg(&public))
    .fails_with(1);
    assert!(line.contains("does not verify"), "{line}");
    // Another image exported over the tag, unsigned: its digest has no
    // signature.
    run(treeport().args([
        "export",
        "-q",
        "--source",
        &format!("rootfs:{}", tree.display()),
        "--label",
        "changed=yes",
        "--sink",
        &format!("oci:{}:v1", tampered.display()),
    ]))
    .ok();
    let line = run(treeport()
        .args(["verify", &format!("oci:{}:v1", tampered.display()), "--key"])
        .arg(&public))
    .fails_with(1);
    assert!(line.contains("no cosign signature"), "{line}");

    // Bad keys: nothing written, one line each.
    let fresh = work.path().join("fresh");
    let fresh_ref = format!("oci:{}:v1", fresh.display());
    let line =
        run(sign_export(&tree, &fresh_ref, &key).env("COSIGN_PASSWORD", "wrong")).fails_with(1);
    assert!(line.contains("wrong passphrase"), "{line}");
    assert!(!line.contains("wrong\""), "{line}");
    let line =
        run(sign_export(&tree, &fresh_ref, &key).env_remove("COSIGN_PASSWORD")).fails_with(2);
    assert!(line.contains("COSIGN_PASSWORD"), "{line}");
    for kind in ["ed25519", "rsa"] {
        let (k, _) = make_key(work.path(), kind, kind);
        let line = run(&mut sign_export(&tree, &fresh_ref, &k)).fails_with(1);
        assert!(
            line.contains("treeport signs and verifies with ECDSA P-256"),
            "{line}"
        );
    }
    let line = run(&mut sign_export(&tree, &fresh_ref, &public)).fails_with(1);
    assert!(line.contains("a public key"), "{line}");
    // An encrypted key asking scrypt for a gigabyte is refused unread.
    let greedy = work.path().join("greedy.key");
    let text = fs::read_to_string(&key).unwrap();
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut doc: serde_json::Value = serde_json::from_slice(&b64.decode(body).unwrap()).unwrap();
    doc["kdf"]["params"]["N"] = (1u64 << 20).into();
    fs::write(
        &greedy,
        format!(
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n{}\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
            b64.encode(serde_json::to_vec(&doc).unwrap())
        ),
    )
    .unwrap();
    let line = run(&mut sign_export(&tree, &fresh_ref, &greedy)).fails_with(1);
    assert!(line.contains("out of bounds"), "{line}");
    assert!(!fresh.exists());
    // The passphrase from a file works; a sink that cannot hold signatures
    // is refused before any work.
    let pass_file = work.path().join("pass");
    fs::write(&pass_file, format!("{PASSPHRASE}\n")).unwrap();
    run(sign_export(&tree, &fresh_ref, &key)
        .env_remove("COSIGN_PASSWORD")
        .arg("--sign-passphrase-file")
        .arg(&pass_file))
    .ok();
    // A key as `openssl ecparam -genkey` writes it (curve parameters, then
    // a SEC1 key): its signatures verify with openssl's public key.
    let ossl_key = work.path().join("openssl.pem");
    let ossl_pub = work.path().join("openssl.pub");
    tool(
        "openssl",
        [
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            ossl_key.to_str().unwrap(),
        ],
    );
    tool(
        "openssl",
        [
            "ec",
            "-in",
            ossl_key.to_str().unwrap(),
            "-pubout",
            "-out",
            ossl_pub.to_str().unwrap(),
        ],
    );
    let ossl_layout = work.path().join("openssl-layout");
    run(&mut sign_export(
        &tree,
        &format!("oci:{}:v1", ossl_layout.display()),
        &ossl_key,
    ))
    .ok();
    let d = layout_digest(&ossl_layout, "v1");
    let (payload, signature, _) = layout_signature(&ossl_layout, &d);
    assert!(openssl_verifies(
        &ossl_pub,
        &payload,
        &signature,
        work.path()
    ));
    // An index at the signature tag is not replaced.
    let index_doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [],
    });
    retag(
        &ossl_layout,
        &sig_tag(&d),
        &serde_json::to_vec(&index_doc).unwrap(),
    );
    let line = run(&mut sign_export(
        &tree,
        &format!("oci:{}:v1", ossl_layout.display()),
        &key,
    ))
    .fails_with(1);
    assert!(
        line.contains("other than a signature image") && line.contains("signing it failed"),
        "{line}"
    );
    let archive = work.path().join("x.tar");
    let line = run(&mut sign_export(
        &tree,
        &format!("docker-archive:{}", archive.display()),
        &key,
    ))
    .fails_with(2);
    assert!(
        line.contains("cannot sign what sink docker-archive"),
        "{line}"
    );
    assert!(!archive.exists());
}

/// An index is signed as a whole and per platform; an OCI archive holds
/// its signatures as a layout does.
#[test]
fn an_index_is_signed_as_a_whole_and_per_platform() {
    let work = tempfile::tempdir().unwrap();
    let (key, public) = make_key(work.path(), "cosign", "cosign");
    let tree = tree(work.path(), "idx");
    let parts = work.path().join("parts");
    for arch in ["amd64", "arm64"] {
        run(treeport().args([
            "export",
            "-q",
            "--arch",
            arch,
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("oci:{}:{arch}", parts.display()),
        ]))
        .ok();
    }
    let multi = work.path().join("multi");
    let ran = run(treeport()
        .args([
            "index",
            "--json",
            &format!("oci:{}:all", multi.display()),
            &format!("oci:{}:amd64", parts.display()),
            &format!("oci:{}:arm64", parts.display()),
            "--sign-key",
        ])
        .arg(&key)
        .env("COSIGN_PASSWORD", PASSPHRASE))
    .ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["counters"]["signatures"], 3, "{report}");
    let index_digest = layout_digest(&multi, "all");
    let index = json_blob(&multi, &index_digest);
    for d in std::iter::once(index_digest.as_str()).chain(
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["digest"].as_str().unwrap()),
    ) {
        let (payload, signature, _) = layout_signature(&multi, d);
        assert!(
            openssl_verifies(&public, &payload, &signature, work.path()),
            "{d}"
        );
    }
    run(treeport()
        .args(["verify", &format!("oci:{}:all", multi.display()), "--key"])
        .arg(&public))
    .ok();
    // Copied into an OCI archive with signing: the archive holds the
    // signature images beside the index.
    let archive = work.path().join("multi.tar");
    let in_archive = format!("oci-archive:{}:all", archive.display());
    run(treeport()
        .args([
            "pull",
            "-q",
            &format!("oci:{}:all", multi.display()),
            &in_archive,
            "--sign-key",
        ])
        .arg(&key)
        .env("COSIGN_PASSWORD", PASSPHRASE))
    .ok();
    run(treeport()
        .args(["verify", &in_archive, "--key"])
        .arg(&public))
    .ok();
    let listing = tool("tar", ["-xOf", archive.to_str().unwrap(), "index.json"]);
    assert_eq!(listing.matches(".sig\"").count(), 3, "{listing}");
}

/// Simple signing with a GPG key, read by skopeo: `skopeo copy` under a
/// `signedBy` policy (the public key, and the registries.d file naming the
/// lookaside store) copies the signed image from the registry and refuses
/// an unsigned one and one pushed over the signed tag. The same push
/// carries a cosign signature under `sha256-<hex>.sig`, which `treeport
/// verify --key` checks; an unknown fingerprint fails before any push.
#[test]
fn gpg_signed_images_pass_skopeo_signed_by_policy() {
    require("gpg");
    require("skopeo");
    let server = RegistryServer::start(Auth::Htpasswd, true);
    let work = tempfile::tempdir().unwrap();
    let gnupg = work.path().join("gnupg");
    fs::create_dir(&gnupg).unwrap();
    fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    fs::write(
        gnupg.join("gpg-agent.conf"),
        "allow-loopback-pinentry\ndefault-cache-ttl 0\nmax-cache-ttl 0\n",
    )
    .unwrap();
    let gpg = |args: &[&str]| -> String {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    gpg(&[
        "--quick-gen-key",
        "treeport test <test@example.org>",
        "ed25519",
        "sign",
        "0",
    ]);
    let fingerprint = gpg(&["--with-colons", "--list-secret-keys"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .unwrap();
    let pubring = work.path().join("pubring.gpg");
    fs::write(&pubring, {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &gnupg)
            .args(["--batch", "--export", &fingerprint])
            .output()
            .unwrap();
        out.stdout
    })
    .unwrap();
    let (key, public) = make_key(work.path(), "cosign", "cosign");

    let lookaside = work.path().join("sigstore");
    let registries_d = work.path().join("registries.d");
    fs::create_dir(&registries_d).unwrap();
    fs::write(
        registries_d.join("test.yaml"),
        format!(
            "docker:\n  {}:\n    lookaside: file://{}\n",
            server.addr,
            lookaside.display()
        ),
    )
    .unwrap();
    let policy = work.path().join("policy.json");
    fs::write(
        &policy,
        serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {"docker": {format!("{}/signed", server.addr): [{
                "type": "signedBy",
                "keyType": "GPGKeys",
                "keyPath": pubring.display().to_string(),
            }]}},
        })
        .to_string(),
    )
    .unwrap();
    let registry_flags = [
        "--authfile".to_string(),
        server.authfile.display().to_string(),
        "--cert-dir".to_string(),
        server.cert_dir.display().to_string(),
        "--registries.d".to_string(),
        registries_d.display().to_string(),
    ];
    // An export to `app:TAG`, with the signing flags `signing`.
    let export = |tree: &Path, tag: &str, signing: &[&std::ffi::OsStr]| {
        let mut c = treeport();
        c.args([
            "export",
            "--json",
            "--source",
            &format!("rootfs:{}", tree.display()),
            "--sink",
            &format!("docker://{}/signed/app:{tag}", server.addr),
        ])
        .args(&registry_flags)
        .args(signing)
        .env("GNUPGHOME", &gnupg)
        .env("COSIGN_PASSWORD", PASSPHRASE)
        .stdin(Stdio::null());
        run(&mut c)
    };
    let push = |tree: &Path, tag: &str, sign: bool| {
        let flags: Vec<&std::ffi::OsStr> = if sign {
            vec![
                "--sign-by".as_ref(),
                fingerprint.as_ref(),
                "--sign-key".as_ref(),
                key.as_os_str(),
            ]
        } else {
            Vec::new()
        };
        export(tree, tag, &flags)
    };
    let skopeo_copy = |tag: &str| {
        let dest = work.path().join(format!("copy-{tag}"));
        Command::new("skopeo")
            .arg("--policy")
            .arg(&policy)
            .arg("--registries.d")
            .arg(&registries_d)
            .args(["copy", "--remove-signatures", "--src-authfile"])
            .arg(&server.authfile)
            .arg("--src-cert-dir")
            .arg(&server.cert_dir)
            .arg(format!("docker://{}/signed/app:{tag}", server.addr))
            .arg(format!("oci:{}:{tag}", dest.display()))
            .output()
            .unwrap()
    };

    let one = tree(work.path(), "one");
    let ran = push(&one, "v1", true).ok();
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(
        report["destinations"][0]["counters"]["signatures"], 2,
        "{report}"
    );
    let digest = report["manifestDigest"].as_str().unwrap().to_string();
    let stored = lookaside.join(format!(
        "signed/app@sha256={}/signature-1",
        digest.strip_prefix("sha256:").unwrap()
    ));
    assert!(stored.is_file(), "{}", stored.display());
    let copied = skopeo_copy("v1");
    assert!(
        copied.status.success(),
        "skopeo refused the signed image: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let image = format!("docker://{}/signed/app:v1", server.addr);
    let verified = run(treeport()
        .args(["verify", &image, "--gpg-key"])
        .arg(&pubring)
        .arg("--key")
        .arg(&public)
        .args(&registry_flags))
    .ok();
    assert!(
        verified.stdout.contains("simple-signing signature"),
        "{}",
        verified.stdout
    );
    assert!(
        verified.stdout.contains(&fingerprint),
        "{}",
        verified.stdout
    );
    assert!(
        verified.stdout.contains("cosign signature"),
        "{}",
        verified.stdout
    );
    // The cosign signature image, as cosign stores it in the repository.
    let sig_ref = format!("docker://{}/signed/app:{}", server.addr, sig_tag(&digest));
    let raw = skopeo_inspect(
        &sig_ref,
        &[
            "--raw",
            "--authfile",
            server.authfile.to_str().unwrap(),
            "--cert-dir",
            server.cert_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );

    // Unsigned: refused.
    let two = tree(work.path(), "two");
    push(&two, "unsigned", false).ok();
    let refused = skopeo_copy("unsigned");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("Source image rejected"),
        "{why}"
    );
    // An image pushed over the signed tag: its digest has no signature.
    push(&two, "v1", false).ok();
    let refused = skopeo_copy("v1");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("Source image rejected"),
        "{why}"
    );
    let line = run(treeport()
        .args(["verify", &image, "--gpg-key"])
        .arg(&pubring)
        .args(&registry_flags))
    .fails_with(1);
    assert!(line.contains("no valid simple signature"), "{line}");

    // A key with a passphrase, given through --sign-passphrase-file (gpg's
    // loopback pinentry; the agent caches nothing here): the right one
    // signs, a wrong one fails before anything is pushed.
    gpg(&[
        "--passphrase",
        "gpg secret",
        "--quick-gen-key",
        "treeport locked <locked@example.org>",
        "ed25519",
        "sign",
        "0",
    ]);
    let locked = gpg(&["--with-colons", "--list-secret-keys", "locked@example.org"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:")
                .map(|r| r.trim_matches(':').to_string())
        })
        .unwrap();
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &gnupg)
        .args(["--kill", "gpg-agent"])
        .status();
    let pass_file = work.path().join("gpg-pass");
    let sign_locked = |pass: &str, tag: &str| {
        fs::write(&pass_file, format!("{pass}\n")).unwrap();
        export(
            &one,
            tag,
            &[
                "--sign-by".as_ref(),
                locked.as_ref(),
                "--sign-passphrase-file".as_ref(),
                pass_file.as_os_str(),
            ],
        )
    };
    let line = sign_locked("wrong", "locked").fails_with(1);
    assert!(
        line.contains("--sign-by") && !line.contains("wrong"),
        "{line}"
    );
    sign_locked("gpg secret", "locked").ok();

    // A signature whose content expands to hundreds of megabytes (bzip2
    // of zeros) is refused at 64 KiB of content, for a verifier and for a
    // signer reading the store.
    let bomb = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "head -c 300000000 /dev/zero | gpg --batch -u {fingerprint} --compress-algo bzip2 -z 9 --sign"
        ))
        .env("GNUPGHOME", &gnupg)
        .output()
        .unwrap();
    assert!(
        bomb.status.success() && bomb.stdout.len() < 100_000,
        "{}",
        bomb.stdout.len()
    );
    let two_digest = report_digest(&push(&two, "bomb", false).ok());
    let bomb_dir = lookaside.join(format!(
        "signed/app@sha256={}",
        two_digest.strip_prefix("sha256:").unwrap()
    ));
    fs::create_dir_all(&bomb_dir).unwrap();
    fs::write(bomb_dir.join("signature-1"), &bomb.stdout).unwrap();
    let bomb_ref = format!("docker://{}/signed/app:bomb", server.addr);
    let line = run(treeport()
        .args(["verify", &bomb_ref, "--gpg-key"])
        .arg(&pubring)
        .args(&registry_flags))
    .fails_with(1);
    assert!(line.contains("larger than 64 KiB"), "{line}");
    push(&two, "bomb", true).ok();
    run(treeport()
        .args(["verify", &bomb_ref, "--gpg-key"])
        .arg(&pubring)
        .args(&registry_flags))
    .ok();

    // An unknown fingerprint: nothing pushed.
    let mut c = treeport();
    let line = run(c
        .args([
            "export",
            "--source",
            &format!("rootfs:{}", one.display()),
            "--sink",
            &format!("docker://{}/signed/app:never", server.addr),
            "--sign-by",
            "0123456789ABCDEF0123456789ABCDEF01234567",
        ])
        .args(&registry_flags)
        .env("GNUPGHOME", &gnupg))
    .fails_with(1);
    assert!(line.contains("no secret key"), "{line}");
    let tags = run(treeport()
        .args(["tags", &format!("docker://{}/signed/app", server.addr)])
        .args(&registry_flags))
    .ok();
    assert!(
        !tags.stdout.lines().any(|t| t == "never"),
        "{}",
        tags.stdout
    );
    // The same image pushed as :v1 (signed by the first key) and as
    // :locked (by the second): each tag's signature stays.
    push(&one, "v1", true).ok();
    for tag in ["v1", "locked"] {
        let copied = skopeo_copy(tag);
        let why = String::from_utf8_lossy(&copied.stderr);
        if tag == "v1" {
            assert!(copied.status.success(), "{why}");
        } else {
            // The second key is not in the policy's keyring.
            assert!(
                !copied.status.success() && why.contains("rejected"),
                "{why}"
            );
        }
    }
    let signatures = lookaside.join(format!(
        "signed/app@sha256={}",
        digest.strip_prefix("sha256:").unwrap()
    ));
    assert!(signatures.join("signature-2").is_file());
    // A damaged signature is refused.
    let sig = signatures.join("signature-2");
    let mut bytes = fs::read(&sig).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0x55;
    fs::write(&sig, bytes).unwrap();
    let line = run(treeport()
        .args(["verify", &image, "--gpg-key"])
        .arg(&pubring)
        .args(&registry_flags))
    .fails_with(1);
    assert!(line.contains("no valid simple signature"), "{line}");
    assert!(!skopeo_copy("v1").status.success());
}

/// The manifest digest an `export --json` reported.
fn report_digest(ran: &treeport_tests::Ran) -> String {
    let report: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    report["manifestDigest"].as_str().unwrap().to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Writes `manifest` as a blob of `layout` and points `tag` at it.
fn retag(layout: &Path, tag: &str, manifest: &[u8]) {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(manifest));
    fs::write(layout.join("blobs/sha256").join(&hex), manifest).unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array_mut().unwrap() {
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag {
            m["digest"] = format!("sha256:{hex}").into();
            m["size"] = manifest.len().into();
        }
    }
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}
