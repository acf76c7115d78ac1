//! What the user sees: progress bars on a terminal, warnings, and sizes.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use treeport_core::progress::{Context, Progress, Quiet, Task};

/// How much to print.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub quiet: bool,
    pub json: bool,
}

impl Output {
    /// The run context: progress bars only when stderr is a terminal and
    /// neither `-q` nor `--json` was given; warnings unless `-q`.
    pub fn context(self) -> Context {
        let progress: Arc<dyn Progress> =
            if !self.quiet && !self.json && std::io::stderr().is_terminal() {
                Arc::new(Bars)
            } else {
                Arc::new(Quiet)
            };
        let quiet = self.quiet;
        let ctx = Context::new(
            progress,
            Arc::new(move |message: &str| {
                if !quiet {
                    eprintln!("warning: {}", escape(message));
                }
            }),
        );
        match SIGNING.get() {
            Some(signing) => ctx.with_signing(Arc::clone(signing)),
            None => ctx,
        }
    }

    /// True when text results should be printed.
    pub fn text(self) -> bool {
        !self.quiet && !self.json
    }
}

/// What this run signs with (set once, from the signing flags, before a
/// command that writes images runs).
static SIGNING: std::sync::OnceLock<Arc<treeport_core::sign::Signing>> = std::sync::OnceLock::new();

/// Makes every context of this run sign what its sinks write.
pub fn sign_with(signing: Arc<treeport_core::sign::Signing>) {
    let _ = SIGNING.set(signing);
}

/// Prints one line of results on stdout. When stdout is a pipe whose reader
/// has gone (`treeport inspect ... | head -1`), the process ends as other
/// Unix tools do: quietly, by SIGPIPE, rather than with a panic.
pub fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
    if let Err(e) = written {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // SAFETY: restoring SIGPIPE's default action and raising it
            // ends the process, as a write to a closed pipe does for
            // programs that do not ignore the signal.
            #[allow(unsafe_code)]
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
            std::process::exit(141);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` for results: see [`print_line`].
macro_rules! outln {
    () => {
        $crate::output::print_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::print_line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// `text` with every control character (ESC, BEL, a newline, ...) shown as
/// an escape, so a name from an archive or a server's words cannot move the
/// cursor, ring the bell or start a second line on the user's terminal.
pub fn escape(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// indicatif progress bars on stderr.
struct Bars;

impl Progress for Bars {
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg:>18} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec} {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{msg:>18} {spinner} {decimal_bytes} {decimal_bytes_per_sec}")
                    .expect("the template is valid"),
            ),
        };
        bar.set_message(label.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Box::new(BarTask(bar))
    }
}

struct BarTask(ProgressBar);

impl Task for BarTask {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for BarTask {
    fn drop(&mut self) {
        if !self.0.is_finished() {
            self.0.finish_and_clear();
        }
    }
}

/// Bytes in a unit a person reads at a glance (decimal, as registries show).
// A rounded figure for people: f64 precision is more than enough.
#[allow(clippy::cast_precision_loss)]
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape("a\x1b[31mred\x07\nnext\u{9b}é"),
            "a\\x1b[31mred\\x07\\nnext\\x9bé"
        );
    }
}
