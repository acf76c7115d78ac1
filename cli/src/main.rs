//! `treeport`: the command line of treeport.
//!
//! Parses arguments, builds the plugin registry (every built-in plugin crate
//! is linked here so its `inventory` registration is seen), runs the command,
//! and turns errors into one line on stderr with exit status 1 (2 for bad
//! usage).

mod args;
mod export;
mod inspect;
mod oci_cmd;
mod output;
mod pipeline_cmd;
mod pipeline_file;
mod plugins_cmd;
mod registry_cmd;
mod sbom_cmd;
mod sign_cmd;
mod verify_cmd;

use std::process::ExitCode;

use clap::Parser;
use treeport_core::registry::Registry;

use args::{Cli, Command, OciCommand, PipelineCommand, PluginsCommand};
use output::Output;

// Built-in plugins register themselves; naming each crate links it in.
use treeport_bootc as _;
use treeport_chunk as _;
use treeport_config as _;
use treeport_containers_storage as _;
use treeport_docker as _;
use treeport_docker_archive as _;
use treeport_mmdebstrap as _;
use treeport_oci as _;
use treeport_oci_archive as _;
use treeport_ostree as _;
use treeport_rootfs as _;
use treeport_sbom as _;
use treeport_tar as _;

/// On SIGINT or SIGTERM: remove this run's temporary files, say so, and
/// exit with the status a shell expects (128 + the signal).
/// The signal being handled, once one came: the run's own end then waits
/// for the handler, so that a failure its cleanup caused (a temporary
/// removed under a writer) does not end the process first with status 1.
static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Lets the signal handler finish (it exits with 128+signal), waiting at
/// most ten seconds, then exits with that status itself.
fn yield_to_interruption() {
    let sig = INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst);
    if sig == 0 {
        return;
    }
    std::thread::sleep(std::time::Duration::from_secs(10));
    std::process::exit(128 + sig);
}

fn handle_signals() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        return;
    };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            INTERRUPTED.store(sig, std::sync::atomic::Ordering::SeqCst);
            treeport_core::cleanup::remove_all();
            eprintln!(
                "error: interrupted by {}; earlier images are left as they were",
                if sig == SIGINT { "SIGINT" } else { "SIGTERM" }
            );
            std::process::exit(128 + sig);
        }
    });
}

/// Buffers of a MiB and more (compression blocks, their output) are mapped
/// and unmapped on their own. Left to itself, glibc raises its mmap
/// threshold to the largest block freed so far, after which such buffers
/// come from the heap and what they leave behind stays resident: on a
/// 1.7 GB tree that was 74 MiB of peak memory against 53 with the
/// threshold fixed, and 40-50 MiB against 28-35 on a minbase tree, at the
/// same wall time (a little more system time for the mappings). Buffers
/// made per file must therefore stay small (below 128 KiB).
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; called first thing in
    // main, before any other thread exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// clap's usage error as one line: its message (a list folded in), its
