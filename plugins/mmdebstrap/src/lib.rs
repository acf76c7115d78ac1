//! Source `mmdebstrap:SUITE`: a Debian or Ubuntu root filesystem built by
//! mmdebstrap.
//!
//! mmdebstrap writes the tree as a tar stream on its stdout; treeport reads
//! it as it comes, spooling file content to one temporary file (removed when
//! the run ends), so memory stays bounded whatever the tree's size. If
//! mmdebstrap fails, the error carries the last lines it printed.

use std::collections::VecDeque;
use std::io::Read as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use treeport_core::archive;
use treeport_core::error::{Error, Result};
use treeport_core::image::{ImageDraft, go_architecture};
use treeport_core::plugin::{
    Builtin, BuiltinFactory, OptionKind, OptionSpec, Options, Selector, Source,
};
use treeport_core::progress::Context;

treeport_core::inventory::submit! {
    Builtin {
        kind: "mmdebstrap",
        description: "a Debian or Ubuntu tree built by mmdebstrap, streamed from its tar output",
        usage: "mmdebstrap:SUITE",
        options: OPTIONS,
        factory: BuiltinFactory::Source(MmdebstrapSource::build),
    }
}

/// Options, with the help shown by `treeport plugins list`.
pub const OPTIONS: &[OptionSpec] = &[
    OptionSpec::new(
        "variant",
        OptionKind::String,
        "minbase, buildd, essential, required, important, standard, ... (mmdebstrap --variant)",
    ),
    OptionSpec::new(
        "include",
        OptionKind::List,
        "packages to add, comma-separated (repeatable)",
    ),
    OptionSpec::new(
        "components",
        OptionKind::String,
        "archive components, e.g. main,contrib",
    ),
    OptionSpec::new(
        "arch",
        OptionKind::String,
        "the architecture(s) to build, e.g. arm64 (the first is the image's)",
    ),
    OptionSpec::new(
        "mirror",
        OptionKind::List,
        "mirror URL or sources.list line (repeatable); default: mmdebstrap's",
    ),
    OptionSpec::new(
        "keyring",
        OptionKind::String,
        "a keyring file or directory (an Ubuntu suite needs Ubuntu's)",
    ),
    OptionSpec::new(
        "mode",
        OptionKind::String,
        "root, unshare, fakechroot, ... (mmdebstrap --mode)",
    ),
];

/// How many lines of mmdebstrap's output an error quotes.
const TAIL_LINES: usize = 5;

/// Runs mmdebstrap for one suite.
#[derive(Debug, Clone)]
pub struct MmdebstrapSource {
    suite: String,
    options: Options,
    program: String,
}

impl MmdebstrapSource {
    /// A source for `suite` with mmdebstrap options (see [`OPTIONS`]).
    pub fn new(suite: &str, options: &Options) -> Result<Self> {
        let keys: Vec<&str> = OPTIONS.iter().map(|o| o.name).collect();
        options.check_keys("source mmdebstrap", &keys)?;
        if suite.is_empty() || suite.starts_with('-') || suite.contains(char::is_whitespace) {
            return Err(Error::usage(format!("'{suite}' is not a suite name")));
        }
        for (key, value) in options.iter() {
            if value.starts_with('-') {
                return Err(Error::usage(format!(
                    "mmdebstrap option {key}={value}: values may not start with '-'"
                )));
            }
        }
        Ok(MmdebstrapSource {
            suite: suite.to_string(),
            options: options.clone(),
            program: std::env::var("TREEPORT_MMDEBSTRAP").unwrap_or_else(|_| "mmdebstrap".into()),
        })
    }

    fn build(selector: &Selector, options: &Options) -> Result<Box<dyn Source>> {
        let suite = selector.require_rest("a suite (e.g. bookworm)")?;
        Ok(Box::new(MmdebstrapSource::new(suite, options)?))
    }

    /// The mmdebstrap arguments: options, the suite, `-` (tar on stdout), mirrors.
    #[must_use]
    pub fn args(&self) -> Vec<String> {
        let o = &self.options;
        let mut args = vec!["--format=tar".to_string()];
        if let Some(v) = o.get("variant") {
            args.push(format!("--variant={v}"));
        }
        let include: Vec<&str> = o.get_all("include").collect();
        if !include.is_empty() {
            args.push(format!("--include={}", include.join(",")));
        }
        if let Some(v) = o.get("components") {
            args.push(format!("--components={v}"));
        }
        if let Some(v) = o.get("arch") {
            args.push(format!("--architectures={v}"));
        }
        if let Some(v) = o.get("keyring") {
            args.push(format!("--keyring={v}"));
        }
        if let Some(v) = o.get("mode") {
            args.push(format!("--mode={v}"));
        }
        args.push(self.suite.clone());
        args.push("-".to_string());
        args.extend(o.get_all("mirror").map(str::to_string));
        args
    }
}

