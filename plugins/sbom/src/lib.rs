//! Transform `sbom`: what is in the image, from its dpkg database, as an
//! SPDX 2.3 and a `CycloneDX` 1.5 JSON document. One package per installed
//! package with name, version, architecture, source package and version, a
//! purl (`pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12`), the
//! license of a machine-readable copyright file, and the dependencies.
//! Reproducible: the same tree and image time give the same bytes.
//!
//! The documents are published beside the image as OCI 1.1 artifacts whose
//! `subject` is the image (sinks that can hold them write them: the OCI
//! layout lists them in `index.json`) and, with `in-image=true`, also
//! written into the tree under `/usr/share/doc/treeport-sbom/`.

pub mod dpkg;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use serde_json::{Value, json};
use treeport_core::digest::Digest;
use treeport_core::error::{Error, Result};
use treeport_core::image::{Artifact, ImageDraft};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, OptionKind, OptionSpec, Options, Selector, Transform,
};
use treeport_core::progress::Context;
use treeport_core::tree::{Content, Entry, TreePath};

use dpkg::{Distro, Package};

treeport_core::inventory::submit! {
    Builtin {
        kind: "sbom",
        description: "an SPDX 2.3 and a CycloneDX 1.5 SBOM from the tree's dpkg database",
        usage: "sbom[:format=FORMAT,in-image=true]",
        options: OPTIONS,
        factory: BuiltinFactory::Transform(SbomTransform::build),
    }
}

/// Options, with the help `treeport plugins list` shows.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "format",
        OptionKind::List,
        "spdx or cyclonedx (repeatable; default both)",
    ),
    OptionSpec::new(
        "in-image",
        OptionKind::Boolean,
        "also write the documents under /usr/share/doc/treeport-sbom/",
    ),
];

/// Where `in-image=true` puts the documents.
pub const DOC_DIR: &str = "usr/share/doc/treeport-sbom";
/// The attachment (and file) names of the documents.
pub const SPDX_NAME: &str = "sbom.spdx.json";
pub const CYCLONEDX_NAME: &str = "sbom.cdx.json";
/// The artifact types (and media types) of the documents.
pub const MEDIA_SPDX: &str = "application/spdx+json";
pub const MEDIA_CYCLONEDX: &str = "application/vnd.cyclonedx+json";

/// The transform.
pub struct SbomTransform {
    spdx: bool,
    cyclonedx: bool,
    in_image: bool,
}

impl SbomTransform {
    fn build(_selector: &Selector, options: &Options) -> Result<Box<dyn Transform>> {
        let mut formats: Vec<&str> = options.get_all("format").collect();
        if formats.is_empty() {
            formats = vec!["spdx", "cyclonedx"];
        }
        for f in &formats {
            if !matches!(*f, "spdx" | "cyclonedx") {
                return Err(Error::usage(format!(
                    "transform 'sbom': format={f}: expected spdx or cyclonedx"
                )));
            }
        }
        Ok(Box::new(SbomTransform {
            spdx: formats.contains(&"spdx"),
            cyclonedx: formats.contains(&"cyclonedx"),
            in_image: options.get("in-image") == Some("true"),
        }))
    }
}

/// A purl for a Debian package (the purl spec's `deb` type: namespace and
/// name lowercase, the version as dpkg gives it with `:` kept).
#[must_use]
pub fn purl(p: &Package, distro: &Distro) -> String {
    let enc = |s: &str, keep: &str| -> String {
        let mut out = String::new();
        for c in s.chars() {
            if c.is_ascii_alphanumeric() || ".-_~".contains(c) || keep.contains(c) {
                out.push(c);
            } else {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
        }
        out
    };
    let mut out = format!(
        "pkg:deb/{}/{}@{}",
        enc(&distro.id.to_lowercase(), ""),
        enc(&p.name.to_lowercase(), ""),
        enc(&p.version, ":"),
    );
    let mut qualifiers = Vec::new();
    if !p.architecture.is_empty() {
        qualifiers.push(format!("arch={}", enc(&p.architecture, "")));
    }
    qualifiers.push(format!("distro={}", enc(&distro.qualifier(), "")));
    if p.source != p.name || p.source_version != p.version {
        qualifiers.push(format!(
            "upstream={}",
            enc(&format!("{}@{}", p.source, p.source_version), ":")
        ));
    }
    out.push('?');
    out.push_str(&qualifiers.join("&"));
    out
}

/// SPDX identifiers for the packages, in order: letters, digits, `.` and
/// `-` only, made unique with a counter where two names clean up alike
/// (`foo+bar` and `foo-bar`).
fn spdx_refs(packages: &[Package]) -> Vec<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let mut seen = BTreeSet::new();
    packages
        .iter()
        .map(|p| {
            let base = format!(
                "SPDXRef-Package-deb-{}-{}",
                clean(&p.name),
                clean(&p.architecture)
            );
            let mut id = base.clone();
            let mut n = 1;
            while !seen.insert(id.clone()) {
                n += 1;
                id = format!("{base}-{n}");
            }
            id
        })
        .collect()
}

