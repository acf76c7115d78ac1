//! Sink `listing:FILE`: writes a JSON listing of every layer of the image:
//! its digests, and each member's path, type, size and (for regular files)
//! sha256. Useful to diff two images or to audit what a layer ships.

use std::io::{Read, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use treeport_plugin_api::{
    Image, Kind, Made, Options, Plugin, PluginError, PluginResult, Role, Sink, export_plugins,
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

fn make(selector: &str, _options: &Options) -> PluginResult<Made> {
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

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "dir",
        Kind::Symlink => "symlink",
        Kind::CharDevice => "char",
        Kind::BlockDevice => "block",
        Kind::Fifo => "fifo",
        _ => "other",
    }
}

/// Each member of a layer, decoded by treeport (no tar or decompression
/// code here), with the sha256 of every regular file's bytes.
fn layer_files(image: &Image, layer: u32) -> PluginResult<Vec<serde_json::Value>> {
    let mut members = image.layer_entries(layer)?;
    let mut out = Vec::new();
    while let Some(entry) = members.next_entry()? {
        let mut file = serde_json::json!({
            "path": entry.path_str(),
            "type": kind_name(entry.kind),
            "size": entry.size,
        });
        if entry.kind == Kind::File && entry.target.is_empty() {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = members.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            file["sha256"] = hex::encode(hasher.finalize()).into();
        } else if !entry.target.is_empty() {
            file["target"] = String::from_utf8_lossy(&entry.target).into();
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

    fn write(&mut self, image: &Image) -> PluginResult<String> {
        let mut layers = Vec::new();
        for (i, layer) in image.layers().iter().enumerate() {
            layers.push(serde_json::json!({
                "digest": layer.digest,
                "diffId": layer.diff_id,
                "mediaType": layer.media_type,
                "size": layer.size,
                "files": layer_files(image, i as u32)?,
            }));
        }
        let doc = serde_json::json!({
            "manifest": image.manifest_digest(),
            "config": image.config_digest(),
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