impl Source for MmdebstrapSource {
    fn read(&mut self, ctx: &Context) -> Result<ImageDraft> {
        let mut child = Command::new(&self.program)
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::invalid(format!("cannot run {}: {e}", self.program)))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");

        // Keep the last lines of mmdebstrap's log for an error message.
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));
        let tail_writer = Arc::clone(&tail);
        let log = std::thread::spawn(move || {
            for line in BufReader::new(stderr)
                .lines()
                .map_while(std::result::Result::ok)
            {
                let mut t = tail_writer.lock().expect("the log thread does not panic");
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        });

        let label = format!("mmdebstrap {}", self.suite);
        let task = ctx.progress().task(&label, None);
        let mut stream = Progressing {
            inner: stdout,
            task: &*task,
        };
        let tree = archive::read_stream(&mut stream, Path::new(&label)).and_then(|tree| {
            // tar pads its output to a whole record (10 KiB) after the end
            // marker the reader stops at: closing the pipe before mmdebstrap
            // wrote that made it fail with "Broken pipe" (when it was slow
            // to, under load). What follows is read, up to a bound, until
            // mmdebstrap closes its end; it must be padding.
            let mut trailer = Zeros::default();
            let _ = std::io::copy(&mut (&mut stream).take(TRAILER_LIMIT), &mut trailer);
            if trailer.other {
                return Err(Error::invalid(format!(
                    "{label}: data after the archive's end marker"
                )));
            }
            Ok(tree)
        });
        // Closing the pipe ends mmdebstrap: it cleans up (its temporary
        // root) when a write fails; a kill would leave that behind.
        drop(stream);
        task.finish();
        let status = child
            .wait()
            .map_err(|e| Error::invalid(format!("waiting for mmdebstrap: {e}")))?;
        let _ = log.join();
        let lines: Vec<String> = tail
            .lock()
            .expect("the log thread is done")
            .iter()
            .cloned()
            .collect();
        let failed = || {
            Error::invalid(format!(
                "mmdebstrap {} failed ({status}): {}",
                self.suite,
                lines.join(" | ")
            ))
        };
        // A stream treeport refused: mmdebstrap, its pipe closed, then fails
        // with "Broken pipe", and the refusal is the error to report. A
        // stream cut short because mmdebstrap failed on its own: its log
        // says why.
        let tree = match tree {
            Err(_) if !status.success() && !lines.iter().any(|l| l.contains("Broken pipe")) => {
                return Err(failed());
            }
            Err(e) => return Err(e),
            Ok(tree) => tree,
        };
        if !status.success() {
            return Err(failed());
        }
        let mut draft = ImageDraft::new(tree);
        if let Some(arch) = self.options.get("arch") {
            let first = arch.split([',', ' ']).next().unwrap_or(arch);
            draft.config.architecture = go_architecture(first).to_string();
        }
        draft.created_by = format!("mmdebstrap {}", self.args().join(" "));
        Ok(draft)
    }
}

/// The most read after the archive's end marker (tar's record padding is
/// at most 10 KiB).
const TRAILER_LIMIT: u64 = 16 << 20;

/// A sink that notes whether anything but zero bytes went into it.
#[derive(Default)]
struct Zeros {
    other: bool,
}

impl std::io::Write for Zeros {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.other |= buf.iter().any(|&b| b != 0);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Counts bytes read for the progress display.
struct Progressing<'a, R> {
    inner: R,
    task: &'a dyn treeport_core::progress::Task,
}

impl<R: std::io::Read> std::io::Read for Progressing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.task.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_become_mmdebstrap_arguments() {
        let mut o = Options::new();
        for pair in [
            "variant=minbase",
            "include=hello",
            "include=curl,jq",
            "arch=arm64",
            "mirror=http://deb.debian.org/debian",
        ] {
            o.push_pair(pair).expect("the test fixture is valid");
        }
        let s = MmdebstrapSource::new("bookworm", &o).expect("the test fixture is valid");
        assert_eq!(
            s.args(),
            [
                "--format=tar",
                "--variant=minbase",
                "--include=hello,curl,jq",
                "--architectures=arm64",
                "bookworm",
                "-",
                "http://deb.debian.org/debian"
            ]
        );
    }

    #[test]
    fn bad_options_are_usage_errors() {
        let mut o = Options::new();
        o.push_pair("colour=blue")
            .expect("the test fixture is valid");
        assert!(
            MmdebstrapSource::new("bookworm", &o)
                .unwrap_err()
                .is_usage()
        );
        let mut o = Options::new();
        o.push_pair("variant=--hook-dir=/x")
            .expect("the test fixture is valid");
        assert!(
            MmdebstrapSource::new("bookworm", &o)
                .unwrap_err()
                .is_usage()
        );
        assert!(
            MmdebstrapSource::new("-x", &Options::new())
                .unwrap_err()
                .is_usage()
        );
    }
}
