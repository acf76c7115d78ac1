//! `treeport-abi-host LIBRARY KIND`: loads a plugin library the way treeport
//! does, lists its plugins, runs transform KIND on a three-entry draft held
//! in memory, and prints what the plugin left: one `key=value` line each.

use std::process::ExitCode;

use abi_stable::library::lib_header_from_path;
use abi_stable::sabi_trait::prelude::TD_Opaque;
use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec, Tuple2};
use treeport_plugin_api::ffi::{self, DraftObj, DraftObj_TO, EntryRecord, PluginModRef, Res};
use treeport_plugin_api::{Kind, PluginError};

#[derive(Default)]
struct Memory {
    entries: Vec<Option<EntryRecord>>,
    labels: Vec<(String, String)>,
}

fn record(path: &str, kind: Kind) -> EntryRecord {
    EntryRecord {
        path: RVec::from(path.as_bytes()),
        kind: kind.code(),
        target: RVec::new(),
        major: 0,
        minor: 0,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 0,
        xattrs: RVec::new(),
        size: 0,
        link: ROption::RNone,
        layer: 0,
        content: ffi::content::NONE,
        key: 0,
        bytes: RVec::new(),
    }
}

fn no<T>(what: &str) -> Res<T> {
    RResult::RErr(PluginError::new(format!("{what}: not in this host")).to_record())
}

