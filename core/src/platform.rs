//! Platforms: the machine's architecture as OCI names it, and the
//! `OS/ARCH[/VARIANT]` a user picks from an index.

use crate::error::{Error, Result};

/// The Go architecture name of the machine treeport runs on.
#[must_use]
pub fn host_architecture() -> &'static str {
    go_architecture(std::env::consts::ARCH)
}

/// Maps a Rust/Debian/kernel architecture name to the Go name OCI uses.
#[must_use]
pub fn go_architecture(name: &str) -> &str {
    match name {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "x86" | "i386" | "i686" | "386" => "386",
        "arm" | "armhf" | "armel" => "arm",
        "powerpc64" | "ppc64el" | "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" | "loong64" => "loong64",
        "mips64el" | "mips64le" => "mips64le",
        "mipsel" | "mipsle" => "mipsle",
        other => other,
    }
}

/// An OS/architecture pair, as `--platform linux/arm64/v8` spells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine treeport runs on.
    #[must_use]
    pub fn host() -> Self {
        Platform {
            os: "linux".into(),
            architecture: host_architecture().into(),
            variant: None,
        }
    }

    /// Parses `OS/ARCH[/VARIANT]`.
    pub fn parse(text: &str) -> Result<Self> {
        let parts: Vec<&str> = text.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: (*os).into(),
                    architecture: (*arch).into(),
                    variant: Some((*variant).into()),
                })
            }
            _ => Err(Error::usage(format!(
                "platform '{text}': expected OS/ARCH[/VARIANT], e.g. linux/arm64"
            ))),
        }
    }

    pub(crate) fn matches(&self, p: &oci_spec::image::Platform) -> bool {
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && (self.variant.is_none() || p.variant() == &self.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}
