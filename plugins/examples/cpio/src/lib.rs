//! Source `cpio:FILE`: a "newc" cpio archive (`070701`), the format of Linux
//! initramfs images and of many distribution payloads. Members keep their
//! owner, mode, mtime and device numbers; hardlinks (one inode, several names)
//! stay hardlinks. Content is read from the archive when the host needs it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use treeport_plugin_api::{
    Content, Draft, Entry, Kind, Made, Options, Plugin, PluginError, PluginResult, Role, Source,
    export_plugins,
};

fn plugins() -> Vec<Plugin> {
    vec![Plugin {
        role: Role::Source,
        kind: "cpio",
        description: "a newc cpio archive (initramfs), read in place",
        usage: "cpio:FILE",
        version: env!("CARGO_PKG_VERSION"),
        options: &[],
        make,
    }]
}

export_plugins!(plugins);

// It declares no options: treeport refuses any given to it.
fn make(selector: &str, _options: &Options) -> PluginResult<Made> {
    let file = selector
        .split_once(':')
        .map(|(_, f)| f)
        .filter(|f| !f.is_empty())
        .ok_or_else(|| PluginError::usage(format!("'{selector}': expected cpio:FILE")))?;
    Ok(Made::Source(Box::new(Cpio {
        file: PathBuf::from(file),
        spans: Vec::new(),
    })))
}

struct Cpio {
    file: PathBuf,
    /// (offset, length) of each member's data, by content key.
    spans: Vec<(u64, u64)>,
}

fn hex_field(h: &[u8], i: usize, at: u64) -> PluginResult<u64> {
    let text = std::str::from_utf8(&h[6 + i * 8..6 + i * 8 + 8])
        .map_err(|_| PluginError::new(format!("bad cpio header at byte {at}")))?;
    u64::from_str_radix(text, 16)
        .map_err(|_| PluginError::new(format!("bad cpio header at byte {at}")))
}

fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

impl Source for Cpio {
    fn read(&mut self, draft: &mut Draft) -> PluginResult<()> {
        let what = self.file.display().to_string();
        let file = File::open(&self.file).map_err(|e| PluginError::new(format!("{what}: {e}")))?;
        let mut r = BufReader::new(file);
        let mut at = 0u64;
        let mut entries: Vec<Entry> = Vec::new();
        // ino -> entries sharing it (for hardlinks)
        let mut inodes: HashMap<(u64, u64, u64), Vec<usize>> = HashMap::new();
        loop {
            let mut h = [0u8; 110];
            r.read_exact(&mut h)
                .map_err(|_| PluginError::new(format!("{what}: truncated at byte {at}")))?;
            if &h[..6] != b"070701" && &h[..6] != b"070702" {
                return Err(PluginError::new(format!(
                    "{what}: not a newc cpio archive (byte {at})"
                )));
            }
            let f = |i| hex_field(&h, i, at);
            let (ino, mode, uid, gid, nlink, mtime, size) =
                (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?, f(5)?, f(6)?);
            let (dev_major, dev_minor, rdev_major, rdev_minor, namesize) =
                (f(7)?, f(8)?, f(9)?, f(10)?, f(11)?);
            if namesize == 0 || namesize > 65_536 {
                return Err(PluginError::new(format!(
                    "{what}: bad name size at byte {at}"
                )));
            }
            let mut name = vec![0u8; namesize as usize];
            r.read_exact(&mut name)?;
            name.pop();
            let name_pad = pad4(110 + namesize);
            r.seek_relative(name_pad as i64)?;
            let data_at = at + 110 + namesize + name_pad;
            if name == b"TRAILER!!!" {
                break;
            }
            let path: Vec<u8> = name
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b".")
                .collect::<Vec<_>>()
                .join(&b'/');
            if name.split(|&b| b == b'/').any(|c| c == b"..") {
                return Err(PluginError::new(format!(
                    "{what}: member '{}' escapes the root",
                    String::from_utf8_lossy(&name)
                )));
            }
            let kind = match mode & 0o170_000 {
                0o100_000 => Kind::File,
                0o040_000 => Kind::Dir,
                0o120_000 => Kind::Symlink,
                0o020_000 => Kind::CharDevice,
                0o060_000 => Kind::BlockDevice,
                0o010_000 => Kind::Fifo,
                _ => {
                    return Err(PluginError::new(format!(
                        "{what}: member '{}' has an unsupported type",
                        String::from_utf8_lossy(&name)
                    )));
                }
            };
            if !path.is_empty() {
                let mut e = Entry::new(path, kind);
                e.mode = (mode & 0o7777) as u32;
                e.uid = uid as u32;
                e.gid = gid as u32;
                e.mtime = mtime as i64;
                match kind {
                    Kind::File if size > 0 => {
                        e.size = size;
                        e.content = Content::Key(self.spans.len() as u64);
                        self.spans.push((data_at, size));
                    }
                    Kind::Symlink => {
                        if size > 65_536 {
                            return Err(PluginError::new(format!(
                                "{what}: symlink target too long at byte {at}"
                            )));
                        }
                        let mut target = vec![0u8; size as usize];
                        r.read_exact(&mut target)?;
                        e.target = target;
                    }
                    Kind::CharDevice | Kind::BlockDevice => {
                        e.major = rdev_major as u32;
                        e.minor = rdev_minor as u32;
                    }
                    _ => {}
                }
                if kind == Kind::File && nlink > 1 {
                    inodes
                        .entry((dev_major, dev_minor, ino))
                        .or_default()
                        .push(entries.len());
                }
                entries.push(e);
            }
            r.seek(SeekFrom::Start(data_at + size + pad4(size)))?;
            at = data_at + size + pad4(size);
        }
        // newc stores a hardlinked file's data with its last name only.
        let mut groups: Vec<&Vec<usize>> = inodes.values().collect();
        groups.sort();
        for (group, members) in groups.into_iter().enumerate() {
            let with_data = members.iter().find_map(|&i| match entries[i].content {
                Content::Key(k) => Some((k, entries[i].size)),
                _ => None,
            });
            for &i in members {
                entries[i].link = Some(group as u64);
                if let Some((k, size)) = with_data {
                    entries[i].content = Content::Key(k);
                    entries[i].size = size;
                }
            }
        }
        for e in &entries {
            draft.put(e)?;
        }
        Ok(())
    }

    fn open(&self, key: u64) -> PluginResult<Box<dyn Read + Send>> {
        let &(offset, len) = self
            .spans
            .get(key as usize)
            .ok_or_else(|| PluginError::new(format!("no member #{key}")))?;
        let mut f = File::open(&self.file)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(f.take(len)))
    }
}