impl DraftObj for Memory {
    fn len(&self) -> u64 {
        self.entries.len() as u64
    }
    fn find(&self, path: RSlice<'_, u8>) -> ROption<u64> {
        self.entries
            .iter()
            .position(|e| {
                e.as_ref()
                    .is_some_and(|e| e.path.as_slice() == path.as_slice())
            })
            .map(|i| i as u64)
            .into()
    }
    fn get(&self, index: u64) -> ROption<EntryRecord> {
        self.entries.get(index as usize).cloned().flatten().into()
    }
    fn open(&self, _index: u64) -> Res<ffi::ReaderBox> {
        no("open")
    }
    fn put(&mut self, entry: EntryRecord) -> Res<u64> {
        if let ROption::RSome(i) = self.find(entry.path.as_slice().into()) {
            self.entries[i as usize] = Some(entry);
            return RResult::ROk(i);
        }
        self.entries.push(Some(entry));
        RResult::ROk(self.entries.len() as u64 - 1)
    }
    fn remove(&mut self, index: u64) -> Res<()> {
        self.entries[index as usize] = None;
        RResult::ROk(())
    }
    fn labels(&self) -> ffi::Pairs {
        self.labels
            .iter()
            .map(|(k, v)| Tuple2(RString::from(k.as_str()), RString::from(v.as_str())))
            .collect()
    }
    fn set_label(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()> {
        self.labels.retain(|(k, _)| k != key.as_str());
        if let ROption::RSome(v) = value {
            self.labels.push((key.to_string(), v.to_string()));
        }
        RResult::ROk(())
    }
    fn annotations(&self) -> ffi::Pairs {
        RVec::new()
    }
    fn set_annotation(&mut self, _: RStr<'_>, _: ROption<RStr<'_>>) -> Res<()> {
        no("annotations")
    }
    fn config(&self, _: RStr<'_>) -> Res<ROption<RVec<RString>>> {
        RResult::ROk(ROption::RNone)
    }
    fn set_config(&mut self, _: RStr<'_>, _: ROption<RVec<RString>>) -> Res<()> {
        // Every field is unset here; setting one back to unset is no change.
        RResult::ROk(())
    }
    fn layer_count(&self) -> u32 {
        1
    }
    fn add_layer(&mut self) -> Res<u32> {
        no("layers")
    }
    fn layer_annotations(&self, _: u32) -> ffi::Pairs {
        RVec::new()
    }
    fn set_layer_annotation(&mut self, _: u32, _: RStr<'_>, _: ROption<RStr<'_>>) -> Res<()> {
        no("layers")
    }
    fn layer_created_by(&self, _: u32) -> RString {
        RString::new()
    }
    fn set_layer_created_by(&mut self, _: u32, _: RStr<'_>) -> Res<()> {
        no("layers")
    }
    fn source_time(&self) -> ROption<i64> {
        ROption::RNone
    }
    fn set_source_time(&mut self, _: ROption<i64>) -> Res<()> {
        no("source time")
    }
    fn read_only(&self) -> bool {
        false
    }
    // The method the grown interface adds.
    #[cfg(feature = "grown")]
    fn rank(&self, _index: u64) -> u32 {
        0
    }
}

fn run(library: &str, kind: &str) -> Result<(), String> {
    // As treeport loads: the layout checked against 1.0 as released, then
    // the current (here: grown) types used.
    let header = lib_header_from_path(library.as_ref()).map_err(|e| e.to_string())?;
    header
        .init_root_module::<treeport_plugin_api::released::v1_0::PluginModRef>()
        .map_err(|e| e.to_string())?;
    // SAFETY: checked against 1.0 just above; the grown types extend it.
    let module = unsafe { header.unchecked_layout::<PluginModRef>() }.map_err(|e| e.to_string())?;
    let Tuple2(major, minor) = (module.interface())();
    println!("interface={major}.{minor}");
    #[cfg(feature = "grown")]
    println!(
        "features={}",
        module
            .features()
            .map_or("absent".to_string(), |f| f().to_string())
    );
    let plugins = module.plugins()()
        .into_result()
        .map_err(|e| e.message.to_string())?;
    let mut found = None;
    for p in plugins {
        println!("plugin={}", p.kind());
        if p.kind().as_str() == kind {
            found = Some(p);
        }
    }
    let plugin = found.ok_or(format!("no plugin {kind}"))?;
    let mut transform = plugin
        .make_transform(kind.into(), RVec::new())
        .into_result()
        .map_err(|e| e.message.to_string())?;
    let memory = Memory {
        entries: vec![
            Some(record("etc", Kind::Dir)),
            Some(record("usr", Kind::Dir)),
            Some(record("usr/bin", Kind::Dir)),
        ],
        labels: Vec::new(),
    };
    let shared = std::sync::Arc::new(std::sync::Mutex::new(memory));
    let handle = DraftObj_TO::from_value(Shared(shared.clone()), TD_Opaque);
    transform
        .apply(handle)
        .into_result()
        .map_err(|e| e.message.to_string())?;
    let memory = shared
        .lock()
        .expect("a panicking test thread poisons no lock here");
    for (k, v) in &memory.labels {
        println!("label {k}={v}");
    }
    for e in memory.entries.iter().flatten() {
        println!("entry {}", String::from_utf8_lossy(&e.path));
    }
    Ok(())
}

/// The memory draft behind a lock, as the boundary needs `Send`.
struct Shared(std::sync::Arc<std::sync::Mutex<Memory>>);

macro_rules! forward {
    ($($name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&self $(, $arg: $ty)*) -> $ret { self.0.lock().expect("a panicking test thread poisons no lock here").$name($($arg),*) })*
    };
}
macro_rules! forward_mut {
    ($($name:ident(&mut self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)*) => {
        $(fn $name(&mut self $(, $arg: $ty)*) -> $ret { self.0.lock().expect("a panicking test thread poisons no lock here").$name($($arg),*) })*
    };
}

impl DraftObj for Shared {
    forward! {
        len(&self) -> u64;
        find(&self, path: RSlice<'_, u8>) -> ROption<u64>;
        get(&self, index: u64) -> ROption<EntryRecord>;
        open(&self, index: u64) -> Res<ffi::ReaderBox>;
        labels(&self) -> ffi::Pairs;
        annotations(&self) -> ffi::Pairs;
        config(&self, field: RStr<'_>) -> Res<ROption<RVec<RString>>>;
        layer_count(&self) -> u32;
        layer_annotations(&self, layer: u32) -> ffi::Pairs;
        layer_created_by(&self, layer: u32) -> RString;
        source_time(&self) -> ROption<i64>;
        read_only(&self) -> bool;
    }
    forward_mut! {
        put(&mut self, entry: EntryRecord) -> Res<u64>;
        remove(&mut self, index: u64) -> Res<()>;
        set_label(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
        set_annotation(&mut self, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
        set_config(&mut self, field: RStr<'_>, value: ROption<RVec<RString>>) -> Res<()>;
        add_layer(&mut self) -> Res<u32>;
        set_layer_annotation(&mut self, layer: u32, key: RStr<'_>, value: ROption<RStr<'_>>) -> Res<()>;
        set_layer_created_by(&mut self, layer: u32, text: RStr<'_>) -> Res<()>;
        set_source_time(&mut self, time: ROption<i64>) -> Res<()>;
    }
    #[cfg(feature = "grown")]
    fn rank(&self, index: u64) -> u32 {
        self.0
            .lock()
            .expect("a panicking test thread poisons no lock here")
            .rank(index)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, library, kind] = args.as_slice() else {
        eprintln!("usage: treeport-abi-host LIBRARY KIND");
        return ExitCode::from(2);
    };
    match run(library, kind) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
