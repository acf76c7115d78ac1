//! Sink `listing:FILE`: writes a JSON listing of every layer of the image:
//! its digests, and each member's path, type, size and (for regular files)
//! sha256. Useful to diff two images or to audit what a layer ships.

use std::io::{BufReader, Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use treeport_plugin_api::{
    BuiltImage, HostBlobs, Made, Plugin, PluginError, PluginResult, Role, Sink, check_options,
    export_plugins,
};

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Sink,
        kind: "listing",
        description: "a JSON listing of each layer's files with their sha256",
        usage: "listing:FILE",
        version: env!("CARGO_PKG_VERSION"),
        options: &[],
        make,
    }]
}

export_plugins!(plugins);

fn make(selector: &str, options: &[(String, String)]) -> PluginResult<Made> {
    check_options("sink listing", options, &[])?;
    let file = selector
        .split_once(':')
        .map(|(_, f)| f)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| PluginError::usage(format!("'{selector}': expected listing:FILE")))?;
    Ok(Made::Sink(Box::new(Listing {
        file: PathBuf::from(file),
    })))
}

struct Listing {
    file: PathBuf,
}

fn layer_files(reader: Box<dyn Read>, media_type: &str) -> PluginResult<Vec<serde_json::Value>> {
    let tar: Box<dyn Read> = if media_type.ends_with("gzip") {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(reader)))
    } else if media_type.ends_with("zstd") {
        Box::new(zstd::stream::read::Decoder::new(reader)?)
    } else {
        reader
    };
    let mut archive = tar::Archive::new(tar);
    let mut out = Vec::new();
    for member in archive.entries()? {
        let mut member = member?;
        let path = String::from_utf8_lossy(&member.path_bytes()).into_owned();
        let kind = format!("{:?}", member.header().entry_type()).to_lowercase();
        let size = member.size();
        let mut file = serde_json::json!({"path": path, "type": kind, "size": size});
        if member.header().entry_type().is_file() {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = member.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            file["sha256"] = hex::encode(hasher.finalize()).into();
        }
        out.push(file);
    }
    Ok(out)
}

impl Sink for Listing {
    fn prepare(&mut self) -> PluginResult<()> {
        let dir = self
            .file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if dir.is_dir() {
            Ok(())
        } else {
            Err(PluginError::new(format!(
                "{}: directory does not exist",
                dir.display()
            )))
        }
    }

    fn write(&mut self, image: &BuiltImage, blobs: &HostBlobs) -> PluginResult<String> {
        let mut layers = Vec::new();
        for layer in image.layers.iter() {
            let reader = Box::new(blobs.open(&layer.digest)?);
            layers.push(serde_json::json!({
                "digest": layer.digest.as_str(),
                "diffId": layer.diff_id.as_str(),
                "mediaType": layer.media_type.as_str(),
                "size": layer.size,
                "files": layer_files(reader, &layer.media_type)?,
            }));
        }
        let doc = serde_json::json!({
            "manifest": image.manifest_digest.as_str(),
            "config": image.config_digest.as_str(),
            "layers": layers,
        });
        let tmp = self.file.with_extension("listing-tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(
            serde_json::to_string_pretty(&doc)
                .map_err(|e| PluginError::new(e.to_string()))?
                .as_bytes(),
        )?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.file)?;
        Ok(format!("listing:{}", self.file.display()))
    }
}
