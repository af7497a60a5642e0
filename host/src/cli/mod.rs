//! The `offerhost` command line. `main.rs` only parses and calls [`run`].

mod admin;
mod plugin_run;
mod render;
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
    /// For the admin commands.
    #[command(flatten)]
    pub connection: admin::Connection,
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
    /// Admin: partners (add, list).
    #[command(subcommand)]
    Partners(admin::PartnersCommand),
    /// Admin: partners' upload-signing keys.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Admin: plugin versions and rollout (PLUGIN is partner/plugin-name).
    #[command(subcommand)]
    Plugins(admin::PluginsCommand),
    /// Admin: per-plugin configuration values.
    #[command(subcommand)]
    Config(admin::ConfigCommand),
    /// Admin: API tokens.
    #[command(subcommand)]
    Tokens(admin::TokensCommand),
    /// Admin: stored customer profiles.
    #[command(subcommand)]
    Profiles(admin::ProfilesCommand),
    /// Reports: served offers and events, exact for ops, protected for partners.
    #[command(subcommand)]
    Reports(admin::ReportsCommand),
    /// The store itself: bring one written by an earlier version up to this one.
    #[command(subcommand)]
    Store(serve::StoreCommand),
    /// Admin: the audit log of every registry change.
    Audit {
        /// Show entries after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Entries fetched per request (every entry after `--after` is shown).
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        page_size: u64,
    },
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
        Command::Store(cmd) => serve::store(cmd),
        Command::Partners(cmd) => admin::partners(&cli.connection, cmd),
        Command::Keys(cmd) => admin::keys(&cli.connection, cmd),
        Command::Plugins(cmd) => admin::plugins(&cli.connection, cmd),
        Command::Config(cmd) => admin::config(&cli.connection, cmd),
        Command::Tokens(cmd) => admin::tokens(&cli.connection, cmd),
        Command::Profiles(cmd) => admin::profiles(&cli.connection, cmd),
        Command::Reports(cmd) => admin::reports(&cli.connection, cmd),
        Command::Audit { after, page_size } => admin::audit(&cli.connection, after, page_size),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Writes `text` to stdout. Output a reader has stopped reading (`| head`) is dropped
/// quietly, as the other tools of a pipeline do, and the command goes on to its own exit
/// status; any other failure is an error.
fn write_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

/// Logs go to stderr; `RUST_LOG` sets the filter (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour for a terminal, plain text for a file or a log collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
