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
mod plugins_cmd;
mod registry_cmd;

use std::process::ExitCode;

use clap::Parser;
use treeport_core::plugin::Registry;

use args::{Cli, Command, OciCommand, PluginsCommand};
use output::Output;

// Built-in plugins register themselves; naming each crate links it in.
use treeport_config as _;
use treeport_docker as _;
use treeport_docker_archive as _;
use treeport_mmdebstrap as _;
use treeport_oci as _;
use treeport_oci_archive as _;
use treeport_ostree as _;
use treeport_rootfs as _;
use treeport_tar as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let out = Output {
        quiet: cli.quiet,
        json: cli.json,
    };
    match run(&cli, out) {
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

fn run(cli: &Cli, out: Output) -> anyhow::Result<()> {
    let registry = Registry::builtin();
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
        Command::Oci(OciCommand::Build(args)) => {
            oci_cmd::build(args, &registry, &cli.registry, out)
        }
    }
}

/// The error and its context on one line.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}").replace('\n', " ")
}

fn is_usage(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<treeport_core::Error>()
            .is_some_and(treeport_core::Error::is_usage)
    })
}
