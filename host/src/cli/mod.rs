//! The `offerhost` command line. `main.rs` only parses and calls [`run`].

mod plugin_run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use plugin_run::PluginRunArgs;

/// offerhost: run partner-offer plugins in a sandbox and serve ranked offer slates.
#[derive(Debug, Parser)]
#[command(name = "offerhost", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with plugin components.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

/// `offerhost plugin ...`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Run a plugin component once on a request file, as the host would, and print its
    /// bids and what the call cost.
    #[command(long_about = plugin_run::LONG_ABOUT, after_long_help = plugin_run::AFTER_HELP)]
    Run(PluginRunArgs),
}

/// Runs a parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Plugin(PluginCommand::Run(args)) => plugin_run::run(args),
    }
}
