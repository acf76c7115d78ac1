//! Sink `docker-archive:FILE[:NAME[:TAG]]`: the `docker save` format
//! (`manifest.json`, `repositories`, config, layers) that `docker load`,
//! `podman load` and skopeo's `docker-archive:` read; and the reader for the
//! same references, which also reads archives written by `docker save`.
//!
//! Blobs are stored as Docker 25 stores them, under `blobs/sha256/`, and
//! layers keep their compression. There is no `oci-layout` in the archive:
//! podman would then load it as an OCI archive and lose the name. The archive is written under a temporary
//! name and renamed into place when complete.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use treeport_core::archive::{ArchiveFile, ArchiveFiles, write_archive};
use treeport_core::blobs::BlobStore;
use treeport_core::copy::ImageSet;
use treeport_core::digest::{Digest, Hasher};
use treeport_core::error::{Error, Result};
use treeport_core::image::BuiltImage;
use treeport_core::layout::blob_name;
use treeport_core::plugin::{
    Builtin, BuiltinFactory, ImageReader, Options, RawManifest, Selector, Sink, Written,
};
use treeport_core::progress::Context;
use treeport_core::{json, media};

treeport_core::inventory::submit! {
    Builtin {
        kind: "docker-archive",
        description: "a docker save archive, for docker load, podman load and skopeo",
        usage: "docker-archive:FILE[:NAME[:TAG]]",
        options: &[],
        factory: BuiltinFactory::Sink(DockerArchiveSink::build, Some(DockerArchiveReader::build)),
    }
}

/// One image in `manifest.json`.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestItem {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// A descriptor of the manifest skopeo and podman make for an image in a
/// docker archive, fields in their order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2Descriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema2<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Schema2Descriptor<'a>,
    layers: Vec<Schema2Descriptor<'a>>,
}

/// The manifest digest other tools report for an image in a docker archive.
///
/// A docker archive holds no manifest: containers/image (skopeo, podman)
/// makes a Docker schema 2 manifest from the config and the layers, each
/// named by its `diff_id` with its uncompressed size, and serialises it
/// compactly in this field order. This is that digest.
fn archive_manifest_digest(config: (Digest, u64), layers: &[(Digest, u64)]) -> Result<Digest> {
    let manifest = Schema2 {
        schema_version: 2,
        media_type: media::DOCKER_MANIFEST,
        config: Schema2Descriptor {
            media_type: media::DOCKER_CONFIG,
            size: config.1,
            digest: config.0.to_string(),
        },
        layers: layers
            .iter()
            .map(|(diff_id, size)| Schema2Descriptor {
                media_type: media::DOCKER_LAYER_GZIP,
                size: *size,
                digest: diff_id.to_string(),
            })
            .collect(),
    };
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::invalid(format!("docker archive manifest: {e}")))?;
    Ok(Digest::of(&bytes))
}

/// Splits `FILE[:NAME[:TAG]]` into the file and a `NAME:TAG` reference.
fn split(rest: &str) -> Result<(&str, Option<String>)> {
    let Some((file, reference)) = rest.split_once(':') else {
        return Ok((rest, None));
    };
    if file.is_empty() {
        return Err(Error::usage(format!("docker-archive:{rest}: no file name")));
    }
    if reference.is_empty() {
        return Ok((file, None));
    }
    Ok((file, Some(normalize_reference(reference)?)))
}

/// `NAME` or `NAME:TAG` -> `NAME:TAG` (tag `latest` by default), checked as
/// Docker checks names.
fn normalize_reference(reference: &str) -> Result<String> {
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match reference[last_slash..].rfind(':') {
        Some(i) => reference.split_at(last_slash + i),
        None => (reference, ":latest"),
    };
    let tag = &tag[1..];
    let path = match name.split_once('/') {
        // A first component with a dot, a colon or "localhost" is a registry host.
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => name,
    };
    let name_ok = !path.is_empty()
        && path.split('/').all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        });
    let tag_ok = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && tag.as_bytes()[0] != b'.'
        && tag.as_bytes()[0] != b'-';
    if name_ok && tag_ok {
        Ok(format!("{name}:{tag}"))
    } else {
        Err(Error::usage(format!(
            "'{reference}' is not a valid image name (NAME[:TAG], lowercase name)"
        )))
    }
}

