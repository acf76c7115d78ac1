//! What an SBOM says about each installed package, from the tree's dpkg
//! database (`var/lib/dpkg/status`), its copyright files and os-release.

use treeport_core::dpkg::{fields, is_present, read_file};
use treeport_core::error::{Error, Result};
use treeport_core::tree::Tree;

/// One installed package.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// The source package and its version (the binary's when not given).
    pub source: String,
    pub source_version: String,
    pub summary: String,
    pub homepage: Option<String>,
    pub maintainer: Option<String>,
    /// Names from `Depends` and `Pre-Depends`, alternatives in order.
    pub depends: Vec<Vec<String>>,
    /// Virtual packages it provides (`Provides`).
    pub provides: Vec<String>,
    /// The declared license as an SPDX expression, from a machine-readable
    /// copyright file; `None` when there is none.
    pub license: Option<String>,
}

/// The distribution the tree is, from os-release.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Distro {
    /// `debian`, `ubuntu`, ...
    pub id: String,
    /// `12`, `24.04`, ... (may be empty: testing, sid).
    pub version_id: String,
    pub pretty_name: String,
}

impl Distro {
    /// The `distro` qualifier of a purl: `debian-12`.
    #[must_use]
    pub fn qualifier(&self) -> String {
        if self.version_id.is_empty() {
            self.id.clone()
        } else {
            format!("{}-{}", self.id, self.version_id)
        }
    }
}

/// At most 256 characters of a one-line field (a summary), so a hostile
/// database cannot make the documents grow without bound.
fn bounded(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(256).collect()
}

/// `a (>= 1), b | c:any` as alternatives of names.
fn relations(text: &str) -> Vec<Vec<String>> {
    text.split(',')
        .map(|group| {
            group
                .split('|')
                .filter_map(|alt| {
                    let name = alt.trim().split([' ', '(', '[', '<']).next()?;
                    let name = name.split(':').next()?.trim();
                    (!name.is_empty()).then(|| name.to_string())
                })
                .collect::<Vec<_>>()
        })
        .filter(|g| !g.is_empty())
        .collect()
}

/// Installed packages from `var/lib/dpkg/status`, sorted by name and
/// architecture.
pub fn packages(tree: &Tree) -> Result<Vec<Package>> {
    let status = read_file(tree, "var/lib/dpkg/status", 256 << 20)?
        .ok_or_else(|| Error::invalid("the tree has no dpkg database (var/lib/dpkg/status)"))?;
    let status = String::from_utf8_lossy(&status);
    let mut out = Vec::new();
    for stanza in status.split("\n\n") {
        let f = fields(stanza);
        let installed = is_present(&f);
        let (Some(name), Some(version), true) = (f.get("Package"), f.get("Version"), installed)
        else {
            continue;
        };
        let (source, source_version) = match f.get("Source") {
            Some(s) => match s.split_once(" (") {
                Some((n, v)) => (n.to_string(), v.trim_end_matches(')').to_string()),
                None => (s.clone(), version.clone()),
            },
            None => (name.clone(), version.clone()),
        };
        let mut depends = Vec::new();
        for key in ["Pre-Depends", "Depends"] {
            if let Some(v) = f.get(key) {
                depends.extend(relations(v));
            }
        }
        let provides = f
            .get("Provides")
            .map(|p| relations(p).into_iter().flatten().collect())
            .unwrap_or_default();
        let license = read_file(tree, &format!("usr/share/doc/{name}/copyright"), 4 << 20)?
            .and_then(|c| dep5_license(&String::from_utf8_lossy(&c)));
        out.push(Package {
            name: name.clone(),
            version: version.clone(),
            architecture: f.get("Architecture").cloned().unwrap_or_default(),
            source,
            source_version,
            summary: f
                .get("Description")
                .map(|d| bounded(d.lines().next().unwrap_or("")))
                .unwrap_or_default(),
            homepage: f.get("Homepage").cloned(),
            maintainer: f.get("Maintainer").cloned(),
            depends,
            provides,
            license,
        });
    }
    // A repeated stanza counts once (the last, as dpkg reads it).
    out.reverse();
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| seen.insert((p.name.clone(), p.architecture.clone())));
    out.sort_by(|a, b| (&a.name, &a.architecture).cmp(&(&b.name, &b.architecture)));
    Ok(out)
}

/// The tree's distribution, from `etc/os-release` or `usr/lib/os-release`.
pub fn distro(tree: &Tree) -> Result<Distro> {
    let text = match read_file(tree, "etc/os-release", 1 << 20)? {
        Some(t) => t,
        None => read_file(tree, "usr/lib/os-release", 1 << 20)?.unwrap_or_default(),
    };
    let text = String::from_utf8_lossy(&text);
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().trim_matches('"').trim_matches('\'').to_string())
            .next_back()
            .unwrap_or_default()
    };
    Ok(Distro {
        // os-release says ID is lowercase; a tree that does not gets it so.
        id: match get("ID").to_lowercase() {
            id if id.is_empty() => "debian".into(),
            id => id,
        },
        version_id: get("VERSION_ID"),
        pretty_name: get("PRETTY_NAME"),
    })
}

/// The license of a machine-readable (DEP-5) copyright file: the `Files: *`
/// paragraph's, as an SPDX expression. `None` for a free-form file.
#[must_use]
pub fn dep5_license(text: &str) -> Option<String> {
    let mut paragraphs = text.split("\n\n");
    let header = fields(paragraphs.next()?);
    if !header
        .get("Format")
        .or_else(|| header.get("Format-Specification"))
        .is_some_and(|f| f.contains("copyright-format") || f.contains("dep5"))
    {
        return None;
    }
    let mut first = None;
    for p in paragraphs {
        let f = fields(p);
        let (Some(files), Some(license)) = (f.get("Files"), f.get("License")) else {
            continue;
        };
        let short = license.lines().next().unwrap_or("").trim().to_string();
        if files.split_whitespace().any(|g| g == "*") {
            return spdx_expression(&short);
        }
        first.get_or_insert(short);
    }
    first.and_then(|s| spdx_expression(&s))
}

