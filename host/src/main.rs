use std::process::ExitCode;

use clap::Parser;

// A slate allocates many small, short-lived values on several threads at once (bids,
// features, wasmtime's per-call bookkeeping); mimalloc serves those from per-thread
// pages, which made slates about a tenth faster than the system allocator (README,
// "Performance").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    offerhost::cli::run(offerhost::cli::Cli::parse())
}