/// Writes an image as a docker archive.
pub struct DockerArchiveSink {
    file: PathBuf,
    reference: Option<String>,
}

impl DockerArchiveSink {
    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Sink>> {
        options.check_keys("sink docker-archive", &[])?;
        let (file, reference) = split(selector.require_rest("a file")?)?;
        Ok(Box::new(DockerArchiveSink {
            file: file.into(),
            reference,
        }))
    }
}

impl Sink for DockerArchiveSink {
    fn prepare(&mut self, _ctx: &Context) -> Result<()> {
        treeport_core::blobs::check_file_destination(&self.file, "docker-archive")
    }

    fn staging_dir(&self) -> Option<PathBuf> {
        Some(treeport_core::blobs::parent_dir(&self.file))
    }

    fn write(&mut self, image: &BuiltImage, blobs: &BlobStore, ctx: &Context) -> Result<Written> {
        self.warn_left_out(&image.referrers, ctx);
        let layers: Vec<Digest> = image.layers.iter().map(|l| l.encoded.digest).collect();
        self.write_archive(image.config_digest, &layers, blobs, image.created)?;
        let layers: Vec<(Digest, u64)> = image
            .layers
            .iter()
            .map(|l| (l.encoded.diff_id, l.encoded.tar_size))
            .collect();
        let digest =
            archive_manifest_digest((image.config_digest, image.config.len() as u64), &layers)?;
        Ok(self.written().with_manifest(digest))
    }

    fn write_set(&mut self, set: &ImageSet, blobs: &BlobStore, _ctx: &Context) -> Result<Written> {
        if set.index.is_some() || set.manifests.len() != 1 {
            return Err(Error::usage(format!(
                "{}: a docker archive holds one image, not an index; choose one with --platform",
                self.written().destination
            )));
        }
        let digests: Vec<Digest> = set.manifests[0].blobs.iter().map(|(d, _)| *d).collect();
        let (config, layers) = digests.split_first().expect("a manifest has a config");
        self.write_archive(*config, layers, blobs, 0)?;
        // What skopeo will report for it needs each layer's uncompressed
        // size: read the archive back as skopeo does.
        let mut reader = DockerArchiveReader::open(&self.file, self.reference.as_deref())?;
        let top = reader.top()?;
        let digest = reader.reported_digest(&top)?.unwrap_or(top.digest);
        Ok(self.written().with_manifest(digest))
    }
}

impl DockerArchiveSink {
    /// The docker save format has no place for artifacts (an SBOM): says
    /// which are left out rather than drop them silently.
    fn warn_left_out(&self, referrers: &[treeport_core::image::Referrer], ctx: &Context) {
        if referrers.is_empty() {
            return;
        }
        let kinds: Vec<&str> = referrers.iter().map(|r| r.artifact_type.as_str()).collect();
        ctx.warn(&format!(
            "{}: a docker archive holds no artifacts; not written to it: {} (an oci:, oci-archive: or docker:// sink keeps them)",
            self.written().destination,
            kinds.join(", ")
        ));
    }

    fn written(&self) -> Written {
        Written::to(match &self.reference {
            Some(r) => format!("docker-archive:{}:{r}", self.file.display()),
            None => format!("docker-archive:{}", self.file.display()),
        })
    }