/// Each package's installed dependencies, by index into `packages`: for
/// each group of alternatives the first that an installed package is or
/// provides, preferring the dependent's own architecture (then `all`).
fn dependencies(packages: &[Package]) -> Vec<BTreeSet<usize>> {
    let mut by_name: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, p) in packages.iter().enumerate() {
        by_name.entry(p.name.as_str()).or_default().push(i);
        for v in &p.provides {
            by_name.entry(v.as_str()).or_default().push(i);
        }
    }
    packages
        .iter()
        .enumerate()
        .map(|(me, p)| {
            p.depends
                .iter()
                .filter_map(|alts| {
                    alts.iter().find_map(|a| {
                        let found = by_name.get(a.as_str())?;
                        let rank = |&&i: &&usize| {
                            let arch = &packages[i].architecture;
                            if *arch == p.architecture {
                                0
                            } else if arch == "all" {
                                1
                            } else {
                                2
                            }
                        };
                        found.iter().filter(|&&i| i != me).min_by_key(rank).copied()
                    })
                })
                .collect()
        })
        .collect()
}

/// The SPDX 2.3 document.
#[must_use]
pub fn spdx(packages: &[Package], distro: &Distro, time: i64) -> Value {
    let deps = dependencies(packages);
    let ids = spdx_refs(packages);
    let image_name = if distro.pretty_name.is_empty() {
        distro.qualifier()
    } else {
        distro.pretty_name.clone()
    };
    let mut refs: BTreeSet<String> = BTreeSet::new();
    let mut spdx_packages = vec![json!({
        "SPDXID": "SPDXRef-Image",
        "name": image_name,
        "versionInfo": distro.version_id,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image",
    })];
    for (i, p) in packages.iter().enumerate() {
        let license = p.license.clone().unwrap_or_else(|| "NOASSERTION".into());
        for word in license.split_whitespace() {
            if let Some(r) = word.strip_prefix("LicenseRef-") {
                refs.insert(r.to_string());
            }
        }
        let mut pkg = json!({
            "SPDXID": ids[i],
            "name": p.name,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": license,
            "copyrightText": "NOASSERTION",
            "sourceInfo": format!("built from source package {} {}", p.source, p.source_version),
            "summary": p.summary,
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(p, distro),
            }],
        });
        if let Some(h) = &p.homepage {
            pkg["homepage"] = h.clone().into();
        }
        if let Some(m) = &p.maintainer {
            pkg["supplier"] = format!("Person: {m}").into();
        }
        spdx_packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": "SPDXRef-Image",
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": ids[i],
        }));
        for &d in &deps[i] {
            relationships.push(json!({
                "spdxElementId": ids[i],
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": ids[d],
            }));
        }
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{image_name} packages"),
        "creationInfo": {
            "created": treeport_core::json::rfc3339(time),
            "creators": [format!("Tool: treeport-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    if !refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = refs
            .iter()
            .map(|r| {
                json!({
                    "licenseId": format!("LicenseRef-{r}"),
                    "name": r,
                    "extractedText": format!("{r}: see the package's /usr/share/doc/PACKAGE/copyright"),
                })
            })
            .collect::<Vec<_>>()
            .into();
    }
    // A namespace unique to this content, the same for the same content.
    let digest = Digest::of(doc.to_string().as_bytes());
    doc["documentNamespace"] = format!("https://treeport.invalid/spdx/{}", digest.hex()).into();
    doc
}

/// The `CycloneDX` 1.5 document.
#[must_use]
pub fn cyclonedx(packages: &[Package], distro: &Distro, time: i64) -> Value {
    let deps = dependencies(packages);
    let purls: Vec<String> = packages.iter().map(|p| purl(p, distro)).collect();
    let components: Vec<Value> = packages
        .iter()
        .zip(&purls)
        .map(|(p, purl)| {
            let mut c = json!({
                "type": "library",
                "bom-ref": purl,
                "name": p.name,
                "version": p.version,
                "purl": purl,
                "description": p.summary,
                "properties": [
                    {"name": "treeport:deb:architecture", "value": p.architecture},
                    {"name": "treeport:deb:source", "value": p.source},
                    {"name": "treeport:deb:source-version", "value": p.source_version},
                ],
            });
            if let Some(l) = &p.license {
                c["licenses"] = json!([{ "expression": l }]);
            }
            if let Some(m) = &p.maintainer {
                c["publisher"] = m.clone().into();
            }
            c
        })
        .collect();
    let dependencies: Vec<Value> = deps
        .iter()
        .zip(&purls)
        .map(|(d, purl)| {
            json!({
                "ref": purl,
                "dependsOn": d.iter().map(|&i| purls[i].clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": treeport_core::json::rfc3339(time),
            "tools": {"components": [{
                "type": "application",
                "name": "treeport",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "operating-system",
                "bom-ref": "image",
                "name": distro.id,
                "version": distro.version_id,
                "description": distro.pretty_name,
            },
        },
        "components": components,
        "dependencies": dependencies,
    });
    // A serial number from the content: the same document, the same one.
    let h = Digest::of(doc.to_string().as_bytes()).hex();
    doc["serialNumber"] = format!(
        "urn:uuid:{}-{}-4{}-8{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
    .into();
    doc
}

impl Transform for SbomTransform {
    fn apply(&mut self, image: &mut ImageDraft, ctx: &Context) -> Result<()> {
        let task = ctx.progress().task("writing the SBOM", None);
        let packages = dpkg::packages(&image.tree)?;
        let distro = dpkg::distro(&image.tree)?;
        let time = image.source_time.unwrap_or(0);
        let mut docs = Vec::new();
        if self.spdx {
            docs.push((SPDX_NAME, MEDIA_SPDX, spdx(&packages, &distro, time)));
        }
        if self.cyclonedx {
            docs.push((
                CYCLONEDX_NAME,
                MEDIA_CYCLONEDX,
                cyclonedx(&packages, &distro, time),
            ));
        }
        for (name, artifact_type, doc) in docs {
            let mut bytes = serde_json::to_vec_pretty(&doc)?;
            bytes.push(b'\n');
            let bytes: Arc<[u8]> = Arc::from(bytes);
            if self.in_image {
                let path = TreePath::parse(format!("{DOC_DIR}/{name}").as_bytes())?;
                let mut entry =
                    Entry::file(path, bytes.len() as u64, Content::Bytes(Arc::clone(&bytes)));
                entry.mtime = time;
                image.tree.push(entry);
            }
            image.artifacts.push(Artifact {
                artifact_type: artifact_type.to_string(),
                bytes,
            });
        }
        task.finish();
        Ok(())
    }

    fn reshapes_tree(&self) -> bool {
        self.in_image
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use treeport_core::tree::{EntryKind, Tree};

    fn file(path: &str, text: &str) -> Entry {
        let bytes: Arc<[u8]> = Arc::from(text.as_bytes());
        Entry::file(
            TreePath::parse(path.as_bytes()).expect("the test literal parses"),
            bytes.len() as u64,
            Content::Bytes(bytes),
        )
    }

    fn link(path: &str, target: &str) -> Entry {
        Entry::new(
            TreePath::parse(path.as_bytes()).expect("the test literal parses"),
            EntryKind::Symlink(target.as_bytes().to_vec()),
        )
    }

    fn tree(entries: Vec<Entry>) -> Tree {
        let mut t = Tree::new();
        for e in entries {
            t.push(e);
        }
        t.normalize().expect("the test fixture is valid");
        t
    }

    const STATUS: &str = "Package: foo+bar\nStatus: hold ok installed\nVersion: 1:2.0+b1\nArchitecture: amd64\nDepends: awk, libc6\n\n\
        Package: foo-bar\nStatus: install ok installed\nVersion: 1\nArchitecture: amd64\n\n\
        Package: mawk\nStatus: install ok installed\nVersion: 1.3\nArchitecture: amd64\nProvides: awk\n\n\
        Package: libc6\nStatus: install ok installed\nVersion: 2.36\nArchitecture: i386\n\n\
        Package: libc6\nStatus: install ok installed\nVersion: 2.36\nArchitecture: amd64\n\n\
        Package: gone\nStatus: deinstall ok config-files\nVersion: 1\nArchitecture: amd64\n\n";

    #[test]
    fn odd_databases_give_valid_unique_documents() {
        let t = tree(vec![
            file("var/lib/dpkg/status", STATUS),
            file("etc/os-release", "ID=Debian\nVERSION_ID=12\n"),
            // Doc directories that link to each other, and into themselves.
            link("usr/share/doc/mawk", "libc6"),
            link("usr/share/doc/libc6", "mawk"),
            link("usr/share/doc/foo-bar", "foo-bar/x"),
        ]);
        let packages = dpkg::packages(&t).expect("the test fixture is valid");
        let names: Vec<(&str, &str)> = packages
            .iter()
            .map(|p| (p.name.as_str(), p.architecture.as_str()))
            .collect();
        // Held packages count; config-files ones do not.
        assert_eq!(
            names,
            [
                ("foo+bar", "amd64"),
                ("foo-bar", "amd64"),
                ("libc6", "amd64"),
                ("libc6", "i386"),
                ("mawk", "amd64")
            ]
        );
        let distro = dpkg::distro(&t).expect("the test fixture is valid");
        let ids = spdx_refs(&packages);
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        // awk through mawk's Provides; libc6 of the dependent's architecture.
        let deps = dependencies(&packages);
        let of_foo: Vec<(&str, &str)> = deps[0]
            .iter()
            .map(|&i| (packages[i].name.as_str(), packages[i].architecture.as_str()))
            .collect();
        assert_eq!(of_foo, [("libc6", "amd64"), ("mawk", "amd64")]);
        // The purl spec's deb form: lowercase, the epoch's colon kept.
        assert_eq!(
            purl(&packages[0], &distro),
            "pkg:deb/debian/foo%2Bbar@1:2.0%2Bb1?arch=amd64&distro=debian-12"
        );
    }
}