/// A Debian license short name as an SPDX identifier.
fn spdx_id(name: &str) -> String {
    let known = [
        ("GPL-1+", "GPL-1.0-or-later"),
        ("GPL-2", "GPL-2.0-only"),
        ("GPL-2+", "GPL-2.0-or-later"),
        ("GPL-3", "GPL-3.0-only"),
        ("GPL-3+", "GPL-3.0-or-later"),
        ("GPL-2.0+", "GPL-2.0-or-later"),
        ("GPL-3.0+", "GPL-3.0-or-later"),
        ("LGPL-2.1+", "LGPL-2.1-or-later"),
        ("LGPL-2.0+", "LGPL-2.0-or-later"),
        ("Sleepycat", "Sleepycat"),
        ("BSD-2-Clause", "BSD-2-Clause"),
        ("BSD-3-Clause", "BSD-3-Clause"),
        ("public-domain", "LicenseRef-public-domain"),
        ("LGPL-2", "LGPL-2.0-only"),
        ("LGPL-2+", "LGPL-2.0-or-later"),
        ("LGPL-2.1", "LGPL-2.1-only"),
        ("LGPL-3", "LGPL-3.0-only"),
        ("LGPL-3+", "LGPL-3.0-or-later"),
        ("AGPL-3", "AGPL-3.0-only"),
        ("AGPL-3+", "AGPL-3.0-or-later"),
        ("GFDL-1.2+", "GFDL-1.2-or-later"),
        ("GFDL-1.3+", "GFDL-1.3-or-later"),
        ("Expat", "MIT"),
        ("MIT", "MIT"),
        ("BSD-2-clause", "BSD-2-Clause"),
        ("BSD-3-clause", "BSD-3-Clause"),
        ("BSD-4-clause", "BSD-4-Clause"),
        ("Apache-2.0", "Apache-2.0"),
        ("Artistic", "Artistic-1.0-Perl"),
        ("Artistic-2.0", "Artistic-2.0"),
        ("ISC", "ISC"),
        ("Zlib", "Zlib"),
        ("zlib", "Zlib"),
        ("MPL-2.0", "MPL-2.0"),
        ("CC0-1.0", "CC0-1.0"),
        ("X11", "X11"),
        ("curl", "curl"),
        ("OpenSSL", "OpenSSL"),
        ("PSF-2", "PSF-2.0"),
        ("Python-2.0", "Python-2.0"),
        ("BSL-1.0", "BSL-1.0"),
        ("Unicode-DFS-2016", "Unicode-DFS-2016"),
        ("WTFPL", "WTFPL"),
    ];
    known
        .iter()
        .find(|(d, _)| d.eq_ignore_ascii_case(name))
        .map_or_else(|| license_ref(name), |(_, s)| (*s).to_string())
}

/// `LicenseRef-NAME` for a name SPDX does not list: letters, digits and
/// `.` kept, `+` spelled `plus`, anything else one `-`.
#[must_use]
pub fn license_ref(name: &str) -> String {
    let mut clean = String::new();
    for c in name.replace('+', "plus").chars() {
        if c.is_ascii_alphanumeric() || c == '.' {
            clean.push(c);
        } else if !clean.ends_with('-') {
            clean.push('-');
        }
    }
    format!("LicenseRef-{}", clean.trim_matches('-'))
}

/// A DEP-5 license field (`GPL-2+ or Artistic`, `BSD-3-clause and MIT`)
/// as an SPDX expression; an exception clause makes the whole a reference.
fn spdx_expression(short: &str) -> Option<String> {
    let short = short.trim();
    if short.is_empty() {
        return None;
    }
    if short.to_ascii_lowercase().contains(" with ") || short.contains('(') {
        return Some(license_ref(short));
    }
    let mut out = Vec::new();
    for (i, word) in short.split_whitespace().enumerate() {
        match word.to_ascii_lowercase().trim_end_matches(',') {
            "or" if i > 0 => out.push("OR".to_string()),
            "and" if i > 0 => out.push("AND".to_string()),
            _ => out.push(spdx_id(word.trim_end_matches(','))),
        }
    }
    // Two names in a row (a comma list) read as AND.
    let mut joined: Vec<String> = Vec::new();
    for w in out {
        let op = w == "OR" || w == "AND";
        if !op && joined.last().is_some_and(|l| l != "OR" && l != "AND") {
            joined.push("AND".into());
        }
        joined.push(w);
    }
    Some(joined.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep5_files_star_license_becomes_an_spdx_expression() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\nFiles: *\nCopyright: 2000 A\nLicense: GPL-2+ or Artistic\n\nFiles: debian/*\nLicense: BSD-3-clause\n\nLicense: GPL-2+\n The text.\n";
        assert_eq!(
            dep5_license(text).as_deref(),
            Some("GPL-2.0-or-later OR Artistic-1.0-Perl")
        );
        assert_eq!(dep5_license("This is free-form.\n"), None);
        let odd = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-2+ with OpenSSL exception\n";
        assert_eq!(
            dep5_license(odd).as_deref(),
            Some("LicenseRef-GPL-2plus-with-OpenSSL-exception")
        );
    }

    #[test]
    fn relations_keep_names_and_alternatives() {
        assert_eq!(
            relations("libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, perl:any"),
            vec![
                vec!["libc6".to_string()],
                vec!["debconf".to_string(), "debconf-2.0".to_string()],
                vec!["perl".to_string()],
            ]
        );
    }
}