    /// Writes the archive: `manifest.json`, `repositories` when the image
    /// has a name, and the config and layer blobs from `blobs`.
    fn write_archive(
        &self,
        config: Digest,
        layers: &[Digest],
        blobs: &BlobStore,
        mtime: i64,
    ) -> Result<()> {
        let item = ManifestItem {
            config: blob_name(&config),
            repo_tags: self.reference.clone().map(|r| vec![r]),
            layers: layers.iter().map(blob_name).collect(),
        };
        let mut files = vec![ArchiveFile::bytes(
            "manifest.json",
            &json::to_canonical_vec(&vec![item])?,
        )];
        if let Some(reference) = &self.reference {
            let (name, tag) = reference
                .rsplit_once(':')
                .expect("normalized references have a tag");
            let top = layers.last().map(Digest::hex).unwrap_or_default();
            let repositories = serde_json::json!({ name: { tag: top } });
            files.push(ArchiveFile::bytes(
                "repositories",
                &json::to_canonical_vec(&repositories)?,
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for d in std::iter::once(&config).chain(layers) {
            if seen.insert(*d) {
                files.push(ArchiveFile::disk(blob_name(d), &blobs.path(d))?);
            }
        }
        write_archive(&self.file, files, mtime)
    }
}

/// Reads an image from a docker archive (treeport's or `docker save`'s).
pub struct DockerArchiveReader {
    files: ArchiveFiles,
    reference: Option<String>,
    /// digest -> file in the archive, filled by `top`.
    paths: HashMap<Digest, String>,
}

impl DockerArchiveReader {
    /// Opens the docker archive at `file`, for the image named `reference`
    /// (`NAME:TAG`) or its only image.
    pub fn open(file: &Path, reference: Option<&str>) -> Result<Self> {
        Ok(DockerArchiveReader {
            files: ArchiveFiles::open(file)?,
            reference: reference.map(normalize_reference).transpose()?,
            paths: HashMap::new(),
        })
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn ImageReader>> {
        options.check_keys("docker-archive image", &[])?;
        let (file, reference) = split(selector.require_rest("a file")?)?;
        Ok(Box::new(DockerArchiveReader {
            files: ArchiveFiles::open(Path::new(file))?,
            reference,
            paths: HashMap::new(),
        }))
    }

    /// The digest of a file in the archive: from its name when it is a blob
    /// path, else by hashing it.
    fn digest_of(&self, name: &str) -> Result<(Digest, u64)> {
        let mut hasher = Hasher::new();
        let mut reader = self.files.open_file(name)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::invalid(format!("{}: {name}: {e}", self.files.what())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(hasher.finish())
    }

    fn layer_media_type(&self, name: &str) -> Result<&'static str> {
        let mut head = [0u8; 4];
        let mut reader = self.files.open_file(name)?;
        let n = reader.read(&mut head).unwrap_or(0);
        Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
            media::DOCKER_LAYER_GZIP
        } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            media::OCI_LAYER_ZSTD
        } else {
            media::DOCKER_LAYER_TAR
        })
    }
}

impl ImageReader for DockerArchiveReader {
    fn top(&mut self) -> Result<RawManifest> {
        let what = self.files.what().to_string();
        let items: Vec<ManifestItem> =
            serde_json::from_slice(&self.files.read_document("manifest.json")?)
                .map_err(|e| Error::invalid(format!("{what}: manifest.json: {e}")))?;
        let item = match &self.reference {
            Some(r) => items
                .iter()
                .find(|i| i.repo_tags.as_ref().is_some_and(|t| t.contains(r)))
                .ok_or_else(|| Error::invalid(format!("{what}: no image named '{r}'")))?,
            None if items.len() == 1 => &items[0],
            None => {
                return Err(Error::usage(format!(
                    "{what}: holds {} images; name one with :NAME:TAG",
                    items.len()
                )));
            }
        };
        let item = item.clone();
        if item.layers.len() > media::MAX_LAYERS {
            return Err(Error::invalid(format!(
                "{what}: manifest.json lists {} layers, more than the {} treeport reads",
                item.layers.len(),
                media::MAX_LAYERS
            )));
        }
        let config_bytes = self.files.read_document(&item.config)?;
        let config_digest = Digest::of(&config_bytes);
        // An image whose config names another number of layers than the
        // archive lists is not one a consumer can unpack.
        let config: oci_spec::image::ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| Error::invalid(format!("{what}: {}: {e}", item.config)))?;
        if config.rootfs().diff_ids().len() != item.layers.len() {
            return Err(Error::invalid(format!(
                "{what}: manifest.json lists {} layers, its config {} diff_ids",
                item.layers.len(),
                config.rootfs().diff_ids().len()
            )));
        }
        self.paths.insert(config_digest, item.config.clone());
        let mut layers = Vec::with_capacity(item.layers.len());
        // A layer listed twice is read (and hashed) once.
        let mut known: HashMap<&str, (Digest, u64)> = HashMap::new();
        for name in &item.layers {
            let (digest, size) = if let Some(d) = known.get(name.as_str()) {
                *d
            } else {
                let d = self.digest_of(name)?;
                known.insert(name, d);
                d
            };
            self.paths.insert(digest, name.clone());
            layers.push(serde_json::json!({
                "mediaType": self.layer_media_type(name)?,
                "size": size,
                "digest": digest.to_string(),
            }));
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {
                "mediaType": media::DOCKER_CONFIG,
                "size": config_bytes.len(),
                "digest": config_digest.to_string(),
            },
            "layers": layers,
        });
        let bytes = json::to_canonical_vec(&manifest)?;
        Ok(RawManifest {
            digest: Digest::of(&bytes),
            bytes,
            media_type: media::DOCKER_MANIFEST.to_string(),
        })
    }

    fn manifest(&mut self, digest: &Digest) -> Result<RawManifest> {
        Err(Error::invalid(format!(
            "{}: a docker archive has no manifest {digest}",
            self.files.what()
        )))
    }

    fn reported_digest(&mut self, top: &RawManifest) -> Result<Option<Digest>> {
        let what = self.files.what().to_string();
        let manifest: oci_spec::image::ImageManifest = serde_json::from_slice(&top.bytes)
            .map_err(|e| Error::invalid(format!("{what}: {e}")))?;
        let config_desc = manifest.config();
        let config_digest: Digest = config_desc.digest().to_string().parse()?;
        let config: oci_spec::image::ImageConfiguration =
            serde_json::from_reader(self.blob(&config_digest)?.take(4 << 20))
                .map_err(|e| Error::invalid(format!("{what}: config: {e}")))?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(Error::invalid(format!(
                "{what}: the config lists {} diff_ids for {} layers",
                diff_ids.len(),
                manifest.layers().len()
            )));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (layer, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let media_type = layer.media_type().to_string();
            let digest: Digest = layer.digest().to_string().parse()?;
            let mut stream = treeport_core::layer::compress::decompressor(
                &media_type,
                std::io::BufReader::new(self.blob(&digest)?),
            )?;
            let size = std::io::copy(&mut stream, &mut std::io::sink())
                .map_err(|e| Error::invalid(format!("{what}: layer {}: {e}", layer.digest())))?;
            layers.push((diff_id.parse()?, size));
        }
        Ok(Some(archive_manifest_digest(
            (config_digest, config_desc.size()),
            &layers,
        )?))
    }

    fn blob(&mut self, digest: &Digest) -> Result<Box<dyn Read + '_>> {
        let name = match self.paths.get(digest) {
            Some(name) => name.clone(),
            None => blob_name(digest),
        };
        Ok(self.files.open_file(&name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_normalized_and_checked() {
        assert_eq!(
            normalize_reference("demo").expect("the test fixture is valid"),
            "demo:latest"
        );
        assert_eq!(
            normalize_reference("demo:1.0").expect("the test fixture is valid"),
            "demo:1.0"
        );
        assert_eq!(
            normalize_reference("localhost:5000/a/b:x").expect("the test fixture is valid"),
            "localhost:5000/a/b:x"
        );
        assert_eq!(
            normalize_reference("localhost:5000/a").expect("the test fixture is valid"),
            "localhost:5000/a:latest"
        );
        for bad in ["Demo", "demo:", "demo:-x", "a//b", "demo: x"] {
            assert!(normalize_reference(bad).is_err(), "{bad}");
        }
        assert_eq!(
            split("/tmp/x.tar").expect("the test fixture is valid"),
            ("/tmp/x.tar", None)
        );
        assert_eq!(
            split("/tmp/x.tar:demo:v1").expect("the test fixture is valid"),
            ("/tmp/x.tar", Some("demo:v1".to_string()))
        );
    }
}
