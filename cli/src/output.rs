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
        Context::new(
            progress,
            Arc::new(move |message: &str| {
                if !quiet {
                    eprintln!("warning: {message}");
                }
            }),
        )
    }

    /// True when text results should be printed.
    pub fn text(self) -> bool {
        !self.quiet && !self.json
    }
}

/// indicatif progress bars on stderr.
struct Bars;

impl Progress for Bars {
    fn task(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
                .with_style(
                    ProgressStyle::with_template(
                        "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .expect("the template is valid")
                    .progress_chars("=> "),
                ),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
                ProgressStyle::with_template("{msg:>18} {spinner} {bytes} {bytes_per_sec}")
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