/// useful tips in parentheses (not the one about `--`, which misleads for
/// a flag a command does not take), and where the help is.
fn usage_error_line(rendered: &str) -> String {
    let mut message: Vec<&str> = Vec::new();
    let mut tips: Vec<&str> = Vec::new();
    let mut command = "treeport".to_string();
    for line in rendered.lines().map(str::trim) {
        if line.is_empty() || line.starts_with("For more information") {
            continue;
        }
        if let Some(usage) = line.strip_prefix("Usage: ") {
            let words: Vec<&str> = usage
                .split_whitespace()
                .take_while(|w| !w.starts_with(['[', '<', '-']))
                .collect();
            command = words.join(" ");
        } else if let Some(tip) = line.strip_prefix("tip: ") {
            if !tip.starts_with("to pass") {
                tips.push(tip);
            }
        } else {
            message.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let tips = if tips.is_empty() {
        String::new()
    } else {
        format!(" ({})", tips.join("; "))
    };
    format!("error: {}{tips}; see '{command} --help'", message.join(" "))
}

fn main() -> ExitCode {
    fix_mmap_threshold();
    handle_signals();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            eprintln!(
                "{}",
                output::escape(&usage_error_line(&e.render().to_string()))
            );
            return ExitCode::from(2);
        }
    };
    let out = Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    // A library named with --plugin (or a directory named with
    // --plugin-dir) that cannot be loaded stops the run before anything is
    // done; one found in a directory is a warning, and the run goes on.
    let (registry, report) = registry(&cli);
    if !report.errors.is_empty() {
        treeport_core::cleanup::finish();
        for e in &report.errors {
            eprintln!("error: {}", output::escape(&e.to_string()));
        }
        return ExitCode::FAILURE;
    }
    if !cli.quiet {
        for w in &report.warnings {
            eprintln!("warning: {}; skipped", output::escape(&w.to_string()));
        }
    }
    let result = run(&cli, &registry, out);
    yield_to_interruption();
    // The run's temporaries are gone; so go the lock files that kept other
    // runs from taking them.
    treeport_core::cleanup::finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            if is_usage(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The built-in plugins, and those from --plugin, --plugin-dir and
/// `$TREEPORT_PLUGIN_PATH`.
fn registry(cli: &Cli) -> (Registry, treeport_core::abi::LoadReport) {
    let mut registry = Registry::builtin();
    let search_path: Vec<std::path::PathBuf> = std::env::var_os("TREEPORT_PLUGIN_PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    let report = treeport_core::abi::load(
        &mut registry,
        &treeport_core::abi::PluginSources {
            files: &cli.plugins,
            dirs: &cli.plugin_dirs,
            search_path: &search_path,
        },
    );
    (registry, report)
}

fn run(cli: &Cli, registry: &Registry, out: Output) -> anyhow::Result<()> {
    let registry = registry.clone();
    let writes = matches!(
        &cli.command,
        Command::Export(_) | Command::Pull(_) | Command::Index(_) | Command::Oci(_)
    );
    if writes {
        if let Some(signing) = sign_cmd::signing(&cli.sign)? {
            output::sign_with(signing);
        }
    } else if cli.sign.signs()
        || cli.sign.sign_identity.is_some()
        || cli.sign.sign_passphrase_file.is_some()
    {
        return Err(treeport_core::Error::usage(
            "--sign-by, --sign-key, --sign-identity and --sign-passphrase-file sign what export, oci build, oci push, pull and index write; this command writes no image (verify takes --key and --gpg-key)",
        )
        .into());
    }
    match &cli.command {
        Command::Export(args) => export::run(args, &registry, &cli.registry, out),
        Command::Inspect(args) => inspect::run(args, &registry, &cli.registry, out),
        Command::Pull(args) => registry_cmd::pull(args, &registry, &cli.registry, out),
        Command::Tags(args) => registry_cmd::tags(args, &registry, &cli.registry, out),
        Command::Index(args) => registry_cmd::index(args, &registry, &cli.registry, out),
        Command::Oci(OciCommand::Push(args)) => {
            registry_cmd::oci_push(args, &registry, &cli.registry, out)
        }
        Command::Plugins(PluginsCommand::List) => plugins_cmd::list(&registry, out),
        Command::Verify(args) => verify_cmd::run(args, &registry, &cli.registry, &cli.sign, out),
        Command::Sbom(args) => sbom_cmd::run(args, &registry, &cli.registry),
        Command::Pipeline(PipelineCommand::Check(args)) => {
            pipeline_cmd::check(args, &registry, &cli.registry, out)
        }
        Command::Oci(OciCommand::Build(args)) => {
            oci_cmd::build(args, &registry, &cli.registry, out)
        }
    }
}

/// The error and its context on one line.
pub(crate) fn one_line(err: &anyhow::Error) -> String {
    output::escape(&format!("{err:#}"))
}

fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<treeport_core::Error>()
            .is_some_and(treeport_core::Error::is_usage)
    })
}

#[cfg(test)]
mod tests {
    use super::usage_error_line;

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  --sink <KIND:DEST>\n\nUsage: treeport export --source <KIND:REST> --sink <KIND:DEST>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "error: the following required arguments were not provided: --sink <KIND:DEST>; see 'treeport export --help'"
        );
        let rendered = "error: unexpected argument '--output' found\n\n  tip: to pass '--output' as a value, use '-- --output'\n\nUsage: treeport export [OPTIONS]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "error: unexpected argument '--output' found; see 'treeport export --help'"
        );
        let rendered = "error: unrecognized subcommand 'exprt'\n\n  tip: a similar subcommand exists: 'export'\n\nUsage: treeport [OPTIONS] <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            usage_error_line(rendered),
            "error: unrecognized subcommand 'exprt' (a similar subcommand exists: 'export'); see 'treeport --help'"
        );
    }
}
