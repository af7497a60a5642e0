//! The `offerhost` command line. `main.rs` only parses and calls [`run`].

mod plugin_run;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use plugin_run::PluginRunArgs;
pub use serve::{DemoArgs, ServeArgs};

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
    /// Serve slates over HTTP from a configuration file.
    Serve(ServeArgs),
    /// Serve the example plugins on an embedded store and print requests to try.
    Demo(DemoArgs),
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
    init_tracing();
    let result = match cli.command {
        Command::Plugin(PluginCommand::Run(args)) => return plugin_run::run(args),
        Command::Serve(args) => serve::serve(args),
        Command::Demo(args) => serve::demo(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr; `RUST_LOG` sets the filter (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
