use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    offerhost::cli::run(offerhost::cli::Cli::parse())
}
